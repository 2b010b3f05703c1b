"""Forecast accuracy metrics on numpy arrays.

`mse` and `mae` are reported on the standardised scale (as in the ETTh1 literature); `mae_original`,
`rmse_original`, `smape` and `mase` in the data's own units. Arrays are `[N, H, T]`: N forecast windows,
H horizon steps, T target variables.

The M4 competition's scoring is here too, as named functions (`m4_scores`): sMAPE and MASE per series, averaged
over series, MASE scaled by the seasonal-naive error of each series' whole training row, and OWA relative to
Naive2. forecaster's own `mase` scales by the training rows of the split instead; both use `naive_scale`.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("mse", "mae", "mae_original", "rmse_original", "smape", "mase")


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


def naive_scale(history: np.ndarray, season_length: int = 1) -> np.ndarray:
    """Per-variable in-sample mean absolute error of the seasonal naive forecast: MASE's denominator.

    history: [N_rows, T] in original units (training rows of one series). Returns [T]; NaN where the series
    is shorter than one season plus one row, or where it is constant (zero scale).
    """
    if len(history) <= season_length:
        return np.full(history.shape[1], np.nan)
    scale = np.nanmean(np.abs(history[season_length:] - history[:-season_length]), axis=0)
    return np.where(scale > 0, scale, np.nan)


def mase(pred: np.ndarray, actual: np.ndarray, scale: np.ndarray) -> float:
    """Mean absolute scaled error. scale: [N, T], the naive in-sample MAE of each window's series.

    Windows whose series has no usable scale (NaN) are left out rather than dividing by zero.
    """
    errors = np.abs(pred - actual).mean(axis=1) / scale  # [N, T]
    return float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")


def evaluate(
    pred_scaled: np.ndarray,
    actual_scaled: np.ndarray,
    pred_original: np.ndarray,
    actual_original: np.ndarray,
    mase_scale: np.ndarray,
) -> dict[str, float]:
    """Every metric forecaster reports, from forecasts in both scales. mase_scale: [N, T]."""
    return {
        "mse": mse(pred_scaled, actual_scaled),
        "mae": mae(pred_scaled, actual_scaled),
        "mae_original": mae(pred_original, actual_original),
        "rmse_original": float(np.sqrt(mse(pred_original, actual_original))),
        "smape": smape(pred_original, actual_original),
        "mase": mase(pred_original, actual_original, mase_scale),
    }


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
