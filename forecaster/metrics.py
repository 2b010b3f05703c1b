"""Forecast accuracy metrics on numpy arrays, and `METRICS`: the registry every ranking and report reads.

`mse` and `mae` are reported on the standardised scale (as in the ETTh1 literature); `mae_original`,
`rmse_original`, `smape`, `mase`, `rmsse` and `wape` in the data's own units. Arrays are `[N, H, T]`: N forecast
windows, H horizon steps, T target variables.

A metric is one `register(Metric(...))` below: `compare.metric` and `tune.metric` accept every registered name,
evaluation reports them all (`val_<name>`, `test_<name>`), and those with a `points` function are scored by
`forecaster monitor` too, under their `monitored_as` name. A new metric is one entry here and its test.

The M4 competition's scoring is here too, as named functions (`m4_scores`): sMAPE and MASE per series, averaged
over series, MASE scaled by the seasonal-naive error of each series' whole training row, and OWA relative to
Naive2. forecaster's own `mase` scales by the training rows of the split instead; both use `naive_scale`.

Intervals (`interval_metrics`): coverage per level (a share, 0-1), mean width in original units, the pinball loss
of the bounds read as quantiles (and of the point forecast as the median) on the standardised scale, and MSIS,
the M4 competition's mean scaled interval score of the 95 % band (alpha = 0.05).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from forecaster.registry import Registry


def mse(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean((pred - actual) ** 2))


def mae(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - actual)))


def smape(pred: np.ndarray, actual: np.ndarray) -> float:
    """Symmetric MAPE in percent, as the M4 competition defines it: 200 * |y - f| / (|y| + |f|).

    Points where both actual and forecast are zero count as a perfect forecast.
    """
    denominator = np.abs(actual) + np.abs(pred)
    ratio = np.divide(2.0 * np.abs(pred - actual), denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(100.0 * np.mean(ratio))


def naive_scale(history: np.ndarray, season_length: int = 1, power: int = 1) -> np.ndarray:
    """Per-variable in-sample mean absolute (`power` 1: MASE's denominator) or squared (`power` 2: RMSSE's) error
    of the seasonal naive forecast.

    history: [N_rows, T] in original units (training rows of one series). Returns [T]; NaN where the series
    is shorter than one season plus one row, or where it is constant (zero scale).
    """
    if len(history) <= season_length:
        return np.full(history.shape[1], np.nan)
    scale = np.nanmean(np.abs(history[season_length:] - history[:-season_length]) ** power, axis=0)
    return np.where(scale > 0, scale, np.nan)


def mase(pred: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> float:
    """Mean absolute scaled error. scale: [N, T], the naive in-sample MAE of each window's series.

    Windows whose series has no usable scale (NaN) are left out rather than dividing by zero.
    """
    errors = np.abs(pred - actual).mean(axis=1) / scale  # [N, T]
    return float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")


def rmsse(pred: np.ndarray, actual: np.ndarray, scale_sq: np.ndarray) -> float:
    """Root mean squared scaled error (M5): per window and variable, sqrt(mean_h (y - f)^2 / scale_sq), averaged.
    scale_sq: [N, T], the in-sample seasonal-naive mean squared error of each window's series (NaN: left out)."""
    errors = np.sqrt(((pred - actual) ** 2).mean(axis=1) / scale_sq)  # [N, T]
    return float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")


def wape(pred: np.ndarray, actual: np.ndarray) -> float:
    """Weighted absolute percentage error: 100 * sum |y - f| / sum |y|. NaN when every actual is zero."""
    total = float(np.sum(np.abs(actual)))
    return 100.0 * float(np.sum(np.abs(pred - actual))) / total if total > 0 else float("nan")


