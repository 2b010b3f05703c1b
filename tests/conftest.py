"""Shared fixtures: the one way to shrink a config for a test, paths to the demo and real data, and a builder of
small synthetic panels."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forecaster.config import Config, load_config
from forecaster.data.panel import Panel

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


# What makes a real config fast enough for a test: one or two short epochs of a small network, one thread, no
# bar, networks trained in the test's own process (tests/test_compare_jobs.py covers worker processes), and every
# file the run writes under the test's own folder.
SHRUNK = {"train.max_epochs": 2, "train.limit_train_batches": 4, "train.progress": False, "train.threads": 1,
          "model.hidden_size": 8, "compare.jobs": 1}


def shrink_config(config: str | Path | Config | None, state_dir: Path, **overrides: Any) -> Config:
    """A config file (or a Config, or the defaults for None) made small: `SHRUNK`, the demo data unless the
    config names other data, the store in `state_dir`, then `overrides` (dotted keys) on top."""
    base = {**SHRUNK, "tracking.state_dir": str(state_dir)}
    if isinstance(config, Config):
        return config.with_overrides({**base, **overrides})
    if config is not None and not Path(config).is_absolute():
        config = REPO_ROOT / "configs" / config
    loaded = load_config(config)
    if loaded.data.path == "data/demo.csv":
        base["data.path"] = str(REPO_ROOT / "data" / "demo.csv")
    return loaded.with_overrides({**base, **overrides})


@pytest.fixture(scope="session")
def shrink():
    """`shrink(config, state_dir, **overrides)`: see `shrink_config`."""
    return shrink_config


@pytest.fixture(scope="session")
def demo_csv() -> Path:
    return REPO_ROOT / "data" / "demo.csv"


@pytest.fixture(scope="session")
def etth1_csv() -> Path:
    path = SHARED_DATA / "ETT-small" / "ETTh1.csv"
    if not path.is_file():
        pytest.skip(f"real data not available: {path} is absent (see ../shared/data/README.md)")
    return path


def build_panel_of(lengths, n_targets=1, n_covariates=0, n_future=0, start="2024-01-01") -> Panel:
    """Hourly series back to back. Column 0 holds the global row number and column 1 (when V > 1) the series
    index, so tests can read where a window came from; further columns are smooth per-series signals."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n, width = int(offsets[-1]), n_targets + n_covariates + n_future
    series = np.repeat(np.arange(len(lengths)), lengths)
    values = np.empty((n, width), dtype=np.float32)
    values[:, 0] = np.arange(n)
    for j in range(1, width):
        values[:, j] = series if j == 1 else np.sin(np.arange(n) / (j + 1)) * (series + 1) + j
    stamps = np.concatenate(
        [np.arange(np.datetime64(start, "ns"), np.datetime64(start, "ns") + np.timedelta64(int(k), "h"),
                   np.timedelta64(1, "h")) for k in lengths]
    )
    names = [f"v{j}" for j in range(width)]
    return Panel(
        series_ids=[f"s{i}" for i in range(len(lengths))],
        offsets=offsets,
        timestamps=stamps,
        values=values,
        targets=names[:n_targets],
        covariates=names[n_targets : n_targets + n_covariates],
        future_covariates=names[n_targets + n_covariates :],
        freq="h",
    )


@pytest.fixture(scope="session")
def make_panel():
    """`make_panel(lengths, n_targets=1, n_covariates=0, n_future=0)` -> a synthetic hourly `Panel`."""
    return build_panel_of


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Small recurrent nets on a shared 2-core machine: a second intra-op thread mostly spins and waits."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- a real MLflow tracking server, for the tests that need one --------------------------------------------

def stop(process):
    """Stop a server and everything it started (uvicorn workers): they share its process group."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, process, seconds=90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            process.stdout.seek(0)
            raise RuntimeError(f"server exited early: {process.stdout.read().decode(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real tracking server on 127.0.0.1: free port, SQLite backend, local artifact store; torn down after."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=tempfile.TemporaryFile(), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
