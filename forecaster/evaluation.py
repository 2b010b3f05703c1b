"""Forecast every window of a split and score it, the same way for networks and baselines.

The forecasts come from `forecasting.scaled_forecasts`, the path every forecast takes; this module keeps the
point forecast of each window with its actuals, and scores them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from forecaster.forecasting import Predictor, scaled_forecasts
from forecaster.metrics import evaluate, naive_scale


@dataclass
class WindowForecasts:
    """Forecasts for every window of a split, on the scaled axis. pred, actual: [N, H, T]; series, origin: [N]."""

    pred: np.ndarray
    actual: np.ndarray
    series: np.ndarray
    origin: np.ndarray


def forecast_windows(predictor: Predictor, batches: Iterable[dict[str, torch.Tensor]]) -> WindowForecasts | None:
    """The point forecast of every window of `batches`; None when there is none (an empty split)."""
    preds, actuals, series, origins = [], [], [], []
    for batch, pred in scaled_forecasts(predictor, batches):
        preds.append(pred[..., predictor.point_index])  # [B, H, T, Q] -> [B, H, T]
        actuals.append(batch["y"].cpu().numpy())
        series.append(batch["series"].cpu().numpy())
        origins.append(batch["origin"].cpu().numpy())
    if not preds:
        return None
    return WindowForecasts(
        pred=np.concatenate(preds), actual=np.concatenate(actuals),
        series=np.concatenate(series), origin=np.concatenate(origins),
    )


def mase_scales(datamodule, season_length: int) -> np.ndarray:
    """[S, T]: each series' in-sample seasonal-naive MAE over its training rows, in original units."""
    panel, n_targets = datamodule.panel, datamodule.n_targets
    scales = []
    for index in range(len(panel.series_ids)):
        start = panel.offsets[index]
        history = panel.values[start : start + int(datamodule.borders.train_end[index]), :n_targets]
        scales.append(naive_scale(history.astype(np.float64), season_length))
    return np.stack(scales)


def score(forecasts: WindowForecasts | None, datamodule) -> dict[str, float]:
    """All metrics: standardised-scale MSE/MAE and original-unit MAE, RMSE, sMAPE, MASE; none for no forecasts."""
    if forecasts is None:
        return {}
    scaler = datamodule.scaler
    pred_original = scaler.inverse_targets(forecasts.pred, forecasts.series)
    actual_original = scaler.inverse_targets(forecasts.actual, forecasts.series)
    scale = mase_scales(datamodule, datamodule.season_length)[forecasts.series]  # [N, T]
    return evaluate(forecasts.pred, forecasts.actual, pred_original, actual_original, scale)