# -- the registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """Forecast windows and their actuals, [N, H, T] each, standardised (`*_scaled`) and in original units, with
    each window's series' in-sample seasonal-naive errors [N, T]: mean absolute (`scale`) and mean squared
    (`scale_sq`)."""

    pred_scaled: np.ndarray
    actual_scaled: np.ndarray
    pred: np.ndarray
    actual: np.ndarray
    scale: np.ndarray
    scale_sq: np.ndarray


@dataclass(frozen=True)
class Metric:
    """An accuracy metric, lower is better. `windows` scores forecast windows (training, compare, tune, the champion
    challenge); `points`, when set, scores monitoring's points: forecast, actual, and the seasonal-naive `scale` and
    `scale_sq` of each point's history up to its origin, [n] each; `monitored_as` names it there."""

    name: str
    description: str
    windows: Callable[[Windows], float]
    points: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float] | None = None
    monitored_as: str | None = None


METRICS: Registry[Metric] = Registry("metric")
register = METRICS.add


def monitored() -> list[Metric]:
    """The metrics `forecaster monitor` scores, in registry order."""
    return [metric for metric in METRICS.values() if metric.points is not None]


def _mean_ratio(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


register(Metric("mse", "mean squared error on the standardised scale", lambda w: mse(w.pred_scaled, w.actual_scaled)))
register(Metric("mae", "mean absolute error on the standardised scale", lambda w: mae(w.pred_scaled, w.actual_scaled)))
register(Metric("mae_original", "mean absolute error in the data's units", lambda w: mae(w.pred, w.actual),
                points=lambda f, y, s, s2: mae(f, y), monitored_as="mae"))
register(Metric("rmse_original", "root mean squared error in the data's units",
                lambda w: float(np.sqrt(mse(w.pred, w.actual))),
                points=lambda f, y, s, s2: float(np.sqrt(mse(f, y))), monitored_as="rmse"))
register(Metric("smape", "symmetric MAPE in percent (M4)", lambda w: smape(w.pred, w.actual),
                points=lambda f, y, s, s2: smape(f, y), monitored_as="smape"))
register(Metric("mase", "MAE over each series' in-sample seasonal-naive MAE", lambda w: mase(w.pred, w.actual, w.scale),
                points=lambda f, y, s, s2: _mean_ratio(np.abs(f - y) / s), monitored_as="mase"))
register(Metric("rmsse", "RMSE over each series' in-sample seasonal-naive RMSE (M5)",
                lambda w: rmsse(w.pred, w.actual, w.scale_sq),
                points=lambda f, y, s, s2: float(np.sqrt(_mean_ratio((f - y) ** 2 / s2))), monitored_as="rmsse"))
register(Metric("wape", "sum of absolute errors over the sum of absolute actuals, in percent",
                lambda w: wape(w.pred, w.actual), points=lambda f, y, s, s2: wape(f, y), monitored_as="wape"))


def score_windows(windows: Windows) -> dict[str, float]:
    """Every registered metric of `windows`."""
    return {name: metric.windows(windows) for name, metric in METRICS.items()}


def coverage(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray) -> float:
    """Share of actuals inside [lower, upper]."""
    return float(np.mean((actual >= lower) & (actual <= upper)))


def pinball(pred: np.ndarray, actual: np.ndarray, quantile: float) -> float:
    """Mean pinball (quantile) loss of `pred` read as the `quantile` quantile."""
    diff = actual - pred
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1.0) * diff)))


