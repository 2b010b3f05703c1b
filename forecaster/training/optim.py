"""The optimisers (`train.optimizer`) and learning-rate schedules (`train.lr_schedule`) a training can use: one
registry each, read by `ForecastModule.configure_optimizers`.

A new optimiser is one `register_optimizer(OptimizerType(name, description, make))`, where `make(parameters, lr,
weight_decay)` returns a torch optimiser; a new schedule is one `register_schedule(ScheduleType(name, description,
make))`, where `make(optimizer, max_epochs, monitor)` returns Lightning's `lr_scheduler` dict, or None for a
constant rate. Either name goes into `config.Optimizer` / `config.LrSchedule` too (the config loads without torch;
`tests/test_optim.py` keeps the lists equal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from forecaster.registry import Registry


@dataclass(frozen=True)
class OptimizerType:
    name: str
    description: str
    make: Callable[[Iterable[torch.nn.Parameter], float, float], torch.optim.Optimizer]


@dataclass(frozen=True)
class ScheduleType:
    name: str
    description: str
    make: Callable[[torch.optim.Optimizer, int, str], dict[str, Any] | None]


OPTIMIZERS: Registry[OptimizerType] = Registry("optimizer")
register_optimizer = OPTIMIZERS.add
SCHEDULES: Registry[ScheduleType] = Registry("learning-rate schedule")
register_schedule = SCHEDULES.add

register_optimizer(OptimizerType(
    "adamw", "Adam with decoupled weight decay",
    lambda parameters, lr, weight_decay: torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)))
register_optimizer(OptimizerType(
    "sgd", "plain stochastic gradient descent, weight decay as an L2 penalty",
    lambda parameters, lr, weight_decay: torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)))

register_schedule(ScheduleType(
    "plateau", "halve the rate after 2 epochs without a better monitored loss",
    lambda optimizer, max_epochs, monitor: {
        "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2),
        "monitor": monitor}))
register_schedule(ScheduleType(
    "cosine", "cosine annealing from the rate to zero over train.max_epochs",
    lambda optimizer, max_epochs, monitor: {
        "scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(max_epochs, 1)),
        "interval": "epoch"}))
register_schedule(ScheduleType("none", "a constant rate", lambda optimizer, max_epochs, monitor: None))


def configure(parameters: Iterable[torch.nn.Parameter], *, optimizer: str, lr: float, weight_decay: float,
              schedule: str, max_epochs: int, monitor: str):
    """What a LightningModule's `configure_optimizers` returns: the optimiser, with its schedule when it has one."""
    built = OPTIMIZERS[optimizer].make(parameters, lr, weight_decay)
    scheduler = SCHEDULES[schedule].make(built, max_epochs, monitor)
    return built if scheduler is None else {"optimizer": built, "lr_scheduler": scheduler}
