"""The train job: one model, one MLflow run, test metrics on both scales, and a model others can load.

`run(config)` is what `forecaster train` calls; `compare` calls `train_in_run` once per model type inside
its own parent run, on one shared data module so every model sees identical data and splits.

Under a distributed strategy (`train.strategy=ddp`, torchrun, SLURM) every process runs `run(config)`; only
rank zero touches MLflow, evaluates and logs the model, so one training makes one run. The other ranks only
join the fit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.config import Config, dump_config
from forecaster.errors import ModelError
from forecaster.tracking import file_fingerprint, redact, setup_tracking, state_dir, tracked_run, tracking_uri

if TYPE_CHECKING:
    from forecaster.bundle import ModelBundle

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    name: str
    kind: str
    metrics: dict[str, float]
    run_id: str
    model_uri: str | None
    n_params: int
    train_seconds: float
    best_epoch: int | None = None
    rank: int = 0  # a process of a distributed training other than rank zero logs nothing: no run, no model
    val_metrics: dict[str, float] = field(default_factory=dict)  # the kept weights on the validation split
    model_dir: str | None = None  # the bundle on disk, saved before anything else could fail
    trained_range: dict[str, Any] | None = None
    epochs_run: int = 0
    val_forecasts: Any = field(default=None, repr=False)  # evaluation.WindowForecasts of the validation split

    def summary(self) -> dict[str, Any]:
        """`metrics` are the test split's (absent when it is empty); `val_*` the validation split's."""
        return {
            **self.metrics, **{f"val_{key}": value for key, value in self.val_metrics.items()},
            "model": self.name, "kind": self.kind, "run_id": self.run_id,
            "model_uri": self.model_uri, "params": self.n_params, "train_seconds": round(self.train_seconds, 3),
            "best_epoch": self.best_epoch, **({"rank": self.rank} if self.rank else {}),
        }


UNLOGGED_METRICS = "unlogged-metrics.jsonl"  # beside a training's checkpoints: epochs the tracking store missed
MODEL_URI_TAG = "forecaster.model_uri"  # on every training's run: the model it logged
KEPT_TRAININGS = 5  # checkpoint folders kept per model (the newest): a daily retrain must not fill the disk


def model_name(config: Config, kind: str = "network") -> str:
    if kind != "network":
        return kind
    name = config.model.cell if config.model.strategy == "direct" else f"{config.model.cell}-{config.model.strategy}"
    return name


def checkpoint_dir(config: Config, name: str) -> Path:
    """Where the trainings of model `name` keep their checkpoints and saved models, one subfolder per training
    (named by its MLflow run), so that two trainings at once never share one."""
    return state_dir(config.tracking) / "checkpoints" / config.tracking.experiment / name


def prune_trainings(folder: Path, keep: int, current: Path) -> None:
    """Remove all but the `keep` newest training folders of one model (named by their 32-hex MLflow run id),
    never `current`. Finished models live on in MLflow; these folders serve `--resume` and error recovery."""
    import re
    import shutil

    if not folder.is_dir():
        return
    trainings = [path for path in folder.iterdir()
                 if path.is_dir() and path != current and re.fullmatch(r"[0-9a-f]{32}", path.name)]
    trainings.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    for stale in trainings[max(keep - 1, 0):]:
        shutil.rmtree(stale, ignore_errors=True)


def prepare_data(config: Config):
    from forecaster.data.datamodule import ForecastDataModule

    datamodule = ForecastDataModule(config)
    datamodule.setup("fit")
    return datamodule


def log_data_record(config: Config, datamodule) -> None:
    """The data fingerprint and the validation report: which data, exactly, a run saw."""
    import mlflow

    panel = datamodule.panel
    fingerprint = {
        "path": config.data.path,
        **file_fingerprint(config.data.path),
        "rows": int(panel.offsets[-1]),
        "series": len(panel.series_ids),
        "start": str(panel.timestamps.min()),
        "end": str(panel.timestamps.max()),
        "freq": panel.freq,
    }
    mlflow.log_dict(fingerprint, "data/fingerprint.json")
    mlflow.set_tags({f"data.{key}": value for key, value in fingerprint.items() if key != "path"})
    from .validate import ValidationResult, format_report

    report = ValidationResult(config.data.path, panel.report_frame(), panel=panel)
    mlflow.log_text(format_report(report), "data/validation_report.txt")


def train_in_run(config: Config, datamodule, kind: str = "network", resume_from: Path | None = None,
                 checkpoint_name: str | None = None, model: ModelBundle | None = None) -> TrainResult:
    """Fit one model, save it, log it into the MLflow run that is active now, and score it on the validation and
    test splits (an empty split has no metrics). `resume_from`: the folder of the interrupted training to continue
    (`training.fit.latest_resumable`). `model`: a model trained already (an ensemble of trained members, a network
    a compare worker trained), with its `TrainingRecord`, which is then saved, logged and scored the same way."""
    import mlflow

    from forecaster.evaluation import evaluate
    from forecaster.mlflow_model.log import log_bundle
    from forecaster.training.callbacks import EpochMlflowLogger
    from forecaster.training.fit import fit_model

    run = mlflow.active_run()
    name = model_name(config, kind)
    mlflow.log_params(_loggable_params(config, kind))
    mlflow.set_tags({"forecaster.model": name, "forecaster.kind": kind,
                     **({"forecaster.cell": config.model.cell, "forecaster.strategy": config.model.strategy}
                        if kind == "network" else {}),
                     **({"forecaster.members": ",".join(model.baseline.names),
                         "forecaster.combine": model.baseline.combine} if kind == "ensemble" else {})})
    mlflow.log_text(redact(dump_config(config)), "config.yaml")
    log_data_record(config, datamodule)

    ckpt_dir = resume_from or checkpoint_dir(config, checkpoint_name or name) / run.info.run_id
    prune_trainings(ckpt_dir.parent, keep=KEPT_TRAININGS, current=ckpt_dir)
    logger = EpochMlflowLogger(tracking_uri(config.tracking), run.info.run_id, ckpt_dir / UNLOGGED_METRICS)
    if model is None:
        model = fit_model(config, datamodule, kind, ckpt_dir, logger=logger, resume=resume_from is not None,
                          label=checkpoint_name or name, run_id=run.info.run_id)
    record = model.training
    model_dir = ckpt_dir / "model"
    model.save(model_dir)  # first: an error in what follows cannot lose the trained model
    try:
        inherited = _selection_calibration() if len(datamodule.val_dataset) == 0 else None
        report = evaluate(model, datamodule.evaluation_data(), levels=config.predict.levels,
                          calibrate=config.predict.calibrate, calibration=inherited)
        model.calibration = report.calibration
        _say_calibration(report, inherited, name)
        if model.calibration is not None:
            model.save(model_dir)  # the same model, now with its intervals
            mlflow.log_dict(model.calibration.to_dict(), "calibration.json")
        model_uri = log_bundle(model, example=model.example_history(datamodule))
        mlflow.set_tag(MODEL_URI_TAG, model_uri)  # what `compare --resume` reuses
        mlflow.set_tags({"forecaster.trained_until": model.trained_range["last"],
                         "forecaster.trained_rows": model.trained_range["rows"]})
        mlflow.log_metrics({"params": record.n_params, "train_seconds": record.train_seconds,
                            "epochs_run": record.epochs_run})
        if record.best_epoch is not None:
            mlflow.log_metric("best_epoch", record.best_epoch)
        mlflow.log_metrics({f"validation/{key}": value for key, value in report.val_metrics.items()})
        mlflow.log_metrics({f"test/{key}": value for key, value in report.test_metrics.items()})
        if report.test is None and report.val is not None:
            log.info("%s: the test split is empty (split.test_size / test_fraction 0): no test metrics", name)
        if (shown := report.test or report.val) is not None:
            _log_figures(shown, datamodule, name, "test" if report.test is not None else "validation")
    except Exception as exc:
        unlogged = (f" The per-epoch metrics the tracking store did not take are in {logger.fallback}."
                    if logger.unlogged else "")
        raise ModelError(
            f"{name}: training finished, but evaluating or logging the model failed ({type(exc).__name__}: "
            f"{redact(str(exc))}). The trained model is saved in {model_dir}; forecast with it: forecaster predict "
            f"--model {model_dir} --data YOUR_HISTORY.csv.{unlogged}"
        ) from exc
    return TrainResult(
        name=name, kind=kind, metrics=report.test_metrics, run_id=run.info.run_id, model_uri=model_uri,
        n_params=record.n_params, train_seconds=record.train_seconds, best_epoch=record.best_epoch,
        val_metrics=report.val_metrics, model_dir=str(model_dir), trained_range=model.trained_range,
        epochs_run=record.epochs_run, val_forecasts=report.val.forecasts if report.val is not None else None,
    )


def _say_calibration(report, inherited, name: str) -> None:
    """Log where the model's prediction intervals come from when it is not its own validation windows
    (`evaluation.evaluate` decides: fitted on validation, else the selection run's, else a quantile network's own
    quantiles, else none)."""
    calibration = report.calibration
    if calibration is None:
        log.warning("%s: no validation rows to calibrate prediction intervals on; its forecasts have no "
                    "forecast_lo_*/forecast_hi_* columns (give the validation split rows to get them)", name)
    elif report.val is None and calibration is inherited:
        log.info("%s: no validation rows; intervals reuse the calibration of %s", name, inherited.fitted_on)
    elif report.val is None:
        log.warning("%s: no validation rows; its intervals are the network's own quantiles, not calibrated", name)


def _selection_calibration():
    """The calibration logged by the selection run this run refits (tag `forecaster.refit_of`), if any: a refit on
    every row has no validation windows of its own, and reuses it (margins are per-step quantiles of residuals
    divided by each series' scale; the refit's own scaler multiplies them back)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from forecaster.calibration import Calibration

    run = mlflow.active_run()
    source = mlflow.get_run(run.info.run_id).data.tags.get("forecaster.refit_of") if run is not None else None
    if not source:
        return None
    try:
        document = mlflow.artifacts.load_dict(f"runs:/{source}/calibration.json")
    except (MlflowException, OSError):
        return None
    calibration = Calibration.from_dict(document)
    calibration.fitted_on = f"selection run {source} ({calibration.windows} validation windows)"
    return calibration


