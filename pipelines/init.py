"""`forecaster init DATA`: write a commented config a new user can train from, straight from a data file.

`run(data)` inspects the file (`forecaster.data.sniff`), suggests a window from the frequency and fits it, and
the validation and test holdouts, into the shortest series, writes a YAML config whose comments say why each
value was chosen, loads it back with `load_config` and runs the validate job on it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from forecaster.config import load_config
from forecaster.data.frequency import calendar_for, describe, season_length, suggest_window
from forecaster.data.sniff import TableProfile, sniff_table
from forecaster.errors import ConfigError, DataError
from . import validate

VAL_FRACTION, TEST_FRACTION = 0.1, 0.2
MIN_TRAIN_WINDOWS = 8  # per series, in the shortest one
_DATA_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq", ".gz", ".bz2", ".zip", ".xz", ".zst"}
_COMMENT_COLUMN = 32
_LINE_WIDTH = 110


@dataclass
class InitResult:
    """What `run` found in the data file and wrote; `problems` are the validate job's on the written config."""

    data: str
    config_path: str
    format: str
    delimiter: str | None
    timestamp: str
    freq: str
    layout: str
    series_id: str | list[str] | None  # a list: a composite key
    n_series: int
    targets: list[str]
    covariates: list[str]
    gaps: int
    missing_cells: int
    missing: str
    lookback: int
    horizon: int
    notes: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    future_covariates: list[str] = field(default_factory=list)  # the covariates that look known in advance

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class WindowPlan:
    """Window and holdout for a frequency and a shortest series. `val_size`/`test_size` are None when the
    fractions hold enough rows; `season_length` is set only when the lookback cannot hold the frequency's
    season; `notes` say what was shrunk to fit short series."""

    lookback: int
    horizon: int
    why: str
    val_size: int | None
    test_size: int | None
    split_why: str
    season_length: int | None = None
    notes: tuple[str, ...] = ()


def run(data: str | Path, output: str | Path | None = None, force: bool = False) -> InitResult:
    """Inspect `data`, write a config to `output` (default `<data stem>.yaml` here) and validate it.

    An existing `output` is kept unless `force`.
    """
    config_path = Path(output) if output is not None else Path(f"{_stem(Path(data))}.yaml")
    if config_path.exists() and not force:
        raise ConfigError(_exists_message(config_path))
    profile = sniff_table(data)
    plan = plan_windows(profile)
    missing = "interpolate" if profile.gaps or profile.missing_cells else "error"
    text = render_config(profile, plan, missing, _experiment_name(Path(data)), str(config_path))
    _write(config_path, text, force)
    problems = validate.run(load_config(config_path)).problems
    past, future = split_known_ahead(profile.covariates)
    return InitResult(
        data=str(data), config_path=str(config_path), format=profile.format, delimiter=profile.delimiter,
        timestamp=profile.timestamp, freq=profile.freq, layout=profile.layout, series_id=profile.series_id,
        n_series=profile.n_series, targets=profile.targets, covariates=past, future_covariates=future,
        gaps=profile.gaps,
        missing_cells=profile.missing_cells, missing=missing, lookback=plan.lookback, horizon=plan.horizon,
        notes=list(plan.notes), ignored=dict(profile.ignored), problems=problems,
    )


def format_result(result: InitResult) -> str:
    """A short summary of what was found and written, then the commands to run next."""
    if isinstance(result.series_id, list):
        where = f"{result.n_series} series (key columns {', '.join(repr(c) for c in result.series_id)})"
    else:
        where = f"{result.n_series} series (column '{result.series_id}')" if result.series_id else "one series"
    delimiter = f", delimiter {result.delimiter!r}" if result.delimiter else ""
    covariates = ", ".join(result.covariates) or "none"
    if result.future_covariates:
        covariates += f"; known ahead (data.future_covariates): {', '.join(result.future_covariates)}"
    holes = f"{result.gaps} absent timestamps, {result.missing_cells} empty cells"
    lines = [
        f"wrote {result.config_path} from {result.data}",
        f"  layout     {result.layout}: {where}, {describe(result.freq)} ('{result.freq}'), "
        f"timestamp column '{result.timestamp}'{delimiter}",
        f"  target     {', '.join(result.targets)}; covariates: {covariates}",
        f"  missing    {holes} -> data.missing: {result.missing}",
        f"  window     lookback {result.lookback}, horizon {result.horizon}",
    ]
    lines += [f"  note       {note}" for note in result.notes]
    lines += [f"  ignored    '{column}': {why}" for column, why in result.ignored.items()]
    if result.ok:
        lines.append("  validation OK")
    else:
        lines.append(f"  validation {len(result.problems)} problem(s); edit the config, then validate again:")
        lines += [f"  - {problem}" for problem in result.problems]
    lines.append("next:")
    lines += [f"  forecaster {command} {result.config_path}" for command in ("validate", "train", "compare")]
    return "\n".join(lines)


