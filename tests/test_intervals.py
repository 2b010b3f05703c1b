"""Prediction intervals: fitted on validation rows only, near their nominal coverage, ordered and nested, and
carried through save, load and the pyfunc model; the interval metrics on hand-computed examples."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import series_csv, shrink_config

from forecaster.bundle import ModelBundle
from forecaster.calibration import Calibration, fit_calibration
from forecaster.metrics import coverage, msis, pinball
from forecaster_pipelines import compare, train

pytestmark = pytest.mark.trains  # small trainings

ROWS, VAL, TEST = 1200, 300, 400


def noisy_daily_cycle(rows: int = ROWS, seed: int = 0) -> np.ndarray:
    """A daily cycle plus N(0, 1) noise: seasonal naive's error is the difference of two noises, N(0, 2)."""
    t = np.arange(rows)
    return 10.0 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(seed).normal(0.0, 1.0, rows)


def config_for(path: Path, state: Path, **overrides):
    return shrink_config(None, state, **{
        "data.path": str(path), "data.target": "value", "window.lookback": 48, "window.horizon": 12,
        "split.val_size": VAL, "split.test_size": TEST, "tracking.experiment": "intervals",
        "predict.levels": [80, 95], **overrides,
    })


def history(values: np.ndarray, rows: int = 200) -> pd.DataFrame:
    """The first `rows` rows (training rows): what the forecasts below start from, whatever later rows hold."""
    return pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
                         "value": values[:rows]})


def trained_bundle(tmp_path: Path, name: str, values: np.ndarray, kind: str = "seasonal_naive", **overrides):
    result = train.run(config_for(series_csv(tmp_path / f"{name}.csv", values), tmp_path / name, **overrides),
                       kind=kind)
    return result, ModelBundle.load(result.model_dir)


def bounds(bundle: ModelBundle, values: np.ndarray) -> np.ndarray:
    frame = bundle.predict(history(values)).frame
    return frame[["forecast_lo_80", "forecast_hi_80", "forecast_lo_95", "forecast_hi_95"]].to_numpy()


def test_intervals_are_fitted_on_validation_rows_only(tmp_path):
    values = noisy_daily_cycle()
    _, base = trained_bundle(tmp_path, "base", values)
    louder_test = values.copy()
    louder_test[-TEST:] += np.random.default_rng(1).normal(0.0, 5.0, TEST)
    _, test_changed = trained_bundle(tmp_path, "test_changed", louder_test)
    louder_val = values.copy()
    louder_val[-TEST - VAL : -TEST] += np.random.default_rng(1).normal(0.0, 5.0, VAL)
    _, val_changed = trained_bundle(tmp_path, "val_changed", louder_val)

    np.testing.assert_array_equal(bounds(test_changed, values), bounds(base, values))
    widths = lambda b: b[:, 1] - b[:, 0]  # noqa: E731
    assert np.all(widths(bounds(val_changed, values)) > 1.5 * widths(bounds(base, values)))


def test_coverage_is_near_nominal_on_a_series_with_known_noise(tmp_path):
    result, bundle = trained_bundle(tmp_path, "cycle", noisy_daily_cycle(3000), **{"split.test_size": 1500})
    metrics = result.metrics
    assert abs(metrics["coverage_80"] - 0.80) < 0.04 and abs(metrics["coverage_95"] - 0.95) < 0.03
    # The noise of a seasonal-naive error is N(0, 2): the 80 % band is about 2 * 1.2816 * sqrt(2) = 3.62 wide.
    assert metrics["width_80"] == pytest.approx(2 * 1.2816 * np.sqrt(2), rel=0.1)
    assert metrics["width_80"] < metrics["width_95"] and np.isfinite(metrics["msis"]) and metrics["pinball"] > 0
    assert bundle.calibration.method == "conformal" and bundle.calibration.fitted_on == "validation"