def run(config: Config, resume: bool = False, kind: str = "network") -> TrainResult:
    """`forecaster train`: one model in one MLflow run; a rerun with `resume` continues the same run."""
    from forecaster.config import BASELINES
    from forecaster.training.fit import fit_model, global_rank, latest_resumable

    name = model_name(config, kind)
    if resume and kind in BASELINES:
        log.info("%s: a baseline has no checkpoint to resume; it is fitted anew", name)
        resume = False
    # A resume continues the newest training of this model that the config may continue, in its own MLflow run.
    resume_from, run_id = None, None
    if resume:
        resume_from, identity = latest_resumable(config, checkpoint_dir(config, name))
        run_id = identity["run_id"]
    devices = config.train.devices if isinstance(config.train.devices, int) else 1
    rank = global_rank(devices)
    if rank != 0:  # it joins rank zero's fit; rank zero alone writes the checkpoints
        folder = resume_from or checkpoint_dir(config, name) / f"rank-{rank}"
        record = fit_model(config, prepare_data(config), kind, folder, resume=resume).training
        return TrainResult(name=name, kind=kind, metrics={}, run_id="", model_uri=None, n_params=record.n_params,
                           train_seconds=record.train_seconds, best_epoch=record.best_epoch, rank=rank)
    setup_tracking(config.tracking)
    datamodule = prepare_data(config)
    with tracked_run(run_id=run_id, run_name=None if run_id else name):
        return train_in_run(config, datamodule, kind=kind, resume_from=resume_from)