def plan_windows(profile: TableProfile) -> WindowPlan:
    """The suggested window, and validation and test holdouts, fitted into the shortest series.

    Long series keep the fractions (10 % validation, 20 % test). Shorter ones hold out two horizons each (then
    one), counted back from every series' end; when even that leaves fewer than `MIN_TRAIN_WINDOWS` training
    windows, the lookback shrinks, and then the horizon.
    """
    lookback, horizon, why = suggest_window(profile.freq)
    shortest, name = profile.shortest, profile.shortest_series
    n_val, n_test = math.floor(shortest * VAL_FRACTION), math.floor(shortest * TEST_FRACTION)
    notes: list[str] = []
    if n_val >= 2 * horizon and _train_windows(shortest - n_val - n_test, lookback, horizon) >= MIN_TRAIN_WINDOWS:
        val_size = test_size = None
        split_why = (f"the shortest series has {shortest} rows: {VAL_FRACTION:.0%} validation and "
                     f"{TEST_FRACTION:.0%} test per series hold at least two horizons each")
    else:
        holdout = next((k for k in (2, 1) if _train_windows(shortest - 2 * k * horizon, lookback, horizon)
                        >= MIN_TRAIN_WINDOWS), None)
        if holdout is None:
            holdout, (lookback, horizon) = 1, _shrink(shortest, lookback, horizon, name, profile.path)
            why = f"{why}; shrunk to fit the shortest series"
            notes.append(f"series '{name}' has only {shortest} rows: window shrunk to lookback {lookback}, horizon "
                         f"{horizon}, to leave {MIN_TRAIN_WINDOWS} training windows and one validation and one "
                         f"test horizon")
        val_size = test_size = holdout * horizon
        held = "two horizons" if holdout == 2 else "one horizon"
        split_why = (f"the shortest series has {shortest} rows: {held} per series for validation and as many for "
                     f"test, counted back from each series' end")
    season = season_length(profile.freq)
    if lookback < season:
        notes.append(f"a lookback of {lookback} cannot hold one season of {season} steps: seasonal naive "
                     f"repeats the last value (model.season_length 1)")
    return WindowPlan(lookback, horizon, why, val_size, test_size, split_why,
                      1 if lookback < season else None, tuple(notes))


def _train_windows(train_rows: int, lookback: int, horizon: int) -> int:
    return train_rows - lookback - horizon + 1


def _shrink(shortest: int, lookback: int, horizon: int, name: str, source: str) -> tuple[int, int]:
    """(lookback, horizon) that leave `MIN_TRAIN_WINDOWS` training windows and one horizon each for validation
    and test: first a shorter lookback (not below the horizon), then lookback = 2 * horizon with a shorter
    horizon."""
    room = shortest - 3 * horizon - (MIN_TRAIN_WINDOWS - 1)  # rows left for the lookback
    if room >= horizon:
        return min(room, lookback), horizon
    horizon = (shortest - (MIN_TRAIN_WINDOWS - 1)) // 5
    if horizon < 1:
        raise DataError(
            f"{source}: series '{name}' has only {shortest} rows; a config needs at least {MIN_TRAIN_WINDOWS + 4} "
            f"per series ({MIN_TRAIN_WINDOWS} training windows plus validation and test rows). Remove the short "
            f"series from the file, or write the config by hand (see configs/)."
        )
    return 2 * horizon, horizon


