"""Statistical model types (ets, theta, mstl, arima): fitted per series on training rows, each window forecast from
its own rows with its own series' parameters, JSON state, and the same train -> register -> predict -> pyfunc path
as every other model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("statsforecast", reason="the statistical model types need statsforecast")

from forecaster.models.catalog import baseline_from_dict, make_baseline  # noqa: E402

pytestmark = pytest.mark.trains  # statsforecast fits

HORIZON, LOOKBACK = 24, 96


def seasonal_series(n: int, phase: int = 0, trend: float = 0.0, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """[n, 1]: a daily cycle (period 24) shifted by `phase` hours, a linear trend and Gaussian noise."""
    steps = np.arange(n)
    rng = np.random.default_rng(seed)
    return (np.sin(2 * np.pi * (steps + phase) / 24) + trend * steps + noise * rng.standard_normal(n))[:, None]


def windows_of(series: np.ndarray, starts) -> tuple[torch.Tensor, np.ndarray]:
    """x_past [B, L, 1] of the windows starting at `starts`, and their actual next HORIZON values [B, H]."""
    past = np.stack([series[s : s + LOOKBACK] for s in starts])
    actual = np.stack([series[s + LOOKBACK : s + LOOKBACK + HORIZON, 0] for s in starts])
    return torch.tensor(past, dtype=torch.float32), actual


def fitted(name: str, histories: list[np.ndarray], season_length: int = 24):
    model = make_baseline(name, season_length=season_length, seasonalities=[season_length], n_targets=1,
                          lookback=LOOKBACK, horizon=HORIZON)
    return model.fit_histories(histories)


def forecast(model, x_past: torch.Tensor, series) -> np.ndarray:
    return model.predict(x_past, torch.zeros(len(x_past), HORIZON, 0), series)[..., 0].numpy()


@pytest.mark.parametrize("name", ["ets", "theta", "mstl"])
def test_a_seasonal_model_beats_repeating_the_last_value_and_reloads_bit_for_bit(name):
    series = seasonal_series(700, trend=0.002)
    model = fitted(name, [series[:500]])
    x_past, actual = windows_of(series, range(420, 580, 9))  # windows that start at every hour of the day
    pred = forecast(model, x_past, np.zeros(len(x_past), dtype=int))
    naive = np.repeat(x_past[:, -1, 0].numpy()[:, None], HORIZON, axis=1)
    assert np.mean((pred - actual) ** 2) < 0.3 * np.mean((naive - actual) ** 2)

    state = json.loads(json.dumps(model.to_dict()))  # JSON, nothing else
    assert state["name"] == name and state["fitted"][0][0] is not None
    again = baseline_from_dict(state)
    np.testing.assert_array_equal(forecast(again, x_past, np.zeros(len(x_past), dtype=int)), pred)


def test_arima_learns_its_orders_on_training_rows_and_forecasts_each_window_with_them():
    rng = np.random.default_rng(1)
    values = np.zeros(1000)
    for t in range(1, 1000):  # AR(1): forecasts revert to the mean, which repeating the last value cannot do
        values[t] = 0.8 * values[t - 1] + rng.standard_normal()
    series = values[:, None]
    model = fitted("arima", [series[:300]], season_length=1)
    params = model.fitted_[0][0]
    assert params["arma"][4] == 1 and params["coef"]  # non-seasonal, with coefficients
    x_past, actual = windows_of(series, range(300, 880, 5))
    pred = forecast(model, x_past, np.zeros(len(x_past), dtype=int))
    naive = np.repeat(x_past[:, -1, 0].numpy()[:, None], HORIZON, axis=1)
    assert np.mean((pred - actual) ** 2) < 0.8 * np.mean((naive - actual) ** 2)
    again = baseline_from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(forecast(again, x_past[:3], [0, 0, 0]), pred[:3])


def test_each_window_uses_its_own_series_parameters_and_an_unseen_series_is_fitted_on_its_window():
    smooth = seasonal_series(600, noise=0.05)
    rough = seasonal_series(600, phase=7, noise=0.8, seed=3)
    model = fitted("ets", [smooth[:500], rough[:500]])
    assert model.fitted_[0][0] != model.fitted_[1][0]
    x_past, _ = windows_of(rough, [480])
    as_rough, as_smooth, unseen = (forecast(model, x_past, [index]) for index in (1, 0, 5))
    assert not np.allclose(as_rough, as_smooth)  # the series index picks the parameters
    alone = fitted("ets", [rough[480 : 480 + LOOKBACK]])  # what an unseen series gets: a fit on its own window
    np.testing.assert_allclose(unseen, forecast(alone, x_past, [0]), rtol=1e-6)


def test_a_constant_or_too_short_series_forecasts_seasonal_naive_instead_of_failing():
    constant = np.full((300, 1), 5.0)
    model = fitted("ets", [constant, seasonal_series(300)])
    x_past, _ = windows_of(np.vstack([np.full((LOOKBACK - 24, 1), 5.0), seasonal_series(24 + HORIZON)]), [0])
    pred = forecast(model, x_past, [0])
    assert np.all(np.isfinite(pred))
    short = make_baseline("theta", season_length=24, n_targets=1, lookback=LOOKBACK, horizon=HORIZON)
    short.fit_histories([seasonal_series(3)])  # statsforecast refuses three rows
    assert short.fitted_ == [[None]]
    x_past, _ = windows_of(seasonal_series(200), [10])
    np.testing.assert_allclose(forecast(short, x_past, [0])[0], x_past[0, -24:, 0].numpy())


# -- through compare, the registry, predict and pyfunc -----------------------------------------------------

@pytest.mark.slow
def test_statistical_models_compare_register_predict_and_serve_the_same_numbers(shrink, demo_csv, tmp_path):
    import mlflow

    from forecaster.mlflow_model.resolve import resolve_model
    from forecaster_pipelines import compare, predict

    config = shrink("demo.yaml", tmp_path / "state", **{
        "compare.models": ["seasonal_naive", "ets", "theta", "mstl"], "registry.name": "stat",
        "compare.refit": False, "compare.ensemble": False, "predict.model": "models:/stat@champion",
        "predict.data": str(demo_csv),
        "predict.output": str(tmp_path / "out")})
    result = compare.run(config)

    board = result.leaderboard.set_index("model")
    assert set(board.index) == {"seasonal_naive", "ets", "theta", "mstl"}
    assert board[["val_mse", "test_mse", "test_mase", "test_coverage_80"]].notna().all().all()
    assert result.winner in {"ets", "theta", "mstl"} and result.registered_version == "1"  # they beat the floor
    runs = {r.name: r for r in result.results}
    assert runs[result.winner].n_params > 0

    written = predict.run(config)
    frame = pd.read_csv(written.paths.forecast)
    assert {"forecast", "forecast_lo_80", "forecast_hi_80"} <= set(frame.columns)
    assert len(frame) == 4 * HORIZON and frame["forecast"].notna().all()
    assert (frame["forecast_lo_80"] <= frame["forecast"]).all() and (frame["forecast"] <= frame["forecast_hi_80"]).all()

    history = pd.read_csv(demo_csv)
    served = mlflow.pyfunc.load_model(runs[result.winner].model_uri).predict(history)
    merged = frame.merge(served, on=["series_id", "step"], suffixes=("", "_served"))
    np.testing.assert_allclose(merged["forecast"], merged["forecast_served"], rtol=1e-5)

    # Series in another order, and one series alone: the same numbers per series (the series index follows ids).
    bundle = resolve_model("models:/stat@champion").bundle
    reordered = bundle.predict(history.iloc[::-1].reset_index(drop=True)).frame
    alone = bundle.predict(history[history["series_id"] == "site_c"]).frame
    key = ["series_id", "step"]
    both = bundle.predict(history).frame.merge(reordered, on=key, suffixes=("", "_reordered"))
    np.testing.assert_allclose(both["forecast"], both["forecast_reordered"], rtol=1e-6)
    site_c = both[both["series_id"] == "site_c"].merge(alone, on=key, suffixes=("", "_alone"))
    np.testing.assert_allclose(site_c["forecast"], site_c["forecast_alone"], rtol=1e-6)

    # The command users run.
    done = subprocess.run([sys.executable, "-m", "forecaster_pipelines", "predict", "--model", "models:/stat@champion",
                           "--data", str(demo_csv), "--output", str(tmp_path / "cli"), "--set",
                           f"tracking.state_dir={config.tracking.state_dir}"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("components, params", [
    ("ANAN", {"alpha": 0.3, "gamma": 0.1}),
    ("AAAN", {"alpha": 0.3, "beta": 0.05, "gamma": 0.1}),
    ("AAAd", {"alpha": 0.3, "beta": 0.05, "gamma": 0.1, "phi": 0.9}),
])
def test_a_window_that_follows_its_ets_model_exactly_is_continued_exactly(components, params):
    from forecaster.models.statistical import additive_ets_forecast

    m, phi = 7, params.get("phi", 1.0)
    season = np.array([3.0, -1.0, 0.5, -2.0, 1.5, -0.5, -1.5])  # sums to zero
    steps = np.arange(60)
    trend = 0.0 if components[1] == "N" else 0.4 * np.cumsum(phi ** (steps + 1)) if phi < 1 else 0.4 * (steps + 1)
    y = 10.0 + trend + season[steps % m]  # every one-step error is zero: the states never need correcting
    pred = additive_ets_forecast(y[None, :48], m, components, params, 12)[0]
    np.testing.assert_allclose(pred, y[48:], atol=1e-8)
