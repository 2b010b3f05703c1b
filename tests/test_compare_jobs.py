"""`compare.jobs`: networks trained in worker processes give the leaderboard of a serial comparison, the parent
alone writes to MLflow, and a worker or parent killed for real costs nothing that `compare --resume` cannot finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import shrink_config, start_cli
from mlflow import MlflowClient

from forecaster.config import dump_config
from forecaster.tracking import tracking_uri
from forecaster_pipelines import compare_jobs

MODELS = ["rnn", "gru", "seasonal_naive", "linear"]


def config_for(state: Path, jobs, **overrides):
    return shrink_config("demo.yaml", state, **{"compare.models": MODELS, "compare.jobs": jobs,
                                                "tracking.experiment": "jobs", **overrides})


@pytest.mark.slow
def test_worker_processes_give_the_leaderboard_of_a_serial_comparison(tmp_path, monkeypatch):
    from forecaster_pipelines import compare

    monkeypatch.chdir(tmp_path)  # where an MLflow client without a URI would create a store
    serial = compare.run(config_for(tmp_path / "serial", 1))
    config = config_for(tmp_path / "parallel", 2)
    parallel = compare.run(config)

    scores = [column for column in serial.leaderboard.columns if column.startswith(("val_", "test_"))]
    assert list(parallel.leaderboard["model"]) == list(serial.leaderboard["model"])
    assert parallel.leaderboard[scores].equals(serial.leaderboard[scores])  # same seed, same threads: same bits
    assert parallel.winner == serial.winner and parallel.registered_version == "1"

    client = MlflowClient(tracking_uri(config.tracking))
    serial_client = MlflowClient(tracking_uri(config_for(tmp_path / "serial", 1).tracking))
    for name in ("rnn", "gru"):
        [run] = [r for r in parallel.results if r.name == name]
        [alone] = [r for r in serial.results if r.name == name]
        logged = client.get_run(run.run_id)
        assert logged.info.status == "FINISHED"
        assert logged.data.tags["mlflow.parentRunId"] == parallel.parent_run_id
        assert logged.data.tags["mlflow.runName"] == name
        for key in ("train/loss", "val/loss", "train/grad_norm"):  # each epoch's, kept by the worker, logged here
            history = [(m.step, m.value) for m in client.get_metric_history(run.run_id, key)]
            assert history == [(m.step, m.value) for m in serial_client.get_metric_history(alone.run_id, key)]
            assert [step for step, _ in history] == list(range(run.epochs_run))
        assert not list(Path(run.model_dir).parent.glob("unlogged-*"))
    # The winner is the ensemble of linear and gru; its networks' refits on every row train in the workers too.
    assert parallel.winner == "ensemble"
    refits = {store: {run.data.tags["mlflow.runName"]: run for run in store_client.search_runs(
        [store_client.get_experiment_by_name("jobs").experiment_id], "tags.`forecaster.role` = 'refit'")}
        for store, store_client in (("serial", serial_client), ("parallel", client))}
    assert sorted(refits["parallel"]) == ["ensemble-refit", "gru-refit", "linear-refit"]
    assert [m.value for m in client.get_metric_history(refits["parallel"]["gru-refit"].info.run_id, "train/loss")] == \
        [m.value for m in serial_client.get_metric_history(refits["serial"]["gru-refit"].info.run_id, "train/loss")]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_plan_trains_one_after_another_unless_parallel_work_can_pay(tmp_path, monkeypatch):
    import forecaster.runtime as runtime

    config = config_for(tmp_path, "auto")
    assert compare_jobs.plan(config, 1)[0] == 1  # no second network to train beside the first
    assert compare_jobs.plan(config.with_overrides({"compare.time_budget": 5}), 3)[0] == 1
    with monkeypatch.context() as patched:  # numbers given for both: the machine is not sampled
        patched.setattr(runtime, "choose_threads", lambda: pytest.fail("sampled the cores"))
        jobs, threads, _ = compare_jobs.plan(config.with_overrides({"compare.jobs": 4}), 3)
        assert compare_jobs.plan(config.with_overrides({"compare.jobs": 1}), 3)[0] == 1
    assert (jobs, threads) == (3, 1)  # never more workers than networks; train.threads as set
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        assert compare_jobs.plan(config, 3)[0] == 1  # auto: one core allowed, no room for a second worker
    finally:
        os.sched_setaffinity(0, cpus)


def workers_of(pid: int) -> list[int]:
    """The spawned worker processes among `pid`'s children (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if "spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")]


def training_started(config, process: subprocess.Popen) -> list[int]:
    """Once a worker's checkpoint exists (it trains), the worker processes of `process`."""
    folder = Path(config.tracking.state_dir) / "checkpoints" / "jobs"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if list(folder.glob("*/*/last.ckpt")) and (pids := workers_of(process.pid)):
            return pids
        time.sleep(0.05)
    pytest.fail(f"the comparison ended or hung before its workers trained: {process.communicate()}")


def long_config(tmp_path: Path, name: str) -> tuple[Path, object]:
    config = config_for(tmp_path / name, 2, **{"train.max_epochs": 30, "train.limit_train_batches": 20,
                                               "train.patience": 0, "compare.refit": False})
    path = tmp_path / f"{name}.yaml"
    path.write_text(dump_config(config))
    return path, config


def resume_to_end(path: Path) -> dict:
    process = start_cli("compare", str(path), "--resume", "--json")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_worker_killed_mid_training_fails_the_comparison_and_resume_finishes_it(tmp_path):
    path, config = long_config(tmp_path, "worker")
    process = start_cli("compare", str(path))
    victim = training_started(config, process)[0]
    os.kill(victim, signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert "compare worker process stopped" in err and "forecaster compare --resume" in err
    runs = MlflowClient(tracking_uri(config.tracking)).search_runs(
        [MlflowClient(tracking_uri(config.tracking)).get_experiment_by_name("jobs").experiment_id])
    assert "RUNNING" not in {run.info.status for run in runs}  # every run ended: FAILED or KILLED

    resumed = resume_to_end(path)
    assert {row["model"] for row in resumed["leaderboard"]} >= set(MODELS)


@pytest.mark.slow
def test_kill_9_of_the_comparison_stops_its_workers_too(tmp_path):
    path, config = long_config(tmp_path, "parent")
    process = start_cli("compare", str(path))
    pids = training_started(config, process)
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
        time.sleep(0.1)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]  # no orphan trains on


@pytest.mark.slow
def test_sigterm_stops_the_workers_ends_every_run_and_exits_143(tmp_path):
    """SIGTERM reaches the parent while it waits for a worker: the workers are killed (not asked: Lightning catches
    SIGTERM inside a fit, and a worker that survived it would keep `compare` waiting forever), every run ends
    KILLED, and the one line says what to run."""
    path, config = long_config(tmp_path, "sigterm")
    process = start_cli("compare", str(path))
    pids = training_started(config, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGTERM: kept every finished candidate's run and model"), err
    assert "--resume" in last
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    client = MlflowClient(tracking_uri(config.tracking))
    runs = client.search_runs([client.get_experiment_by_name("jobs").experiment_id])
    assert {run.data.tags["mlflow.runName"]: run.info.status for run in runs if run.info.status != "FINISHED"} == {
        "compare": "KILLED", "rnn": "KILLED", "gru": "KILLED"}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
