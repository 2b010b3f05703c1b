"""Faults caused for real: a `forecaster train` process killed with SIGKILL or stopped with SIGTERM mid-training,
then resumed from the command line. Nothing finished is lost, the exit code says what happened, and the resumed
training ends where an uninterrupted one does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import shrink_config, start_cli
from mlflow import MlflowClient

from forecaster.config import dump_config
from forecaster.tracking import tracking_uri

pytestmark = pytest.mark.slow  # CLI processes that import torch and MLflow and train for a few seconds

EPOCHS = 12


def write_config(tmp_path: Path, name: str) -> tuple[Path, object]:
    """A training long enough to be caught mid-way (12 epochs of 25 batches, no early stop), in its own store."""
    config = shrink_config("demo-lstm.yaml", tmp_path / name, **{
        "train.max_epochs": EPOCHS, "train.limit_train_batches": 25, "train.patience": 0, "model.dropout": 0.2,
        "tracking.experiment": "interrupt"})
    path = tmp_path / f"{name}.yaml"
    path.write_text(dump_config(config))
    return path, config


def checkpoints(config) -> list[Path]:
    return list((Path(config.tracking.state_dir) / "checkpoints" / "interrupt").glob("*/*/last.ckpt"))


def interrupt_after_two_epochs(process: subprocess.Popen, config, signum: int) -> int:
    """Send `signum` once this process's checkpoint holds epoch 2 or later; the epoch it then holds."""
    earlier = set(checkpoints(config))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        found = [path for path in checkpoints(config) if path not in earlier]
        if found and torch.load(found[0], weights_only=True)["epoch"] >= 1:
            process.send_signal(signum)
            process.wait(timeout=60)
            return torch.load(found[0], weights_only=True)["epoch"]
        time.sleep(0.05)
    pytest.fail(f"the training ended or hung before it could be interrupted: {process.communicate()}")


def weights(config, result: dict) -> dict[str, torch.Tensor]:
    """The saved model's weights: each training keeps its model in the checkpoint folder named by its run."""
    [path] = (Path(config.tracking.state_dir) / "checkpoints" / "interrupt").glob(f"*/{result['run_id']}/model")
    return torch.load(path / "weights.pt", weights_only=True)


def run_to_end(*args: str) -> dict:
    process = start_cli(*args, "--json")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path, config = write_config(tmp_path_factory.mktemp("whole"), "whole")
    return config, run_to_end("train", str(path))


