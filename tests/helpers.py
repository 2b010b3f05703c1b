"""What tests share, in one place: paths, the one way to shrink a config, small data written as a user's CSV
file, a synthetic panel, the `forecaster` command as a process, a real tracking server's helpers, and a real MLflow
store with a trained, registered model. `conftest.py` turns some of them into fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import Config, load_config
from forecaster.data.panel import Panel

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEMO_CSV = REPO_ROOT / "data" / "demo.csv"


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


# -- data as a user's file, and as a panel --------------------------------------------------------------------

def series_csv(path: Path, values, *, start: str = "2024-01-01", freq: str = "h", series_id: str | None = None,
               column: str = "value") -> Path:
    """`values` [n] as a CSV file of one series (`timestamp`, `column`; a `series_id` column when given), the
    timestamps as text the way a user's file holds them. Returns `path`."""
    frame = pd.DataFrame({"timestamp": pd.date_range(start, periods=len(values), freq=freq).astype(str),
                          column: np.asarray(values)})
    if series_id is not None:
        frame.insert(0, "series_id", series_id)
    frame.to_csv(path, index=False)
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


# -- the `forecaster` command, as a process ----------------------------------------------------------------------

def cli_command(*args: Any) -> list[str]:
    """`python -m forecaster_pipelines ARGS`: the `forecaster` command as cron or a shell runs it."""
    return [sys.executable, "-m", "forecaster_pipelines", *map(str, args)]


def run_cli(*args: Any, cwd: Path = REPO_ROOT, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `forecaster ARGS` to its end; its output is captured as text."""
    return subprocess.run(cli_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def start_cli(*args: Any, cwd: Path = REPO_ROOT) -> subprocess.Popen:
    """Start `forecaster ARGS` and return at once (to signal or kill it mid-way); output piped as text."""
    return subprocess.Popen(cli_command(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- a real MLflow tracking server ----------------------------------------------------------------------------------

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


# -- a real MLflow store with a trained, registered model (predict, schedule, Spark) ---------------------------

NAME, ALIAS = "demo", "champion"


@dataclass
class Store:
    config: Config  # tracking in the store's state dir; predict.model = the alias; predict.data = the demo file
    model_uri: str  # the LoggedModel, models:/m-...
    run_id: str
    version: str


def demo_config(state_dir: Path, overrides: dict[str, Any] | None = None) -> Config:
    return shrink_config("demo-lstm.yaml", state_dir, **{
        "tracking.experiment": "test", "registry.name": NAME, "registry.alias": ALIAS, "train.max_epochs": 1,
        "train.limit_train_batches": 2, "model.hidden_size": 32, "predict.model": f"models:/{NAME}@{ALIAS}",
        "predict.data": str(DEMO_CSV), **(overrides or {}),
    })


def train_and_register(state_dir: Path, kind: str = "naive", overrides: dict[str, Any] | None = None) -> Store:
    import mlflow

    from forecaster_pipelines import train

    config = demo_config(state_dir, overrides)
    result = train.run(config, kind=kind)
    version = str(mlflow.register_model(result.model_uri, NAME).version)
    mlflow.MlflowClient().set_registered_model_alias(NAME, ALIAS, version)
    return Store(config=config, model_uri=result.model_uri, run_id=result.run_id, version=version)
