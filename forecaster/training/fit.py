"""Fit one model on a prepared data module: a recurrent network through a Lightning Trainer, or a baseline.

`train.accelerator`, `devices`, `strategy`, `num_nodes` and `precision` go to the Trainer as they are, so
Lightning's own strategies (`ddp` on CPUs with gloo, on GPUs with NCCL) train one model across processes and
machines; `global_rank()` tells a process which one it is before the Trainer exists.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from forecaster.config import BASELINES, Config
from forecaster.errors import TrainingError
from forecaster.forecasting import Predictor

log = logging.getLogger(__name__)


@dataclass
class FittedModel:
    """What training produced: the network or baseline, as the `forecasting.Predictor` that forecasts with it,
    plus how it got there."""

    kind: str  # "network" or a baseline name
    predictor: Predictor
    network: nn.Module | None
    baseline: object | None
    n_params: int
    train_seconds: float
    best_epoch: int | None = None
    best_val_loss: float | None = None
    epochs_run: int = 0
    trainer_metrics: dict[str, float] = field(default_factory=dict)


def global_rank(devices_per_node: int = 1) -> int:
    """This process's rank in a distributed training, read from what its launcher set; 0 when not distributed.

    torchrun sets `RANK`; Lightning's own `ddp` launcher re-runs the command with `LOCAL_RANK` (and the user's
    `NODE_RANK` on other machines); a SLURM step sets `SLURM_PROCID` for every task. `LOCAL_RANK` wins over
    `SLURM_PROCID` because inside a one-task SLURM job Lightning launches the other ranks itself.
    """
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "LOCAL_RANK" not in env and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"])
    return int(env.get("NODE_RANK", 0)) * devices_per_node + int(env.get("LOCAL_RANK", 0))


def network_from_dims(config: Config, dims: dict[str, int]) -> nn.Module:
    """The network `config.model` describes, for data of the given widths (n_targets, n_past_features, ...)."""
    from forecaster.models.network import RecurrentForecaster

    return RecurrentForecaster.from_config(
        config.model, lookback=config.window.lookback, horizon=config.window.horizon, **dims
    )


def data_dims(datamodule) -> dict[str, int]:
    return {"n_targets": datamodule.n_targets, "n_past_features": datamodule.n_past_features,
            "n_future_features": datamodule.n_future_features}


def build_module(config: Config, network: nn.Module, monitor: str = "val/loss", step_loss: bool = False):
    from forecaster.training.module import ForecastModule

    return ForecastModule(
        network,
        monitor=monitor,
        loss=config.model.loss,
        quantiles=config.model.quantiles,
        lr=config.train.lr,
        optimizer=config.train.optimizer,
        weight_decay=config.train.weight_decay,
        lr_schedule=config.train.lr_schedule,
        max_epochs=config.train.max_epochs,
        teacher_forcing=config.model.teacher_forcing,
        teacher_forcing_decay=config.model.teacher_forcing_decay,
        step_loss=step_loss,
    )


def fit_baseline(name: str, config: Config, datamodule) -> FittedModel:
    from forecaster.data.features import seasonalities
    from forecaster.models.baselines import make_baseline

    started = time.perf_counter()
    baseline = make_baseline(name, season_length=datamodule.season_length, lookback=config.window.lookback,
                             horizon=config.window.horizon, n_targets=datamodule.n_targets,
                             seasonalities=seasonalities(datamodule.panel.freq, datamodule.season_length))
    baseline.fit_data(datamodule)
    return FittedModel(kind=name, predictor=Predictor(config.model, baseline=baseline), network=None,
                       baseline=baseline, n_params=baseline.n_params, train_seconds=time.perf_counter() - started)


def fit_network(
    config: Config, datamodule, checkpoint_dir: Path, logger=None, resume: bool = False, extra_callbacks=(),
    label: str = "",
) -> FittedModel:
    """Train the network `config.model` describes; `label` names it in the per-epoch log lines."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from forecaster.runtime import tune_allocator, tune_threads
    from forecaster.training.callbacks import BestWeights, EpochLines, TimeLimit

    if any(word in config.train.strategy for word in ("spawn", "fork", "notebook")):
        raise TrainingError(f"train.strategy={config.train.strategy}: rank zero would train in a child process "
                            f"and its best weights would not come back; use train.strategy=ddp, which runs the "
                            f"command once per process")
    tune_allocator()
    tune_threads(config.train.threads)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        check_resumable(config, checkpoint_dir)
    else:
        record_config(config, checkpoint_dir)
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    validate = len(datamodule.val_dataset) > 0  # none when refitting on every row: the last epoch's weights are kept
    network = network_from_dims(config, data_dims(datamodule))
    bar = config.train.progress and sys.stderr.isatty()  # a bar on a terminal, one line per epoch in a log
    module = build_module(config, network, monitor="val/loss" if validate else "train/loss", step_loss=bar)
    best = BestWeights()
    callbacks = [ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, save_top_k=0), *extra_callbacks]
    if validate:
        callbacks.insert(0, best)
    if validate and config.train.patience > 0:
        callbacks.append(EarlyStopping(monitor="val/loss", patience=config.train.patience))
    if not bar:
        callbacks.append(EpochLines(label))
    if config.train.max_minutes is not None:
        callbacks.append(TimeLimit(config.train.max_minutes * 60, label))
    trainer = pl.Trainer(
        max_epochs=config.train.max_epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        strategy=config.train.strategy,
        num_nodes=config.train.num_nodes,
        precision=config.train.precision,
        gradient_clip_val=config.train.gradient_clip_val,
        gradient_clip_algorithm=config.train.gradient_clip_algorithm,
        limit_train_batches=config.train.limit_train_batches,
        limit_val_batches=None if validate else 0,
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        enable_progress_bar=bar,
        enable_model_summary=False,
        deterministic=False,
        default_root_dir=str(checkpoint_dir),
        num_sanity_val_steps=0,
    )
    ckpt_path = None
    if resume:
        last = checkpoint_dir / "last.ckpt"
        if not last.is_file():
            raise TrainingError(f"--resume: no checkpoint at {last}; train once without --resume first")
        ckpt_path = str(last)
        log.info("resuming from %s", last)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    seconds = time.perf_counter() - started
    if validate:
        if best.best_state is None:
            raise TrainingError("training ended before one validation pass; raise train.max_epochs or check the split")
        module.load_state_dict(best.best_state)  # also after a resume whose later epochs did not improve
    return FittedModel(
        kind="network",
        predictor=Predictor(config.model, network=network),
        network=network,
        baseline=None,
        n_params=sum(p.numel() for p in network.parameters()),
        train_seconds=seconds,
        best_epoch=best.best_epoch,
        best_val_loss=best.best_score if validate else None,
        epochs_run=trainer.current_epoch,
        trainer_metrics={key: float(value) for key, value in trainer.callback_metrics.items()},
    )


