"""A network started at the ridge fit (`model.skip_start: ridge`): it begins as the `linear` baseline, validation
scores that start before the first epoch, and the start is kept when no epoch beats it."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import shrink_config

from forecaster.bundle import ModelBundle
from forecaster.errors import TrainingError
from forecaster.evaluation import forecast_windows
from forecaster.training.fit import fit_baseline, fit_network
from forecaster_pipelines.compare import _refit_config
from forecaster_pipelines.train import prepare_data

pytestmark = pytest.mark.trains


def panel_config(tmp_path, **overrides):
    """Three hourly series of different level and spread: a daily cycle, a slow drift and noise."""
    rng = np.random.default_rng(3)
    t = np.arange(700)
    stamps = pd.date_range("2024-01-01", periods=t.size, freq="h").astype(str)
    frame = pd.concat([pd.DataFrame({"series": name, "timestamp": stamps, "value": level + spread * np.sin(
        2 * np.pi * t / 24) + 0.01 * t + rng.normal(0, 0.3, t.size)})
        for name, level, spread in (("a", 10, 1), ("b", -5, 4), ("c", 100, 20))])
    path = tmp_path / "panel.csv"
    frame.to_csv(path, index=False)
    return shrink_config(None, tmp_path / "state", **{
        "data.path": str(path), "data.target": "value", "data.series_id": "series", "window.lookback": 48,
        "window.horizon": 12, "model.cell": "gru", "model.strategy": "segment", "model.hidden_size": 16,
        "model.num_layers": 1, "model.linear_skip": True, "model.skip_start": "ridge", "model.loss": "mae",
        "train.max_epochs": 2, "train.patience": 0, "train.limit_train_batches": 10, **overrides,
    })


def val_forecasts(bundle, datamodule):
    return forecast_windows(bundle.predictor, datamodule.val_dataloader())


def test_the_ridge_start_forecasts_what_the_linear_baseline_forecasts(tmp_path):
    config = panel_config(tmp_path, **{"train.max_epochs": 0})
    datamodule = prepare_data(config)
    started = fit_network(config, datamodule, tmp_path / "ckpt")
    linear = fit_baseline("linear", config, datamodule)
    ours, theirs = val_forecasts(started, datamodule), val_forecasts(linear, datamodule)
    assert ours.pred.shape == theirs.pred.shape
    # the same ridge (penalty 1, intercept unshrunk) in closed form; the zeroed recurrence adds the window mean,
    # which the skip path fits around, so only the penalty's pull differs: negligible against thousands of rows
    np.testing.assert_allclose(ours.pred, theirs.pred, atol=1e-3)
    assert started.training.epochs_run == 0


def test_without_the_ridge_start_zero_epochs_are_refused(tmp_path):
    config = panel_config(tmp_path, **{"train.max_epochs": 0, "model.skip_start": "zero"})
    with pytest.raises(TrainingError, match="train.max_epochs: 0 trains nothing"):
        fit_network(config, prepare_data(config), tmp_path / "ckpt")


def test_the_start_is_kept_when_no_epoch_beats_it(tmp_path, caplog):
    """A learning rate far past stability makes every epoch worse than the ridge start: the best weights must
    be the start (epoch -1), not the least bad epoch."""
    config = panel_config(tmp_path, **{"train.lr": 5.0, "train.gradient_clip_val": None})
    datamodule = prepare_data(config)
    with caplog.at_level("INFO", logger="forecaster"):
        trained = fit_network(config, datamodule, tmp_path / "ckpt")
    start = fit_network(config.with_overrides({"train.max_epochs": 0}), datamodule, tmp_path / "ckpt0")
    assert trained.training.epochs_run == 2
    assert trained.training.best_epoch == -1
    lines = [r.getMessage() for r in caplog.records if r.name == "forecaster.training"]
    assert lines[0].startswith("start: val_loss") and len(lines) == 3  # the start, then one line per epoch
    assert not any("(best)" in line for line in lines[1:])  # no epoch beat the start: none is marked best
    assert "no epoch beat the ridge start" in caplog.text
    np.testing.assert_array_equal(val_forecasts(trained, datamodule).pred, val_forecasts(start, datamodule).pred)
    # a refit then trains no epoch either: the kept model is the start, fitted on every row
    assert _refit_config(config, type("Selected", (), {"best_epoch": -1})()).train.max_epochs == 0


def test_an_epoch_that_beats_the_start_is_kept(tmp_path):
    """A threshold autoregression (the next value's sign flips around a threshold) is beyond a linear model on
    lags: training must move off the start and keep that epoch."""
    rng = np.random.default_rng(0)
    x = np.zeros(2000)
    for i in range(1, x.size):
        x[i] = (0.9 * x[i - 1] - 1.5 if x[i - 1] > 0 else -0.6 * x[i - 1] + 1.0) + rng.normal(0, 0.2)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=x.size, freq="h").astype(str), "value": x})
    frame.to_csv(tmp_path / "tar.csv", index=False)
    config = panel_config(tmp_path, **{"data.path": str(tmp_path / "tar.csv"), "data.series_id": None,
                                       "window.lookback": 24, "window.horizon": 4, "model.strategy": "direct",
                                       "train.lr": 0.01, "train.max_epochs": 3, "train.limit_train_batches": None})
    datamodule = prepare_data(config)
    trained = fit_network(config, datamodule, tmp_path / "ckpt")
    assert trained.training.best_epoch is not None and trained.training.best_epoch >= 0
    assert trained.network.decoder.head.weight.abs().sum() > 0  # the recurrence moved off zero


def test_a_saved_ridge_started_network_forecasts_the_same_after_loading(tmp_path):
    config = panel_config(tmp_path)
    datamodule = prepare_data(config)
    trained = fit_network(config, datamodule, tmp_path / "ckpt")
    trained.save(tmp_path / "model")
    loaded = ModelBundle.load(tmp_path / "model")
    assert loaded.network.skip_outside
    np.testing.assert_array_equal(val_forecasts(loaded, datamodule).pred, val_forecasts(trained, datamodule).pred)


def test_the_skip_path_outside_revin_sees_the_series_scaled_lags():
    """Started at zero the skip reads each window's normalised lags; started at the ridge fit it reads the lags as
    they come and adds to the restored forecast: a level shift of the input moves that forecast linearly."""
    from forecaster.models.network import RecurrentForecaster

    net = RecurrentForecaster(1, 1, 0, 8, 4, cell="gru", hidden_size=4, num_layers=1, linear_skip=True,
                              skip_start="ridge", strategy="direct").eval()
    torch.nn.init.zeros_(net.decoder.head.weight)
    torch.nn.init.zeros_(net.decoder.head.bias)
    with torch.no_grad():
        net.skip.weight.fill_(0.0)
        net.skip.weight[:, -1] = 2.0  # every step: twice the last lag
        net.skip.bias.fill_(0.0)
    x = torch.arange(8.0).reshape(1, 8, 1)
    out = net(x, torch.zeros(1, 4, 0))[0, :, 0, 0]
    # zero recurrence -> RevIN restores the window mean (3.5); the skip adds 2 * 7
    torch.testing.assert_close(out, torch.full((4,), 3.5 + 14.0))


def shifted_noise_config(tmp_path):
    """White noise for training, the same noise five deviations higher from validation on: a ridge fit on lags
    learned that the best forecast is the training mean, while seasonal naive follows the new level."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 1000)
    x[600:] += 5.0
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=x.size, freq="h").astype(str), "value": x})
    frame.to_csv(tmp_path / "noise.csv", index=False)
    return panel_config(tmp_path, **{"data.path": str(tmp_path / "noise.csv"), "data.series_id": None,
                                     "split.val_fraction": 0.2, "split.test_fraction": 0.2,
                                     "model.skip_start": "auto", "train.max_epochs": 1})