def test_bounds_hold_the_forecast_and_widen_with_the_level(tmp_path):
    _, bundle = trained_bundle(tmp_path, "cycle", noisy_daily_cycle())
    frame = bundle.predict(history(noisy_daily_cycle())).frame
    assert list(frame.columns)[-4:] == ["forecast_lo_80", "forecast_hi_80", "forecast_lo_95", "forecast_hi_95"]
    assert (frame["forecast_lo_80"] <= frame["forecast"]).all() and (frame["forecast"] <= frame["forecast_hi_80"]).all()
    assert (frame["forecast_lo_95"] < frame["forecast_lo_80"]).all()
    assert (frame["forecast_hi_95"] > frame["forecast_hi_80"]).all()


def test_a_noisier_series_gets_a_wider_band_and_a_quiet_one_keeps_its_own(tmp_path):
    """Margins are learned per series' scale: one loud series does not widen the quiet one's band."""
    t = np.arange(ROWS)
    frames = [pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=ROWS, freq="h").astype(str),
                            "series_id": sid, "value": scale * noisy_daily_cycle(seed=i)})
              for i, (sid, scale) in enumerate([("quiet", 1.0), ("loud", 20.0)])]
    path = tmp_path / "two.csv"
    pd.concat(frames).to_csv(path, index=False)
    result = train.run(config_for(path, tmp_path / "state", **{"data.series_id": "series_id"}), kind="seasonal_naive")
    frame = ModelBundle.load(result.model_dir).predict(pd.concat(frames)).frame
    width = (frame["forecast_hi_80"] - frame["forecast_lo_80"]).groupby(frame["series_id"]).mean()
    assert width["loud"] == pytest.approx(20.0 * width["quiet"], rel=0.05) and len(t) == ROWS


def test_intervals_survive_save_load_and_the_pyfunc_model(tmp_path, monkeypatch):
    result, bundle = trained_bundle(tmp_path, "cycle", noisy_daily_cycle())
    bundle.save(tmp_path / "copy")
    again = ModelBundle.load(tmp_path / "copy")
    assert again.calibration.to_dict() == bundle.calibration.to_dict()
    expected = bundle.predict(history(noisy_daily_cycle())).frame
    pd.testing.assert_frame_equal(again.predict(history(noisy_daily_cycle())).frame, expected)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    served = mlflow.pyfunc.load_model(result.model_uri).predict(history(noisy_daily_cycle()))
    for column in ("forecast_lo_80", "forecast_hi_80", "forecast_lo_95", "forecast_hi_95"):
        np.testing.assert_allclose(served[column].to_numpy(), expected[column].to_numpy(), rtol=1e-6)


def test_a_bundle_saved_before_intervals_loads_and_forecasts_without_them(tmp_path):
    _, bundle = trained_bundle(tmp_path, "cycle", noisy_daily_cycle())
    bundle.save(tmp_path / "old")
    document = json.loads((tmp_path / "old" / "bundle.json").read_text())
    del document["calibration"]
    (tmp_path / "old" / "bundle.json").write_text(json.dumps(document))
    frame = ModelBundle.load(tmp_path / "old").predict(history(noisy_daily_cycle())).frame
    assert not [column for column in frame.columns if column.startswith(("forecast_lo_", "forecast_hi_"))]


def test_a_quantile_network_is_conformalised_and_can_keep_its_own_quantiles(tmp_path):
    values = noisy_daily_cycle()
    overrides = {"model.loss": "quantile", "model.quantiles": [0.1, 0.5, 0.9], "model.num_layers": 1}
    result, calibrated = trained_bundle(tmp_path, "cqr", values, kind="network", **overrides)
    assert calibrated.calibration.method == "cqr" and calibrated.calibration.levels == [80, 95]
    frame = calibrated.predict(history(values)).frame
    assert (frame["forecast_lo_95"] <= frame["forecast_lo_80"]).all()
    assert (frame["forecast_lo_80"] <= frame["forecast"]).all() and (frame["forecast"] <= frame["forecast_hi_80"]).all()
    assert {"coverage_80", "coverage_95", "msis"} <= set(result.metrics)
    _, raw = trained_bundle(tmp_path, "raw", values, kind="network", **overrides, **{"predict.calibrate": False})
    assert raw.calibration.method == "quantile" and raw.calibration.levels == [80]  # no 2.5 % / 97.5 % outputs
    frame = raw.predict(history(values)).frame
    np.testing.assert_allclose(frame["forecast_lo_80"], frame["forecast_q10"].clip(upper=frame["forecast"]))
    assert "forecast_lo_95" not in frame.columns


