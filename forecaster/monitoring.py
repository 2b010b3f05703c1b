"""Forecast monitoring: past forecasts joined to the actuals that arrived since, scored beside seasonal naive.

The unit is a *point*: one model, forecast origin, series, target and horizon step (`KEYS`). `score_points` joins
forecast rows (as `forecaster predict` writes them, with a `model` column added) to an actuals table scanned onto
its regular grid (`forecaster.data.validate.scan_frame`: NaN where nothing was observed), and gives each point
its actual, the seasonal-naive forecast from the history up to the origin, and MASE's scale (the in-sample
seasonal-naive MAE of that history). Points without an actual yet are left out and counted, never guessed.

`merge_record` folds a pass's points into the monitoring record, which only grows: one row per key, the newest
pass winning, so a rerun adds nothing and an actual that arrived late updates its row. `summarise` scores any
grouping of points; `judge_decay` decides whether a model has decayed. No I/O: the job (`pipelines/monitor.py`)
reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecaster import metrics
from forecaster.outputs import widest_band

KEYS = ["model", "forecast_origin", "series_id", "target", "step"]
SUMMARY_COLUMNS = ["points", *(metric.monitored_as for metric in metrics.monitored()), "bias", "snaive_mae", "coverage",
                   "nominal_coverage"]  # mae, rmse, smape, mase, rmsse, wape: `metrics.METRICS` decides


@dataclass
class Join:
    """A pass's scored points, and what could not be scored yet."""

    points: pd.DataFrame  # one row per KEYS: forecast, actual, snaive, mase_scale, rmsse_scale, lower, upper, ...
    pending: int = 0  # forecast points whose actual has not arrived (or is empty)
    absent_series: list[str] = field(default_factory=list)  # forecast series the actuals do not hold


