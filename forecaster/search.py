"""The search space of `forecaster tune`: a default derived from the data, sampling a config from an Optuna trial,
and the Lightning callback that prunes a trial from its validation error after each epoch.

A space maps a name (a `config.SEARCH_KEYS` short name, or a dotted key) to a list of choices or a
`SearchRange`. Sampling is define-by-run: `segment_length` is only drawn for the segment strategy, so TPE never
learns from a value that changed nothing.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import optuna
import pytorch_lightning as pl

from forecaster.config import SEARCH_KEYS, Config, SearchRange
from forecaster.data.frequency import season_length
from forecaster.errors import ConfigError, ForecasterError, TrainingError

Space = dict[str, list[Any] | SearchRange]

LOOKBACK_SEASONS = (1, 2, 4, 7, 14)  # lookbacks as multiples of the season (hourly: a day to two weeks)
# hidden sizes by the number of training windows (each target counts once under channel independence)
HIDDEN_BY_WINDOWS = ((1_000, [16, 32, 64]), (10_000, [32, 64, 128]), (100_000, [64, 128, 256]))
HIDDEN_LARGE = [128, 256, 512]


def dotted(name: str) -> str:
    return SEARCH_KEYS.get(name, name)


def default_space(config: Config, freq: str, shortest_train_rows: int, train_windows: int) -> Space:
    """A space for this data: lookbacks in whole seasons (in horizons when there is no season) that leave at
    least half of the shortest series' training rows as window starts, hidden sizes by the number of training
    windows. Every list also holds the config's own value, so the starting point lies inside the space."""
    model, train, horizon = config.model, config.train, config.window.horizon
    season = model.season_length or season_length(freq)
    unit = season if season > 1 else horizon
    longest = max((shortest_train_rows - horizon) // 2, 1)
    lookbacks = [m * unit for m in LOOKBACK_SEASONS if m * unit <= longest]
    hidden = next((sizes for limit, sizes in HIDDEN_BY_WINDOWS if train_windows < limit), HIDDEN_LARGE)
    segments = [s for s in (unit // 2, unit, 2 * unit) if 1 <= s <= max([*lookbacks, config.window.lookback])]
    lr = SearchRange(low=min(1e-4, train.lr), high=max(3e-3, train.lr), log=True)
    return {
        "cell": _with(["rnn", "lstm", "gru"], model.cell),
        "strategy": _with(["direct", "seq2seq", "segment"], model.strategy),
        "lookback": _with(lookbacks, config.window.lookback),
        "hidden_size": _with(hidden, model.hidden_size),
        "num_layers": _with([1, 2], model.num_layers),
        "dropout": SearchRange(low=0.0, high=max(0.5, model.dropout)),
        "lr": lr,
        "batch_size": _with([32, 64, 128], train.batch_size),
        "segment_length": _with(segments, model.segment_length),
        "loss": _with(["mse", "mae"], model.loss),
        "revin": [True, False],
        "linear_skip": [model.linear_skip, not model.linear_skip],
    }


def _with(choices: list[Any], value: Any) -> list[Any]:
    """`choices` plus `value` (when set and absent), sorted when they are numbers."""
    merged = choices if value is None or value in choices else [*choices, value]
    return sorted(merged) if all(isinstance(c, int | float) and not isinstance(c, bool) for c in merged) else merged


def check_space(config: Config, space: Space) -> None:
    """Refuse a choice or range end that no config accepts, naming `tune.space.<key>`, before any training."""
    for name, values in space.items():
        ends = [values.low, values.high] if isinstance(values, SearchRange) else values
        for value in ends:
            try:
                config.with_overrides({dotted(name): value})
            except ConfigError as exc:
                raise ConfigError(f"tune.space.{name}: the value {value!r} is refused: {exc}") from None


def is_active(name: str, params: dict[str, Any], config: Config) -> bool:
    """Whether `name` changes anything given the values drawn so far: segment_length only for segments,
    attention only for seq2seq."""
    strategy = params.get("strategy", params.get("model.strategy", config.model.strategy))
    if dotted(name) == "model.segment_length":
        return strategy == "segment"
    if dotted(name) == "model.attention":
        return strategy == "seq2seq"
    return True


def ordered(space: Space) -> list[str]:
    """Names in drawing order: the ones others depend on (strategy) first."""
    return sorted(space, key=lambda name: dotted(name) != "model.strategy")


def sample(trial: optuna.Trial, space: Space, config: Config) -> dict[str, Any]:
    """Draw one point of `space`: {name: value}, only the active names."""
    params: dict[str, Any] = {}
    for name in ordered(space):
        if not is_active(name, params, config):
            continue
        values = space[name]
        if isinstance(values, list):
            params[name] = trial.suggest_categorical(name, values)
        elif isinstance(values.low, int) and isinstance(values.high, int):
            params[name] = trial.suggest_int(name, values.low, values.high, log=values.log)
        else:
            params[name] = trial.suggest_float(name, float(values.low), float(values.high), log=values.log)
    return params


def starting_point(space: Space, config: Config) -> dict[str, Any]:
    """The config's own values of the names it can take in `space`: the first trial, so the search starts from
    (and is measured against) the config it was given."""
    flat = config.flat()
    point: dict[str, Any] = {}
    for name in ordered(space):
        value, values = flat[dotted(name)], space[name]
        if not is_active(name, point, config) or value is None:
            continue
        inside = value in values if isinstance(values, list) else values.low <= value <= values.high
        if inside:
            point[name] = value
    return point


def apply(config: Config, params: dict[str, Any]) -> Config:
    """The config a trial trains: `config` with the drawn values."""
    return config.with_overrides({dotted(name): value for name, value in params.items()})


class PruneOnValidation(pl.Callback):
    """Report the validation error to an Optuna trial after each epoch and stop the training when the pruner
    says the trial is hopeless; a non-finite error (a diverged training) is pruned at once, whatever the pruner.
    Past `deadline` (a `time.time()`), the trial stops as failed: unfinished, it counts toward no trial budget."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val/mse", deadline: float | None = None):
        self.trial = trial
        self.monitor = monitor
        self.deadline = deadline
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value, epoch = float(value), trainer.current_epoch
        self.trial.report(value if math.isfinite(value) else math.inf, epoch)
        if not math.isfinite(value) or self.trial.should_prune():
            self.pruned_at = epoch
            self.trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"epoch {epoch}: {self.monitor} {value:.4g}")
        if self.deadline is not None and time.time() > self.deadline:
            raise TrainingError(f"trial {self.trial.number} stopped after epoch {epoch}: tune.timeout has passed")


class _TrialErrorInOneLine(logging.Filter):
    """Optuna logs a trial that failed with a caught exception along with its traceback. forecaster's own errors
    (a trial stopped at the deadline, a setting the data cannot take) say what happened in their message: keep it,
    drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ForecasterError):
            record.exc_info = None
            record.exc_text = None
        return True


def trial_errors_in_one_line() -> None:
    """Install the filter on the Optuna logger that reports failed trials (once; the `tune` process and each of
    its workers call this unless `--verbose`)."""
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(existing, _TrialErrorInOneLine) for existing in logger.filters):
        logger.addFilter(_TrialErrorInOneLine())