def msis(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, scale: np.ndarray, alpha: float = 0.05) -> float:
    """Mean scaled interval score (M4): per window and variable, the mean over steps of
    (U - L) + 2/alpha (L - Y) 1{Y < L} + 2/alpha (Y - U) 1{Y > U}, divided by `scale` ([N, T], the in-sample
    seasonal-naive MAE); then averaged. Windows without a usable scale (NaN) are left out."""
    penalty = (upper - lower) + 2.0 / alpha * (np.maximum(lower - actual, 0.0) + np.maximum(actual - upper, 0.0))
    scores = penalty.mean(axis=1) / scale  # [N, H, T] -> [N, T]
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def interval_metrics(
    bands_scaled: dict[int, tuple[np.ndarray, np.ndarray]],
    bands_original: dict[int, tuple[np.ndarray, np.ndarray]],
    pred_scaled: np.ndarray,
    actual_scaled: np.ndarray,
    actual_original: np.ndarray,
    levels: list[int],
    mase_scale: np.ndarray,
) -> dict[str, float]:
    """`coverage_<level>` and `width_<level>` for each of `levels`, `pinball` (the point forecast as the median and
    each level's bounds as its (1 -/+ level) / 2 quantiles, standardised scale), and `msis` when the 95 % band is in
    `bands_original`. Bands: level -> (lower, upper), each [N, H, T]."""
    metrics = {}
    for level in levels:
        lower, upper = bands_original[level]
        metrics[f"coverage_{level}"] = coverage(lower, upper, actual_original)
        metrics[f"width_{level}"] = float(np.mean(upper - lower))
    losses = [pinball(pred_scaled, actual_scaled, 0.5)]
    for level in levels:
        lower, upper = bands_scaled[level]
        losses += [pinball(lower, actual_scaled, (1 - level / 100) / 2), pinball(upper, actual_scaled, (1 + level / 100) / 2)]
    metrics["pinball"] = float(np.mean(losses))
    if 95 in bands_original:
        metrics["msis"] = msis(*bands_original[95], actual_original, mase_scale, alpha=0.05)
    return metrics


def error_by_step(pred: np.ndarray, actual: np.ndarray) -> dict[str, np.ndarray]:
    """MSE and MAE at each horizon step, averaged over windows and variables: {"mse": [H], "mae": [H]}."""
    return {
        "mse": np.mean((pred - actual) ** 2, axis=(0, 2)),
        "mae": np.mean(np.abs(pred - actual), axis=(0, 2)),
    }


# Naive2's published scores on the M4 test weeks (Makridakis et al., 2020; "Evaluation and Ranks.xlsx").
M4_NAIVE2 = {"weekly": {"smape": 9.161, "mase": 2.777}}


def smape_per_series(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """[S, H] each -> [S]: the M4 sMAPE of each series, 200 * mean_h |y - f| / (|y| + |f|)."""
    return np.array([smape(p, a) for p, a in zip(pred, actual, strict=True)])


def mase_per_series(pred: np.ndarray, actual: np.ndarray, history: list[np.ndarray], m: int = 1) -> np.ndarray:
    """[S]: the M4 MASE of each series, its MAE over the horizon divided by the in-sample seasonal-naive MAE
    (season `m`; M4 uses m = 1 for weekly data) of its whole training row (`history`, one array per series)."""
    scale = np.array([naive_scale(np.asarray(row, np.float64)[:, None], m)[0] for row in history])
    return np.mean(np.abs(pred - actual), axis=1) / scale


def owa(smape_value: float, mase_value: float, naive2: dict[str, float]) -> float:
    """Overall weighted average: the mean of sMAPE and MASE relative to Naive2's on the same forecasts."""
    return (smape_value / naive2["smape"] + mase_value / naive2["mase"]) / 2


def m4_scores(pred: np.ndarray, actual: np.ndarray, history: list[np.ndarray], m: int = 1,
              naive2: dict[str, float] = M4_NAIVE2["weekly"]) -> dict[str, float]:
    """sMAPE and MASE averaged over series, and OWA relative to `naive2` (by default the published weekly one;
    pass Naive2's own scores on other weeks, such as a validation window). pred, actual: [S, H]."""
    smape_value = float(np.mean(smape_per_series(pred, actual)))
    mase_value = float(np.mean(mase_per_series(pred, actual, history, m)))
    return {"smape": smape_value, "mase": mase_value, "owa": owa(smape_value, mase_value, naive2)}


def naive2_weekly(history: list[np.ndarray], horizon: int) -> np.ndarray:
    """M4's Naive2 for weekly data, [S, horizon]: weekly series are not seasonally adjusted (m = 1), so it is
    the last value repeated."""
    return np.stack([np.repeat(np.asarray(row)[-1], horizon) for row in history])
