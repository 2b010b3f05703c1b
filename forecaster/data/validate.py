"""Checks that turn a raw table into regular per-series arrays, with messages that say where and what to do.

`scan_frame` runs every check that no missing-value policy can fix (columns, series ids, timestamps, numbers,
duplicates, frequency) and returns a `ScannedFrame`: rows sorted by series then time and placed on each
series' regular time grid, with NaN where a cell is empty or a whole row is absent. `panel.build_panel` then
applies `data.missing`. Rows are named as the user sees them: `line N` in a CSV file, `row N` (0-based
position) in any other table.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecaster.config import DataConfig
from forecaster.data.io import describe_row
from forecaster.data.timestamps import Clock, read_timestamps
from forecaster.errors import DataError

SINGLE_SERIES_ID = "series"
_DAY_NS = 86_400 * 10**9
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True, eq=False)
class ScannedFrame:
    """A validated table on a regular grid, before the missing-value policy.

    S series stored back to back, N grid rows in all, V value columns (targets, covariates, future covariates).
    `values` is float32 [N, V] with NaN for empty cells and for grid rows absent from the input;
    `rows` is int64 [N]: the row's position in the input table, -1 for a grid row the input lacks.
    """

    source: str
    series_ids: list[str]
    offsets: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray
    rows: np.ndarray
    targets: list[str]
    covariates: list[str]
    future_covariates: list[str]
    freq: str
    clock: Clock = Clock()  # how the timestamps map to time zones (`data.timestamps`)

    @property
    def columns(self) -> list[str]:
        return [*self.targets, *self.covariates, *self.future_covariates]

    def gaps(self) -> np.ndarray:
        """[S] grid rows absent from the input, per series."""
        return np.add.reduceat((self.rows < 0).astype(np.int64), self.offsets[:-1])

    def missing_cells(self) -> np.ndarray:
        """[S] empty cells in the rows the input has, per series."""
        per_row = np.isnan(self.values).sum(axis=1) * (self.rows >= 0)  # [N]
        return np.add.reduceat(per_row.astype(np.int64), self.offsets[:-1])


def scan_frame(frame: pd.DataFrame, cfg: DataConfig, source: str) -> ScannedFrame:
    """Validate `frame` against `cfg` and place every series on its regular grid (gaps become NaN rows).

    Raises `DataError` naming the file, column, series and row for: missing columns, empty series ids,
    unparsable timestamps, duplicate timestamps, non-numeric or infinite values, irregular or mixed frequency.
    """
    columns = [*cfg.targets, *cfg.covariates, *cfg.future_covariates]
    check_columns(frame, cfg, source)
    if frame.empty:
        raise DataError(f"{source}: the table has no rows. Expected at least lookback + horizon rows per series.")
    codes, series_ids = _series_codes(frame, cfg, source)
    stamps, clock = read_timestamps(frame[cfg.timestamp], cfg.timestamp, source, cfg.timezone, codes)
    values = parse_values(frame, columns, codes, series_ids, source)

    order = np.lexsort((stamps, codes))  # stable: by series, then time, then input order
    codes, stamps = codes[order], stamps[order]
    _check_duplicates(codes, stamps, order, series_ids, source, single=cfg.series_id is None, zoned=bool(clock.zone))
    counts = np.bincount(codes, minlength=len(series_ids))
    raw_offsets = np.concatenate([[0], np.cumsum(counts)])

    freq = infer_freq(stamps, raw_offsets, series_ids, cfg.freq, source)
    placed = _place_fixed_step(stamps, raw_offsets, freq)
    if placed is None:  # a calendar frequency, or a series off its grid: one at a time, naming the problem
        grids, positions = [], []
        for index, series_id in enumerate(series_ids):
            segment = slice(raw_offsets[index], raw_offsets[index + 1])
            grid, position = _place_on_grid(stamps[segment], order[segment], freq, series_id, source)
            grids.append(grid)
            positions.append(position)
        offsets = np.concatenate([[0], np.cumsum([len(grid) for grid in grids])]).astype(np.int64)
        where = np.concatenate(positions) + np.repeat(offsets[:-1], counts)  # [n] grid row of each sorted row
        grid_stamps = np.concatenate(grids)
    else:
        offsets, grid_stamps, where = placed

    grid_values = np.full((offsets[-1], len(columns)), np.nan, dtype=np.float32)
    grid_values[where] = values[order]
    grid_rows = np.full(offsets[-1], -1, dtype=np.int64)
    grid_rows[where] = order
    timestamps = grid_stamps.astype("datetime64[ns]")
    return ScannedFrame(
        source, series_ids, offsets, timestamps, grid_values, grid_rows,
        cfg.targets, list(cfg.covariates), list(cfg.future_covariates), freq, clock,
    )


def check_columns(frame: pd.DataFrame, cfg: DataConfig, source: str) -> None:
    """Every configured column exists, and each has one role; otherwise suggest the closest existing name."""
    present = [str(column) for column in frame.columns]
    roles = {
        "data.timestamp": [cfg.timestamp],
        "data.series_id": cfg.key_columns,
        "data.target": cfg.targets,
        "data.covariates": cfg.covariates,
        "data.future_covariates": cfg.future_covariates,
    }
    problems: list[str] = []
    role_of: dict[str, str] = {}
    for key, names in roles.items():
        for name in names:
            if name in role_of:
                problems.append(f"column '{name}' is both {role_of[name]} and {key}; give each column one role")
            role_of[name] = key
            if name not in present:
                problems.append(f"column '{name}' ({key}) not found{_closest(name, present)}")
    if problems:
        raise DataError(f"{source}: " + "; ".join(problems) + f". Columns in the file: {', '.join(present)}.")


def _closest(name: str, present: list[str]) -> str:
    by_case = {column.lower().strip(): column for column in present}
    close = [by_case[name.lower().strip()]] if name.lower().strip() in by_case else []
    close = close or difflib.get_close_matches(name, present, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _series_codes(frame: pd.DataFrame, cfg: DataConfig, source: str) -> tuple[np.ndarray, list[str]]:
    """[n] int64 series index of each row, and the ids in order of first appearance."""
    if cfg.series_id is None:
        return np.zeros(len(frame), dtype=np.int64), [SINGLE_SERIES_ID]
    column = frame[cfg.id_column]
    empty = column.isna().to_numpy()
    if empty.any():
        position = int(np.argmax(empty))
        raise DataError(
            f"{source}: column '{cfg.id_column}' (data.series_id), {describe_row(position, source)}: the series "
            f"id is empty. Fill it in or delete the row."
        )
    codes, uniques = pd.factorize(column, sort=False)
    return codes.astype(np.int64), [str(value) for value in uniques]


def parse_values(
    frame: pd.DataFrame, columns: list[str], codes: np.ndarray, series_ids: list[str], source: str
) -> np.ndarray:
    """[n, V] float32 with NaN for empty cells; text that is not a number and infinities are errors."""
    values = np.empty((len(frame), len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            text = column.astype("string").str.strip()
            bad = np.isnan(numbers) & text.notna().to_numpy() & (text != "").fillna(False).to_numpy(dtype=bool)
            if bad.any():
                _raise_bad_value(column, name, int(np.argmax(bad)), codes, series_ids, source, "is not a number")
        with np.errstate(over="ignore"):
            values[:, j] = numbers
        infinite = np.isinf(values[:, j])
        if infinite.any():
            _raise_bad_value(column, name, int(np.argmax(infinite)), codes, series_ids, source,
                             "is infinite or too large for float32")
    return values


def _raise_bad_value(
    column: pd.Series, name: str, position: int, codes: np.ndarray, series_ids: list[str], source: str, what: str
) -> None:
    value = column.iloc[position]
    hint = "Fix the value, or leave the cell empty to treat it as missing (see data.missing)."
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+,\d+\s*", value):
        hint = "It looks like a decimal comma: write decimals with a point (3.5, not 3,5). " + hint
    raise DataError(
        f"{source}: column '{name}', series '{series_ids[codes[position]]}', {describe_row(position, source)}: "
        f"value {value!r} {what}. {hint}"
    )


def _check_duplicates(
    codes: np.ndarray, stamps: np.ndarray, order: np.ndarray, series_ids: list[str], source: str, single: bool,
    zoned: bool = False,
) -> None:
    """`codes`, `stamps`, `order` are sorted by series then time: duplicates sit next to each other."""
    same = (codes[1:] == codes[:-1]) & (stamps[1:] == stamps[:-1])
    if not same.any():
        return
    i = int(np.argmax(same))
    first, second = sorted((int(order[i]), int(order[i + 1])))
    stamp = pd.Timestamp(stamps[i])
    if not zoned and _looks_like_clocks_going_back(stamp):
        hint = (f" This looks like the hour a daylight-saving change repeats (clocks going back on {stamp.date()}): "
                f"the times are local wall-clock times without their UTC offset, so two instants read alike. Set "
                f"data.timezone to the file's zone (for example --set data.timezone=Europe/Berlin): of the two rows, "
                f"the first is then read as the earlier instant. Or write the times with their offset (for example "
                f"{stamp.strftime('%Y-%m-%d %H:%M:%S')}+02:00 and {stamp.strftime('%Y-%m-%d %H:%M:%S')}+01:00).")
    elif single:
        hint = " If the file holds several series, set data.series_id to the column that names them."
    else:
        hint = " Remove one of the rows."
    raise DataError(
        f"{source}: series '{series_ids[codes[i]]}' has the timestamp {pd.Timestamp(stamps[i])} twice, at "
        f"{describe_row(first, source)} and {describe_row(second, source)}.{hint}"
    )


def _looks_like_clocks_going_back(stamp: pd.Timestamp) -> bool:
    """A repeated time between 00:00 and 03:59 on a Sunday of March, April, October or November: when the clocks
    of Europe, North America and much of the southern hemisphere go back an hour."""
    return stamp.month in (3, 4, 10, 11) and stamp.dayofweek == 6 and stamp.hour < 4 and stamp != stamp.normalize()


def infer_freq(stamps: np.ndarray, offsets: np.ndarray, series_ids: list[str], freq: str | None, source: str) -> str:
    """The pandas offset alias shared by every series: `freq` when given, else each series' most common step.

    `stamps` [n] int64 ns sorted within each series; `offsets` [S+1] delimit the series.
    """
    if freq is not None:
        try:
            return to_offset(freq).freqstr
        except ValueError:
            raise DataError(
                f"data.freq={freq!r} is not a pandas frequency alias. Use for example h, 15min, D, W-MON or MS, "
                f"or leave data.freq empty to infer it."
            ) from None
    steps = np.diff(stamps)
    steps[offsets[1:-1] - 1] = 0  # the step from one series' last row to the next one's first is no step
    within = steps[steps > 0]  # sorted and without duplicates within a series: every real step is positive
    if len(within) and (within == within[0]).all() and (within[0] % _DAY_NS or within[0] == _DAY_NS):
        return _alias_for(np.array([0, within[0]]))  # one step everywhere, an alias that needs no calendar: all at once
    found: dict[str, str] = {}
    for index, series_id in enumerate(series_ids):
        series = stamps[offsets[index] : offsets[index + 1]]
        if len(series) > 1:
            alias = _alias_for(series)
            found.setdefault(alias, series_id)
    if not found:
        raise DataError(f"{source}: every series has a single row, so the frequency cannot be inferred. Set data.freq.")
    if len(found) > 1:
        listed = ", ".join(f"series '{series_id}' is {alias!r}" for alias, series_id in found.items())
        raise DataError(
            f"{source}: mixed frequencies: {listed}. All series in one file must share one frequency: resample "
            f"them or split the file, or set data.freq."
        )
    return next(iter(found))


def _alias_for(series: np.ndarray) -> str:
    """The offset alias of a series' most common step (calendar aliases for weekly and longer steps)."""
    steps, counts = np.unique(np.diff(series), return_counts=True)
    step = int(steps[np.argmax(counts)])
    days, remainder = divmod(step, _DAY_NS)
    if remainder or days == 0:
        return to_offset(pd.Timedelta(step, unit="ns")).freqstr
    first = pd.Timestamp(series[0])
    month = _MONTHS[first.month - 1]
    if days == 7:
        return f"W-{first.day_name()[:3].upper()}"
    if 28 <= days <= 31:
        candidates = ["MS", "ME"]
    elif 89 <= days <= 92:
        candidates = [f"QS-{month}", f"QE-{month}"]
    elif 365 <= days <= 366:
        candidates = [f"YS-{month}", f"YE-{month}"]
    else:
        return "D" if days == 1 else f"{days}D"
    fitting = (alias for alias in candidates if np.isin(series, _grid(series[0], series[-1], alias)).all())
    return next(fitting, candidates[0])  # none fits: the grid check names the first stray timestamp


