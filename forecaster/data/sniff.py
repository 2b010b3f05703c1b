"""Inspect an unknown CSV or Parquet table: which column holds the time, which names the series, which are values.

`sniff_table(path)` reads the file with the project's own reader and validator (`io.read_table`,
`validate.scan_frame`), so what it finds is what training will accept: the delimiter, the timestamp column, the
layout (long, with a series-id column, or wide, one series), the frequency, the target and covariate columns,
and how many timestamps are absent and cells empty. It only looks; `pipelines/init.py` turns the profile into a
config.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.config import DataConfig
from forecaster.data.io import file_format, peek_lines, read_table, sniff_delimiter_of, with_series_key
from forecaster.data.timestamps import is_year_column, parse_timestamps
from forecaster.data.validate import ScannedFrame, scan_frame
from forecaster.errors import DataError

TARGET_NAMES = ("ot", "target", "value", "y", "load", "sales", "demand")
_TIMESTAMP_NAME = re.compile(r"date|time|stamp|^ds$|^dt$|period|hour|day|week|month|quarter|year", re.IGNORECASE)
MAX_KEY_CANDIDATES = 6  # columns whose pairs and triples are tried as a composite key
_SERIES_NAME = re.compile(r"id$|^id|series|item|store|site|sensor|meter|station|sku|product|region|country|unique",
                          re.IGNORECASE)
_SAVED_INDEX = re.compile(r"^Unnamed: \d+$")
_SAMPLE_ROWS = 50


@dataclass(frozen=True)
class TableProfile:
    """What a table holds, in the config's vocabulary.

    `shortest` is the row count of the shortest series on its regular grid (absent timestamps included, as
    training sees it once they are filled); `gaps` counts grid timestamps absent from the file and
    `missing_cells` empty cells among `targets` and `covariates`, both over all series. `ignored` maps columns
    left out to the reason.
    """

    path: str
    format: str
    delimiter: str | None
    timestamp: str
    timestamp_reason: str
    freq: str
    series_id: str | list[str] | None  # a list: a composite key
    series_id_reason: str
    n_series: int
    rows: int
    shortest: int
    shortest_series: str
    longest: int
    targets: list[str]
    covariates: list[str]
    target_reason: str
    gaps: int
    missing_cells: int
    series_with_holes: int
    ignored: dict[str, str] = field(default_factory=dict)
    timezone: str | None = None  # the zone of timestamps written with UTC offsets (`Clock.zone`)

    @property
    def layout(self) -> str:
        return "long" if self.series_id else "wide"


def sniff_table(path: str | Path) -> TableProfile:
    """Read `path` (CSV with `,` `;` tab or `|`, or Parquet) and work out its columns' roles and frequency.

    Raises `DataError` when no column holds usable timestamps, no column is numeric, or repeated timestamps are
    not explained by any series-id column; the validator's own errors (irregular frequency...) pass through.
    """
    file = Path(path)
    source = str(path)
    fmt = file_format(file)
    delimiter = sniff_delimiter(file) if fmt == "csv" else None
    frame = read_table(DataConfig(path=source, format=fmt, delimiter=delimiter or ","), file)
    frame.columns = [str(column) for column in frame.columns]
    timestamp, stamps, timestamp_reason = find_timestamp(frame, source)

    ignored: dict[str, str] = {}
    values = []
    for column in frame.columns:
        if column == timestamp:
            continue
        if _SAVED_INDEX.match(column):
            ignored[column] = "a saved row index"
        elif _is_number_column(frame[column]):
            if frame[column].isna().all():
                ignored[column] = "no values at all"
            else:
                values.append(column)
    if not values:
        raise DataError(
            f"{source}: no numeric column besides the timestamp '{timestamp}' (columns: {', '.join(frame.columns)}). "
            f"A forecaster needs at least one column of numbers; write decimals with a point (3.5, not 3,5)."
        )

    series_id, series_id_reason, scan = _find_layout(frame, timestamp, stamps, values, source)
    keys = [series_id] if isinstance(series_id, str) else list(series_id or [])
    values = [column for column in values if column not in keys]
    for column in frame.columns:
        if column != timestamp and column not in keys and column not in values and column not in ignored:
            ignored[column] = "not numeric"

    usable = _columns_with_values_in_every_series(scan, ignored)
    targets, covariates, target_reason = choose_target(usable, long=series_id is not None)
    kept = [scan.columns.index(column) for column in [*targets, *covariates]]
    lengths = np.diff(scan.offsets)
    present = scan.rows >= 0  # [N] grid rows the file has
    empty = np.isnan(scan.values[:, kept]) & present[:, None]  # [N, V'] empty cells of the kept columns
    holes_per_series = np.add.reduceat(empty.sum(axis=1) + ~present, scan.offsets[:-1])  # [S]
    return TableProfile(
        path=source, format=fmt, delimiter=delimiter, timestamp=timestamp, timestamp_reason=timestamp_reason,
        freq=scan.freq, series_id=series_id, series_id_reason=series_id_reason, n_series=len(scan.series_ids),
        rows=len(frame), shortest=int(lengths.min()), shortest_series=scan.series_ids[int(np.argmin(lengths))],
        longest=int(lengths.max()), targets=targets, covariates=covariates, target_reason=target_reason,
        gaps=int(scan.gaps().sum()), missing_cells=int(empty.sum()),
        series_with_holes=int((holes_per_series > 0).sum()), ignored=ignored, timezone=scan.clock.zone,
    )


def sniff_delimiter(file: Path) -> str:
    """The delimiter of a CSV file, among `,` `;` tab and `|`, judged from its first lines."""
    header, sample = peek_lines(file)
    if not header:
        raise DataError(f"{file}: the file is empty. Expected a header line and data rows.")
    found = sniff_delimiter_of(header, sample)
    if found is None or found not in header:
        raise DataError(
            f"{file}: the header line {header!r} has no comma, semicolon, tab or pipe, so the file has a single "
            f"column. Expected a timestamp column and value columns separated by one of them."
        )
    return found


def find_timestamp(frame: pd.DataFrame, source: str) -> tuple[str, np.ndarray, str]:
    """(column, [n] int64 ns timestamps, why): the first column whose every cell parses as a timestamp, trying
    columns named like date/time/timestamp/ds before the others."""
    named = [column for column in frame.columns if _TIMESTAMP_NAME.search(column)]
    others = [column for column in frame.columns if column not in named]
    rejected: dict[str, str] = {}
    for column in [*named, *others]:
        reason = _not_timestamp(frame[column], column, source)
        if reason is None:
            try:
                stamps = parse_timestamps(frame[column], column, source)
            except DataError as exc:
                reason = str(exc)
            else:
                why = "named like a timestamp" if column in named else "the only column that parses as dates"
                return column, stamps, f"every row parses as a date; {why}"
        rejected[column] = reason
    details = "; ".join(f"'{column}': {rejected[column]}" for column in named) or "no column is named like one"
    raise DataError(
        f"{source}: no usable timestamp column. Looked for a column whose every cell is a date or time, first "
        f"among columns named like date, time, timestamp or ds ({details}), then in every other column "
        f"({', '.join(others) or 'none'}). Add a timestamp column with values such as 2024-01-31 13:00:00, or "
        f"fix the rows named above."
    )


def _not_timestamp(column: pd.Series, name: str, source: str) -> str | None:
    """Why `column` cannot be the timestamp column judging from a sample, or None when it may be."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return None
    if is_year_column(column) and _TIMESTAMP_NAME.search(name):
        return None  # 1998, 1999, ... in a column named like a date: a yearly file
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return "holds numbers, not dates"
    sample = column.dropna().head(_SAMPLE_ROWS)
    if sample.empty:
        return "is empty"
    if pd.to_numeric(sample, errors="coerce").notna().all():
        return "holds numbers, not dates"
    try:
        parse_timestamps(sample, name, source)
    except DataError:
        return f"{sample.iloc[0]!r} is not a date"
    return None


