"""MLflow: run records, nesting, metric histories, artifacts, the registry alias, and the pyfunc model,
against the embedded SQLite store and against a real `mlflow server`."""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import free_port, stop, wait_for
from mlflow import MlflowClient

from forecaster.bundle import ModelBundle
from forecaster.tracking import tracking_uri
from forecaster_pipelines import compare, train

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def compared(tmp_path_factory, shrink):
    tmp_path = tmp_path_factory.mktemp("compare")
    config = shrink("demo.yaml", tmp_path / "state", **{"compare.models": ["gru", "naive", "seasonal_naive"]})
    return config, compare.run(config)


def test_compare_nests_one_child_run_per_model_under_a_parent(compared):
    config, result = compared
    client = MlflowClient(tracking_uri(config.tracking), registry_uri=tracking_uri(config.tracking))
    children = client.search_runs(
        [client.get_experiment_by_name(config.tracking.experiment).experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    candidates = [run for run in children if run.data.tags.get("forecaster.role") != "refit"]
    assert sorted(run.data.tags["forecaster.model"] for run in candidates) == \
        ["ensemble", "gru", "naive", "seasonal_naive"]  # the ensemble: the best of them combined, one more run
    assert all(run.info.status == "FINISHED" for run in children)
    ensemble = next(run for run in candidates if run.data.tags["forecaster.model"] == "ensemble")
    members = ensemble.data.tags["forecaster.members"].split(",")
    assert len(members) >= 2 and set(members) <= {"gru", "naive", "seasonal_naive"}
    refits = [run for run in children if run.data.tags.get("forecaster.role") == "refit"]
    # A refit run only for a winner that is deployed; an ensemble refits each member, then combines them.
    expected = 0 if not result.alias_moved else 1 + len(members) if result.winner == "ensemble" else 1
    assert len(refits) == expected
    assert list(result.leaderboard[result.metric]) == sorted(result.leaderboard[result.metric])


def test_per_epoch_metrics_use_the_epoch_as_step(compared):
    config, result = compared
    client = MlflowClient(tracking_uri(config.tracking), registry_uri=tracking_uri(config.tracking))
    gru = next(r for r in result.results if r.name == "gru")
    for key in ("val/loss", "train/loss", "train/grad_norm", "train/clipped_share", "train/lr"):
        history = client.get_metric_history(gru.run_id, key)
        assert [m.step for m in history] == [0, 1], key
    run = client.get_run(gru.run_id)
    assert run.data.params["model.cell"] == "gru" and run.data.params["window.lookback"] == "72"
    assert "test/mse" in run.data.metrics and "test/mase" in run.data.metrics
    assert run.data.tags["data.sha256"] and int(run.data.tags["data.series"]) >= 3


def test_runs_hold_config_plots_report_and_model(compared):
    config, result = compared
    gru = next(r for r in result.results if r.name == "gru")
    artifacts = mlflow.artifacts.download_artifacts(run_id=gru.run_id, tracking_uri=tracking_uri(config.tracking))
    names = {str(p.relative_to(artifacts)) for p in __import__("pathlib").Path(artifacts).rglob("*") if p.is_file()}
    assert {"config.yaml", "data/fingerprint.json", "data/validation_report.txt", "error_by_step.json",
            "plots/error_by_step.png"} <= names
    assert any(name.startswith("plots/forecast_") for name in names)
    parent = mlflow.artifacts.download_artifacts(run_id=result.parent_run_id,
                                                 tracking_uri=tracking_uri(config.tracking))
    assert os.path.isfile(os.path.join(parent, "leaderboard.csv"))
    assert os.path.isfile(os.path.join(parent, "plots", "leaderboard.png"))


def test_alias_stays_when_only_baselines_compete(tmp_path, shrink):
    config = shrink("demo.yaml", tmp_path / "state", **{"compare.models": ["seasonal_naive", "naive"],
                                                         "compare.ensemble": False})  # their mean would beat it
    result = compare.run(config)
    assert not result.alias_moved and result.registered_version is None
    with pytest.raises(mlflow.exceptions.MlflowException):
        MlflowClient(tracking_uri(config.tracking), registry_uri=tracking_uri(config.tracking)).get_model_version_by_alias(config.registry.name, "champion")


def test_pyfunc_model_predicts_like_the_bundle_and_loads_without_pickles(compared, repo_root, monkeypatch):
    config, result = compared
    gru = next(r for r in result.results if r.name == "gru")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(config.tracking))  # restored after the test
    mlflow.set_tracking_uri(tracking_uri(config.tracking))
    history = pd.read_csv(repo_root / "data" / "demo.csv")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model(gru.model_uri)
    served = model.predict(history)
    local = mlflow.artifacts.download_artifacts(artifact_uri=gru.model_uri)
    direct = ModelBundle.load(os.path.join(local, "artifacts", "bundle")).predict(history).frame
    assert len(served) == history["series_id"].nunique() * config.window.horizon
    np.testing.assert_allclose(served["forecast"].to_numpy(), direct["forecast"].to_numpy(), rtol=1e-6)
    assert set(served["series_id"]) == set(history["series_id"])


def test_training_against_a_real_tracking_server(mlflow_server, tmp_path, repo_root, shrink, monkeypatch):
    config = shrink("demo-lstm.yaml", tmp_path / "state", **{"tracking.uri": mlflow_server})
    result = train.run(config)
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(result.run_id, "val/loss")] == [0, 1]
    assert abs(run.data.metrics["test/mse"] - result.metrics["mse"]) < 1e-9
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # restored after the test
    mlflow.set_tracking_uri(mlflow_server)
    version = mlflow.register_model(result.model_uri, "served").version
    client.set_registered_model_alias("served", "champion", version)
    history = pd.read_csv(repo_root / "data" / "demo.csv")
    forecast = mlflow.pyfunc.load_model("models:/served@champion").predict(history)
    assert np.isfinite(forecast["forecast"]).all()
    assert not (tmp_path / "state" / "mlflow.db").exists()  # nothing written to the embedded store


