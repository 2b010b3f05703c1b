"""Forecast accuracy metrics on numpy arrays.

`mse` and `mae` are reported on the standardised scale (as in the ETTh1 literature); `mae_original`,
`rmse_original`, `smape` and `mase` in the data's own units. Arrays are `[N, H, T]`: N forecast windows,
H horizon steps, T target variables.
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
