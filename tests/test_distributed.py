"""Distributed training as users launch it: `forecaster train --set train.strategy=ddp --set train.devices=2` on
CPU (gloo). Lightning re-runs the command for rank 1; only rank 0 may open an MLflow run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from helpers import shrink_config

from forecaster.config import load_config
from forecaster.tracking import tracking_uri
from forecaster_pipelines import train

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 2
BATCH = 128  # the single process's batch; each of the two DDP ranks takes half, so the optimiser sees the same


def demo_overrides(state_dir: Path, batch_size: int) -> dict:
    """The shrunk demo-lstm config as `--set` overrides, since the DDP run is a command line."""
    shrunk = shrink_config("demo-lstm.yaml", state_dir, **{
        "tracking.experiment": "ddp", "model.hidden_size": 16, "train.max_epochs": EPOCHS,
        "train.batch_size": batch_size, "train.limit_train_batches": None})
    return {key: shrunk.flat()[key] for key in ("data.path", "tracking.state_dir", "tracking.experiment",
                                                "model.hidden_size", "train.max_epochs", "train.batch_size",
                                                "train.progress", "train.threads")}


def steps_in_last_checkpoint(state_dir: Path) -> int:
    [checkpoint] = (state_dir / "checkpoints" / "ddp" / "lstm").glob("*/last.ckpt")  # rank zero's training only
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.slow
def test_two_process_ddp_logs_one_run_shards_windows_and_matches_single_process(tmp_path):
    config_file = REPO_ROOT / "configs" / "demo-lstm.yaml"
    single = train.run(load_config(config_file, demo_overrides(tmp_path / "single", BATCH)))

    ddp_state = tmp_path / "ddp"
    overrides = {**demo_overrides(ddp_state, BATCH // 2), "train.strategy": "ddp", "train.devices": 2,
                 "train.accelerator": "cpu"}
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MLFLOW_TRACKING_URI")}
    command = [sys.executable, "-m", "forecaster_pipelines", "train", str(config_file),
               *[f"--set={key}={value}" for key, value in overrides.items()]]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**env, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1: trained lstm" in done.stdout  # the second process ran the fit and ended cleanly

    ddp_config = load_config(config_file, overrides)
    client = mlflow.MlflowClient(tracking_uri(ddp_config.tracking))
    experiment = client.get_experiment_by_name("ddp")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    ddp_metrics = runs[0].data.metrics
    assert len(client.get_metric_history(runs[0].info.run_id, "val/loss")) == EPOCHS  # epochs logged once each

    # Each rank saw half the training windows per epoch: rank 0 took ceil(N / (batch * 2)) optimiser steps, where
    # a rank that saw every window would take twice as many.
    windows = len(train.prepare_data(ddp_config).train_dataset)
    assert steps_in_last_checkpoint(ddp_state) == EPOCHS * math.ceil(windows / (BATCH // 2 * 2))
    assert steps_in_last_checkpoint(tmp_path / "single") == EPOCHS * math.ceil(windows / BATCH)

    # Same effective batch, same number of updates: the same quality, up to the order the windows came in.
    assert ddp_metrics["test/mse"] == pytest.approx(single.metrics["mse"], rel=0.1)
    assert ddp_metrics["test/mae_original"] == pytest.approx(single.metrics["mae_original"], rel=0.1)


@pytest.mark.parametrize(("env", "devices", "rank"), [
    ({}, 1, 0),
    ({"LOCAL_RANK": "1"}, 2, 1),  # Lightning's ddp launcher re-running the command
    ({"NODE_RANK": "1"}, 4, 4),  # the first process on a second machine, before Lightning launches the others
    ({"RANK": "5", "LOCAL_RANK": "1"}, 4, 5),  # torchrun
    ({"SLURM_PROCID": "3"}, 4, 3),  # srun, one task per device
    ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, 2, 1),  # Lightning launching rank 1 inside a one-task SLURM job
])
def test_global_rank_from_the_launchers_environment(monkeypatch, env, devices, rank):
    from forecaster.training.fit import global_rank

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert global_rank(devices) == rank


def test_spawning_strategies_are_refused_with_the_one_to_use(tmp_path):
    from forecaster.errors import TrainingError
    from forecaster.training.fit import fit_network

    config = load_config(REPO_ROOT / "configs" / "demo-lstm.yaml", {"train.strategy": "ddp_spawn"})
    with pytest.raises(TrainingError, match="use train.strategy=ddp"):
        fit_network(config, datamodule=None, checkpoint_dir=tmp_path)
