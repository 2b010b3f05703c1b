"""`forecaster ui`: the MLflow UI on the same store the jobs write to."""

from __future__ import annotations

import os
import sys

from forecaster.config import Config
from forecaster.errors import ConfigError
from forecaster.tracking import is_embedded, setup_tracking, tracking_uri


def ui_command(config: Config, host: str, port: int) -> list[str]:
    uri = tracking_uri(config.tracking)
    if not is_embedded(config.tracking):
        raise ConfigError(f"the tracking store is a server ({uri}): it serves its own UI, open that in a browser")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]


def run(config: Config, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Replace this process with `mlflow ui`, so that signals (Ctrl-C, a service manager's SIGTERM) reach the
    server itself and no orphan is left behind."""
    setup_tracking(config.tracking)
    command = ui_command(config, host, port)
    print(f"MLflow UI on http://{host}:{port} (store: {tracking_uri(config.tracking)}); Ctrl-C stops it", flush=True)
    os.execv(command[0], command)