def _grid(start: int, end: int, freq: str) -> np.ndarray:
    """[G] int64 ns: the regular time grid from `start` through `end`."""
    return pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=freq).as_unit("ns").asi8


def _place_on_grid(
    series: np.ndarray, rows: np.ndarray, freq: str, series_id: str, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """The grid [G] int64 ns of one series and the grid position [n] of each of its sorted timestamps `series`;
    `rows` [n] are their positions in the input, for messages."""
    if len(series) > 1:  # estimated from the median step before building a grid that could be huge
        estimate = (int(series[-1]) - int(series[0])) // max(int(np.median(np.diff(series))), 1) + 1
        if _too_sparse(estimate, len(series)):
            _raise_sparse(series, freq, series_id, source)
    grid = _grid(series[0], series[-1], freq)
    position = np.searchsorted(grid, series)
    on_grid = position < len(grid)
    on_grid[on_grid] = grid[position[on_grid]] == series[on_grid]
    if not on_grid.all():
        i = int(np.argmin(on_grid))
        steps = f"the '{freq}' steps from {pd.Timestamp(grid[0])}" if len(grid) else f"any '{freq}' step"
        raise DataError(
            f"{source}: series '{series_id}' is not on a regular '{freq}' grid: timestamp "
            f"{pd.Timestamp(series[i])} ({describe_row(int(rows[i]), source)}) is not on {steps}. The series "
            f"has an irregular or mixed frequency: resample it, fix the timestamp, or set data.freq."
        )
    if _too_sparse(len(grid), len(series)):
        _raise_sparse(series, freq, series_id, source)
    return grid, position


def _place_fixed_step(stamps: np.ndarray, offsets: np.ndarray, freq: str) -> tuple | None:
    """Every series on its grid at once, when `freq` is a fixed step (seconds to days): (grid offsets [S+1], grid
    timestamps [G] int64 ns, grid row [n] of each sorted row). None for a calendar frequency (weeks, months...),
    or when a series is off its grid or too sparse: `_place_on_grid` then finds and names it."""
    try:
        step = to_offset(freq).nanos
    except ValueError:
        return None
    counts = np.diff(offsets)
    first, last = stamps[offsets[:-1]], stamps[offsets[1:] - 1]  # [S]
    series = np.repeat(np.arange(len(counts)), counts)  # [n]
    relative = stamps - first[series]
    lengths = (last - first) // step + 1  # [S] grid rows
    if (relative % step).any() or any(map(_too_sparse, lengths.tolist(), counts.tolist())):
        return None
    grid_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    where = relative // step + grid_offsets[:-1][series]
    grid_series = np.repeat(np.arange(len(counts)), lengths)  # [G]
    grid = first[grid_series] + (np.arange(grid_offsets[-1]) - grid_offsets[:-1][grid_series]) * step
    return grid_offsets, grid, where


def _too_sparse(grid_rows: int, rows: int) -> bool:
    """More than half of a grid missing (with slack for short series) means a wrong frequency or timestamp."""
    return grid_rows > 2 * rows + 10


def _raise_sparse(series: np.ndarray, freq: str, series_id: str, source: str) -> None:
    raise DataError(
        f"{source}: series '{series_id}' has {len(series)} rows between {pd.Timestamp(series[0])} and "
        f"{pd.Timestamp(series[-1])}: on a '{freq}' grid more than half its timestamps would be missing. "
        f"Check the frequency (data.freq) and look for timestamps far from the others."
    )
