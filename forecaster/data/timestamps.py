"""Timestamps as a user writes them -> int64 nanoseconds: dates and times in any format pandas reads, periods
(quarters, months, ISO weeks, years) read as their first day, and time zones by one rule (`Clock`).

The rule for time zones: times written with a UTC offset (or read from a zone-aware Parquet column, or naive times
with `data.timezone` set) are instants. Their zone is `data.timezone`, else the one fixed offset of the file, else
the IANA zone whose daylight-saving changes match the file's offsets. Sub-daily data is kept as UTC instants, so a
day with a daylight-saving change has 23 or 25 hourly rows and no hour is lost or repeated; data with one time of day
(daily, weekly, monthly) is kept on the zone's calendar (local midnights), where every day is one step. Calendar
features read the zone's local time either way, and outputs carry the zone's offset.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
import zoneinfo
from datetime import timedelta, timezone
from datetime import tzinfo as tzinfo_type

import numpy as np
import pandas as pd

from forecaster.data.io import describe_row
from forecaster.errors import DataError


log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Clock:
    """How a file's times map to the int64 ns the library works on (see the module docstring).

    `zone`: an IANA name, `UTC` or a fixed offset such as `+02:00`; None for times written without a zone, which are
    kept as written. `instants`: the stamps are UTC instants (sub-daily data in a zone); else wall-clock times of
    `zone` (data with one time of day, or no zone)."""

    zone: str | None = None
    instants: bool = False

    def local(self, stamps: np.ndarray) -> np.ndarray:
        """Wall-clock times in the zone, of the same shape (datetime64[ns]): what calendar features read."""
        stamps = np.asarray(stamps).astype("datetime64[ns]", copy=False)  # a view for int64 or datetime64[ns]
        if not self.instants:
            return stamps
        flat = pd.DatetimeIndex(stamps.reshape(-1)).tz_localize("UTC").tz_convert(tzinfo(self.zone))
        return flat.tz_localize(None).to_numpy("datetime64[ns]").reshape(stamps.shape)

    def aware(self, stamps: np.ndarray) -> pd.DatetimeIndex:
        """The times as outputs write them: with the zone's offset, or without a zone when the input had none."""
        index = pd.DatetimeIndex(np.asarray(stamps).astype("datetime64[ns]").reshape(-1))
        if self.zone is None:
            return index
        if self.instants:
            return index.tz_localize("UTC").tz_convert(tzinfo(self.zone))
        return index.tz_localize(tzinfo(self.zone), ambiguous=np.ones(len(index), dtype=bool),
                                 nonexistent="shift_forward")

    def utc(self, stamps: np.ndarray) -> np.ndarray:
        """[n] datetime64[ns] UTC instants (times without a zone as written): what monitoring joins on."""
        if self.zone is None or self.instants:
            return np.asarray(stamps).astype("datetime64[ns]")
        return self.aware(stamps).tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")

    def at(self, value: str | pd.Timestamp) -> np.datetime64:
        """A time a user wrote in a config (a split border) on this timeline: read in the zone without an offset."""
        stamp = pd.Timestamp(value)
        if self.zone is not None:
            if stamp.tzinfo is None:
                stamp = stamp.tz_localize(tzinfo(self.zone), ambiguous=True, nonexistent="shift_forward")
            stamp = stamp.tz_convert("UTC" if self.instants else tzinfo(self.zone)).tz_localize(None)
        elif stamp.tzinfo is not None:
            stamp = stamp.tz_localize(None)
        return stamp.as_unit("ns").to_datetime64()

    def read(self, column: pd.Series, name: str, source: str, codes: np.ndarray | None = None) -> np.ndarray:
        """[n] int64 ns of another file for the same data (future rows, new actuals) on this clock's timeline:
        times with an offset are converted to it, times without one are read as wall-clock times of the zone."""
        stamps, clock = read_timestamps(column, name, source, zone=self.zone, codes=codes)
        if clock.instants == self.instants:
            return stamps
        if self.instants:  # wall-clock times (a file with one time of day) -> their instants
            return clock.utc(stamps).view(np.int64)
        return clock.local(stamps).view(np.int64)