def point_forecasts(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    """A forecast file's rows -> the columns monitoring keeps: KEYS, timestamp, forecast, and `lower`, `upper`,
    `nominal_coverage` from the widest calibrated interval (`forecast_lo_NN` / `forecast_hi_NN`), else from the
    outermost quantile columns (`forecast_qNN`), when the model has either (else NaN)."""
    out = pd.DataFrame({
        "model": model, "forecast_origin": instants(frame["forecast_origin"]),
        "series_id": frame["series_id"].astype(str), "target": frame["target"].astype(str),
        "step": frame["step"].astype(np.int64), "timestamp": instants(frame["timestamp"]),
        "forecast": frame["forecast"].astype(np.float64),
    })
    band = widest_band(frame.columns)
    if band is not None:
        out["lower"], out["upper"] = frame[band.lower].astype(np.float64), frame[band.upper].astype(np.float64)
        out["nominal_coverage"] = band.coverage
    else:
        out["lower"] = out["upper"] = out["nominal_coverage"] = np.nan
    return out


def score_points(forecasts: pd.DataFrame, scan, season_length: int) -> Join:
    """Join `forecasts` (from `point_forecasts`) to the actuals `scan` (a `ScannedFrame`) on series, target and
    timestamp. Adds `actual`, `snaive` (the seasonal-naive forecast from the history up to the origin: step h
    repeats the value at origin + h - m * ceil(h / m)), `mase_scale` and `rmsse_scale` (the seasonal-naive mean
    absolute and squared errors of the history up to the origin); keeps only points with an actual."""
    positions = {series_id: index for index, series_id in enumerate(scan.series_ids)}
    columns = {name: j for j, name in enumerate(scan.targets)}
    pieces, pending = [], 0
    absent = sorted(set(forecasts["series_id"]) - positions.keys())
    known = forecasts[forecasts["series_id"].isin(positions) & forecasts["target"].isin(columns)]
    for (series_id, target), rows in known.groupby(["series_id", "target"], sort=False):
        index = positions[series_id]
        lo, hi = scan.offsets[index], scan.offsets[index + 1]
        stamps = scan.clock.utc(scan.timestamps[lo:hi])  # [n] datetime64[ns], sorted: instants, as forecasts
        values = scan.values[lo:hi, columns[target]].astype(np.float64)  # [n], NaN where not observed
        scales = _running_naive_scale(values, season_length)  # [n]: scale of the history up to each row
        squares = _running_naive_scale(values, season_length, power=2)  # [n]
        target_row = _grid_rows(stamps, rows["timestamp"].to_numpy("datetime64[ns]"))
        origin_row = _grid_rows(stamps, rows["forecast_origin"].to_numpy("datetime64[ns]"))
        steps = rows["step"].to_numpy()
        source_row = origin_row + steps - season_length * np.ceil(steps / season_length).astype(np.int64)
        usable = (origin_row >= 0) & (source_row >= 0)
        scored = rows.assign(
            actual=_take(values, target_row, target_row >= 0),
            snaive=_take(values, source_row, usable),
            mase_scale=_take(scales, origin_row, origin_row >= 0),
            rmsse_scale=_take(squares, origin_row, origin_row >= 0),
        )
        has_actual = scored["actual"].notna()
        pending += int((~has_actual).sum())
        pieces.append(scored[has_actual])
    empty = forecasts.iloc[:0].assign(actual=[], snaive=[], mase_scale=[], rmsse_scale=[])
    points = pd.concat(pieces, ignore_index=True) if pieces else empty
    return Join(points=points, pending=pending, absent_series=absent)


def _running_naive_scale(values: np.ndarray, season_length: int, power: int = 1) -> np.ndarray:
    """[n] -> [n]: at row r, `metrics.naive_scale` of values[: r + 1] (NaN-tolerant mean of |y_t - y_{t-m}| to the
    `power`), from cumulative sums instead of one pass per origin."""
    diffs = np.full(len(values), np.nan)
    diffs[season_length:] = np.abs(values[season_length:] - values[:-season_length]) ** power
    finite = np.isfinite(diffs)
    total, count = np.cumsum(np.where(finite, diffs, 0.0)), np.cumsum(finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = total / count
    return np.where((count > 0) & (scale > 0), scale, np.nan)


def _grid_rows(stamps: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each `wanted` time in the sorted grid `stamps`; -1 where it is not on the grid."""
    rows = np.searchsorted(stamps, wanted)
    inside = rows < len(stamps)
    found = np.zeros(len(wanted), dtype=bool)
    found[inside] = stamps[rows[inside]] == wanted[inside]
    return np.where(found, rows, -1).astype(np.int64)


def _take(values: np.ndarray, rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, values[np.where(valid, rows, 0)], np.nan)


def deduplicate(forecasts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One forecast per key: the same model's forecasts for the same origin found in several files (a CSV and a
    Parquet copy, a rerun with --overwrite elsewhere) count once, the newest (`created_at`) winning.
    Returns the frame and the number of rows dropped."""
    ordered = forecasts.sort_values("created_at", kind="stable") if "created_at" in forecasts else forecasts
    unique = ordered.drop_duplicates(KEYS, keep="last")
    return unique.reset_index(drop=True), len(forecasts) - len(unique)


def merge_record(record: pd.DataFrame | None, points: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """The record with this pass's `points` folded in: a new key is added, a known key is replaced by its newer
    score (an actual that arrived or was corrected), nothing is ever duplicated and nothing is removed.
    Returns (record, rows added, rows whose actual changed)."""
    if record is None or record.empty:
        merged = points.drop_duplicates(KEYS, keep="last")
        return merged.sort_values(KEYS).reset_index(drop=True), len(merged), 0
    old = record.set_index(KEYS)["actual"]
    new = points.drop_duplicates(KEYS, keep="last").set_index(KEYS)["actual"]
    seen = new.index.isin(old.index)
    changed = int((~np.isclose(new[seen].to_numpy(), old.reindex(new.index[seen]).to_numpy())).sum())
    merged = pd.concat([record, points], ignore_index=True).drop_duplicates(KEYS, keep="last")
    return merged.sort_values(KEYS).reset_index(drop=True), int((~seen).sum()), changed


def summarise(points: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """`SUMMARY_COLUMNS` for each group of `points` (all of them as one row when `by` is None). MASE divides each
    point's error by its origin's scale; seasonal naive is scored on the points where it exists; coverage is the
    share of actuals inside [lower, upper] (NaN for point forecasts)."""
    if by is None:
        return pd.DataFrame([_scores(points)])
    if points.empty:
        return pd.DataFrame(columns=[*by, *SUMMARY_COLUMNS])
    return points.groupby(by, sort=True).apply(_scores, include_groups=False).reset_index()


def _scores(points: pd.DataFrame) -> pd.Series:
    pred, actual = points["forecast"].to_numpy(), points["actual"].to_numpy()
    if len(points) == 0:
        return pd.Series({name: (0 if name == "points" else np.nan) for name in SUMMARY_COLUMNS})
    scale = points["mase_scale"].to_numpy(np.float64)
    # a record written before RMSSE existed has no squared scales: those points are left out of it
    scale_sq = points["rmsse_scale"].to_numpy(np.float64) if "rmsse_scale" in points else np.full(len(points), np.nan)
    naive = points["snaive"].notna().to_numpy()
    interval = points["lower"].notna().to_numpy() & points["upper"].notna().to_numpy()
    inside = (actual >= points["lower"].to_numpy()) & (actual <= points["upper"].to_numpy())
    return pd.Series({
        "points": len(points),
        **{metric.monitored_as: metric.points(pred, actual, scale, scale_sq) for metric in metrics.monitored()},
        "bias": float(np.mean(pred - actual)),
        "snaive_mae": metrics.mae(points["snaive"].to_numpy()[naive], actual[naive]) if naive.any() else np.nan,
        "coverage": float(inside[interval].mean()) if interval.any() else np.nan,
        "nominal_coverage": float(points["nominal_coverage"].iloc[0]) if interval.any() else np.nan,
    })


@dataclass
class DecayVerdict:
    """Whether one model has decayed over its last `window` scored origins, and why."""

    model: str
    decay: bool
    origins: list[pd.Timestamp]  # the origins judged, oldest first
    mae: float  # realised MAE over those origins (original units)
    snaive_mae: float  # seasonal naive on the same points
    expected_mae: float | None  # the model's validation MAE in original units; None when unknown
    ratio: float
    reasons: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        judged = f"{self.model} over its last {len(self.origins)} scored origin(s)"
        if not self.origins:
            return f"{self.model}: no scored origin yet, nothing to judge"
        numbers = f"MAE {self.mae:.4g}, seasonal naive {self.snaive_mae:.4g}"
        expected = (f", validation MAE {self.expected_mae:.4g} (limit {self.ratio:g}x = "
                    f"{self.ratio * self.expected_mae:.4g})" if self.expected_mae is not None
                    else "; validation MAE unknown, so only the seasonal-naive rule applies")
        if self.decay:
            return f"DECAY: {judged}: {numbers}{expected}: " + "; ".join(self.reasons)
        return f"ok: {judged}: {numbers}{expected}"


def judge_decay(points: pd.DataFrame, model: str, expected_mae: float | None, window: int,
                ratio: float) -> DecayVerdict:
    """Decay of `model` over its last `window` scored origins: its realised MAE exceeds `ratio` times
    `expected_mae`, or seasonal naive beats it on the same points (those where seasonal naive exists)."""
    own = points[points["model"] == model]
    origins = sorted(own["forecast_origin"].unique())[-window:]
    judged = own[own["forecast_origin"].isin(origins)]
    scores = _scores(judged)
    both = judged[judged["snaive"].notna()]
    model_on_naive_points = metrics.mae(both["forecast"].to_numpy(), both["actual"].to_numpy()) \
        if len(both) else np.nan
    verdict = DecayVerdict(model=model, decay=False, origins=[pd.Timestamp(o) for o in origins], mae=scores["mae"],
                      snaive_mae=scores["snaive_mae"], expected_mae=expected_mae, ratio=ratio)
    if not origins:
        return verdict
    if expected_mae is not None and scores["mae"] > ratio * expected_mae:
        verdict.reasons.append(f"realised MAE {scores['mae']:.4g} exceeds {ratio:g} x validation MAE "
                               f"{expected_mae:.4g}")
    if len(both) and scores["snaive_mae"] < model_on_naive_points:
        verdict.reasons.append(f"seasonal naive ({scores['snaive_mae']:.4g}) beats the model "
                               f"({model_on_naive_points:.4g}) on the same points")
    verdict.decay = bool(verdict.reasons)
    return verdict


def instants(column: pd.Series) -> pd.Series:
    """A forecast file's times as monitoring keeps them: UTC instants (without a zone) when written with an offset,
    as written when not; the actuals' times are read the same way (`Clock.utc`), so the join is on instants."""
    try:
        parsed = pd.to_datetime(column)
    except ValueError:  # offsets that change, e.g. forecasts across a daylight-saving change
        parsed = pd.to_datetime(column, utc=True)
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None) if parsed.dt.tz is not None else parsed


def error_over_time(by_origin: pd.DataFrame, expected: dict[str, float | None]):
    """Realised MAE per forecast origin for each model (solid), seasonal naive on the same points (dashed) and the
    model's validation MAE (dotted). by_origin: `summarise(points, ["model", "forecast_origin"])`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    for index, (model, rows) in enumerate(by_origin.groupby("model", sort=True)):
        color = f"C{index % 10}"
        ax.plot(rows["forecast_origin"], rows["mae"], marker=".", color=color, label=f"{model} MAE")
        ax.plot(rows["forecast_origin"], rows["snaive_mae"], linestyle="--", color=color, alpha=0.6,
                label=f"seasonal naive (on {model}'s points)")
        if expected.get(model) is not None:
            ax.axhline(expected[model], linestyle=":", color=color, label=f"{model} validation MAE")
    ax.set_xlabel("forecast origin")
    ax.set_ylabel("MAE (original units)")
    ax.set_title("realised forecast error")
    ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
