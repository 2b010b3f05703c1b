"""Find a saved forecaster from an MLflow model URI or a local folder, and load its bundle.

Accepted: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/m-ID` (a LoggedModel), `runs:/RUN_ID/PATH`, a
bundle folder (with `bundle.json`) or an MLflow model folder (the bundle lies in `artifacts/bundle/`).

Loading downloads the bundle's own files and calls `ModelBundle.load`, not `mlflow.pyfunc.load_model`: it is
faster, imports no code stored with the model, and works the same for every URI. An alias is resolved to its
version first, so a model moved to the alias during the download cannot mix two versions.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forecaster.errors import ModelError

if TYPE_CHECKING:
    from forecaster.bundle import ModelBundle

BUNDLE_IN_MODEL = "artifacts/bundle"  # the pyfunc model's `artifacts={"bundle": ...}` (mlflow_model/log.py)
ACCEPTED = ("models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-ID, runs:/RUN_ID/model, "
            "or a local model folder")
HOW_TO_REGISTER = "`forecaster compare CONFIG` trains candidates and registers the winner"


@dataclass(frozen=True)
class ModelSource:
    """Where a model's bundle is, and what the registry knows about it."""

    uri: str
    bundle_uri: str | None  # artifact URI of the bundle folder; None for a local folder
    local_dir: Path | None
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    model_id: str | None = None

    @property
    def label(self) -> str:
        """Names output files: stable for one model, different for two."""
        if self.name and self.version:
            return f"{self.name}-v{self.version}"
        if self.model_id:
            return self.model_id
        if self.run_id:
            return f"run-{self.run_id}"
        assert self.local_dir is not None, "a model without registry facts is a local folder"
        return f"local-{_folder_digest(self.local_dir)[:12]}"


@dataclass
class ResolvedModel:
    bundle: ModelBundle
    uri: str
    name: str | None
    version: str | None
    run_id: str | None
    model_id: str | None
    label: str

    def record(self) -> dict:
        """What a manifest says about the model."""
        bundle = self.bundle
        return {"uri": self.uri, "name": self.name, "version": self.version, "model_id": self.model_id,
                "source_run_id": self.run_id, "kind": bundle.kind, "lookback": bundle.lookback,
                "horizon": bundle.horizon, "quantiles": bundle.quantiles}


def resolve_model(uri: str) -> ResolvedModel:
    """Locate and load a model. MLflow URIs use the tracking and registry URIs set now (`setup_tracking`)."""
    from forecaster.bundle import ModelBundle

    source = locate_model(uri)
    with tempfile.TemporaryDirectory(prefix="forecaster-model-") as tmp:
        bundle_dir = source.local_dir if source.bundle_uri is None else _download(source, Path(tmp))
        try:
            bundle = ModelBundle.load(bundle_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"model {uri}: the bundle in {bundle_dir} cannot be loaded ({exc}). "
                             f"Was it saved by this version of forecaster? Retrain it, or load it "
                             f"with the forecaster version that saved it.") from None
    return ResolvedModel(bundle=bundle, uri=uri, name=source.name, version=source.version, run_id=source.run_id,
                         model_id=source.model_id, label=source.label)


def locate_model(uri: str) -> ModelSource:
    """Ask the registry (or the file system) where the bundle of `uri` is; load nothing yet."""
    if uri.startswith("models:/"):
        return _locate_registered(uri)
    if uri.startswith("runs:/"):
        return _locate_run(uri)
    if "://" in uri or re.match(r"^[a-z][a-z0-9+.-]+:/", uri):
        raise ModelError(f"model {uri}: unsupported URI scheme; expected {ACCEPTED}")
    return _locate_folder(Path(uri).expanduser())


