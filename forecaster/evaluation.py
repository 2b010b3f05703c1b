"""Evaluation, the same way for every model: `evaluate(model, data) -> Report`.

It forecasts every validation and test window through the model's `Predictor` (`predictor.scaled_forecasts`,
the path every forecast takes), fits the prediction intervals' calibration on the validation windows (or takes
the one it is given when there are none: a refit on every row), and scores both splits on every registered
metric, in original units and on the scaled axis, against each series' seasonal-naive scale over its training
rows. The report also keeps each split's forecasts in both scales, its bands and its error per horizon step, for
whoever logs or plots them.

What evaluation reads of the data is `EvaluationData` (`ForecastDataModule.evaluation_data()`): the panel, each
series' training end, the scaler, the season and the windows of each split. `to_original` is the one way a
scaled forecast goes back to original units, `EvaluationData.scales` the one seasonal-naive scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forecaster.calibration import Calibration, fit_calibration
from forecaster.metrics import Windows, error_by_step, interval_metrics, naive_scale, score_windows
from forecaster.predictor import Predictor, scaled_forecasts

if TYPE_CHECKING:
    from forecaster.bundle import ModelBundle
    from forecaster.data.panel import Panel
    from forecaster.data.scaling import PanelScaler

@dataclass(frozen=True)
class EvaluationData:
    """What evaluation reads of the data a model was trained on. `train_end` [S]: each series' training rows
    (from its start); `windows`: split name ("val", "test") -> a function that yields that split's batches."""

    panel: Panel
    train_end: np.ndarray
    scaler: PanelScaler
    season_length: int
    windows: dict[str, Callable[[], Iterable[dict[str, torch.Tensor]]]] = field(repr=False)

    @property
    def n_targets(self) -> int:
        return len(self.panel.targets)

    @cached_property
    def scales(self) -> tuple[np.ndarray, np.ndarray]:
        """([S, T], [S, T]): each series' in-sample seasonal-naive MAE and MSE over its training rows, in original
        units: the scales of MASE and RMSSE (and MSIS)."""
        panel, absolute, squared = self.panel, [], []
        for index in range(panel.n_series):
            start = panel.offsets[index]
            history = panel.values[start : start + int(self.train_end[index]), : self.n_targets].astype(np.float64)
            absolute.append(naive_scale(history, self.season_length))
            squared.append(naive_scale(history, self.season_length, power=2))
        return np.stack(absolute), np.stack(squared)

    def to_original(self, scaled: np.ndarray, series: np.ndarray) -> np.ndarray:
        """Scaled targets `[N, ...]` of the series `series` [N] -> original units."""
        return self.scaler.inverse_targets(scaled, series)


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


@dataclass
class SplitReport:
    """One split's forecasts and scores. `pred`, `actual`: [N, H, T] in original units; `bands`: level ->
    (lower, upper) in original units (empty without a calibration); `by_step`: {"mse", "mae"} -> [H] on the
    scaled axis."""

    forecasts: WindowForecasts
    pred: np.ndarray
    actual: np.ndarray
    bands: dict[int, tuple[np.ndarray, np.ndarray]]
    metrics: dict[str, float]
    by_step: dict[str, np.ndarray]


@dataclass
class Report:
    """What `evaluate` found: each split's report (None for an empty split) and the calibration the model's
    intervals use (None: it forecasts without intervals)."""

    val: SplitReport | None
    test: SplitReport | None
    calibration: Calibration | None

    @property
    def val_metrics(self) -> dict[str, float]:
        return self.val.metrics if self.val is not None else {}

    @property
    def test_metrics(self) -> dict[str, float]:
        return self.test.metrics if self.test is not None else {}