def render_config(profile: TableProfile, plan: WindowPlan, missing: str, name: str, config_path: str) -> str:
    """The YAML text of the config, every chosen value with a comment saying why."""
    freq_words = describe(profile.freq)
    calendar, calendar_why = calendar_for(profile.freq)
    past, future = split_known_ahead(profile.covariates)
    holes = (f"{profile.gaps} timestamp(s) absent from the grid and {profile.missing_cells} empty cell(s) in "
             f"{profile.series_with_holes} series: filled from neighbours, never from a later split")
    data = [
        ("path", profile.path, f"{profile.format.upper()}, {profile.rows} rows"),
        *([("delimiter", profile.delimiter, "found in the header line")] if profile.delimiter else []),
        ("timestamp", profile.timestamp, profile.timestamp_reason),
        *([("series_id", profile.series_id, profile.series_id_reason)] if profile.series_id else []),
        ("target", profile.targets[0] if len(profile.targets) == 1 else profile.targets, profile.target_reason),
        ("covariates", past, "the other numeric columns, as past covariates: known up to each forecast's origin"
         if past else ("no other numeric column" if not future else "no other numeric column looks past-only")),
        *([("future_covariates", future, "named like values known in advance (calendar flags, holidays, events, "
                                         "promotions, prices, forecasts): the model also reads them over the "
                                         "horizon, so predict needs them for the future, as rows after each "
                                         "series' last target or with --future FILE. Move any that is not known "
                                         "ahead to covariates")] if future else []),
        *([("calendar", calendar, f"{freq_words} data: {calendar_why}")] if calendar else []),
        ("freq", profile.freq, f"inferred from the timestamps ({freq_words})"),
        *([("timezone", profile.timezone, "from the timestamps' UTC offsets: times are kept as instants, calendar "
                                          "features read this zone's local time, outputs carry its offset")]
          if profile.timezone else []),
        ("missing", missing, holes if missing == "interpolate" else
         "no gaps or empty cells; a file with some is refused until you choose a policy"),
    ]
    window = [("lookback", plan.lookback, plan.why), ("horizon", plan.horizon, "")]
    if plan.val_size is None:
        split = [("val_fraction", VAL_FRACTION, plan.split_why), ("test_fraction", TEST_FRACTION, "")]
    else:
        split = [("val_size", plan.val_size, plan.split_why), ("test_size", plan.test_size, "")]
    model = [
        ("cell", "gru", "a small GRU; with the segment strategy the best recurrent model on ETTh1 and M4 Weekly here"),
        ("strategy", "segment", "segments of min(24, horizon) steps: few recurrent steps, fast on a CPU"),
        ("hidden_size", 64, "raise it (256 in configs/etth1-ot.yaml) when the data is large"),
        ("num_layers", 1, ""),
        ("dropout", 0.1, ""),
        ("linear_skip", True, "a linear map from the lookback to the horizon beside the recurrence: it lowered the "
                              "best network's validation MASE on M4 Weekly by 4.5 %, and is even on average on "
                              "benchmarks/suite.py's smaller datasets"),
        ("skip_start", "auto", "start as the linear model on lags (recurrence at zero, the start kept unless an "
                               "epoch beats it on validation) when that beats seasonal naive on validation, else "
                               "from zero: it closed the gap to `linear` on benchmarks/suite.py's five smaller "
                               "datasets and leaves M4 Weekly as it was"),
        ("loss", "mae", "the error compare ranks by (MASE) is absolute: on benchmarks/suite.py's five datasets the "
                        "MAE loss lowered the best network's validation MASE on four, 0.653 against 0.675 on average"),
        *([("season_length", plan.season_length, "the lookback is shorter than one season")]
          if plan.season_length else []),
    ]
    train = [
        ("max_epochs", 20, "early stopping usually ends sooner"),
        ("batch_size", 64, ""),
        ("lr", 0.001, ""),
        ("patience", 3, "stop after 3 epochs without a better validation loss"),
        ("precision", "auto", "bfloat16 autocast where it trains faster here (an LSTM with the direct strategy on a "
                              "CPU with native bfloat16: 1.2x), float32 otherwise; the saved model records which"),
    ]
    sections = {
        "data": data, "window": window, "split": split, "model": model, "train": train,
        "tracking": [("experiment", name, "MLflow experiment, named after the data file")],
        "registry": [("name", name, "`forecaster compare` registers its winner under this name")],
        "compare": [("models", ["gru", "lstm", "naive", "seasonal_naive", "linear", "ets", "theta"],
                     "two cells (with the model section's strategy) beside the baselines and two statistical models "
                     "(statsforecast's AutoETS and AutoTheta, fitted per series); mstl and arima are slower to add; "
                     "a winner is registered only when it beats seasonal_naive"),
                    ("metric", "mase",
                     "rank by MASE: each series' error relative to its own seasonal-naive error, so every series "
                     "counts alike; MSE on the standardised scale is dominated by the series that are hardest to "
                     "forecast")],
    }
    where = f"{profile.n_series} series" if profile.series_id else "one series"
    header = [
        f"# Written by `forecaster init {profile.path}`: {profile.layout} layout, {where}, {freq_words}, "
        f"{profile.shortest} to {profile.longest} rows per series.",
        *(f"# Note: {note}." for note in plan.notes),
        *(f"# Not used: '{column}' ({why})." for column, why in profile.ignored.items()),
        f"# Next: forecaster validate {config_path}, then train or compare it.",
    ]
    lines = [one_line(line) for line in header]
    for section, entries in sections.items():
        lines.append(f"{section}:")
        lines += [yaml_entry(key, value, comment) for key, value, comment in entries]
    return "\n".join(lines) + "\n"


