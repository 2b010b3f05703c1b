"""PanelScaler: StandardScaler statistics per series from training rows only, round trips, unseen series."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import StandardScaler

from forecaster.data.scaling import PanelScaler
from forecaster.errors import DataError


def test_statistics_match_sklearn_on_each_series_training_rows(make_panel):
    panel = make_panel([50, 80], n_targets=2, n_covariates=1)
    train_end = np.array([30, 55])
    scaler = PanelScaler().fit(panel, train_end)
    assert scaler.mean_.shape == scaler.scale_.shape == (2, 3)
    for i in range(2):
        reference = StandardScaler().fit(panel.series_values(i)[: train_end[i]].astype(np.float64))
        np.testing.assert_allclose(scaler.mean_[i], reference.mean_)
        np.testing.assert_allclose(scaler.scale_[i], reference.scale_)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**31 - 1))
def test_rows_after_train_end_never_change_the_statistics(make_panel, train_rows, seed):
    panel = make_panel([60, 45], n_targets=1, n_covariates=1)
    train_end = np.array([train_rows, min(train_rows, 45)])
    before = PanelScaler().fit(panel, train_end)
    noisy = panel.values.copy()
    for i, end in enumerate(train_end):
        rows = slice(panel.offsets[i] + end, panel.offsets[i + 1])
        noisy[rows] = np.random.default_rng(seed).normal(1e3, 1e3, noisy[rows].shape)
    after = PanelScaler().fit(panel.with_values(noisy), train_end)
    np.testing.assert_array_equal(before.mean_, after.mean_)
    np.testing.assert_array_equal(before.scale_, after.scale_)


def test_a_constant_variable_gets_scale_one(make_panel):
    panel = make_panel([20, 20], n_targets=1, n_covariates=1)  # column 1 is the series index: constant per series
    scaler = PanelScaler().fit(panel)
    assert scaler.scale_[:, 1].tolist() == [1.0, 1.0]
    assert np.allclose(scaler.transform(panel).values[:, 1], 0.0)


def test_transform_standardises_and_inverse_restores_without_touching_the_input(make_panel):
    panel = make_panel([40, 70], n_targets=2, n_covariates=1)
    original = panel.values.copy()
    scaler = PanelScaler().fit(panel)
    scaled = scaler.transform(panel)
    assert scaled.values.dtype == np.float32 and scaled.series_ids == panel.series_ids
    for i in range(2):
        np.testing.assert_allclose(scaled.series_values(i).mean(axis=0)[[0, 2]], 0.0, atol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(scaled).values, original, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(panel.values, original)


def test_inverse_targets_maps_batches_back_per_series(make_panel):
    panel = make_panel([40, 70], n_targets=2, n_covariates=1)
    scaler = PanelScaler().fit(panel, np.array([20, 50]))
    scaled = scaler.transform(panel)
    rows = np.array([[3, 4, 5], [45, 46, 47]])  # [B, H] global rows: series 0, then series 1
    y = scaled.values[rows][..., :2]  # [B, H, T]
    back = scaler.inverse_targets(y, np.array([0, 1]))
    np.testing.assert_allclose(back, panel.values[rows][..., :2], rtol=1e-5, atol=1e-3)
    quantiles = np.repeat(y[..., None], 3, axis=-1)  # [B, H, T, Q]
    np.testing.assert_allclose(scaler.inverse_targets(quantiles, np.array([0, 1]))[..., 1], back)


def test_json_round_trip_is_exact_and_keyed_by_series_id(make_panel):
    panel = make_panel([30, 30], n_targets=1, n_covariates=1)
    scaler = PanelScaler().fit(panel, np.array([20, 25]))
    state = json.loads(json.dumps(scaler.to_dict()))
    assert list(state["series"]) == ["s0", "s1"] and state["columns"] == ["v0", "v1"]
    restored = PanelScaler.from_dict(state)
    np.testing.assert_array_equal(restored.mean_, scaler.mean_)
    np.testing.assert_array_equal(restored.scale_, scaler.scale_)
    np.testing.assert_array_equal(restored.transform(panel).values, scaler.transform(panel).values)


def test_unseen_series_must_be_added_explicitly(make_panel):
    fitted_on = make_panel([30], n_targets=1, n_covariates=1)
    scaler = PanelScaler().fit(fitted_on)
    known_mean = scaler.mean_.copy()
    newcomer = make_panel([30, 40], n_targets=1, n_covariates=1)  # 's0' known, 's1' new
    with pytest.raises(DataError, match=r"series 's1' were not seen.*add_series"):
        scaler.transform(newcomer)
    scaler.add_series(newcomer, train_end=np.array([30, 25]))
    assert scaler.series_ids_ == ["s0", "s1"]
    np.testing.assert_array_equal(scaler.mean_[0], known_mean[0])
    np.testing.assert_allclose(scaler.mean_[1], newcomer.series_values(1)[:25].mean(axis=0), rtol=1e-6)
    assert scaler.transform(newcomer).values.shape == newcomer.values.shape


def test_other_columns_are_refused(make_panel):
    scaler = PanelScaler().fit(make_panel([30], n_targets=1, n_covariates=1))
    with pytest.raises(DataError, match="fitted on columns"):
        scaler.transform(make_panel([30], n_targets=1, n_covariates=2))
    with pytest.raises(DataError, match="fitted on columns"):
        scaler.transform(make_panel([30], n_targets=2))  # same names, other roles


def test_many_series_fitted_in_small_chunks_match_sklearn_one_by_one(make_panel, monkeypatch):
    """The fit gathers series in chunks of rows; a chunk border falling inside or between series changes nothing."""
    import forecaster.data.scaling as scaling

    monkeypatch.setattr(scaling, "_CHUNK_ROWS", 37)
    lengths = [5, 40, 12, 3, 64, 9, 21]
    panel = make_panel(lengths, n_targets=1, n_covariates=1)
    values = panel.values.copy()
    values[panel.offsets[3]:panel.offsets[4]] = 2.5  # a constant series: scale 1
    panel = panel.with_values(values)
    train_end = np.array([4, 30, 12, 3, 50, 9, 20])
    scaler = PanelScaler().fit(panel, train_end)
    for i in range(len(lengths)):
        reference = StandardScaler().fit(panel.series_values(i)[: train_end[i]].astype(np.float64))
        np.testing.assert_allclose(scaler.mean_[i], reference.mean_, rtol=1e-12)
        np.testing.assert_allclose(scaler.scale_[i], reference.scale_, rtol=1e-12)
    restored = scaler.inverse_transform(scaler.transform(panel))
    np.testing.assert_allclose(restored.values, panel.values, rtol=1e-5, atol=1e-5)
