"""Fit one model on a prepared data module, a recurrent network through a Lightning Trainer or a baseline, and
return it as the trained model (`forecaster.bundle.ModelBundle`, with its `TrainingRecord`).

`train.accelerator`, `devices`, `strategy`, `num_nodes` and `precision` go to the Trainer as they are (`precision:
auto` first resolved for this machine, `forecaster.training.precision`), so
Lightning's own strategies (`ddp` on CPUs with gloo, on GPUs with NCCL) train one model across processes and
machines; `global_rank()` tells a process which one it is before the Trainer exists.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from torch import nn

from forecaster.bundle import ModelBundle, TrainingRecord
from forecaster.config import BASELINES, Config
from forecaster.errors import Interrupted, TrainingError
from forecaster.models.network import network_from_dims

log = logging.getLogger(__name__)


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


def fit_baseline(name: str, config: Config, datamodule) -> ModelBundle:
    """Fit the baseline or statistical model `name` on the training rows of `datamodule`."""
    from forecaster.data.frequency import seasonalities
    from forecaster.models.catalog import make_baseline

    started = time.perf_counter()
    baseline = make_baseline(name, season_length=datamodule.season_length, lookback=config.window.lookback,
                             horizon=config.window.horizon, n_targets=datamodule.n_targets,
                             seasonalities=seasonalities(datamodule.panel.freq, datamodule.season_length))
    baseline.fit_data(datamodule)
    record = TrainingRecord(n_params=baseline.n_params, train_seconds=time.perf_counter() - started)
    return ModelBundle.trained(config, datamodule, name, baseline=baseline, training=record)


def fit_network(
    config: Config, datamodule, checkpoint_dir: str | Path, logger=None, resume: bool = False, extra_callbacks=(),
    label: str = "", run_id: str | None = None,
) -> ModelBundle:
    """Train the network `config.model` describes, writing `checkpoint_dir/last.ckpt` at every epoch end; with
    `resume`, continue from that checkpoint (refused when another training wrote it). `label` names the training in
    the per-epoch log lines; `run_id`, its MLflow run, is recorded in the checkpoint."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from forecaster.runtime import set_allocator, set_threads
    from forecaster.training.callbacks import BestWeights, EpochCheckpoint, EpochLines, TimeLimit
    from forecaster.training.precision import training_precision

    if any(word in config.train.strategy for word in ("spawn", "fork", "notebook")):
        raise TrainingError(f"train.strategy={config.train.strategy}: rank zero would train in a child process "
                            f"and its best weights would not come back; use train.strategy=ddp, which runs the "
                            f"command once per process")
    set_allocator()
    set_threads(config.train.threads)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = EpochCheckpoint(checkpoint_dir, training_identity(config, run_id))
    if resume:
        check_resumable(config, checkpoint.path)
    else:
        checkpoint.path.unlink(missing_ok=True)  # a new training never continues an older one's file
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    validate = len(datamodule.val_dataset) > 0  # none when refitting on every row: the last epoch's weights are kept
    network = network_from_dims(config, datamodule.dims)
    start = choose_start(config, network, datamodule, label)
    prefix = f"{label}: " if label else ""  # of this training's log lines
    precision, why = training_precision(config)
    if config.train.precision == "auto":
        log.info("%straining in %s (%s)", prefix, precision, why)
    # as the bundle records them: what was built and how it trained
    config = config.with_overrides({"model.skip_start": start, "train.precision": precision})
    if config.train.max_epochs == 0 and start != "ridge":
        raise TrainingError("train.max_epochs: 0 trains nothing, which only a network started at the ridge fit "
                            "(model.linear_skip: true, model.skip_start: ridge) may do; raise train.max_epochs")
    start_scored = start == "ridge" and validate and not resume
    bar = config.train.progress and sys.stderr.isatty()  # a bar on a terminal, one line per epoch in a log
    module = build_module(config, network, monitor="val/loss" if validate else "train/loss", step_loss=bar)
    best = BestWeights(score_start=start_scored)
    callbacks = [checkpoint, *extra_callbacks]
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
        num_sanity_val_steps=-1 if start_scored else 0,  # the whole validation split scores the start
    )
    ckpt_path = str(checkpoint.path) if resume else None
    if resume:
        log.info("resuming from %s", checkpoint.path)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException as exc:  # Lightning's own answer to SIGTERM, a SystemExit(0): not a success
        interrupted = Interrupted(signal.SIGTERM)
        interrupted.kept.append(f"{label or 'training'}: {checkpoint.describe()}")
        raise interrupted from exc
    except Interrupted as exc:
        exc.kept.append(f"{label or 'training'}: {checkpoint.describe()}")
        raise
    seconds = time.perf_counter() - started
    if validate:
        if best.best_state is None:
            raise TrainingError("training ended before one validation pass; raise train.max_epochs or check the split")
        module.load_state_dict(best.best_state)  # also after a resume whose later epochs did not improve
        if best.best_epoch == -1:
            log.info("%sno epoch beat the ridge start on validation: the network kept it (a linear model on lags, "
                     "the recurrence at zero)", prefix)
    network.eval()
    record = TrainingRecord(
        n_params=sum(p.numel() for p in network.parameters()),
        train_seconds=seconds,
        best_epoch=best.best_epoch,
        best_val_loss=best.best_score if validate else None,
        epochs_run=trainer.current_epoch,
        trainer_metrics={key: float(value) for key, value in trainer.callback_metrics.items()},
    )
    return ModelBundle.trained(config, datamodule, "network", network=network, training=record)


