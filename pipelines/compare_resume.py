"""`forecaster compare --resume`: continue an interrupted comparison, keeping the candidates it finished.

A comparison records a digest of its config on its parent run (`forecaster.config_sha`). A resume finds the
newest comparison of the same config in the experiment that did not finish (killed, failed, or left RUNNING by
`kill -9`), continues that parent run, and takes each candidate whose nested run finished from what that run
saved: the model in its checkpoint folder, its logged metrics and model URI. Its validation forecasts, which the
ensemble needs, are recomputed from the saved model. Candidates that had not finished are trained again (their
unfinished runs are marked KILLED); the ensemble, the decision and the refit follow as in a fresh comparison.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from forecaster.config import Config
from forecaster.errors import ConfigError

from .train import MODEL_URI_TAG, TrainResult, checkpoint_dir

log = logging.getLogger(__name__)

DIGEST_TAG = "forecaster.config_sha"


def config_digest(config: Config) -> str:
    """What makes two comparisons the same: every config value but where it is tracked and how visibly it runs."""
    values = {key: value for key, value in config.flat().items()
              if not key.startswith(("tracking.", "predict.", "schedule.", "monitor.", "tune."))
              and key not in ("train.progress", "train.threads", "train.num_workers")}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def interrupted_compare(config: Config, experiment_id: str) -> tuple[str, dict[str, Any]]:
    """(the parent run of the newest unfinished comparison of `config`, {candidate name: its finished run}).
    Candidates' runs that did not finish are marked KILLED. Refused, saying what to do, when there is none."""
    import mlflow

    client = mlflow.MlflowClient()
    digest = config_digest(config)
    parents = client.search_runs([experiment_id], filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
                                 order_by=["attributes.start_time DESC"], max_results=20)
    unfinished = [run for run in parents if run.info.status != "FINISHED"]
    if not unfinished:
        done = " (the newest one finished: rerun without --resume for a new comparison)" if parents else ""
        raise ConfigError(f"compare --resume: no interrupted comparison of this config in experiment "
                          f"'{config.tracking.experiment}'{done}; run compare without --resume")
    parent = unfinished[0]
    children = client.search_runs([experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    finished = {}
    for child in children:
        name = child.data.tags.get("mlflow.runName")
        if child.info.status == "FINISHED" and MODEL_URI_TAG in child.data.tags:
            finished.setdefault(name, child)
        elif child.info.status == "RUNNING":
            client.set_terminated(child.info.run_id, status="KILLED")
    log.info("resuming comparison %s: %d candidate(s) finished before it stopped (%s)", parent.info.run_id,
             len(finished), ", ".join(sorted(finished)) or "none")
    return parent.info.run_id, finished


def reuse(run, name: str, kind: str, variant: Config, datamodule) -> TrainResult:
    """The `TrainResult` of a candidate an interrupted comparison finished, from its run and saved model."""
    from forecaster.bundle import ModelBundle
    from forecaster.evaluation import forecast_windows

    model_dir = checkpoint_dir(variant, name) / run.info.run_id / "model"
    bundle = ModelBundle.load(model_dir)
    metrics = run.data.metrics
    best_epoch = metrics.get("best_epoch")
    return TrainResult(
        name=name, kind=kind, run_id=run.info.run_id, model_uri=run.data.tags[MODEL_URI_TAG],
        metrics={key.removeprefix("test/"): value for key, value in metrics.items() if key.startswith("test/")},
        val_metrics={key.removeprefix("validation/"): value for key, value in metrics.items()
                     if key.startswith("validation/")},
        n_params=int(metrics.get("params", 0)), train_seconds=float(metrics.get("train_seconds", 0.0)),
        best_epoch=None if best_epoch is None else int(best_epoch), model_dir=str(model_dir),
        trained_range=bundle.trained_range, epochs_run=int(metrics.get("epochs_run", 0)),
        val_forecasts=forecast_windows(bundle.predictor, datamodule.val_dataloader()),
    )
