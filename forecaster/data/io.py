"""Reading a CSV or Parquet file into a DataFrame, with a `DataError` that says what is wrong and how to fix it.

Only the reading happens here: which columns mean what, and whether their contents make sense, is checked by
`forecaster.data.validate` when the frame becomes a `Panel`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecaster.errors import DataError

if TYPE_CHECKING:
    from forecaster.config import DataConfig

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
_CANDIDATE_DELIMITERS = ",;\t|"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def read_table(cfg: DataConfig, path: str | Path | None = None) -> pd.DataFrame:
    """Read `path` (default `cfg.path`) as CSV or Parquet; the format comes from `cfg.format` or the extension.

    Returns the file's columns as they are (N rows, default RangeIndex): timestamps and numbers are parsed
    later, so that a bad cell can be reported with its column, series and row. Series ids are text exactly as
    written (`007` stays `007`, not 7), whatever the column looks like.
    """
    file = Path(path if path is not None else cfg.path)
    if not file.is_file():
        raise DataError(
            f"data file not found: {file} (data.path). Check the path; a relative path is read from the "
            f"current directory ({Path.cwd()})."
        )
    if file_format(file, cfg.format) == "parquet":
        frame = _read_parquet(file)
        for ids in cfg.key_columns:
            if ids in frame and not pd.api.types.is_string_dtype(frame[ids]):
                frame[ids] = frame[ids].map(str, na_action="ignore")  # an integer column's 7 is the id '7'
    else:
        frame = _read_csv(file, cfg.delimiter, text=cfg.key_columns)
    if frame.empty:
        raise DataError(f"{file}: the file has a header but no data rows. Point data.path at a file with data.")
    return with_series_key(frame, cfg, str(file))


KEY_SEPARATOR = "/"  # joins the parts of a composite key into one series id: store 12, item A -> '12/A'


def with_series_key(frame: pd.DataFrame, cfg: DataConfig, source: str) -> pd.DataFrame:
    """`frame` with, for a composite `data.series_id`, the column `cfg.id_column` holding each row's series id:
    its key columns' text joined by '/' (empty when any part is). Frames without a composite key, or without
    every key column (`check_columns` names what is missing), are returned as they are."""
    keys = cfg.key_columns
    if len(keys) < 2 or any(name not in frame for name in keys):
        return frame
    parts = frame[keys].astype("string")
    slashed = parts.apply(lambda column: column.str.contains(KEY_SEPARATOR, regex=False).fillna(False))
    if slashed.to_numpy().any():
        row, col = map(int, np.argwhere(slashed.to_numpy())[0])
        raise DataError(f"{source}: column '{keys[col]}' (data.series_id), row {row + 1}: {parts.iat[row, col]!r} "
                        f"holds '{KEY_SEPARATOR}', which joins the parts of a composite series key; replace it "
                        f"in that column")
    joined = parts.iloc[:, 0].str.cat([parts.iloc[:, j] for j in range(1, len(keys))], sep=KEY_SEPARATOR)
    return frame.assign(**{cfg.id_column: joined.astype(object).where(joined.notna(), None)})


def key_parts(series_id: str, cfg: DataConfig) -> list[str]:
    """The values of `cfg.key_columns` that make up `series_id` (one value for a key of one column)."""
    return series_id.split(KEY_SEPARATOR, len(cfg.key_columns) - 1)


def with_key_columns(frame: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """For a composite key, `frame` with its key columns right after `series_id`, split back from the ids
    `with_series_key` joined; any other frame, and an empty one, as it is."""
    if len(cfg.key_columns) < 2 or frame.empty:
        return frame
    parts = frame["series_id"].astype(str).str.split(KEY_SEPARATOR, n=len(cfg.key_columns) - 1, expand=True)
    parts.columns = cfg.key_columns
    position = frame.columns.get_loc("series_id") + 1
    return pd.concat([frame.iloc[:, :position], parts, frame.iloc[:, position:]], axis=1)


def file_format(file: Path, configured: str = "auto") -> str:
    """'csv' or 'parquet': `configured` unless it is 'auto', else from the file extension."""
    if configured != "auto":
        return configured
    suffixes = [suffix.lower() for suffix in file.suffixes]
    if any(suffix in PARQUET_SUFFIXES for suffix in suffixes):
        return "parquet"
    if any(suffix in CSV_SUFFIXES for suffix in suffixes):
        return "csv"
    raise DataError(
        f"{file}: cannot tell the format from the extension '{file.suffix}'. Name the file .csv or .parquet, "
        f"or set --set data.format=csv (or parquet)."
    )


def _read_csv(file: Path, delimiter: str, text: list[str] = ()) -> pd.DataFrame:
    header, sample = peek_lines(file)
    if not header:
        raise DataError(f"{file}: the file is empty. Expected a header line and data rows.")
    _check_delimiter(file, header, sample, delimiter)
    try:
        return pd.read_csv(file, sep=delimiter, dtype={name: str for name in text})
    except pd.errors.EmptyDataError:
        raise DataError(f"{file}: the file is empty. Expected a header line and data rows.") from None
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{file}: not a valid CSV with delimiter {delimiter!r} (data.delimiter): {exc}. Every row needs as "
            f"many fields as the header; look for stray delimiters or unbalanced quotes on that line."
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start}). Save it as UTF-8.") from None


def peek_lines(file: Path, lines: int = 20) -> tuple[str, str]:
    """The first non-blank line and a sample of up to `lines` lines, for checking the delimiter."""
    sample: list[str] = []
    with file.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        for line in handle:
            if line.strip():
                sample.append(line)
            if len(sample) >= lines:
                break
    return (sample[0].rstrip("\r\n") if sample else ""), "".join(sample)


def _check_delimiter(file: Path, header: str, sample: str, delimiter: str) -> None:
    """A header without the configured delimiter means the file uses another one: say which."""
    if delimiter in header:
        return
    found = sniff_delimiter_of(header, sample)
    if found is None:
        raise DataError(
            f"{file}: the header line {header!r} has no {_describe(delimiter)} (data.delimiter), so the file "
            f"has a single column. Expected a timestamp column and value columns separated by {delimiter!r}."
        )
    raise DataError(
        f"{file}: the file looks {_describe(found)}-separated (header: {header!r}) but data.delimiter is "
        f"{delimiter!r}. Set --set data.delimiter={_yaml_literal(found)} or put it in the config."
    )


def sniff_delimiter_of(header: str, sample: str) -> str | None:
    try:
        return csv.Sniffer().sniff(sample, delimiters=_CANDIDATE_DELIMITERS).delimiter
    except csv.Error:
        counts = {candidate: header.count(candidate) for candidate in _CANDIDATE_DELIMITERS}
        best = max(counts, key=counts.__getitem__)
        return best if counts[best] else None


def _describe(delimiter: str) -> str:
    name = _DELIMITER_NAMES.get(delimiter)
    return f"{name} ({delimiter!r})" if name else repr(delimiter)


def _yaml_literal(delimiter: str) -> str:
    return '"\\t"' if delimiter == "\t" else f"'{delimiter}'"


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(file)
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: cannot read as Parquet: {exc}. Is it really a Parquet file?") from None
    # A frame saved with a named index (often the timestamps) keeps that column in the index: bring it back.
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    return frame


def describe_row(position: int, source: str) -> str:
    """How to point a user at input row `position` (0-based, header excluded)."""
    if Path(source).suffix.lower() in CSV_SUFFIXES:
        return f"line {position + 2}"
    return f"row {position}"