def choose_start(config: Config, network, datamodule, label: str = "") -> str:
    """Start `network` as `model.skip_start` asks and return how it started, "zero" or "ridge".

    "ridge" starts it as the `linear` baseline (`RecurrentForecaster.start_at_ridge`). "auto" does so only when that
    start beats seasonal naive on the validation windows (MAE on the scaled axis; on the training windows when there
    is no validation split): where a linear model on lags is worse than repeating the last season, as on M4 Weekly's
    short trending series, a network is better started from zero. The fit is closed-form and deterministic, so a
    resumed training makes the same choice before its checkpoint's weights replace the start.
    """
    wanted = config.model.skip_start if config.model.linear_skip else "zero"
    if wanted == "zero":
        return "zero"
    import torch

    prefix = f"{label}: " if label else ""
    before = {name: value.clone() for name, value in network.state_dict().items()}
    split = "val" if len(datamodule.val_dataset) > 0 else "train"
    with torch.random.fork_rng(devices=[]):  # iterating a DataLoader draws a seed: training's draws stay as they were
        rows = network.start_at_ridge(datamodule.dataloader("train"))
        if wanted == "ridge":
            log.info("%sstarting at a ridge fit on the lags (%d windows x targets)", prefix, rows)
            return "ridge"
        ridge, naive = _start_errors(network, datamodule, split)
    if ridge < naive:
        log.info("%sstarting at a ridge fit on the lags: its %s MAE %.4f beats seasonal naive's %.4f "
                 "(model.skip_start: auto)", prefix, split, ridge, naive)
        return "ridge"
    network.skip_outside = False
    network.load_state_dict(before)
    log.info("%sstarting from zero: a ridge fit on the lags has %s MAE %.4f, no better than seasonal naive's %.4f "
             "(model.skip_start: auto)", prefix, split, ridge, naive)
    return "zero"


def _start_errors(network, datamodule, split: str) -> tuple[float, float]:
    """Mean absolute error on the scaled axis over the `split` windows: the network as it stands, and seasonal naive
    (naive when the lookback holds no whole season)."""
    import torch

    from forecaster.errors import ConfigError, ModelError
    from forecaster.models.catalog import make_baseline

    shape = {"lookback": network.lookback, "horizon": network.horizon, "n_targets": network.n_targets}
    try:
        naive = make_baseline("seasonal_naive", season_length=datamodule.season_length, **shape)
    except (ConfigError, ModelError):
        naive = make_baseline("naive", **shape)
    errors, count, training = torch.zeros(2, dtype=torch.float64), 0, network.training
    network.eval()
    with torch.no_grad():
        for batch in datamodule.dataloader(split):
            y = batch["y"]
            ours = network(batch["x_past"], batch["x_future"])[..., network.point_index]
            theirs = naive.predict(batch["x_past"], batch["x_future"])
            errors += torch.stack([(ours - y).abs().sum(), (theirs - y).abs().sum()]).double()
            count += y.numel()
    network.train(training)
    ridge, naive_error = (errors / max(count, 1)).tolist()
    return ridge, naive_error


