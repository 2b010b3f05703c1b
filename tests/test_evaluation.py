"""`evaluation.evaluate(model, data) -> Report`: forecasts in both scales, intervals fitted on validation windows
(or reused where there are none), every metric against one seasonal-naive scale, errors per step."""

import numpy as np
import pandas as pd
import pytest

from helpers import shrink_config

from forecaster.calibration import Calibration
from forecaster.data.splits import Borders
from forecaster.evaluation import evaluate, forecast_windows, score
from forecaster.training.fit import fit_baseline, fit_network
from forecaster_pipelines.train import prepare_data

pytestmark = pytest.mark.trains  # every test fits a small network or baseline

SEASON = 24


def two_series_config(tmp_path, **overrides):
    """Two hourly series of different level and spread: a per-series scale that mixed them up would show."""
    rng = np.random.default_rng(3)
    t = np.arange(600)
    frames = [pd.DataFrame({"series_id": sid, "timestamp": pd.date_range("2024-01-01", periods=len(t), freq="h"),
                            "value": level + spread * np.sin(2 * np.pi * t / SEASON) + rng.normal(0, spread / 5, len(t))})
              for sid, level, spread in (("small", 10.0, 1.0), ("large", 500.0, 80.0))]
    path = tmp_path / "two.csv"
    pd.concat(frames).to_csv(path, index=False)
    return shrink_config(None, tmp_path / "state", **{
        "data.path": str(path), "data.target": "value", "data.series_id": "series_id", "window.lookback": 48,
        "window.horizon": 12, "model.hidden_size": 8, "train.max_epochs": 2, "train.limit_train_batches": None,
        "predict.levels": [80], **overrides})


def test_a_report_holds_both_scales_the_intervals_and_every_metric(tmp_path):
    config = two_series_config(tmp_path, **{"model.loss": "quantile", "model.quantiles": [0.1, 0.5, 0.9]})
    datamodule = prepare_data(config)
    data = datamodule.evaluation_data()
    model = fit_network(config, datamodule, tmp_path / "ckpt")
    report = evaluate(model, data, levels=[80])

    assert report.calibration.method == "cqr" and report.calibration.windows == len(datamodule.val_dataset)
    test = report.test
    assert len(test.forecasts.pred) == len(datamodule.test_dataset)
    assert np.array_equal(test.forecasts.pred, test.forecasts.outputs[..., 1])  # the median is the point forecast
    # original units: each window back through its own series' statistics
    mean, std = datamodule.scaler.mean_[:, 0], datamodule.scaler.scale_[:, 0]  # [S]
    series = test.forecasts.series
    np.testing.assert_allclose(test.pred[..., 0], test.forecasts.pred[..., 0] * std[series, None] + mean[series, None],
                               rtol=1e-5)
    np.testing.assert_allclose(test.actual[..., 0],
                               test.forecasts.actual[..., 0] * std[series, None] + mean[series, None], rtol=1e-5)
    lower, upper = test.bands[80]
    assert (lower <= test.pred + 1e-4).all() and (test.pred <= upper + 1e-4).all()
    # interval metrics on test only: the intervals were fitted on the validation windows
    assert "coverage_80" in test.metrics and not any(key.startswith("coverage") for key in report.val_metrics)
    assert report.test_metrics == score(test.forecasts, data, report.calibration)
    assert test.by_step["mae"].shape == (config.window.horizon,)
    np.testing.assert_allclose(test.by_step["mae"].mean(), test.metrics["mae"], rtol=1e-5)


def test_mase_is_scaled_by_each_series_own_seasonal_naive_error_on_its_training_rows(tmp_path):
    config = two_series_config(tmp_path)
    datamodule = prepare_data(config)
    report = evaluate(fit_baseline("seasonal_naive", config, datamodule), datamodule.evaluation_data(), levels=[80])
    panel, train_end = datamodule.panel, datamodule.borders.train_end
    errors = []
    for index in range(panel.n_series):
        history = panel.series_values(index)[: int(train_end[index]), 0].astype(np.float64)
        scale = np.mean(np.abs(history[SEASON:] - history[:-SEASON]))  # by hand
        mine = report.test.forecasts.series == index
        errors.append(np.abs(report.test.pred[mine] - report.test.actual[mine]) / scale)
    assert report.test_metrics["mase"] == pytest.approx(float(np.mean(np.concatenate(errors))), rel=1e-6)


def test_without_validation_windows_the_given_calibration_is_kept_and_a_point_model_has_none(tmp_path):
    config = two_series_config(tmp_path)
    datamodule = prepare_data(config)
    lengths = datamodule.panel.lengths
    everything = datamodule.for_borders(Borders(lengths, lengths, lengths))  # a refit: no validation, no test
    model = fit_baseline("seasonal_naive", config, everything)
    inherited = Calibration("conformal", [80], {80: np.ones((12, 1)), 95: np.ones((12, 1))}, fitted_on="selection")
    report = evaluate(model, everything.evaluation_data(), levels=[80], calibration=inherited)
    assert report.calibration is inherited and report.val is None and report.test is None
    assert evaluate(model, everything.evaluation_data(), levels=[80]).calibration is None
    # with validation windows the given calibration is not used: the model's own windows decide
    own = evaluate(model, datamodule.evaluation_data(), levels=[80], calibration=inherited).calibration
    assert own is not inherited and own.windows == len(datamodule.val_dataset)
    assert forecast_windows(model.predictor, everything.val_dataloader()) is None