def _is_number_column(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _find_layout(
    frame: pd.DataFrame, timestamp: str, stamps: np.ndarray, values: list[str], source: str
) -> tuple[str | None, str, ScannedFrame]:
    """(series-id column or None, why, the scan of every value column under that layout).

    Unique timestamps make one series (wide). Repeated ones need a column whose groups each form a regular
    time grid: text columns (then integer ones) with at most half as many distinct values as rows are tried,
    id-like names first.
    """
    def scan(series_id: str | list[str] | None) -> ScannedFrame:
        keys = [series_id] if isinstance(series_id, str) else list(series_id or [])
        targets = [column for column in values if column not in keys]
        if not targets:
            raise DataError(f"{source}: '{series_id}' is the only numeric column, so no values would remain")
        cfg = DataConfig(path=source, timestamp=timestamp, series_id=series_id, target=targets)
        return scan_frame(with_series_key(frame, cfg, source), cfg, source)

    if len(np.unique(stamps)) == len(stamps):
        return None, "every timestamp occurs once: one series (wide layout)", scan(None)
    rejected: dict[str, str] = {}
    candidates = _series_id_candidates(frame, timestamp)
    # The smallest key that works: one column, then pairs and triples of them (store x item, region x purpose).
    keys = [*candidates, *(list(group) for size in (2, 3)
                           for group in itertools.combinations(candidates[:MAX_KEY_CANDIDATES], size))]
    for key in keys:
        try:
            scanned = scan(key)
        except DataError as exc:
            rejected[" x ".join([key] if isinstance(key, str) else key)] = str(exc)
            continue
        groups = len(scanned.series_ids)
        if isinstance(key, str):
            return key, (f"{groups} distinct values whose rows each form a regular '{scanned.freq}' series "
                         f"(long layout)"), scanned
        return key, (f"no single column splits the file into regular series; together these {len(key)} do: "
                     f"{groups} distinct combinations, each a regular '{scanned.freq}' series (long layout)"), scanned
    rejected = {name: reason for name, reason in rejected.items() if " x " not in name}  # the single columns
    tried = "; ".join(f"'{column}': {reason}" for column, reason in rejected.items()) or "no text or integer column"
    repeated = pd.Timestamp(stamps[np.argmax(pd.Series(stamps).duplicated().to_numpy())])
    raise DataError(
        f"{source}: timestamps repeat (for example {repeated} in column '{timestamp}'), so the file holds several "
        f"series, but no column splits it into regular series. Tried as series id: {tried}. Add a column that "
        f"names each row's series, or remove the duplicate rows."
    )


def _series_id_candidates(frame: pd.DataFrame, timestamp: str) -> list[str]:
    """Text or integer columns with 2 to n/2 distinct values: id-like names first, text before integers."""
    ranked = []
    for position, column in enumerate(frame.columns):
        data = frame[column]
        is_text = not pd.api.types.is_numeric_dtype(data) and not pd.api.types.is_datetime64_any_dtype(data)
        if column == timestamp or not (is_text or pd.api.types.is_integer_dtype(data)):
            continue
        if 2 <= data.nunique(dropna=True) <= len(frame) // 2:
            ranked.append((not _SERIES_NAME.search(column), not is_text, position, column))
    return [column for *_, column in sorted(ranked)]


def _columns_with_values_in_every_series(scan: ScannedFrame, ignored: dict[str, str]) -> list[str]:
    """Value columns that have at least one value in every series (no missing-value policy can fill a column a
    series lacks entirely); the others go to `ignored`."""
    usable = []
    for j, column in enumerate(scan.columns):
        have = np.add.reduceat((~np.isnan(scan.values[:, j])).astype(np.int64), scan.offsets[:-1])  # [S]
        if (have == 0).any():
            series = scan.series_ids[int(np.argmin(have))]
            ignored[column] = f"no values at all in series '{series}'"
        else:
            usable.append(column)
    if not usable:
        raise DataError(
            f"{scan.source}: every numeric column ({', '.join(scan.columns)}) is empty in at least one series. "
            f"Fill them in, or remove the empty series from the file."
        )
    return usable


def choose_target(columns: list[str], long: bool) -> tuple[list[str], list[str], str]:
    """(targets, covariates, why) from the numeric columns in file order.

    A column named like a target (OT, target, value, y, load, sales, demand) wins; otherwise the first value
    column of a long file (the measurement usually follows the id) or the last of a wide one (as in ETT).
    """
    if len(columns) == 1:
        return list(columns), [], "the only numeric column"
    named = [column for column in columns if column.lower() in TARGET_NAMES]
    if len(named) == 1:
        target, why = named[0], f"'{named[0]}' is a usual name for the value to forecast"
    elif named:
        target = named[0]
        why = f"several columns are named like a target ({', '.join(named)}): took the first"
    elif long:
        target, why = columns[0], "no column is named like a target: took the first numeric column"
    else:
        target, why = columns[-1], "no column is named like a target: took the last numeric column (as in ETT)"
    return [target], [column for column in columns if column != target], why