# What a training learns from; other sections (tracking, predict, monitor, ...) may change between runs.
TRAINING_SECTIONS = ("data.", "window.", "split.", "model.", "train.")
# Keys a resumed training may change: they set how long and how visibly it runs, not what it learns.
RESUMABLE_CHANGES = ("train.max_epochs", "train.patience", "train.progress", "train.threads", "train.num_workers",
                     "train.max_minutes")


def record_config(config: Config, checkpoint_dir: Path) -> None:
    """The config a training started with, beside its checkpoints, for `check_resumable`."""
    (checkpoint_dir / "config.json").write_text(json.dumps(config.flat(), default=str, sort_keys=True))


def check_resumable(config: Config, checkpoint_dir: Path) -> None:
    """A resume continues the same training: any other config value than `RESUMABLE_CHANGES` is refused."""
    record = checkpoint_dir / "config.json"
    if not record.is_file():
        if (checkpoint_dir / "last.ckpt").is_file():
            raise TrainingError(f"--resume: the checkpoint in {checkpoint_dir} was written by an earlier forecaster, "
                                f"which kept neither its config nor its best weights beside it (and whose network "
                                f"laid out its parameters differently); train anew without --resume")
        return
    before, now = json.loads(record.read_text()), json.loads(json.dumps(config.flat(), default=str))
    changed = sorted(key for key in before.keys() | now.keys()
                     if key.startswith(TRAINING_SECTIONS) and key not in RESUMABLE_CHANGES
                     and before.get(key) != now.get(key))
    if changed:
        listed = ", ".join(f"{key} ({before.get(key)!r} -> {now.get(key)!r})" for key in changed)
        raise TrainingError(f"--resume: the config differs from the one the checkpoint in {checkpoint_dir} was "
                            f"trained with: {listed}. Resume with the same values (only "
                            f"{', '.join(RESUMABLE_CHANGES)} may change), or train anew without --resume.")


def fit_model(config: Config, datamodule, kind: str, checkpoint_dir: Path, logger=None, resume=False,
              label: str = "") -> FittedModel:
    if kind in BASELINES:
        return fit_baseline(kind, config, datamodule)
    return fit_network(config, datamodule, checkpoint_dir, logger=logger, resume=resume, label=label)