@pytest.mark.slow
def test_the_refit_reuses_the_selection_runs_calibration(tmp_path):
    config = config_for(series_csv(tmp_path / "cycle.csv", noisy_daily_cycle()), tmp_path / "state",
                        **{"compare.models": ["linear", "seasonal_naive"], "registry.name": "intervals"})
    result = compare.run(config)
    assert result.refit is not None and result.winner == "linear"
    selected = next(r for r in result.results if r.name == result.winner)
    refit = ModelBundle.load(result.refit.model_dir).calibration
    assert refit.to_dict()["margins"] == ModelBundle.load(selected.model_dir).calibration.to_dict()["margins"]
    assert refit.fitted_on.startswith(f"selection run {selected.run_id}")
    assert {"test_coverage_80", "test_width_80", "test_msis"} <= set(result.leaderboard.columns)
    assert "test_coverage_80" in compare.format_result(result)


# -- the calibration and the metrics on their own --------------------------------------------------------------


def test_conformal_margins_cover_fresh_gaussian_errors_at_their_level():
    rng = np.random.default_rng(0)
    outputs, actual = np.zeros((4000, 3, 1, 1)), rng.normal(0.0, 2.0, (4000, 3, 1))
    calibration = fit_calibration(outputs, actual, None, 0, [80, 95])
    assert calibration.margins[80] == pytest.approx(np.full((3, 1), 2.0 * 1.2816), rel=0.05)
    fresh = rng.normal(0.0, 2.0, (4000, 3, 1))
    bands = calibration.bounds(np.zeros((4000, 3, 1, 1)), 0)
    assert coverage(*bands[80], fresh) == pytest.approx(0.80, abs=0.02)
    assert coverage(*bands[95], fresh) == pytest.approx(0.95, abs=0.01)
    assert Calibration.from_dict(json.loads(json.dumps(calibration.to_dict()))).to_dict() == calibration.to_dict()


def test_cqr_widens_quantiles_that_are_too_narrow():
    rng = np.random.default_rng(0)
    narrow = np.broadcast_to(np.array([-0.5, 0.0, 0.5]), (4000, 2, 1, 3))  # a 10/50/90 band of half the width
    calibration = fit_calibration(narrow, rng.normal(0.0, 1.0, (4000, 2, 1)), [0.1, 0.5, 0.9], 1, [80])
    lower, upper = calibration.bounds(narrow, 1)[80]
    assert calibration.method == "cqr"
    assert coverage(lower, upper, rng.normal(0.0, 1.0, (4000, 2, 1))) == pytest.approx(0.80, abs=0.02)


def test_msis_and_pinball_on_hand_computed_examples():
    actual = np.array([[[1.0], [5.0]]])  # [N=1, H=2, T=1]
    lower, upper = np.array([[[0.0], [0.0]]]), np.array([[[2.0], [4.0]]])
    # step 1 inside: width 2; step 2 above by 1: width 4 + 2 / 0.05 * 1 = 44; mean 23, scaled by 2.
    assert msis(lower, upper, actual, np.array([[2.0]])) == pytest.approx(11.5)
    assert pinball(np.array([2.0]), np.array([1.0]), 0.9) == pytest.approx(0.1)
    assert pinball(np.array([0.0]), np.array([1.0]), 0.9) == pytest.approx(0.9)
