"""Timestamps as a user writes them -> int64 nanoseconds: dates and times in any format pandas reads, time zones
(one offset keeps its wall time, changing offsets become UTC), and periods (quarters, months, ISO weeks, years)
read as their first day."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from forecaster.data.io import describe_row
from forecaster.errors import DataError


def parse_timestamps(column: pd.Series, name: str, source: str) -> np.ndarray:
    """[n] int64 nanoseconds since the epoch. Time zones are dropped (wall time kept, or UTC when offsets mix).
    Periods (`1998 Q1`, `2021-03`, `2021M03`, `2021-W05`, a year) are read as their first day."""
    where = f"{source}: column '{name}' (data.timestamp)"
    if is_year_column(column):
        column = column.astype("int64").astype(str)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_datetime64_any_dtype(column):
        raise DataError(f"{where} holds numbers, not dates. Write timestamps such as 2024-01-31 13:00:00.")
    empty = column.isna().to_numpy()
    if empty.any():
        position = int(np.argmax(empty))
        raise DataError(
            f"{where}, {describe_row(position, source)}: the timestamp is empty. Fill it in or delete the row."
        )
    parsed = _to_datetime(column)
    bad = parsed.isna().to_numpy()
    if bad.any():
        position = int(np.argmax(bad))
        raise DataError(
            f"{where}, {describe_row(position, source)}: cannot read {column.iloc[position]!r} as a timestamp "
            f"(the first row reads {column.iloc[0]!r}). Use one date format for the whole column, for example "
            f"2024-01-31 13:00:00."
        )
    outside = ((parsed < pd.Timestamp.min) | (parsed > pd.Timestamp.max)).to_numpy()
    if outside.any():
        position = int(np.argmax(outside))
        raise DataError(
            f"{where}, {describe_row(position, source)}: {column.iloc[position]!r} is outside the supported years "
            f"{pd.Timestamp.min.year + 1}-{pd.Timestamp.max.year - 1}. Fix the timestamp."
        )
    return parsed.astype("datetime64[ns]").to_numpy().view(np.int64)


# Period notations and how each maps to its first day; a column is read by one of them only if every cell fits it.
PERIODS = (
    (re.compile(r"^(\d{4})\s*-?\s*[Qq]([1-4])$"), lambda y, q: pd.Timestamp(int(y), 3 * int(q) - 2, 1)),
    (re.compile(r"^(\d{4})(?:-|[Mm])(\d{2})$"), lambda y, m: pd.Timestamp(int(y), int(m), 1)),
    (re.compile(r"^(\d{4})-?[Ww](\d{2})$"), lambda y, w: pd.Timestamp.fromisocalendar(int(y), int(w), 1)),
    (re.compile(r"^(\d{4})$"), lambda y: pd.Timestamp(int(y), 1, 1)),
)


def is_year_column(column: pd.Series) -> bool:
    """Whole numbers that can only be years (1000 to 2999): a yearly file's timestamp column as read from CSV."""
    if not pd.api.types.is_integer_dtype(column) or not len(column):
        return False
    return bool(column.between(1000, 2999).all())


def _periods(column: pd.Series) -> pd.Series | None:
    """The first day of each period when every cell is written in one period notation, else None."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return None
    text = column.astype("string").str.strip()
    for pattern, first_day in PERIODS:
        parts = text.str.extract(pattern)
        if parts.notna().all(axis=None):
            try:
                return pd.Series([first_day(*row) for row in parts.itertuples(index=False)], index=column.index,
                                 dtype="datetime64[ns]")
            except ValueError:  # a month 13 or a week 54: not this notation after all
                return None
    return None


def _to_datetime(column: pd.Series) -> pd.Series:
    periods = _periods(column)
    if periods is not None:
        return periods
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": we report bad rows ourselves
        try:
            parsed = pd.to_datetime(column, errors="coerce")
            if parsed.isna().any():  # "2024-01-01" among "2024-01-01 01:00:00" needs the ISO 8601 parser
                iso = pd.to_datetime(column, errors="coerce", format="ISO8601")
                parsed = iso if iso.isna().sum() < parsed.isna().sum() else parsed
        except ValueError:  # mixed UTC offsets, e.g. across a daylight-saving change
            parsed = pd.to_datetime(column, errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed
