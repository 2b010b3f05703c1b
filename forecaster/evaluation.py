"""Forecast every window of a split and score it, the same way for networks and baselines.

The forecasts come from `predictor.scaled_forecasts`, the path every forecast takes; this module keeps the
forecasts of each window (the point forecast and every network output) with its actuals, and scores them: the
point forecast always, the prediction intervals when a `Calibration` is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from forecaster.calibration import Calibration
from forecaster.predictor import Predictor, scaled_forecasts
from forecaster.metrics import Windows, evaluate, interval_metrics, naive_scale


@dataclass
class WindowForecasts:
    """Forecasts for every window of a split, on the scaled axis. pred, actual: [N, H, T]; series, origin: [N];
    outputs: [N, H, T, Q], every output of the model (pred is `outputs[..., point_index]`)."""

    pred: np.ndarray
    actual: np.ndarray
    series: np.ndarray
    origin: np.ndarray
    outputs: np.ndarray | None = None
    point_index: int = 0

    def bands(self, calibration: Calibration, levels: list[int] | None = None) -> dict[int, tuple[np.ndarray, ...]]:
        """level -> (lower, upper), each [N, H, T] on the scaled axis."""
        return calibration.bounds(self.outputs, self.point_index, levels)


def forecast_windows(predictor: Predictor, batches: Iterable[dict[str, torch.Tensor]]) -> WindowForecasts | None:
    """The forecasts of every window of `batches`; None when there is none (an empty split)."""
    preds, actuals, series, origins = [], [], [], []
    for batch, pred in scaled_forecasts(predictor, batches):
        preds.append(pred)  # [B, H, T, Q]
        actuals.append(batch["y"].cpu().numpy())
        series.append(batch["series"].cpu().numpy())
        origins.append(batch["origin"].cpu().numpy())
    if not preds:
        return None
    outputs = np.concatenate(preds)  # [N, H, T, Q]
    return WindowForecasts(
        pred=outputs[..., predictor.point_index], actual=np.concatenate(actuals),
        series=np.concatenate(series), origin=np.concatenate(origins),
        outputs=outputs, point_index=predictor.point_index,
    )


def mase_scales(datamodule, season_length: int, power: int = 1) -> np.ndarray:
    """[S, T]: each series' in-sample seasonal-naive MAE (`power` 2: MSE) over its training rows, original units."""
    panel, n_targets = datamodule.panel, datamodule.n_targets
    scales = []
    for index in range(len(panel.series_ids)):
        start = panel.offsets[index]
        history = panel.values[start : start + int(datamodule.borders.train_end[index]), :n_targets]
        scales.append(naive_scale(history.astype(np.float64), season_length, power))
    return np.stack(scales)


def score(forecasts: WindowForecasts | None, datamodule, calibration: Calibration | None = None) -> dict[str, float]:
    """All metrics: standardised-scale MSE/MAE and original-unit MAE, RMSE, sMAPE, MASE; with a `calibration`, the
    interval metrics of `metrics.interval_metrics` too; none for no forecasts."""
    if forecasts is None:
        return {}
    scaler = datamodule.scaler
    pred_original = scaler.inverse_targets(forecasts.pred, forecasts.series)
    actual_original = scaler.inverse_targets(forecasts.actual, forecasts.series)
    scale = mase_scales(datamodule, datamodule.season_length)[forecasts.series]  # [N, T]
    scale_sq = mase_scales(datamodule, datamodule.season_length, power=2)[forecasts.series]  # [N, T]
    metrics = evaluate(Windows(forecasts.pred, forecasts.actual, pred_original, actual_original, scale, scale_sq))
    if calibration is not None:
        bands = forecasts.bands(calibration, levels=list(calibration.margins))
        original = {level: (scaler.inverse_targets(lo, forecasts.series), scaler.inverse_targets(hi, forecasts.series))
                    for level, (lo, hi) in bands.items()}
        metrics.update(interval_metrics(bands, original, forecasts.pred, forecasts.actual, actual_original,
                                        calibration.levels, scale))
    return metrics
