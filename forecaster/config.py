"""Typed configuration: defaults live here, YAML files and `--set key.sub=value` overrides only change them.

An unknown or ill-typed key is a `ConfigError` that names the key and the file, and suggests the closest key.
"""

from __future__ import annotations

import difflib
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecaster.errors import ConfigError

def _registered_metric(value: str) -> str:
    from forecaster.metrics import METRICS  # numpy only: loading a config never imports torch

    if value not in METRICS:
        raise ValueError(f"unknown metric {value!r}; choose one of {', '.join(METRICS)}")
    return value


MetricName = Annotated[str, AfterValidator(_registered_metric)]  # a name in `forecaster.metrics.METRICS`
Cell = Literal["rnn", "lstm", "gru", "peephole_lstm", "slstm", "mlstm"]  # `models.cells.CELLS`, which needs torch
OutputFormat = Literal["csv", "parquet"]  # `outputs.FORMATS`, which needs pandas' writers
OUTPUT_FORMATS = list(get_args(OutputFormat))
Loss = Literal["mse", "mae", "huber", "quantile"]  # `models.losses.LOSSES`, which needs torch
Strategy = Literal["direct", "recursive", "seq2seq", "segment"]
SkipStart = Literal["zero", "ridge", "auto"]  # how the linear skip path starts (`training.fit.choose_start`)
Optimizer = Literal["adamw", "sgd"]  # `training.optim.OPTIMIZERS`, which needs torch
LrSchedule = Literal["plateau", "cosine", "none"]  # `training.optim.SCHEDULES`
InferencePrecision = Literal["auto", "32", "bf16"]  # `inference.PRECISIONS`, which needs torch
STATISTICAL = ("ets", "theta", "mstl", "arima")  # statsforecast's models, fitted per series (models/statistical.py)
BASELINES = ("naive", "seasonal_naive", "linear", *STATISTICAL)  # every model type that is not a network


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    path: str = "data/demo.csv"
    format: Literal["auto", "csv", "parquet"] = "auto"
    delimiter: str = ","
    timestamp: str = "timestamp"
    target: str | list[str] = "value"
    series_id: str | list[str] | None = None  # the column naming each series, or the columns that do together
    covariates: list[str] = Field(default_factory=list)
    future_covariates: list[str] = Field(default_factory=list)
    calendar: list[Literal["hour", "weekday", "month", "dayofyear"]] = Field(default_factory=list)
    freq: str | None = None
    missing: Literal["error", "interpolate", "ffill", "zero", "drop_series"] = "error"
    timezone: str | None = None  # the zone of the timestamps (IANA name or +02:00); None: from their offsets

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        from forecaster.data.timestamps import check_zone

        return None if value is None else check_zone(value)

    @property
    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @field_validator("series_id")
    @classmethod
    def _one_key_column_is_a_name(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if len(set(value)) != len(value):
                raise ValueError("a series key column is listed twice")
            return None if not value else value[0] if len(value) == 1 else value
        return value

    @property
    def key_columns(self) -> list[str]:
        """The columns that identify a series in the file: none, one, or several (a composite key)."""
        if self.series_id is None:
            return []
        return [self.series_id] if isinstance(self.series_id, str) else list(self.series_id)

    @property
    def id_column(self) -> str | None:
        """The column holding each row's series id: `series_id` itself, or for a composite key the column
        `forecaster.data.io.with_series_key` adds, named by its parts joined with '/' (`store/item`)."""
        return None if self.series_id is None else "/".join(self.key_columns)


class WindowConfig(_Section):
    lookback: int = Field(96, ge=1)
    horizon: int = Field(24, ge=1)
    stride: int = Field(1, ge=1)


class SplitConfig(_Section):
    """Chronological borders per series. `*_end` (a row count or a timestamp) wins over `*_size` (rows per series,
    counted back from each series' last row), which wins over the fractions."""

    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    val_size: int | None = Field(None, ge=0)
    test_size: int | None = Field(None, ge=0)
    train_end: int | str | None = None
    val_end: int | str | None = None
    test_end: int | str | None = None

    @field_validator("train_end", "val_end", "test_end", mode="before")
    @classmethod
    def _dates_as_text(cls, value: Any) -> Any:
        """YAML reads an unquoted `2017-06-01` as a date; a border timestamp is text either way."""
        return value.isoformat() if isinstance(value, date | datetime) else value

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must leave rows for training (sum below 1)")
        return self


class ModelConfig(_Section):
    cell: Cell = "lstm"
    strategy: Strategy = "direct"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    bidirectional: bool = False
    attention: bool = False
    teacher_forcing: float = Field(1.0, ge=0.0, le=1.0)
    teacher_forcing_decay: float = Field(0.0, ge=0.0, le=1.0)
    channel_independent: bool = True
    revin: bool = True
    linear_skip: bool = False  # a linear map from the lookback to the horizon beside the recurrence
    skip_start: SkipStart = "zero"  # with linear_skip; ridge: start as the `linear` model; auto: ridge if it wins
    loss: Loss = "mse"
    quantiles: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])
    season_length: int | None = Field(None, ge=1)
    segment_length: int | None = Field(None, ge=1)

    @field_validator("quantiles")
    @classmethod
    def _quantiles_in_unit_interval(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 < q < 1.0 for q in value):
            raise ValueError("quantiles must be a non-empty list of numbers strictly between 0 and 1")
        return sorted(value)