def test_kill_9_mid_training_then_resume_ends_with_the_weights_of_an_uninterrupted_training(tmp_path, uninterrupted):
    path, config = write_config(tmp_path, "killed")
    process = start_cli("train", str(path))
    epoch = interrupt_after_two_epochs(process, config, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL and epoch < EPOCHS - 1, "the kill came after the training ended"

    resumed = run_to_end("train", str(path), "--resume")
    whole_config, whole = uninterrupted
    expected, got = weights(whole_config, whole), weights(config, resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["mse"] == pytest.approx(whole["mse"], rel=1e-6)


def test_kill_9_after_a_ridge_start_no_epoch_beat_keeps_that_start_through_the_resume(tmp_path):
    """A network started at the ridge fit whose epochs all do worse (a learning rate far past stability): the start
    scored before the first epoch is the best weights. Killed mid-way and resumed, the training must still end on
    that start, as the uninterrupted one does, and not on the least bad epoch after the resume."""
    ridge = {"model.linear_skip": True, "model.skip_start": "ridge", "train.lr": 5.0,
             "train.gradient_clip_val": None}

    def write(name):
        path, config = write_config(tmp_path, name)
        config = config.with_overrides(ridge)
        path.write_text(dump_config(config))
        return path, config

    whole_path, whole_config = write("whole")
    whole = run_to_end("train", str(whole_path))
    path, config = write("killed")
    process = start_cli("train", str(path))
    epoch = interrupt_after_two_epochs(process, config, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL and epoch < EPOCHS - 1, "the kill came after the training ended"

    resumed = run_to_end("train", str(path), "--resume")
    assert whole["best_epoch"] == resumed["best_epoch"] == -1
    expected, got = weights(whole_config, whole), weights(config, resumed)
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert resumed["mse"] == pytest.approx(whole["mse"], rel=1e-6)


def test_sigterm_exits_143_marks_the_run_killed_and_resume_finishes_that_same_run(tmp_path):
    path, config = write_config(tmp_path, "terminated")
    process = start_cli("train", str(path))
    epoch = interrupt_after_two_epochs(process, config, signal.SIGTERM)
    err = process.stderr.read()
    assert process.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGTERM: kept ") and "--resume" in last, err
    assert f"checkpoint of epoch {epoch + 1}" in last or f"checkpoint of epoch {epoch + 2}" in last, last
    client = MlflowClient(tracking_uri(config.tracking))
    [run] = client.search_runs([client.get_experiment_by_name("interrupt").experiment_id])
    assert run.info.status == "KILLED"

    resumed = run_to_end("train", str(path), "--resume")
    assert resumed["run_id"] == run.info.run_id
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == EPOCHS - 1  # each epoch once, across both processes


def test_resume_after_a_newer_training_of_other_values_was_killed_continues_that_training(tmp_path):
    """Two trainings of one model in one store keep separate checkpoints: resuming with the second's values
    continues the second, never the first's finished checkpoint."""
    path, config = write_config(tmp_path, "two")
    first = run_to_end("train", str(path), "--set", "train.max_epochs=2")
    second = start_cli("train", str(path), "--set", "train.lr=0.002")
    interrupt_after_two_epochs(second, config, signal.SIGKILL)
    resumed = run_to_end("train", str(path), "--set", "train.lr=0.002", "--resume")
    assert resumed["run_id"] != first["run_id"]
    assert len(checkpoints(config)) == 2
    refused = start_cli("train", str(path), "--set", "train.lr=0.005", "--resume")
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "train.lr" in err and "0.002" in err, err


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    from helpers import free_port, wait_for

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(f"http://127.0.0.1:{port}/health", process)
    return process, f"http://127.0.0.1:{port}"


def test_a_tracking_server_killed_mid_training_costs_no_model(tmp_path):
    """The server dies after the first epoch: the training goes on to its end, its model is saved, the epochs'
    metrics are kept beside it, and the job ends in one line and exit 2, within a minute, not after minutes of
    retries."""
    from helpers import stop

    server, uri = start_server(tmp_path / "server")
    path, config = write_config(tmp_path, "outage")
    path.write_text(dump_config(config.with_overrides({"tracking.uri": uri})))
    try:
        process = start_cli("train", str(path))
        deadline = time.monotonic() + 180
        while not checkpoints(config) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        stop(server)
        interrupt = time.monotonic()
        _, err = process.communicate(timeout=240)
    finally:
        stop(server)
    assert process.returncode == 2, err
    assert time.monotonic() - interrupt < 120
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lstm: training finished") and "The trained model is saved in" in last, err
    [model] = (Path(config.tracking.state_dir) / "checkpoints" / "interrupt" / "lstm").glob("*/model")
    assert (model / "bundle.json").is_file() and (model / "weights.pt").is_file()
    unlogged = model.parent / "unlogged-metrics.jsonl"
    assert str(unlogged) in last
    steps = {json.loads(line)["step"] for line in unlogged.read_text().splitlines()}
    assert max(steps) == EPOCHS - 1  # the training ran to its last epoch


def test_an_unreachable_tracking_server_is_one_line_and_exit_2_at_once(tmp_path):
    from helpers import free_port

    path, config = write_config(tmp_path, "unreachable")
    path.write_text(dump_config(config.with_overrides({"tracking.uri": f"http://127.0.0.1:{free_port()}"})))
    started = time.monotonic()
    process = start_cli("train", str(path))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: tracking.uri: no tracking server answers"), err
    assert time.monotonic() - started < 60


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB file system, filled up; skipped where mounting one is not allowed (not root, no tmpfs)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        with open(mount / "filler", "wb") as handle:  # leave a few KiB: less than a forecast file needs
            handle.write(b"x" * (64 * 1024 - 8 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_exit_2_and_leaves_no_partial_output(tmp_path, full_disk):
    from helpers import DEMO_CSV, train_and_register

    store = train_and_register(tmp_path / "store", kind="seasonal_naive")
    config_file = tmp_path / "predict.yaml"
    config_file.write_text(dump_config(store.config))
    process = start_cli("predict", str(config_file), "--data", str(DEMO_CSV), "--output", str(full_disk / "out"))
    _, err = process.communicate(timeout=180)
    assert process.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith("error: no space left on the device"), err
    left = sorted(path.name for path in (full_disk / "out").iterdir()) if (full_disk / "out").exists() else []
    assert not [name for name in left if name.startswith("forecast_")], left


def test_compare_killed_mid_way_resumes_keeping_its_finished_candidates(tmp_path):
    """kill -9 while the GRU trains, after the baselines finished: `compare --resume` continues the same parent
    run, keeps the baselines' runs and models (no second run of them), trains the GRU again, and ends with the
    leaderboard an uninterrupted comparison of the same config gives."""
    overrides = {"compare.models": ["naive", "seasonal_naive", "linear", "gru"], "compare.ensemble": False,
                 "compare.refit": False, "model.hidden_size": 16}
    path, config = write_config(tmp_path, "killed")
    config = config.with_overrides(overrides)
    path.write_text(dump_config(config))
    whole_path, whole_config = write_config(tmp_path, "whole")
    whole_path.write_text(dump_config(whole_config.with_overrides(overrides)))
    whole = run_to_end("compare", str(whole_path))

    process = start_cli("compare", str(path))
    interrupt_after_two_epochs(process, config, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    resumed = run_to_end("compare", str(path), "--resume")

    client = MlflowClient(tracking_uri(config.tracking))
    experiment = client.get_experiment_by_name("interrupt").experiment_id
    parents = client.search_runs([experiment], filter_string="tags.`forecaster.job` = 'compare'")
    assert [run.info.run_id for run in parents] == [resumed["parent_run_id"]]  # the same parent, continued
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = "
                                                              f"'{resumed['parent_run_id']}'")
    names = sorted(run.data.tags["mlflow.runName"] for run in children)
    assert names == ["gru", "gru", "linear", "naive", "seasonal_naive"]  # the baselines ran once
    assert sorted(run.info.status for run in children if run.data.tags["mlflow.runName"] == "gru") == \
        ["FINISHED", "KILLED"]
    board = {row["model"]: row["val_mase"] for row in resumed["leaderboard"]}
    expected = {row["model"]: row["val_mase"] for row in whole["leaderboard"]}
    assert board.keys() == expected.keys()
    for model, value in expected.items():
        assert board[model] == pytest.approx(value, rel=1e-6), model


def test_tune_killed_during_a_trial_resumes_counting_the_trials_it_finished(tmp_path):
    """kill -9 while a trial trains, after one trial finished: the rerun marks the killed trial failed, keeps the
    finished one, and runs only what is missing for the requested number of trials."""
    import optuna

    from forecaster_pipelines import tune

    path, config = write_config(tmp_path, "tune")
    config = config.with_overrides({"tune.trials": 3, "tune.space": {"hidden_size": [8, 16]}, "tune.prune": False})
    path.write_text(dump_config(config))
    storage, name = tune.storage_url(config), tune.study_name(config)

    def states() -> list[str]:
        try:
            return [t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials]
        except Exception:  # no study or no storage yet
            return []

    process = start_cli("tune", str(path), "-o", str(tmp_path / "tuned.yaml"))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        now = states()
        if now.count("COMPLETE") >= 1 and now.count("RUNNING") == 1:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the tune ended before it could be killed"
    finished = states().count("COMPLETE")

    resumed = run_to_end("tune", str(path), "-o", str(tmp_path / "tuned.yaml"))
    final = states()
    assert final.count("COMPLETE") == 3 and final.count("FAIL") == 1 and "RUNNING" not in final
    assert resumed["completed"] == 3 and resumed["failed"] == 1 and finished >= 1


def test_compare_killed_during_the_refit_resumes_and_registers_the_refit_winner(tmp_path):
    """kill -9 while the winner is refit on every row: every candidate had finished, so `compare --resume` trains
    none of them again; it judges, refits and registers as an uninterrupted comparison would."""
    path, config = write_config(tmp_path, "refit")
    config = config.with_overrides({"compare.models": ["naive", "seasonal_naive", "gru"], "compare.ensemble": False,
                                    "compare.refit": True, "model.hidden_size": 16})
    path.write_text(dump_config(config))
    refits = Path(config.tracking.state_dir) / "checkpoints" / "interrupt" / "gru-refit"
    process = start_cli("compare", str(path))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and not list(refits.glob("*/last.ckpt")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL and list(refits.glob("*/last.ckpt")), "not caught in the refit"

    resumed = run_to_end("compare", str(path), "--resume")
    assert resumed["winner"] == "gru" and resumed["registered_version"] == "1" and resumed["refit_run_id"]
    client = MlflowClient(tracking_uri(config.tracking))
    experiment = client.get_experiment_by_name("interrupt").experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = "
                                                              f"'{resumed['parent_run_id']}'")
    names = sorted((run.data.tags["mlflow.runName"], run.info.status) for run in children)
    assert names == [("gru", "FINISHED"), ("gru-refit", "FINISHED"), ("gru-refit", "KILLED"),
                     ("naive", "FINISHED"), ("seasonal_naive", "FINISHED")]