def read_timestamps(column: pd.Series, name: str, source: str, zone: str | None = None,
                    codes: np.ndarray | None = None) -> tuple[np.ndarray, Clock]:
    """[n] int64 ns and the `Clock` they follow. `zone`: `data.timezone` (None: detected from the offsets);
    `codes` [n] the series of each row, which tells a repeated daylight-saving hour's two rows apart."""
    parsed, mixed = _checked(column, name, source)
    tz = parsed.dt.tz
    if tz is None and zone is None:
        return _ns(parsed), Clock()
    if tz is None:
        instants = _localize(parsed, zone, codes, column, name, source)
    else:
        instants = parsed.dt.tz_convert("UTC")
        zone = zone or (_zone_of_offsets(column, instants, source) if mixed else zone_name(tz))
    local = instants.dt.tz_convert(tzinfo(zone)).dt.tz_localize(None)
    if (local - local.dt.normalize()).nunique() <= 1:  # one time of day: the zone's calendar
        return _ns(local), Clock(zone, instants=False)
    return _ns(instants.dt.tz_localize(None)), Clock(zone, instants=True)


def parse_timestamps(column: pd.Series, name: str, source: str) -> np.ndarray:
    """[n] int64 ns of a column on its own clock (`read_timestamps`).
    Periods (`1998 Q1`, `2021-03`, `2021M03`, `2021-W05`, a year) are read as their first day."""
    return read_timestamps(column, name, source)[0]


def _ns(parsed: pd.Series) -> np.ndarray:
    return parsed.astype("datetime64[ns]").to_numpy().view(np.int64)


def _checked(column: pd.Series, name: str, source: str) -> tuple[pd.Series, bool]:
    """The parsed column (zone-aware when it carries offsets: in UTC when they differ) and whether they differ;
    a `DataError` naming the row for an empty, unreadable or out-of-range timestamp."""
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
    parsed, mixed = _to_datetime(column)
    bad = parsed.isna().to_numpy()
    if bad.any():
        position = int(np.argmax(bad))
        raise DataError(
            f"{where}, {describe_row(position, source)}: cannot read {column.iloc[position]!r} as a timestamp "
            f"(the first row reads {column.iloc[0]!r}). Use one date format for the whole column, for example "
            f"2024-01-31 13:00:00."
        )
    naive = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    outside = ((naive < pd.Timestamp.min) | (naive > pd.Timestamp.max)).to_numpy()
    if outside.any():
        position = int(np.argmax(outside))
        raise DataError(
            f"{where}, {describe_row(position, source)}: {column.iloc[position]!r} is outside the supported years "
            f"{pd.Timestamp.min.year + 1}-{pd.Timestamp.max.year - 1}. Fix the timestamp."
        )
    return parsed, mixed


# -- zones ------------------------------------------------------------------------------------------------

_FIXED = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")
_OFFSET_SUFFIX = re.compile(r"\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$")
# Tried first when offsets change: the zone most users of those offsets live in (any zone with the same rules
# over the file's dates gives the same offsets and calendar).
_COMMON_ZONES = (
    "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Helsinki", "Europe/Athens",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo",
    "Australia/Sydney", "Australia/Adelaide", "Pacific/Auckland",
)


def tzinfo(zone: str) -> tzinfo_type:
    """`UTC`, `+02:00` or an IANA name -> its tzinfo."""
    if zone == "UTC":
        return timezone.utc
    fixed = _FIXED.match(zone)
    if fixed:
        sign, hours, minutes = fixed.groups()
        return timezone((1 if sign == "+" else -1) * timedelta(hours=int(hours), minutes=int(minutes)))
    return zoneinfo.ZoneInfo(zone)


def check_zone(zone: str) -> str:
    """`zone` when `tzinfo` knows it, else ValueError with what to write."""
    try:
        tzinfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}: use an IANA name such as Europe/Berlin, UTC, or a fixed "
                         f"offset such as +02:00") from None
    return zone