def test_mlflow_models_serve_round_trip_over_http(compared, repo_root, monkeypatch):
    config, result = compared
    gru = next(r for r in result.results if r.name == "gru")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(config.tracking))  # restored after the test
    mlflow.set_tracking_uri(tracking_uri(config.tracking))
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(config.tracking),
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", gru.model_uri, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=tempfile.TemporaryFile(), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", process, seconds=120)
        history = pd.read_csv(repo_root / "data" / "demo.csv")
        history = history[history["series_id"] == history["series_id"].iloc[0]].tail(200)
        body = json.dumps({"dataframe_split": history.to_dict(orient="split")}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = pd.DataFrame(json.loads(response.read())["predictions"])
        local = mlflow.pyfunc.load_model(gru.model_uri).predict(history)
        for column in ("forecast", "forecast_lo_80", "forecast_hi_80"):
            np.testing.assert_allclose(predictions[column].to_numpy(), local[column].to_numpy(), rtol=1e-5)
    finally:
        stop(process)


def test_forecaster_ui_serves_the_embedded_store(compared, repo_root, tmp_path):
    config, result = compared
    config_file = tmp_path / "ui.yaml"
    config_file.write_text(f"tracking:\n  state_dir: {config.tracking.state_dir}\n  experiment: demo\n")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "forecaster_pipelines", "ui", str(config_file), "--port", str(port)],
        stdout=tempfile.TemporaryFile(), stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process, seconds=120)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={result.parent_run_id}")
        with urllib.request.urlopen(request, timeout=30) as response:
            run = json.loads(response.read())["run"]
        assert run["info"]["run_id"] == result.parent_run_id
    finally:
        stop(process)


def test_a_password_in_the_tracking_uri_reaches_no_file_and_no_output(mlflow_server, tmp_path, shrink,
                                                                       tmp_path_factory):
    """The URI's credentials go to the server (as basic auth) and nowhere else: not into params, tags, the config
    artifact, the model's bundle.json, the store's files or what `train` prints."""
    secret, tune_secret = "s3cret-Pw-7731", "tune-Pw-4409"
    uri = mlflow_server.replace("http://", f"http://alice:{secret}@")
    config = shrink("demo-lstm.yaml", tmp_path / "state", **{
        "tracking.uri": uri, "tune.storage": f"postgresql://bob:{tune_secret}@db.example/optuna"})
    result = train.run(config)
    printed = train.format_result(result) + json.dumps(result.summary())
    run = MlflowClient(mlflow_server).get_run(result.run_id)
    assert run.data.params["tracking.uri"] == mlflow_server.replace("http://", "http://alice:***@")
    assert "bob:***@" in run.data.params["tune.storage"]
    server_roots = list(Path(tmp_path_factory.getbasetemp()).glob("server*"))
    files = [path for root in [tmp_path, *server_roots] for path in root.rglob("*") if path.is_file()]
    assert any(path.name == "bundle.json" for path in files) and any(path.name == "mlflow.db" for path in files)
    for text in (secret, tune_secret):
        assert text not in printed
        leaked = [str(path) for path in files if text.encode() in path.read_bytes()]
        assert not leaked, f"{text} written to {leaked}"


@pytest.mark.parametrize(("uri", "expected"), [
    ("postgresql://bob:p@ss@db:5432/mlflow", "postgresql://bob:***@db:5432/mlflow"),
    ("https://u:pw@host/api?token=abc&page=2", "https://u:***@host/api?token=***&page=2"),
    ("mysql+pymysql://u:pw@h/d?sas=zz", "mysql+pymysql://u:***@h/d?sas=***"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),  # a port is not a password
    ("http://user@host:5000/a@b", "http://user@host:5000/a@b"),
    ("sqlite:////home/me/.forecaster/mlflow.db", "sqlite:////home/me/.forecaster/mlflow.db"),
])
def test_redact_hides_uri_credentials_and_keeps_everything_else(uri, expected):
    from forecaster.tracking import redact

    assert redact(uri) == expected
    assert redact(7) == 7