class TrainConfig(_Section):
    max_epochs: int = Field(20, ge=0)  # 0 only for a network started at the ridge fit (model.skip_start)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    optimizer: Optimizer = "adamw"
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: LrSchedule = "plateau"
    gradient_clip_val: float | None = Field(1.0, gt=0.0)
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    patience: int = Field(5, ge=0)
    seed: int = 42
    seeds: list[int] | None = None  # compare: also train the best network on these seeds and combine them
    limit_train_batches: int | float | None = None
    num_workers: int = Field(0, ge=0)
    # torch threads: auto (the free cores, `forecaster.runtime.choose_threads`), a number, or null for torch's default
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = "auto"
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    # what Lightning trains in ("32-true", "bf16-mixed", ...); auto: bf16-mixed where measured faster and as accurate
    precision: str = "32-true"
    progress: bool = True
    max_minutes: float | None = Field(None, gt=0)  # stop after the epoch that passes it; the best epoch is kept


class TrackingConfig(_Section):
    uri: str | None = None
    experiment: str = "forecaster"
    state_dir: str = ".forecaster"


class RegistryConfig(_Section):
    name: str = "forecaster"
    alias: str = "champion"


class CompareConfig(_Section):
    models: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["rnn", "lstm", "gru", "naive", "seasonal_naive", "linear"]
    )
    metric: MetricName = "mse"
    backtest_folds: int = Field(0, ge=0)
    backtest_step: int | None = Field(None, ge=1)
    register_winner: bool = True
    refit: bool = True
    promote: Literal["auto", "always"] = "auto"
    min_improvement: float = Field(0.0, ge=0.0, lt=1.0)
    ensemble: bool = True  # combine the best candidates on validation into one more candidate, `ensemble`
    ensemble_max_size: int = Field(4, ge=2)  # the most candidates an ensemble combines
    time_budget: float | None = Field(None, gt=0)  # minutes for the whole compare; trims epochs and candidates
    jobs: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"  # networks trained at once (pipelines/compare_jobs.py)


class PredictConfig(_Section):
    model: str | None = None
    data: str | None = None
    future: str | None = None  # known-future covariates over the horizon, when not in `data` (forecaster.data.future)
    base_scenario: str | None = None  # what monitor scores of a forecast with scenarios: None = the only one, or base
    output: str = "outputs"
    format: OutputFormat = "csv"
    engine: Literal["pandas", "spark"] = "pandas"
    spark_master: str = "local[2]"
    batch_size: int | None = Field(None, ge=1)  # windows per forward pass; None: the largest that fits memory_mb
    memory_mb: float = Field(1024, gt=0)  # the working-memory budget that sets the batch size
    precision: InferencePrecision = "auto"  # auto: bf16 where measured accurate and faster at load
    bf16_tolerance: float = Field(0.01, ge=0)  # on the scaled axis: standard deviations of each series
    skip_bad_series: bool = False
    overwrite: bool = False
    levels: list[int] = Field(default_factory=lambda: [80])  # prediction-interval levels, in percent
    calibrate: bool = True  # conformalise a quantile network's own quantiles on validation (CQR)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # YAML's 32

    @field_validator("levels")
    @classmethod
    def _levels_are_percentages(cls, value: list[int]) -> list[int]:
        if any(not 0 < level < 100 for level in value):
            raise ValueError("levels must be whole percentages strictly between 0 and 100, such as [80, 95]")
        return sorted(set(value))


class MonitorConfig(_Section):
    """`forecaster monitor`: score past forecasts (under `predict.output`) against the actuals that arrived."""

    actuals: str | None = None  # default data.path
    record: str | None = None  # default <forecasts folder>/monitoring.parquet
    window: int = Field(7, ge=1)  # the last scored forecast origins the decay verdict looks at
    decay_ratio: float = Field(1.25, ge=1.0)  # decay: realised MAE above this times the validation MAE


class ScheduleConfig(_Section):
    cron: str = "0 * * * *"
    timezone: str = "UTC"
    retrain: bool | Literal["on_decay"] = False  # on_decay: monitor first, compare only when it flags decay
    misfire_grace_s: int = Field(3600, ge=1)


