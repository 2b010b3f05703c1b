"""How a network computes its forecasts: bfloat16 only where measured accurate and faster, float32 when asked or in
doubt, the choice recorded; the batch size from a memory budget, which changes nothing in the forecasts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import DEMO_CSV, demo_config

from forecaster.bundle import ModelBundle
from forecaster.config import load_config
from forecaster.errors import ConfigError, ModelError
from forecaster.forecasting import forecast
from forecaster.inference import EXAMPLE_WINDOWS, choose_precision, inference_batch_size, window_bytes
from forecaster_pipelines import predict, train

pytestmark = pytest.mark.trains  # a small network trained once per module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small LSTM trained a few batches on the demo file, its bundle folder and the history to forecast from."""
    state = tmp_path_factory.mktemp("precision")
    config = demo_config(state, {"model.hidden_size": 16, "train.limit_train_batches": 5})
    result = train.run(config, kind="network")
    return config, Path(result.model_dir), pd.read_csv(DEMO_CSV)


def fresh(trained) -> ModelBundle:
    return ModelBundle.load(trained[1])


def values(result) -> np.ndarray:
    return result.frame["forecast"].to_numpy()


def bf16_or_skip(bundle, history, **options):
    try:
        return forecast(bundle, history, precision="bf16", **options)
    except ModelError as exc:  # a CPU or torch build without a bfloat16 kernel for the network
        pytest.skip(str(exc))


def test_a_network_bundle_keeps_its_own_example_windows(trained):
    config, folder, _ = trained
    bundle = fresh(trained)
    examples = bundle.examples
    assert (folder / "examples.pt").is_file()
    count = examples["x_past"].shape[0]
    assert 1 < count <= EXAMPLE_WINDOWS and examples["x_future"].shape[0] == count
    assert examples["x_past"].shape[1:] == (config.window.lookback, bundle.dims["n_past_features"])
    assert examples["x_future"].shape[1:] == (config.window.horizon, bundle.dims["n_future_features"])
    assert torch.isfinite(examples["x_past"]).all()
    assert len(torch.unique(examples["x_past"][:, -1, 0])) > 1  # different windows, not one repeated


def test_float32_asked_for_runs_in_float32(trained):
    bundle = fresh(trained)
    result = forecast(bundle, trained[2], precision="32")
    assert result.precision.precision == "32" and result.precision.max_difference is None
    unscaled_fp32 = forecast(fresh(trained), trained[2], precision="32", batch_size=1)
    np.testing.assert_allclose(values(result), values(unscaled_fp32), rtol=1e-5, atol=1e-5)


def test_bfloat16_forecasts_are_close_to_float32_but_not_the_same(trained):
    history = trained[2]
    fp32 = values(forecast(fresh(trained), history, precision="32"))
    result = bf16_or_skip(fresh(trained), history)
    assert result.precision.precision == "bf16" and result.precision.max_difference is not None
    difference = np.abs(values(result) - fp32)
    scale = history["load"].std()
    assert difference.max() > 0  # it did run in bfloat16
    assert difference.max() < 0.05 * scale


def test_auto_keeps_float32_when_bfloat16_misses_the_tolerance(trained, monkeypatch):
    import forecaster.inference as inference

    monkeypatch.setattr(inference, "native_bf16", lambda: True)
    result = forecast(fresh(trained), trained[2], precision="auto", tolerance=0.0)
    assert result.precision.precision == "32"
    assert "differ" in result.precision.reason or "failed" in result.precision.reason
    np.testing.assert_allclose(values(result), values(forecast(fresh(trained), trained[2], precision="32")),
                               rtol=1e-6)


def test_auto_takes_bfloat16_only_on_a_machine_that_computes_it_natively(trained, monkeypatch):
    import forecaster.inference as inference

    bundle = fresh(trained)
    predictor = bundle.predictor
    monkeypatch.setattr(inference, "native_bf16", lambda: False)
    emulated = choose_precision(predictor, bundle.examples, "auto", tolerance=1.0)
    assert emulated.precision == "32" and "native" in emulated.reason
    monkeypatch.setattr(inference, "native_bf16", lambda: True)
    native = choose_precision(predictor, bundle.examples, "auto", tolerance=1.0)
    if "failed" in native.reason:
        pytest.skip(native.reason)
    assert native.precision == "bf16" and native.max_difference <= 1.0 and native.speedup > 0


def test_the_choice_is_measured_once_per_loaded_bundle(trained, monkeypatch):
    import forecaster.inference as inference

    calls = []
    real = inference.choose_precision
    monkeypatch.setattr(inference, "choose_precision", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    bundle = fresh(trained)
    first = forecast(bundle, trained[2])
    second = forecast(bundle, trained[2])
    assert len(calls) == 1 and first.precision is second.precision


def test_a_bundle_saved_before_examples_checks_on_the_windows_it_forecasts(trained, tmp_path, monkeypatch):
    import forecaster.inference as inference

    monkeypatch.setattr(inference, "native_bf16", lambda: True)
    bundle = fresh(trained)
    bundle.examples = None
    bundle.save(tmp_path / "old")
    assert not (tmp_path / "old" / "examples.pt").exists()
    old = ModelBundle.load(tmp_path / "old")
    assert old.examples is None
    result = forecast(old, trained[2], precision="auto", tolerance=1.0)
    assert result.precision.max_difference is not None or "failed" in result.precision.reason


def test_a_baseline_computes_in_float32(tmp_path):
    config = demo_config(tmp_path, {})
    bundle = ModelBundle.load(train.run(config, kind="seasonal_naive").model_dir)
    assert bundle.examples is None
    result = forecast(bundle, pd.read_csv(DEMO_CSV), precision="bf16")
    assert result.precision.precision == "32" and "baseline" in result.precision.reason


def test_the_batch_size_fits_the_memory_budget_and_changes_no_forecast(trained):
    bundle = fresh(trained)
    per_window = window_bytes(bundle)
    for budget in (0.01, 1, 64):
        size = inference_batch_size(bundle, budget)
        assert size == 1 or size * per_window <= budget * 2**20 < (size + 1) * per_window
    assert inference_batch_size(bundle, 64) > inference_batch_size(bundle, 1)
    wider = replace(bundle, network=None)  # a baseline's window costs less than the network's
    assert window_bytes(wider) < per_window
    small = forecast(bundle, trained[2], precision="32", memory_mb=0.001)
    large = forecast(bundle, trained[2], precision="32", memory_mb=1024)
    assert small.batch_size == 1 < large.batch_size
    np.testing.assert_allclose(values(small), values(large), rtol=1e-5, atol=1e-5)


def test_precision_is_a_checked_setting(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  path: data/demo.csv\npredict:\n  precision: 32\n")
    assert load_config(path).predict.precision == "32"
    path.write_text("data:\n  path: data/demo.csv\npredict:\n  precision: fp16\n")
    with pytest.raises(ConfigError, match="precision"):
        load_config(path)


def test_predict_records_the_batch_size_and_precision_in_its_manifest(trained, tmp_path):
    config, folder, _ = trained
    config = config.with_overrides({"predict.model": str(folder), "predict.output": str(tmp_path / "out"),
                                    "predict.memory_mb": 8})
    result = predict.run(config)
    manifest = json.loads(result.paths.manifest.read_text())
    inference = manifest["inference"]
    assert inference["batch_size"] == inference_batch_size(ModelBundle.load(folder), 8)
    assert inference["precision"] in ("32", "bf16") and inference["requested"] == "auto" and inference["reason"]
