"""`Panel`: many series in one contiguous float32 array, and how a validated table becomes one.

`build_panel` validates a raw frame (`validate.scan_frame`) and applies the `data.missing` policy. Filling is
never silent: every series gets a `SeriesReport` with its gaps, empty cells and how many cells were filled.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.config import DataConfig
from forecaster.data.io import read_table
from forecaster.data.io import describe_row
from forecaster.data.timestamps import Clock
from forecaster.data.validate import ScannedFrame, scan_frame
from forecaster.errors import DataError

log = logging.getLogger(__name__)

REPORT_COLUMNS = ["series_id", "length", "freq", "start", "end", "gaps", "missing_values", "filled", "dropped"]


@dataclass(frozen=True)
class SeriesReport:
    """What the input held for one series: `length` rows from `start` to `end`, `gaps` timestamps absent from
    the regular grid, `missing_values` empty cells; `filled` cells the missing policy filled; `dropped` by it."""

    series_id: str
    length: int
    freq: str
    start: pd.Timestamp
    end: pd.Timestamp
    gaps: int
    missing_values: int
    filled: int = 0
    dropped: bool = False


@dataclass(frozen=True, eq=False)
class Panel:
    """S series back to back on a regular grid: rows of series `i` are `offsets[i]:offsets[i+1]`.

    `timestamps` [N] datetime64[ns]; `values` [N, V] float32 with columns targets, covariates, future
    covariates; `reports` describe every input series, dropped ones included.
    """

    series_ids: list[str]
    offsets: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray
    targets: list[str]
    covariates: list[str]
    future_covariates: list[str]
    freq: str
    source: str = "<frame>"
    reports: tuple[SeriesReport, ...] = ()
    interpolated: np.ndarray | None = None  # [N, V] bool: cells `data.missing=interpolate` filled
    clock: Clock = Clock()  # time zone and timeline of `timestamps` (UTC instants or wall-clock times)

    @property
    def n_series(self) -> int:
        return len(self.series_ids)

    @property
    def lengths(self) -> np.ndarray:
        """[S] int64 rows per series."""
        return np.diff(self.offsets)

    @property
    def columns(self) -> list[str]:
        return [*self.targets, *self.covariates, *self.future_covariates]

    def series_values(self, index: int) -> np.ndarray:
        """[length, V] view of series `index`."""
        return self.values[self.offsets[index] : self.offsets[index + 1]]

    def series_timestamps(self, index: int) -> np.ndarray:
        """[length] datetime64[ns] view of series `index`."""
        return self.timestamps[self.offsets[index] : self.offsets[index + 1]]

    def with_values(self, values: np.ndarray) -> Panel:
        """The same panel holding `values` [N, V] instead (for example scaled ones)."""
        if values.shape != self.values.shape:
            raise ValueError(f"values must have shape {self.values.shape}, got {values.shape}")
        return dataclasses.replace(self, values=np.asarray(values, dtype=np.float32))

    def select(self, keep: Sequence[int]) -> Panel:
        """The panel of the series `keep` (indices), in that order; `reports` still describe every input series.
        Keeping every series in order returns this panel itself."""
        keep = [int(index) for index in keep]
        if keep == list(range(self.n_series)):
            return self
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in keep]).astype(np.int64)
        return dataclasses.replace(
            self,
            series_ids=[self.series_ids[i] for i in keep],
            offsets=np.concatenate([[0], np.cumsum(self.lengths[keep])]).astype(np.int64),
            timestamps=self.timestamps[rows],
            values=np.ascontiguousarray(self.values[rows]),
            interpolated=None if self.interpolated is None else np.ascontiguousarray(self.interpolated[rows]),
        )

    def report_frame(self) -> pd.DataFrame:
        """One row per input series with the `REPORT_COLUMNS`."""
        return report_frame(self.reports)


def report_frame(reports: Sequence[SeriesReport]) -> pd.DataFrame:
    """One row per report with the `REPORT_COLUMNS`."""
    return pd.DataFrame([dataclasses.asdict(report) for report in reports], columns=REPORT_COLUMNS)


def load_panel(cfg: DataConfig) -> Panel:
    """Read `cfg.path` and build its panel."""
    return build_panel(read_table(cfg), cfg, source=cfg.path)


def build_panel(frame: pd.DataFrame, cfg: DataConfig, source: str = "<frame>") -> Panel:
    """Validate `frame` (long or wide layout, see `DataConfig`) and apply `cfg.missing` to gaps and empty cells.

    Without `data.series_id` the whole table is one series, with the id `validate.SINGLE_SERIES_ID`.
    """
    return apply_missing_policy(scan_frame(frame, cfg, source), cfg.missing)


def series_reports(scan: ScannedFrame) -> list[SeriesReport]:
    """Per-series summary of a scanned table, before any filling."""
    gaps, missing = scan.gaps(), scan.missing_cells()
    reports = []
    for index, series_id in enumerate(scan.series_ids):
        stamps = scan.timestamps[scan.offsets[index] : scan.offsets[index + 1]]
        length = int(scan.offsets[index + 1] - scan.offsets[index] - gaps[index])
        start, end = scan.clock.aware(stamps[[0, -1]])  # in the input's zone, if it had one
        reports.append(SeriesReport(series_id, length, scan.freq, start, end, int(gaps[index]), int(missing[index])))
    return reports


def apply_missing_policy(scan: ScannedFrame, policy: str) -> Panel:
    """Fill or drop what `scan` lacks according to `policy` (a `DataConfig.missing` value); `scan` is unchanged."""
    reports = series_reports(scan)
    holes = [index for index, report in enumerate(reports) if report.gaps or report.missing_values]
    if holes and policy == "error":
        raise DataError(missing_message(scan, reports, holes))
    if holes and skipped_hour_hint(scan):
        log.warning("%s: data.missing=%s fills the absent timestamps.%s", scan.source, policy, skipped_hour_hint(scan))
    dropped = set(holes) if policy == "drop_series" else set()
    keep = [index for index in range(len(reports)) if index not in dropped]
    if not keep:
        raise DataError(
            f"{scan.source}: data.missing=drop_series dropped every series: each has gaps or empty cells. "
            f"Use --set data.missing=interpolate (or ffill, zero) instead, or fix the file."
        )
    values = scan.values.copy()
    interpolated = np.isnan(values) if policy == "interpolate" and holes else None
    for index in holes:
        if index not in dropped:
            block = values[scan.offsets[index] : scan.offsets[index + 1]]  # [length, V] view
            filled = int(np.isnan(block).sum())
            block[:] = _fill(block, policy, scan, index)
            reports[index] = dataclasses.replace(reports[index], filled=filled)
        else:
            reports[index] = dataclasses.replace(reports[index], dropped=True)
    panel = Panel(
        series_ids=list(scan.series_ids), offsets=np.asarray(scan.offsets, dtype=np.int64), timestamps=scan.timestamps,
        values=values, targets=list(scan.targets), covariates=list(scan.covariates),
        future_covariates=list(scan.future_covariates), freq=scan.freq, source=scan.source, reports=tuple(reports),
        interpolated=interpolated, clock=scan.clock,
    )
    return panel.select(keep)


def without_look_ahead(panel: Panel, ends: Sequence[np.ndarray]) -> Panel:
    """`panel` with every interpolated cell filled again from the rows before the end of its own split.

    `ends`: each split's end per series ([S] rows from the series start; train_end, val_end, test_end). Plain
    interpolation reads the next known value, which may lie in a later split: a training row would then be filled
    with a validation value. Here a cell reads only values known before its split ends, and takes the last known
    value (a forward fill) when none follows within the split.
    """
    if panel.interpolated is None:
        return panel
    values = panel.values.copy()
    for index in range(panel.n_series):
        start, stop = panel.offsets[index], panel.offsets[index + 1]
        mask = panel.interpolated[start:stop]  # [length, V]
        if not mask.any():
            continue
        block, rows = values[start:stop], np.arange(stop - start)  # block: a view into `values`
        lo = 0
        for hi in sorted({*(int(end[index]) for end in ends), int(stop - start)}):
            for column in np.flatnonzero(mask[lo:hi].any(axis=0)):
                known = ~mask[:hi, column]
                if known.any():  # else nothing is known before this split ends: the series-wide fill stays
                    holes = lo + np.flatnonzero(mask[lo:hi, column])
                    block[holes, column] = np.interp(holes, rows[:hi][known], block[:hi, column][known])
            lo = max(lo, hi)
    if np.array_equal(values, panel.values, equal_nan=True):
        return panel
    return dataclasses.replace(panel, values=values)


def _fill(block: np.ndarray, policy: str, scan: ScannedFrame, index: int) -> np.ndarray:
    """[length, V] with every NaN filled by `policy`."""
    if policy == "zero":
        return np.nan_to_num(block, nan=0.0)
    empty_columns = np.isnan(block).all(axis=0)
    if empty_columns.any():
        column = scan.columns[int(np.argmax(empty_columns))]
        raise DataError(
            f"{scan.source}: series '{scan.series_ids[index]}' has no values at all in column '{column}', so "
            f"data.missing={policy} cannot fill it. Use data.missing=drop_series or zero, or fix the file."
        )
    if policy == "ffill":  # leading empty cells take the first value that follows them
        return pd.DataFrame(block).ffill().bfill().to_numpy(dtype=np.float32)
    rows = np.arange(len(block))
    filled = block.copy()
    for j in range(block.shape[1]):
        known = ~np.isnan(block[:, j])
        filled[~known, j] = np.interp(rows[~known], rows[known], block[known, j])  # flat beyond the ends
    return filled


def missing_message(scan: ScannedFrame, reports: list[SeriesReport], holes: list[int], shown: int = 5) -> str:
    """Why `data.missing=error` refuses the series `holes`: first absent timestamps and first empty cell."""
    parts = []
    for index in holes[:shown]:
        report, segment = reports[index], slice(scan.offsets[index], scan.offsets[index + 1])
        rows = scan.rows[segment]
        found = []
        if report.gaps:
            absent = ", ".join(str(pd.Timestamp(stamp)) for stamp in scan.timestamps[segment][rows < 0][:3])
            found.append(f"{report.gaps} timestamp(s) absent from the '{scan.freq}' grid (first: {absent})")
        if report.missing_values:
            row, column = np.argwhere(np.isnan(scan.values[segment]) & (rows >= 0)[:, None])[0]
            found.append(
                f"{report.missing_values} empty cell(s) (first: column '{scan.columns[column]}', "
                f"{describe_row(int(rows[row]), scan.source)})"
            )
        parts.append(f"series '{report.series_id}': " + " and ".join(found))
    more = f"; and {len(holes) - shown} more series" if len(holes) > shown else ""
    return (
        f"{scan.source}: {len(holes)} of {len(reports)} series have gaps or empty cells and data.missing is "
        f"'error': " + "; ".join(parts) + more + ". Fill them with --set data.missing=interpolate (or ffill, "
        "zero), drop those series with --set data.missing=drop_series, or fix the file." + skipped_hour_hint(scan)
    )


def skipped_hour_hint(scan: ScannedFrame) -> str:
    """A hint when a file of times without a zone lacks an hour the clocks skip when daylight saving starts (between
    01:00 and 03:59 on a Sunday of March, April, September or October), else ''."""
    if scan.clock.zone is not None:
        return ""
    absent = pd.DatetimeIndex(scan.timestamps[scan.rows < 0])
    spring = absent.month.isin([3, 4, 9, 10]) & (absent.dayofweek == 6) & (absent.hour >= 1) & (absent.hour < 4)
    if not spring.any():
        return ""
    return (f" The absent {absent[spring][0]} looks like the hour the clocks skip when daylight saving starts: the "
            f"times are local wall-clock times. Set data.timezone to the file's zone (for example "
            f"--set data.timezone=Europe/Berlin) to read them as instants, which have no gap there, or write the "
            f"times with their UTC offset.")
