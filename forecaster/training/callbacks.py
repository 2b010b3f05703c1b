"""Lightning callbacks and the MLflow logger that training uses."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only


class TimeLimit(pl.Callback):
    """Stop training after the first epoch that ends `seconds` or more after fit began (`train.max_minutes`).

    It acts at an epoch's end, after its validation pass, so every epoch that ran was scored and the best one is
    kept; a training overruns the limit by at most one epoch."""

    def __init__(self, seconds: float, label: str = ""):
        self.seconds, self.label = seconds, label
        self.started = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        elapsed = time.perf_counter() - self.started
        if elapsed >= self.seconds and not trainer.should_stop:
            trainer.should_stop = True
            logging.getLogger("forecaster.training").info(
                "%s: stopping after epoch %d: %.0f s of the %.0f s allowed (train.max_minutes) are spent",
                self.label or "training", trainer.current_epoch + 1, elapsed, self.seconds)


class EpochCheckpoint(Checkpoint):
    """Write `last.ckpt` at the end of every training epoch, atomically, so that kill -9, Ctrl-C or SIGTERM in any
    later epoch loses that epoch only (`train --resume` continues from here).

    The checkpoint is Lightning's (weights, optimiser, LR schedule, loops, every callback's state: the best weights
    so far, early stopping) plus, in this callback's own state, the random generators' states and `identity`: a
    JSON-able record of which training wrote it (its MLflow run and config), which `--resume` checks. Nothing in it
    needs pickle: it loads with `torch.load(weights_only=True)`. Subclassing `Checkpoint` makes Lightning call it
    after the other callbacks, so the states it saves are the epoch's final ones.
    """

    FILE = "last.ckpt"

    def __init__(self, folder: Path, identity: dict[str, Any]):
        self.folder, self.identity = Path(folder), identity
        self.saved_epoch: int | None = None  # the last epoch this process wrote, counted from 1

    @property
    def path(self) -> Path:
        return self.folder / self.FILE

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        partial = self.folder / f".{self.FILE}.{os.getpid()}.partial"
        trainer.save_checkpoint(partial, weights_only=False)  # all of it; every rank calls, rank zero writes
        if trainer.is_global_zero:
            os.replace(partial, self.path)  # a reader sees the previous checkpoint or this one, never half of one
        self.saved_epoch = trainer.current_epoch + 1

    def describe(self) -> str:
        """What an interruption now leaves: one phrase for the message the CLI prints."""
        if self.saved_epoch is not None:
            return f"the checkpoint of epoch {self.saved_epoch} in {self.folder}"
        if self.path.is_file():
            return f"the checkpoint it resumed from, in {self.folder} (no later epoch finished)"
        return "no checkpoint (no epoch had finished)"

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        return {"identity": self.identity, "torch_rng": torch.get_rng_state(),
                "numpy_rng": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
                "python_rng": random.getstate()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the random streams where the interrupted training left them, so that shuffling and dropout
        draw what an uninterrupted training would have drawn."""
        torch.set_rng_state(state_dict["torch_rng"])
        name, keys, *rest = state_dict["numpy_rng"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        version, internal, gauss = state_dict["python_rng"]
        random.setstate((version, tuple(internal), gauss))


def read_checkpoint_identity(path: Path) -> dict[str, Any] | None:
    """The `identity` an `EpochCheckpoint` stored in the checkpoint at `path`; None when it holds none."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith("EpochCheckpoint"):
            return state.get("identity")
    return None


class BestWeights(pl.Callback):
    """Keep the weights of the epoch with the lowest validation loss; restore them when fit ends.

    Early stopping stops *after* the best epoch, so without this the model would keep the last weights. With
    `score_start`, the validation pass before the first epoch (Lightning's sanity check, run over the whole split)
    counts too, as epoch -1: the weights training started from are kept when no epoch beats them.
    """

    def __init__(self, monitor: str = "val/loss", score_start: bool = False):
        self.monitor = monitor
        self.score_start = score_start
        self.best_score = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking and not self.score_start:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is not None and float(score) < self.best_score:
            self.best_score = float(score)
            self.best_epoch = -1 if trainer.sanity_checking else trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the best weights too, so that a resume keeps them whether or not a later
        epoch improves."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_epoch = state_dict["best_epoch"]
        self.best_state = state_dict.get("best_state")


class EpochLines(pl.Callback):
    """One log line per epoch, where a progress bar would flood a file (cron, systemd, `> log`) or is turned off:

        gru epoch 3/20: train_loss 0.4123  val_loss 0.3981 (best)  grad_norm 0.84 (max 2.10)  clipped 12%  4.2 s
    """

    def __init__(self, label: str = "", logger: logging.Logger | None = None):
        self.label = f"{label} " if label else ""
        self.logger = logger or logging.getLogger("forecaster.training")
        self._started = 0.0
        self._best = math.inf

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The validation pass before the first epoch runs only to score a start worth keeping (`BestWeights`'s
        `score_start`): its line comes first, and an epoch is `(best)` only when it beats it."""
        val = trainer.callback_metrics.get("val/loss")
        if not trainer.sanity_checking or val is None or not trainer.is_global_zero:
            return
        self._best = float(val)
        self.logger.info("%sstart: val_loss %.4f (before any epoch; kept unless an epoch beats it)", self.label,
                         float(val))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        parts = [f"train_loss {pl_module.epoch_loss():.4f}"]
        val = trainer.callback_metrics.get("val/loss")
        if val is not None:
            best = float(val) < self._best
            self._best = min(self._best, float(val))
            parts.append(f"val_loss {float(val):.4f}" + (" (best)" if best else ""))
        if hasattr(pl_module, "gradient_summary"):
            grads = pl_module.gradient_summary()
            parts.append(f"grad_norm {grads['grad_norm']:.2f} (max {grads['grad_norm_max']:.2f})")
            parts.append(f"clipped {grads['clipped_share']:.0%}")
        parts.append(f"{time.perf_counter() - self._started:.1f} s")
        self.logger.info("%sepoch %d/%d: %s", self.label, trainer.current_epoch + 1, trainer.max_epochs,
                         "  ".join(parts))


class EpochMlflowLogger(Logger):
    """Log Lightning's epoch-level metrics to an open MLflow run, with the epoch as the step.

    Lightning's own MLFlowLogger uses the global step and opens runs of its own; forecaster opens the run
    (nested under a comparison when there is one) and this logger only writes into it, from rank zero.
    Step-level values (`*_step`) are left to the progress bar. Without `tracking_uri` (a `compare.jobs` worker,
    which writes to no store) every epoch goes to `fallback`, for the parent to log (`log_kept_epochs`).
    """

    def __init__(self, tracking_uri: str | None, run_id: str, fallback: Path | None = None):
        super().__init__()
        self._tracking_uri = tracking_uri
        self._run_id = run_id
        self._client = None
        self.fallback = fallback  # where epochs' metrics go when the tracking store does not take them
        self.unlogged = 0  # epochs kept in `fallback` instead
        if tracking_uri is None and fallback is None:
            raise ValueError("EpochMlflowLogger: without a tracking URI, give the fallback file")

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self._run_id

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._tracking_uri is None:
            return None  # no store, and no MLflow default store created by asking
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self._tracking_uri)
        return self._client

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The pipeline logs the resolved config itself; Lightning's view of it would only repeat it."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        epoch = metrics.get("epoch")
        if epoch is None:
            return
        timestamp = _now_ms()
        batch = [
            Metric(key=key.removesuffix("_epoch"), value=float(value), timestamp=timestamp, step=int(epoch))
            for key, value in metrics.items()
            if key != "epoch" and not key.endswith("_step") and math.isfinite(float(value))
        ]
        if not batch:
            return
        if not self.unlogged and self._tracking_uri is not None:
            try:
                self.experiment.log_batch(self._run_id, metrics=batch)
                return
            except Exception as exc:  # a tracking server that went away must not stop the training
                if self.fallback is None:
                    raise
                logging.getLogger("forecaster.training").warning(
                    "the tracking store did not take epoch %d's metrics (%s: %s); training goes on, and this and "
                    "later epochs' metrics are kept in %s", int(epoch) + 1, type(exc).__name__, exc, self.fallback)
        self.unlogged += 1
        self.fallback.parent.mkdir(parents=True, exist_ok=True)
        with self.fallback.open("a") as handle:
            for metric in batch:
                handle.write(json.dumps({"key": metric.key, "value": metric.value, "step": metric.step,
                                         "timestamp": metric.timestamp}) + "\n")


def log_kept_epochs(client, run_id: str, path: Path) -> int:
    """Log the epochs' metrics an `EpochMlflowLogger` kept in `path` into run `run_id` (with their epochs and
    times), then remove the file; the number of values logged."""
    from mlflow.entities import Metric

    if not path.is_file():
        return 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    metrics = [Metric(key=row["key"], value=row["value"], timestamp=row["timestamp"], step=row["step"]) for row in rows]
    for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics per batch
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    path.unlink()
    return len(metrics)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