def test_auto_starts_at_the_ridge_fit_where_it_beats_seasonal_naive(tmp_path, caplog):
    config = panel_config(tmp_path, **{"model.skip_start": "auto", "train.max_epochs": 1})
    datamodule = prepare_data(config)
    with caplog.at_level("INFO", logger="forecaster.training.fit"):
        trained = fit_network(config, datamodule, tmp_path / "ckpt")
    assert trained.config.model.skip_start == "ridge"  # what was built, as the saved bundle will say
    assert trained.network.skip_outside
    assert "beats seasonal naive" in caplog.text
    trained.save(tmp_path / "model")
    selected = type("Selected", (), {"best_epoch": 0, "model_dir": str(tmp_path / "model")})()
    refit = _refit_config(config, selected)  # a refit has no validation rows: it starts as the selection did
    assert (refit.model.skip_start, refit.train.max_epochs) == ("ridge", 1)


def test_auto_starts_from_zero_where_the_ridge_fit_loses_to_seasonal_naive(tmp_path, caplog):
    config = shifted_noise_config(tmp_path)
    datamodule = prepare_data(config)
    with caplog.at_level("INFO", logger="forecaster.training.fit"):
        trained = fit_network(config, datamodule, tmp_path / "ckpt")
    assert trained.config.model.skip_start == "zero"
    assert not trained.network.skip_outside
    assert "starting from zero" in caplog.text
    # the same network as `zero` would have built and trained from the same seed
    plain = fit_network(config.with_overrides({"model.skip_start": "zero"}), datamodule, tmp_path / "ckpt0")
    for (name, ours), theirs in zip(trained.network.state_dict().items(), plain.network.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)