def zone_name(tz) -> str:
    """A pandas column's tzinfo -> `UTC`, `+02:00` or its IANA name."""
    offset = tz.utcoffset(None) if isinstance(tz, timezone) else None
    if offset is None:
        key = getattr(tz, "key", None) or getattr(tz, "zone", None) or str(tz)
        return "UTC" if key in ("UTC", "Etc/UTC", "Z") else key
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _zone_of_offsets(column: pd.Series, instants: pd.Series, source: str) -> str:
    """The IANA zone whose UTC offsets at the file's instants are the ones written; UTC when none is."""
    wall = pd.to_datetime(column.astype(str).str.replace(_OFFSET_SUFFIX, "", regex=True), errors="coerce",
                          format="ISO8601")
    if wall.isna().any():
        wall = pd.to_datetime(column.astype(str).str.replace(_OFFSET_SUFFIX, "", regex=True), errors="coerce")
    utc = instants.dt.tz_localize(None)
    written = pd.DataFrame({"at": utc, "offset": wall - utc}).dropna().drop_duplicates().sort_values("at")
    changes = written["offset"].ne(written["offset"].shift())  # the first row of every run of one offset
    sample = written[changes | changes.shift(-1, fill_value=True)]  # and the last row before each change
    moments = [(at.to_pydatetime().replace(tzinfo=timezone.utc), offset.to_pytimedelta())
               for at, offset in sample.itertuples(index=False)]
    rest = sorted(zoneinfo.available_timezones() - set(_COMMON_ZONES))
    for name in (*_COMMON_ZONES, *rest):
        zone = zoneinfo.ZoneInfo(name)
        if all(at.astimezone(zone).utcoffset() == offset for at, offset in moments):
            log.info("%s: the timestamps' UTC offsets change as in %s; set data.timezone to name another zone",
                     source, name)
            return name
    log.warning("%s: the timestamps carry several UTC offsets that follow no single time zone; times are kept in "
                "UTC. Set data.timezone to the zone whose local time the calendar features and outputs should use.",
                source)
    return "UTC"


def _localize(parsed: pd.Series, zone: str, codes: np.ndarray | None, column: pd.Series, name: str,
              source: str) -> pd.Series:
    """Wall-clock times of `zone` -> UTC instants. Of a repeated daylight-saving hour, a series' first row is the
    earlier instant and its second the later; a time the clocks skip is a `DataError`."""
    tz, n = tzinfo(zone), len(parsed)
    index = pd.DatetimeIndex(parsed)
    earlier = index.tz_localize(tz, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    if earlier.isna().any():
        position = int(np.argmax(earlier.isna()))
        raise DataError(
            f"{source}: column '{name}' (data.timestamp), {describe_row(position, source)}: "
            f"{column.iloc[position]!r} does not exist in {zone} (data.timezone): the clocks skip that hour when "
            f"daylight saving starts. Write the times with their UTC offset, or check data.timezone."
        )
    later = index.tz_localize(tz, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    ambiguous = np.flatnonzero(earlier != later)
    if len(ambiguous):
        series = np.zeros(len(ambiguous), dtype=np.int64) if codes is None else np.asarray(codes)[ambiguous]
        second = pd.DataFrame({"series": series, "wall": index[ambiguous]}).duplicated().to_numpy()
        choice = np.ones(n, dtype=bool)
        choice[ambiguous[second]] = False
        earlier = index.tz_localize(tz, ambiguous=choice, nonexistent="NaT")
    return pd.Series(earlier.tz_convert("UTC"), index=parsed.index)


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


def _to_datetime(column: pd.Series) -> tuple[pd.Series, bool]:
    """Parsed times (zone-aware when the column carries a zone: in UTC when its offsets differ), and whether they
    differ."""
    periods = _periods(column)
    if periods is not None:
        return periods, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": we report bad rows ourselves
        try:
            parsed = pd.to_datetime(column, errors="coerce")
            if parsed.isna().any():  # "2024-01-01" among "2024-01-01 01:00:00" needs the ISO 8601 parser
                iso = pd.to_datetime(column, errors="coerce", format="ISO8601")
                parsed = iso if iso.isna().sum() < parsed.isna().sum() else parsed
        except ValueError:  # mixed UTC offsets, e.g. across a daylight-saving change
            return pd.to_datetime(column, errors="coerce", utc=True), True
    return parsed, False