# Column names that say their values are known in advance: calendar flags, holidays and events, promotions and
# prices, and forecasts of other quantities (a day-ahead load forecast).
KNOWN_AHEAD = re.compile(r"holiday|event|promo|discount|price|calendar|weekday|weekend|day_?of_?week|^dow$|^is_"
                         r"|^day_?\d+$|^month|^hour|forecast|fcst|(^|_)fc($|_)|predict|day_?ahead|planned|schedul",
                         re.IGNORECASE)


def split_known_ahead(covariates: list[str]) -> tuple[list[str], list[str]]:
    """(past covariates, covariates whose names say they are known in advance), each in file order."""
    future = [name for name in covariates if KNOWN_AHEAD.search(name)]
    return [name for name in covariates if name not in future], future


LINE_BREAKS = ("\r", "\n", "\x85", "\u2028", "\u2029")  # what YAML reads as the end of a line


def yaml_entry(key: str, value: object, comment: str) -> str:
    """`  key: value  # comment`, or the comment on its own line above when the line would grow too long."""
    line = f"  {key}: {_yaml_value(value)}"
    if not comment:
        return line
    comment = one_line(comment)
    trailing = f"{line.ljust(_COMMENT_COLUMN - 1)} # {comment}"
    return trailing if len(trailing) <= _LINE_WIDTH else f"  # {comment}\n{line}"


def _yaml_value(value: object) -> str:
    """One value as inline YAML on one line (quoted where needed, lists in flow style). A value that plain or
    single-quoted YAML would spread over lines (a column name with a line break) is double-quoted with escapes, so
    it reads back as written and cannot start a key of its own."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    text = text.removesuffix("\n...\n").strip()
    if any(brk in text for brk in LINE_BREAKS):
        text = yaml.safe_dump(value, default_flow_style=True, default_style='"', width=math.inf, allow_unicode=True)
    return text.strip()


def one_line(text: str) -> str:
    """`text` for a YAML comment: line breaks shown escaped, so a name from the file cannot end the comment."""
    for brk in LINE_BREAKS:
        text = text.replace(brk, brk.encode("unicode_escape").decode())
    return text


def _write(path: Path, text: str, force: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("w" if force else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise ConfigError(_exists_message(path)) from None


def _exists_message(path: Path) -> str:
    return f"{path} already exists; not overwritten. Pass --force to replace it, or choose another file with -o."


def _stem(file: Path) -> str:
    """`sales.csv.gz` -> `sales`: the file name without its data and compression suffixes."""
    name = file.name
    while Path(name).suffix.lower() in _DATA_SUFFIXES:
        name = Path(name).stem
    return name or "forecaster"


def _experiment_name(file: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", _stem(file)).strip("-.") or "forecaster"