def _locate_registered(uri: str) -> ModelSource:
    import mlflow
    from mlflow.exceptions import MlflowException

    reference = uri.removeprefix("models:/").rstrip("/")
    client = mlflow.MlflowClient()
    if re.fullmatch(r"m-[0-9a-f]+", reference):
        try:
            logged = mlflow.get_logged_model(reference)
        except MlflowException:
            raise ModelError(f"model {uri}: no logged model with id {reference} in {_store()}. "
                             f"Copy the id from the run's page in `forecaster ui`.") from None
        return ModelSource(uri=uri, bundle_uri=f"{logged.artifact_location.rstrip('/')}/{BUNDLE_IN_MODEL}",
                           local_dir=None, run_id=logged.source_run_id, model_id=logged.model_id)

    if "@" in reference:
        name, alias = reference.split("@", 1)
        try:
            version = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            raise ModelError(_missing_registered(uri, name, f"has no version with alias @{alias}")) from None
    elif re.fullmatch(r"[^/]+/\d+", reference):
        name, number = reference.rsplit("/", 1)
        try:
            version = client.get_model_version(name, number)
        except MlflowException:
            raise ModelError(_missing_registered(uri, name, f"has no version {number}")) from None
    else:
        raise ModelError(f"model {uri}: not understood; expected {ACCEPTED}")
    return ModelSource(uri=uri, bundle_uri=f"models:/{name}/{version.version}/{BUNDLE_IN_MODEL}", local_dir=None,
                       name=name, version=str(version.version), run_id=version.run_id)


def _missing_registered(uri: str, name: str, problem: str) -> str:
    import mlflow

    known = [model.name for model in mlflow.MlflowClient().search_registered_models(max_results=20)]
    if name not in known:
        problem = "is not a registered model"
    listing = f" Registered models there: {', '.join(known)}." if known else " No model is registered there yet."
    return (f"model {uri}: '{name}' {problem} in {_store()}.{listing} {HOW_TO_REGISTER}; check tracking.uri "
            f"or MLFLOW_TRACKING_URI if you expected another store.")


def _locate_run(uri: str) -> ModelSource:
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    if not run_id or not path.strip("/"):
        raise ModelError(f"model {uri}: expected runs:/RUN_ID/PATH, for example runs:/{run_id or 'RUN_ID'}/model")
    try:
        mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        raise ModelError(f"model {uri}: no run {run_id} in {_store()}; copy the run id from `forecaster train` "
                         f"output or from `forecaster ui`.") from None
    return ModelSource(uri=uri, bundle_uri=f"runs:/{run_id}/{path.strip('/')}/{BUNDLE_IN_MODEL}", local_dir=None,
                       run_id=run_id)


def _locate_folder(folder: Path) -> ModelSource:
    if (folder / "bundle.json").is_file():
        return ModelSource(uri=str(folder), bundle_uri=None, local_dir=folder.resolve())
    if (folder / BUNDLE_IN_MODEL / "bundle.json").is_file():
        return ModelSource(uri=str(folder), bundle_uri=None, local_dir=(folder / BUNDLE_IN_MODEL).resolve())
    if not folder.exists():
        raise ModelError(f"model {folder}: no such folder, and not an MLflow model URI; expected {ACCEPTED}. "
                         f"{HOW_TO_REGISTER} as models:/NAME@champion.")
    raise ModelError(f"model {folder}: neither a bundle folder (bundle.json) nor an MLflow model folder "
                     f"({BUNDLE_IN_MODEL}/bundle.json); point --model at the folder `forecaster train` saved.")


def _download(source: ModelSource, destination: Path) -> Path:
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        bundle_dir = Path(download_artifacts(artifact_uri=source.bundle_uri, dst_path=str(destination)))
    except (MlflowException, OSError) as exc:
        raise ModelError(f"model {source.uri}: no forecaster bundle at {source.bundle_uri} ({exc}). Is it a "
                         f"model logged by `forecaster train` or `forecaster compare`?") from None
    if not (bundle_dir / "bundle.json").is_file():
        raise ModelError(f"model {source.uri}: {source.bundle_uri} holds no bundle.json; is it a model logged by "
                         f"`forecaster train` or `forecaster compare`?")
    return bundle_dir


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path for path in folder.rglob("*") if path.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _store() -> str:
    import mlflow

    from forecaster.tracking import redact

    return f"the MLflow store at {redact(mlflow.get_tracking_uri())}"
