"""ForecastDataModule end to end on the demo CSV, and the ETTh1 protocol through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecaster.config import build_config
from forecaster.data.datamodule import ForecastDataModule
from forecaster.data.splits import rolling_origin_folds


@pytest.fixture(scope="module")
def demo_config(demo_csv):
    return build_config({
        "data": {"path": str(demo_csv), "series_id": "series_id", "target": "load",
                 "future_covariates": ["temperature"], "calendar": ["hour", "weekday"], "missing": "interpolate"},
        "window": {"lookback": 48, "horizon": 24, "stride": 6},
        "train": {"batch_size": 64},
    })


@pytest.fixture(scope="module")
def demo_module(demo_config):
    module = ForecastDataModule(demo_config)
    module.setup("fit")
    return module


def test_setup_exposes_what_models_need(demo_module):
    module = demo_module
    assert module.panel.series_ids == ["site_a", "site_b", "site_c", "site_d"]
    assert module.n_targets == 1
    assert module.n_past_features == 1 + 1 + 4 and module.n_future_features == 1 + 4
    assert module.season_length == 24
    assert module.borders.train_end.tolist() == [1512] * 4  # 2160 rows: 70 % train, 10 % val, 20 % test
    assert all(len(dataset) > 0 for dataset in (module.train_dataset, module.val_dataset, module.test_dataset))


def test_loaders_yield_the_documented_batches(demo_module):
    batch = next(iter(demo_module.train_dataloader()))
    assert batch["x_past"].shape == (64, 48, 6) and batch["x_future"].shape == (64, 24, 5)
    assert batch["y"].shape == (64, 24, 1) and batch["series"].shape == batch["origin"].shape == (64,)
    val = [batch["origin"] for batch in demo_module.val_dataloader()]
    assert torch.equal(torch.cat(val), torch.sort(torch.cat(val)).values)  # not shuffled
    assert sum(len(origin) for origin in val) == len(demo_module.val_dataset)


def test_scaler_is_fitted_on_training_rows_only(demo_module):
    module = demo_module
    for i in range(module.panel.n_series):
        train = module.panel.series_values(i)[: module.borders.train_end[i]].astype(np.float64)
        np.testing.assert_allclose(module.scaler.mean_[i], train.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(module.scaler.scale_[i], train.std(axis=0), rtol=1e-6)
    batch = module.train_dataset.__getitems__(list(range(len(module.train_dataset))))
    assert abs(batch["y"].mean().item()) < 0.2  # scaled targets


def test_setup_is_idempotent(demo_module):
    datasets = (demo_module.train_dataset, demo_module.scaler, demo_module.borders)
    demo_module.setup("validate")
    assert (demo_module.train_dataset, demo_module.scaler, demo_module.borders) == datasets


def test_given_panel_and_season_length_override(demo_module, demo_config):
    config = demo_config.with_overrides({"model.season_length": 168})
    module = ForecastDataModule(config, panel=demo_module.panel)
    module.setup()
    assert module.panel is demo_module.panel and module.season_length == 168


def test_rolling_origin_folds_get_their_own_scaler(demo_module, demo_config):
    window = demo_config.window
    folds = rolling_origin_folds(demo_module.borders, demo_module.panel, 2, None, window.lookback, window.horizon)
    older = demo_module.for_borders(folds[0])
    assert older.borders is folds[0] and older.panel is demo_module.panel
    assert older.borders.train_end[0] < demo_module.borders.train_end[0]
    train = older.panel.series_values(0)[: older.borders.train_end[0]].astype(np.float64)
    np.testing.assert_allclose(older.scaler.mean_[0], train.mean(axis=0), rtol=1e-6)
    assert next(iter(older.test_dataloader()))["y"].shape[1:] == (24, 1)


def test_etth1_standard_split_through_the_datamodule(etth1_csv):
    config = build_config({
        "data": {"path": str(etth1_csv), "timestamp": "date",
                 "target": ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]},
        "split": {"train_end": 8640, "val_end": 11520, "test_end": 14400},
    })
    module = ForecastDataModule(config)
    module.setup()
    assert (len(module.train_dataset), len(module.val_dataset), len(module.test_dataset)) == (8521, 2857, 2857)
    assert module.n_targets == 7 and module.n_past_features == 7 and module.n_future_features == 0