def _loggable_params(config: Config, kind: str) -> dict[str, Any]:
    flat = config.flat()
    if kind != "network":
        flat = {key: value for key, value in flat.items() if not key.startswith(("model.", "train."))}
    return {key: redact(json.dumps(value) if isinstance(value, list | dict) else value)
            for key, value in flat.items()}


def _log_figures(report, datamodule, name: str, split: str) -> None:
    """The error per horizon step, and forecast against actual for the first window of a few series, from one
    split's `evaluation.SplitReport`."""
    import mlflow
    import numpy as np
    import pandas as pd

    from forecaster import plots
    from forecaster.outputs import safe_file_name

    errors = report.by_step
    mlflow.log_table(pd.DataFrame({"step": range(1, len(errors["mse"]) + 1), **errors}), "error_by_step.json")
    fig = plots.error_by_step(errors, f"{name}: {split} error by horizon step")
    mlflow.log_figure(fig, "plots/error_by_step.png")
    plots.close(fig)

    panel, lookback = datamodule.panel, datamodule.config.window.lookback
    forecasts = report.forecasts
    series, first = np.unique(forecasts.series, return_index=True)  # the first window of each series
    for series_index, window in zip(series[:4], first[:4], strict=True):
        origin = int(forecasts.origin[window])
        history = panel.values[origin - lookback : origin, 0]
        pred = report.pred[window, :, 0]  # [H], original units
        actual = panel.values[origin : origin + len(pred), 0]
        series_id = panel.series_ids[series_index]
        fig = plots.forecast_vs_actual(history, actual, pred,
                                       f"{name}: {series_id}, {panel.targets[0]} (first {split} window)",
                                       bands={level: (lo[window, :, 0], hi[window, :, 0])
                                              for level, (lo, hi) in report.bands.items()})
        mlflow.log_figure(fig, f"plots/forecast_{safe_file_name(series_id)}.png")
        plots.close(fig)


def format_result(result: TrainResult) -> str:
    if result.rank:
        return f"rank {result.rank}: trained {result.name} with the other ranks; rank 0 logs the run and the model"
    lines = [f"model {result.name}: {result.n_params:,} parameters, trained in {result.train_seconds:.1f} s"
             + (f", best epoch {result.best_epoch}" if result.best_epoch is not None else "")]
    lines += [f"  validation {key:<14} {value:.4f}" for key, value in result.val_metrics.items()]
    lines += [f"  test       {key:<14} {value:.4f}" for key, value in result.metrics.items()]
    if not result.metrics:
        lines.append("  test       (empty split: no test metrics)")
    lines.append(f"  run {result.run_id}")
    if result.model_uri:
        lines.append(f"  model {result.model_uri}")
    return "\n".join(lines)