class SearchRange(_Section):
    """A numeric range of `tune.space`: `{low: 0.0001, high: 0.01, log: true}`; integers when both ends are."""

    low: int | float
    high: int | float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


# `tune.space` short names and the keys they search; any other `model.*`, `train.*` or `window.*` key may be
# searched under its dotted name.
SEARCH_KEYS = {
    "cell": "model.cell", "strategy": "model.strategy", "lookback": "window.lookback",
    "hidden_size": "model.hidden_size", "num_layers": "model.num_layers", "dropout": "model.dropout",
    "lr": "train.lr", "batch_size": "train.batch_size", "segment_length": "model.segment_length",
    "loss": "model.loss", "revin": "model.revin", "weight_decay": "train.weight_decay",
    "attention": "model.attention", "bidirectional": "model.bidirectional", "linear_skip": "model.linear_skip",
}


class TuneConfig(_Section):
    """`forecaster tune`: an Optuna search scored on the validation split (`pipelines/tune.py`).

    `space` maps a key (a `SEARCH_KEYS` short name or a dotted `model.*`/`train.*`/`window.*` key) to a list of
    choices or a `SearchRange`; empty means a space derived from the frequency and the data size
    (`forecaster.search.default_space`)."""

    space: dict[str, list[Any] | SearchRange] = Field(default_factory=dict)
    trials: int = Field(20, ge=1)  # finished trials (complete or pruned) the study should hold, resumes included
    timeout: float | None = Field(None, gt=0.0)  # minutes for this invocation; a trial still training then stops
    # at its next epoch end, failed (it counts toward no budget)
    metric: MetricName = "mse"
    jobs: int = Field(1, ge=1)  # worker processes, each with cores // jobs torch threads
    prune: bool = True
    prune_startup_trials: int = Field(3, ge=0)  # complete trials before the median pruner judges others
    prune_warmup_epochs: int = Field(1, ge=0)  # epochs of every trial that are never pruned
    seed: int = 0
    study: str | None = None  # default: tracking.experiment
    storage: str | None = None  # default: sqlite:///<tracking.state_dir>/tune/<study>.db

    @field_validator("space")
    @classmethod
    def _known_space_keys(cls, space: dict[str, Any]) -> dict[str, Any]:
        searchable = [key for key in _known_keys() if key.startswith(("model.", "train.", "window."))]
        for key, choices in space.items():
            if key not in SEARCH_KEYS and key not in searchable:
                close = difflib.get_close_matches(key, [*SEARCH_KEYS, *searchable], n=1, cutoff=0.6)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"'{key}' is not a searchable key (a short name: {', '.join(SEARCH_KEYS)}; or a "
                                 f"dotted model.*, train.* or window.* key).{hint}")
            if isinstance(choices, list) and not choices:
                raise ValueError(f"'{key}': an empty list of choices")
        return space


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def flat(self) -> dict[str, Any]:
        """Dotted keys to scalar values, as logged to MLflow: {"model.cell": "lstm", ...}."""
        return flatten(self.to_dict())

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted-key overrides applied and validated again."""
        return build_config(merge(self.to_dict(), unflatten(overrides)), source="<overrides>")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["model.cell=gru", "data.target=[a, b]"]` -> {"model.cell": "gru", "data.target": ["a", "b"]}.

    Values are read as YAML, so numbers, booleans, null and lists come out typed.
    """
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example --set model.cell=gru")
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            overrides[key.strip()] = raw
    return overrides


def _known_keys() -> list[str]:
    return list(Config().flat())


def _describe(error: dict[str, Any], source: str) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{source}: unknown key '{key}'.{hint}"
    return f"{source}: key '{key}': {error['msg']} (got {error.get('input')!r})."


def build_config(tree: dict[str, Any] | None, source: str = "<config>") -> Config:
    try:
        return Config.model_validate(tree or {})
    except ValidationError as exc:
        lines = [_describe(error, source) for error in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `--set` style overrides.

    Relative `data.path` values are resolved against the current directory, like every other path the
    user types on the command line.
    """
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {path}. Copy one from configs/ and edit it.")
        try:
            tree = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data:, window:, ...) at the top level")
    config = build_config(tree, source)
    if overrides:
        flat = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
        known = _known_keys()
        mappings = [key for key, value in Config().flat().items() if isinstance(value, dict)]  # tune.space
        for key in (key for key in flat if key not in known and not key.startswith(tuple(f"{m}." for m in mappings))):
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"--set: unknown key '{key}'.{hint}")
        config = build_config(merge(config.to_dict(), unflatten(flat)), f"{source} with --set")
    return config


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
