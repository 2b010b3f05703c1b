"""`forecaster ui`: the MLflow UI on the same store the jobs write to."""

from __future__ import annotations

import os
import sys

from forecaster.config import Config
from forecaster.errors import ConfigError
from forecaster.tracking import is_embedded, redact, setup_tracking, tracking_uri


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui_command(config: Config, host: str, port: int) -> list[str]:
    uri = tracking_uri(config.tracking)
    if not is_embedded(config.tracking):
        raise ConfigError(f"the tracking store is a server ({redact(uri)}): it serves its own UI, open that in a "
                          f"browser")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]


def run(config: Config, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Replace this process with `mlflow ui`, so that signals (Ctrl-C, a service manager's SIGTERM) reach the
    server itself and no orphan is left behind."""
    setup_tracking(config.tracking)
    command = ui_command(config, host, port)
    store = redact(tracking_uri(config.tracking))
    print(f"MLflow UI on http://{host}:{port} (store: {store}); Ctrl-C stops it", flush=True)
    if host not in LOOPBACK:
        print(f"warning: the MLflow UI has no authentication; anyone who can reach {host}:{port} can read and change "
              f"every run and registered model in this store", file=sys.stderr, flush=True)
    os.execv(command[0], command)
