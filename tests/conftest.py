"""Shared fixtures, made from `helpers` (where everything tests share lives): a config shrinker, the demo and real
data, a builder of synthetic panels, one torch thread, a real MLflow tracking server."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import REPO_ROOT, SHARED_DATA, build_panel_of, free_port, shrink_config, stop, wait_for


def pytest_collection_modifyitems(items):
    """A small training (`trains`) is slow too: `-m 'not slow'` is the quick loop, `-m trains` the small trainings."""
    for item in items:
        if item.get_closest_marker("trains") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


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