def evaluate(model: ModelBundle, data: EvaluationData, *, levels: list[int], calibrate: bool = True,
             calibration: Calibration | None = None) -> Report:
    """Forecast and score every validation and test window of `data` with `model`.

    The intervals' calibration is fitted on the validation windows (`levels`, `calibrate`: `predict.levels` and
    `predict.calibrate`). Without validation windows it is `calibration` when given (a refit reuses the one its
    selection run fitted), else the quantile network's own quantiles, else none. Validation metrics never include
    interval metrics: the intervals were fitted on those windows."""
    predictor = model.predictor
    val = forecast_windows(predictor, data.windows["val"]())
    if val is None and calibration is not None:
        chosen = calibration
    else:
        outputs, actual = (val.outputs, val.actual) if val is not None else (None, None)
        chosen = fit_calibration(outputs, actual, model.quantiles, model.point_index, levels, calibrate)
    test = forecast_windows(predictor, data.windows["test"]())
    return Report(val=_split_report(val, data, chosen, scored=False), test=_split_report(test, data, chosen),
                  calibration=chosen)


def _split_report(forecasts: WindowForecasts | None, data: EvaluationData, calibration: Calibration | None,
                  scored: bool = True) -> SplitReport | None:
    """`scored`: whether the interval metrics are scored (not on the windows the intervals were fitted on)."""
    if forecasts is None:
        return None
    original = _Original.of(forecasts, data, calibration)
    levels = calibration.levels if calibration is not None else []
    return SplitReport(forecasts=forecasts, pred=original.pred, actual=original.actual,
                       bands={level: original.bands[level] for level in levels if level in original.bands},
                       metrics=_metrics(forecasts, data, original, calibration if scored else None),
                       by_step=error_by_step(forecasts.pred, forecasts.actual))


@dataclass
class _Original:
    """A split's forecasts back in original units, each once: pred, actual [N, H, T], and the bands of every
    level the calibration fitted (`scaled_bands` on the scaled axis, `bands` in original units)."""

    pred: np.ndarray
    actual: np.ndarray
    scaled_bands: dict[int, tuple[np.ndarray, np.ndarray]]
    bands: dict[int, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, forecasts: WindowForecasts, data: EvaluationData, calibration: Calibration | None) -> _Original:
        series = forecasts.series
        scaled = forecasts.bands(calibration, levels=list(calibration.margins)) if calibration is not None else {}
        return cls(pred=data.to_original(forecasts.pred, series), actual=data.to_original(forecasts.actual, series),
                   scaled_bands=scaled, bands={level: (data.to_original(lo, series), data.to_original(hi, series))
                                               for level, (lo, hi) in scaled.items()})


def _metrics(forecasts: WindowForecasts, data: EvaluationData, original: _Original,
             calibration: Calibration | None) -> dict[str, float]:
    """Every registered metric; with a `calibration`, the interval metrics too."""
    scale, scale_sq = (per_series[forecasts.series] for per_series in data.scales)  # [N, T] each
    metrics = score_windows(Windows(forecasts.pred, forecasts.actual, original.pred, original.actual, scale, scale_sq))
    if calibration is not None:
        metrics.update(interval_metrics(original.scaled_bands, original.bands, forecasts.pred, forecasts.actual,
                                        original.actual, calibration.levels, scale))
    return metrics


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


def score(forecasts: WindowForecasts | None, data: Any, calibration: Calibration | None = None) -> dict[str, float]:
    """Every registered metric of `forecasts` (`metrics.METRICS`: on the scaled axis and in original units); with
    a `calibration`, the interval metrics of `metrics.interval_metrics` too; none for no forecasts. `data`: the
    `EvaluationData` the forecasts come from, or a set-up `ForecastDataModule`."""
    if forecasts is None:
        return {}
    data = as_evaluation_data(data)
    return _metrics(forecasts, data, _Original.of(forecasts, data, calibration), calibration)


def as_evaluation_data(data: Any) -> EvaluationData:
    """`data` itself, or what a set-up data module gives evaluation."""
    return data if isinstance(data, EvaluationData) else data.evaluation_data()
