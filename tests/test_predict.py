"""Batch prediction end to end: a real MLflow store, a registered model, the demo file, files on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import DEMO_CSV, REPO_ROOT, Store, train_and_register

from forecaster.errors import ConfigError, DataError, ModelError
from forecaster.mlflow_model.resolve import resolve_model
from forecaster.tracking import file_fingerprint, setup_tracking
from forecaster_pipelines import predict

SERIES = ["site_a", "site_b", "site_c", "site_d"]
HORIZON = 24
METADATA = ["model_uri", "model_version", "source_run_id", "forecast_origin", "created_at"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return train_and_register(tmp_path_factory.mktemp("store"), kind="naive")


def predict_config(store: Store, tmp_path: Path, **settings):
    return store.config.with_overrides({"predict.output": str(tmp_path / "out"),
                                        **{f"predict.{key}": value for key, value in settings.items()}})


def test_predict_from_a_registered_alias(store, tmp_path):
    result = predict.run(predict_config(store, tmp_path))

    assert result.status == predict.WRITTEN
    assert result.paths.forecast.name == f"forecast_demo-v{store.version}_20240330T230000.csv"
    frame = pd.read_csv(result.paths.forecast, parse_dates=["timestamp", "forecast_origin"])
    assert list(frame.columns) == ["series_id", "target", "timestamp", "step", "forecast", "forecast_lo_80",
                                   "forecast_hi_80", *METADATA]
    assert len(frame) == result.rows == len(SERIES) * HORIZON
    assert sorted(frame["series_id"].unique()) == SERIES
    assert frame.groupby("series_id")["step"].apply(list).map(lambda steps: steps == list(range(1, 25))).all()
    assert (frame["timestamp"] == frame["forecast_origin"] + pd.to_timedelta(frame["step"], unit="h")).all()
    assert set(frame["model_uri"]) == {"models:/demo@champion"}
    assert set(frame["model_version"].astype(str)) == {store.version}
    assert set(frame["source_run_id"]) == {store.run_id}

    history = pd.read_csv(DEMO_CSV, parse_dates=["timestamp"])
    last = history.sort_values("timestamp").groupby("series_id").last()
    forecast = frame.groupby("series_id").first()  # naive: every step repeats the last value, in original units
    np.testing.assert_allclose(forecast["forecast"], last.loc[forecast.index, "load"], rtol=1e-5)
    assert (forecast["forecast_origin"] == last.loc[forecast.index, "timestamp"]).all()

    manifest = json.loads(result.paths.manifest.read_text())
    assert manifest["input"]["sha256"] == file_fingerprint(DEMO_CSV)["sha256"]
    assert manifest["model"]["version"] == store.version
    assert manifest["model"]["source_run_id"] == store.run_id
    assert manifest["counts"] == {"rows": 96, "series": 4, "skipped": 0}
    assert set(manifest["timings_s"]) == {"load_model_s", "read_s", "predict_s"}
    assert manifest["output"]["write_s"] > 0 and manifest["output"]["file"] == result.paths.forecast.name
    assert sorted(p.name for p in result.paths.forecast.parent.iterdir()) == sorted(
        [result.paths.forecast.name, result.paths.manifest.name])

    batch = mlflow.get_run(result.run_id)
    assert mlflow.get_experiment(batch.info.experiment_id).name == "test-predictions"
    assert batch.data.params["model_version"] == store.version
    assert batch.data.metrics["rows"] == 96 and batch.data.metrics["series"] == 4
    assert batch.data.tags["forecaster.output"] == result.paths.forecast.name
    state_dir = Path(store.config.tracking.state_dir).resolve()
    assert batch.info.artifact_uri.startswith(state_dir.as_uri())  # the embedded store keeps it all in one place
    summary = result.summary()
    assert json.loads(json.dumps(summary))["output"] == str(result.paths.forecast)
    assert summary["run_id"] == result.run_id and summary["forecasts_per_s"] > 0


def test_a_rerun_writes_nothing_unless_asked_to_overwrite(store, tmp_path):
    first = predict.run(predict_config(store, tmp_path))
    written = first.paths.forecast.read_bytes()

    again = predict.run(predict_config(store, tmp_path))
    assert again.status == predict.SKIPPED_EXISTING
    assert again.run_id == first.run_id and again.paths == first.paths
    assert first.paths.forecast.read_bytes() == written
    assert "--overwrite" in predict.format_result(again)

    replaced = predict.run(predict_config(store, tmp_path, overwrite=True))
    assert replaced.status == predict.WRITTEN and replaced.run_id != first.run_id
    assert json.loads(first.paths.manifest.read_text())["batch_run_id"] == replaced.run_id


def test_a_rerun_on_changed_input_says_so(store, tmp_path):
    predict.run(predict_config(store, tmp_path))
    changed = tmp_path / "changed.csv"
    changed.write_text(DEMO_CSV.read_text().replace("site_a,1", "site_a,2", 1))

    again = predict.run(predict_config(store, tmp_path, data=str(changed)))
    assert again.status == predict.SKIPPED_EXISTING and again.input_changed
    assert "input file differs" in predict.format_result(again)


def test_parquet_output_keeps_types(store, tmp_path):
    result = predict.run(predict_config(store, tmp_path, format="parquet"))
    frame = pd.read_parquet(result.paths.forecast)
    assert result.paths.forecast.suffix == ".parquet" and len(frame) == 96
    assert pd.api.types.is_datetime64_any_dtype(frame["timestamp"])
    assert pd.api.types.is_datetime64_any_dtype(frame["forecast_origin"])
    assert str(frame["created_at"].dt.tz) == "UTC"


def test_every_kind_of_model_uri_finds_the_same_model(store, tmp_path):
    setup_tracking(store.config.tracking)
    model_folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=store.model_uri, dst_path=str(tmp_path)))
    expected = {  # uri -> (name, version, run_id, file label)
        "models:/demo@champion": ("demo", store.version, store.run_id, f"demo-v{store.version}"),
        f"models:/demo/{store.version}": ("demo", store.version, store.run_id, f"demo-v{store.version}"),
        store.model_uri: (None, None, store.run_id, store.model_uri.removeprefix("models:/")),
        f"runs:/{store.run_id}/model": (None, None, store.run_id, f"run-{store.run_id}"),
        str(model_folder): (None, None, None, None),
        str(model_folder / "artifacts" / "bundle"): (None, None, None, None),
    }
    local_labels = set()
    for uri, (name, version, run_id, label) in expected.items():
        model = resolve_model(uri)
        assert (model.name, model.version, model.run_id) == (name, version, run_id), uri
        assert model.bundle.kind == "naive" and model.bundle.horizon == HORIZON
        if label is None:
            local_labels.add(model.label)
        else:
            assert model.label == label
    assert len(local_labels) == 1 and local_labels.pop().startswith("local-")  # same bundle, same label


@pytest.mark.parametrize("uri, problem, remedy", [
    ("models:/nope@champion", "'nope' is not a registered model", "forecaster compare CONFIG"),
    ("models:/demo@staging", "has no version with alias @staging", "forecaster compare CONFIG"),
    ("models:/demo/99", "has no version 99", "forecaster compare CONFIG"),
    ("models:/m-0123456789abcdef", "no logged model", "forecaster ui"),
    ("runs:/0123456789abcdef/model", "no run 0123456789abcdef", "forecaster ui"),
    ("models:/demo", "not understood", "expected models:/NAME@ALIAS"),
    ("s3://bucket/model", "unsupported URI scheme", "expected models:/NAME@ALIAS"),
    ("no/such/folder", "no such folder", "forecaster compare"),
])
def test_a_missing_model_says_what_is_wrong_and_what_to_do(store, tmp_path, uri, problem, remedy):
    with pytest.raises(ModelError, match=problem) as error:
        predict.run(predict_config(store, tmp_path, model=uri))
    assert remedy in str(error.value)
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_model_is_refused(store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="neither a bundle folder"):
        resolve_model(str(tmp_path / "empty"))


def _demo() -> pd.DataFrame:
    return pd.read_csv(DEMO_CSV)


def _short_site_b(frame):
    return pd.concat([frame[frame.series_id != "site_b"], frame[frame.series_id == "site_b"].tail(10)])


BAD_INPUTS = {
    "missing column": (lambda f: f.drop(columns=["temperature"]), "temperature"),
    "short series": (_short_site_b, "site_b"),
    "duplicate timestamp": (lambda f: pd.concat([f, f.iloc[[5]]]), "site_a"),
    "text in a number column": (lambda f: f.assign(load=f["load"].astype(object).where(f.index != 100, "12,5")),
                                "12,5"),
    "coarser frequency": (lambda f: f.iloc[::2], "'2h'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_with_its_message_and_writes_nothing(store, tmp_path, case):
    change, expected = BAD_INPUTS[case]
    bad = tmp_path / "bad.csv"
    change(_demo()).to_csv(bad, index=False)
    with pytest.raises(DataError, match=expected):
        predict.run(predict_config(store, tmp_path, data=str(bad)))
    assert not (tmp_path / "out").exists()


def test_skip_bad_series_forecasts_the_rest_and_reports_it(store, tmp_path):
    bad = tmp_path / "bad.csv"
    _short_site_b(_demo()).to_csv(bad, index=False)
    result = predict.run(predict_config(store, tmp_path, data=str(bad), skip_bad_series=True))

    assert list(result.skipped) == ["site_b"] and "72" in result.skipped["site_b"]
    assert sorted(pd.read_csv(result.paths.forecast)["series_id"].unique()) == ["site_a", "site_c", "site_d"]
    manifest = json.loads(result.paths.manifest.read_text())
    assert manifest["skipped_series"] == result.skipped and manifest["counts"]["skipped"] == 1
    assert "skipped 1 series" in predict.format_result(result) and "site_b" in predict.format_result(result)


@pytest.mark.parametrize("settings, expected", [
    ({"model": None}, "predict.model"),
    ({"data": None}, "predict.data"),
    ({"engine": "spark", "format": "csv"}, "--format parquet"),
])
def test_incomplete_settings_are_config_errors(store, tmp_path, settings, expected):
    with pytest.raises(ConfigError, match=expected):
        predict.run(predict_config(store, tmp_path, **settings))


@pytest.mark.slow  # two CLI processes, each importing torch and MLflow
def test_the_cli_prints_one_json_line_and_exits_2_on_bad_input(store, tmp_path):
    env_config = tmp_path / "config.yaml"
    env_config.write_text(f"tracking:\n  state_dir: {store.config.tracking.state_dir}\n  experiment: test\n")
    command = [sys.executable, "-m", "forecaster_pipelines", "predict", str(env_config), "--model", "models:/demo@champion",
               "--output", str(tmp_path / "out"), "--json"]

    done = subprocess.run([*command, "--data", str(DEMO_CSV)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "written" and summary["rows"] == 96 and Path(summary["output"]).is_file()

    bad = tmp_path / "bad.csv"
    _short_site_b(_demo()).to_csv(bad, index=False)
    failed = subprocess.run([*command, "--data", str(bad), "--overwrite"], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: ") and "site_b" in failed.stderr and "Traceback" not in failed.stderr


def test_a_quantile_network_writes_interval_bounds(tmp_path):
    store = train_and_register(tmp_path / "store", kind="network",
                               overrides={"model.loss": "quantile", "model.hidden_size": 8})
    result = predict.run(predict_config(store, tmp_path))
    frame = pd.read_csv(result.paths.forecast)
    assert {"forecast_q10", "forecast_q50", "forecast_q90"} <= set(frame.columns)
    np.testing.assert_allclose(frame["forecast"], frame["forecast_q50"])
    assert frame[["forecast_q10", "forecast_q90"]].notna().all().all()
    assert json.loads(result.paths.manifest.read_text())["model"]["quantiles"] == [0.1, 0.5, 0.9]


def test_a_segment_network_comes_back_from_its_bundle_and_forecasts(tmp_path):
    """A non-default segment length must travel with the model: rebuilt with another, the weights would not load."""
    store = train_and_register(tmp_path / "store", kind="network",
                               overrides={"model.strategy": "segment", "model.segment_length": 5,
                                          "model.hidden_size": 8, "model.num_layers": 1})
    result = predict.run(predict_config(store, tmp_path))
    frame = pd.read_csv(result.paths.forecast)
    horizon = store.config.window.horizon
    assert frame.groupby("series_id").size().eq(horizon).all()
    assert np.isfinite(frame["forecast"]).all()