# What a training learns from; other sections (tracking, predict, monitor, ...) may change between runs.
TRAINING_SECTIONS = ("data.", "window.", "split.", "model.", "train.")
# Keys a resumed training may change: they set how long and how visibly it runs, not what it learns.
RESUMABLE_CHANGES = ("train.max_epochs", "train.patience", "train.progress", "train.threads", "train.num_workers",
                     "train.max_minutes")


def training_identity(config: Config, run_id: str | None = None) -> dict:
    """Which training a checkpoint belongs to: its MLflow run and the config values a resume may not change."""
    values = json.loads(json.dumps(config.flat(), default=str))
    return {"run_id": run_id, "config": {key: value for key, value in sorted(values.items())
                                         if key.startswith(TRAINING_SECTIONS) and key not in RESUMABLE_CHANGES}}


def check_resumable(config: Config, checkpoint: Path) -> dict:
    """The identity stored in `checkpoint`, if a resume with `config` may continue it; otherwise a TrainingError
    that names what is missing or which config values differ."""
    from forecaster.training.callbacks import read_checkpoint_identity

    if not checkpoint.is_file():
        raise TrainingError(f"--resume: no checkpoint at {checkpoint}; train once without --resume first")
    try:
        identity = read_checkpoint_identity(checkpoint)
    except Exception as exc:  # a truncated or foreign file: torch says what it found
        raise TrainingError(f"--resume: the checkpoint {checkpoint} cannot be read ({type(exc).__name__}: {exc}); "
                            f"delete it and train anew without --resume") from None
    if identity is None:
        raise TrainingError(f"--resume: the checkpoint {checkpoint} was written by an earlier forecaster, which did "
                            f"not record the training it belongs to; train anew without --resume")
    differences = config_differences(identity["config"], training_identity(config)["config"])
    if differences:
        raise TrainingError(f"--resume: the config differs from the one the checkpoint {checkpoint} was trained "
                            f"with: {differences}. Resume with the same values (only "
                            f"{', '.join(RESUMABLE_CHANGES)} may change), or train anew without --resume.")
    return identity


def latest_resumable(config: Config, folder: Path) -> tuple[Path, dict]:
    """The newest training under `folder` (one subfolder per training) that `config` may continue, and its
    identity. Refused, naming why, when there is none: the newest checkpoint's differences are the ones shown."""
    checkpoints = sorted(folder.glob("*/last.ckpt"), key=lambda path: path.stat().st_mtime, reverse=True)
    if not checkpoints:
        if (folder / "last.ckpt").is_file():
            raise TrainingError(f"--resume: the checkpoint in {folder} was written by an earlier forecaster, which "
                                f"did not record the training it belongs to; train anew without --resume")
        raise TrainingError(f"--resume: no checkpoint of this training under {folder}; train once without --resume "
                            f"first")
    refusals = []
    for checkpoint in checkpoints:
        try:
            return checkpoint.parent, check_resumable(config, checkpoint)
        except TrainingError as exc:
            refusals.append(exc)
    raise refusals[0]


def config_differences(before: dict, now: dict) -> str:
    """'key (old -> new), ...' over the keys whose values differ; empty when none do. A key one side lacks counts
    as its default, so that a checkpoint written before a release added a key resumes while that key keeps it."""
    def value(side: dict, key: str):
        return side[key] if key in side else _default(key)

    changed = sorted(key for key in before.keys() | now.keys() if value(before, key) != value(now, key))
    return ", ".join(f"{key} ({value(before, key)!r} -> {value(now, key)!r})" for key in changed)


def _default(key: str):
    """The default of the flat config key `key` ("model.skip_start"), as a checkpoint's identity stores values;
    None for a key no section has."""
    section, _, name = key.partition(".")
    field = Config.model_fields.get(section)
    fields = getattr(field.annotation, "model_fields", {}) if field is not None else {}
    if name not in fields:
        return None
    return json.loads(json.dumps(fields[name].get_default(call_default_factory=True), default=str))


def fit_model(config: Config, datamodule, kind: str, checkpoint_dir: Path, logger=None, resume=False,
              label: str = "", run_id: str | None = None) -> ModelBundle:
    """The model `kind` names (a baseline name, or "network") trained on `datamodule`: see `fit_baseline` and
    `fit_network`."""
    if kind in BASELINES:
        return fit_baseline(kind, config, datamodule)
    return fit_network(config, datamodule, checkpoint_dir, logger=logger, resume=resume, label=label, run_id=run_id)
