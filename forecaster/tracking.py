"""Where runs go: the embedded MLflow store by default, any tracking server when configured.

Embedded means one state directory holds both the SQLite database and the artifact folder, so nothing is
scattered in the working directory; any other SQLite URI keeps its artifacts beside its database too. Several processes writing at once (a scheduler beside a trainer) should
use a server instead: SQLite allows one writer at a time.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forecaster.config import TrackingConfig
from forecaster.errors import ConfigError, Interrupted


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

    if is_embedded(cfg):  # the store holds the models and the data's fingerprints: its owner's alone
        state_dir(cfg).mkdir(mode=0o700, parents=True, exist_ok=True)
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
        for name, value in SERVER_RETRIES.items():
            os.environ.setdefault(name, value)
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
    with _first_use_lock(cfg):
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(cfg.experiment)  # the first call creates an embedded store
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            experiment_id = _create_experiment(client, cfg.experiment, artifact_root(uri))
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


# MLflow retries a request to a server 7 times with doubling waits (minutes in all) by default; a job that finds its
# server gone should say so within seconds, its model saved. A user's own setting wins.
SERVER_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
CONNECT_TIMEOUT_S = 5.0


def check_server(uri: str) -> None:
    """Refuse at once, in one line, a tracking server that does not answer (any HTTP answer will do)."""
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise ConfigError(f"tracking.uri: no tracking server answers at {redact(uri)} within {CONNECT_TIMEOUT_S:g} s "
                          f"({reason}); start it or correct the address, or leave tracking.uri out to use the local "
                          f"store in tracking.state_dir") from None


@contextmanager
def _first_use_lock(cfg: TrackingConfig) -> Iterator[None]:
    """Serialise the processes that set up one embedded store: the first creates its tables (a schema migration
    that two processes cannot run at once) and its experiment. A tracking server does this itself."""
    if not is_embedded(cfg):
        yield
        return
    from filelock import FileLock

    with FileLock(state_dir(cfg) / ".store.lock"):
        yield


def _create_experiment(client, name: str, artifact_location: str | None) -> str:
    """Create experiment `name`; if another process (on a tracking server) created it first, use theirs."""
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


# A password in a URI's user part (scheme://user:password@host) and secret-looking query parameters.
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)(?P<secret>[^/\s]+)"
                           r"(?=@[^@/\s]*(?:[/?#\s]|$))")
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|token|access_token|auth|secret|api_key|apikey|key"
                           r"|sig|signature|sas)=)(?P<secret>[^&;\s'\"]+)", re.IGNORECASE)
REDACTED = "***"


def redact(text: Any) -> Any:
    """`text` with the credentials a URI may carry replaced by `***` (user:***@host, ?token=***); anything that
    is not a string is returned as it is. Applied to whatever forecaster writes of a config: params, tags, the
    config artifact, manifests, messages."""
    if not isinstance(text, str):
        return text
    text = _URI_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    return _QUERY_SECRET.sub(lambda m: m["head"] + REDACTED, text)


@contextmanager
def tracked_run(**kwargs: Any) -> Iterator[Any]:
    """`mlflow.start_run(**kwargs)`, except that a run stopped by a signal ends KILLED rather than FAILED (the
    MLflow UI tells an interrupted run from a broken one), and that a store which cannot record the run's end
    (a server that went away) does not hide the error that ended it."""
    import mlflow

    with mlflow.start_run(**kwargs) as run:
        try:
            yield run
        except BaseException as exc:
            try:
                mlflow.end_run("KILLED" if isinstance(exc, Interrupted) else "FAILED")
            except Exception:  # the run leaves the active stack first, so nothing is retried on the way out
                pass
            raise


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
