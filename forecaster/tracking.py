"""Where runs go: the embedded MLflow store by default, any tracking server when configured.

Embedded means one state directory holds both the SQLite database and the artifact folder, so nothing is
scattered in the working directory; any other SQLite URI keeps its artifacts beside its database too. Several processes writing at once (a scheduler beside a trainer) should
use a server instead: SQLite allows one writer at a time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from forecaster.config import TrackingConfig


def state_dir(cfg: TrackingConfig) -> Path:
    return Path(cfg.state_dir).expanduser().resolve()


def tracking_uri(cfg: TrackingConfig) -> str:
    """`tracking.uri`, else `MLFLOW_TRACKING_URI`, else SQLite in the state directory."""
    if cfg.uri:
        return cfg.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{state_dir(cfg) / 'mlflow.db'}"


def is_embedded(cfg: TrackingConfig) -> bool:
    return tracking_uri(cfg).startswith("sqlite:///") and not cfg.uri and not os.environ.get("MLFLOW_TRACKING_URI")


def setup_tracking(cfg: TrackingConfig) -> str:
    """Point MLflow at the configured store, create the experiment if needed; return the experiment id."""
    import mlflow

    if is_embedded(cfg):
        state_dir(cfg).mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(cfg)
    user_choice = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow exports the URIs to the environment for subprocesses; a later config in this process (a test, a
    # scheduler cycle) must still resolve its own store, so the environment goes back to what the user set.
    for name, value in user_choice.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    experiment_id = client.create_experiment(cfg.experiment, artifact_location=artifact_root(uri))
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside its database (`<db folder>/artifacts`), not into `./mlruns` of
    whatever folder the command ran in; a server decides for itself (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).expanduser()
    if not database.is_absolute():  # sqlite:///relative.db is relative to the working directory
        database = database.resolve()
    return (database.parent / "artifacts").as_uri()


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """sha256 and size of a data file: which bytes a run was trained on."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": Path(path).stat().st_size}
