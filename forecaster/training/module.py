"""The LightningModule: owns loss, metrics, optimiser, learning-rate schedule and gradient clipping.

The network is built elsewhere and handed in. Validation and test log `val/loss`, `val/mae`, ... per batch;
training adds its loss and gradient norms up in plain floats and logs them once an epoch (`train/loss`): a
`self.log` call per training step costs more than a small network's step (benchmarks/speed.py). Each epoch logs
what the gradients did: the total gradient norm measured *before* clipping (mean and max over the epoch's steps)
and the share of steps that were clipped. A vanilla RNN's norm swinging by orders of magnitude while an LSTM's
stays flat is the exploding/vanishing gradient story, made visible. With `step_loss=True` (a progress bar on a
terminal) the bar also shows each step's loss.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn

from forecaster.errors import TrainingError
from forecaster.models.losses import make_loss, point_forecast


class ForecastModule(pl.LightningModule):
    def __init__(
        self,
        network: nn.Module,
        loss: str = "mse",
        quantiles: list[float] | None = None,
        lr: float = 1e-3,
        optimizer: str = "adamw",
        weight_decay: float = 0.0,
        lr_schedule: str = "plateau",
        max_epochs: int = 20,
        teacher_forcing: float = 1.0,
        teacher_forcing_decay: float = 0.0,
        monitor: str = "val/loss",
        step_loss: bool = False,
    ):
        super().__init__()
        self.monitor = monitor  # what the plateau schedule watches: the training loss when there is no validation
        self.network = network
        self.loss_name = loss
        self.quantiles = list(quantiles or [0.5])
        self.loss_fn = make_loss(loss, self.quantiles)
        self.lr = lr
        self.optimizer_name = optimizer
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.max_epochs = max_epochs
        self.teacher_forcing = teacher_forcing
        self.teacher_forcing_decay = teacher_forcing_decay
        self.step_loss = step_loss
        self._grad_norms: list[float] = []
        self._clipped_steps = 0
        self._loss_sum, self._loss_windows = 0.0, 0

    @property
    def teacher_forcing_ratio(self) -> float:
        """Scheduled sampling: the ratio decays geometrically each epoch, from `teacher_forcing` towards 0."""
        return self.teacher_forcing * (1.0 - self.teacher_forcing_decay) ** self.current_epoch

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Validation and test: loss, MSE and MAE of the point forecast, averaged over the epoch."""
        y = batch["y"]  # [B, H, T]
        pred = self.network(batch["x_past"], batch["x_future"])  # [B, H, T, Q]
        loss = self.loss_fn(pred, y)
        point = point_forecast(pred, self.loss_name, self.quantiles)  # [B, H, T]
        batch_size = y.shape[0]
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage != "test", batch_size=batch_size,
                 sync_dist=True)
        self.log(f"{stage}/mse", torch.mean((point - y) ** 2), on_epoch=True, batch_size=batch_size, sync_dist=True)
        self.log(f"{stage}/mae", torch.mean(torch.abs(point - y)), on_epoch=True, batch_size=batch_size,
                 sync_dist=True)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        y = batch["y"]
        pred = self.network(batch["x_past"], batch["x_future"], y=y, teacher_forcing=self.teacher_forcing_ratio)
        loss = self.loss_fn(pred, y)
        value = float(loss.detach())  # one read of the loss a step: the finiteness check and the epoch mean share it
        if not math.isfinite(value):
            raise TrainingError(
                f"the training loss became {value} at epoch {self.current_epoch}, step {self.global_step}. "
                "Try a lower learning rate (--set train.lr=...), gradient clipping (--set train.gradient_clip_val=1.0), "
                "a smaller model, or check the data for extreme values (forecaster validate CONFIG)."
            )
        self._loss_sum += value * y.shape[0]
        self._loss_windows += y.shape[0]
        if self.step_loss:
            self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Measure the total gradient norm before clipping, then clip as configured: one pass over the
        gradients for norm clipping, whose torch function returns the norm it measured before clipping."""
        parameters = [p for p in self.parameters() if p.grad is not None]
        if not parameters:
            return
        algorithm = gradient_clip_algorithm or "norm"
        if gradient_clip_val and algorithm == "norm":
            norm = float(torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val))
            clipped = norm > gradient_clip_val
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in parameters]))
            clipped = False
            if gradient_clip_val:
                clipped = any(bool((p.grad.abs() > gradient_clip_val).any()) for p in parameters)
                torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
        self._grad_norms.append(norm)
        self._clipped_steps += int(clipped)

    def on_train_epoch_start(self) -> None:
        self._grad_norms = []
        self._clipped_steps = 0
        self._loss_sum, self._loss_windows = 0.0, 0

    def epoch_loss(self) -> float:
        """This epoch's mean training loss so far, over windows."""
        return self._loss_sum / self._loss_windows if self._loss_windows else math.nan

    def gradient_summary(self) -> dict[str, float]:
        """This epoch so far: mean and max gradient norm before clipping, and the share of clipped steps."""
        finite = [n for n in self._grad_norms if math.isfinite(n)]
        return {"grad_norm": sum(finite) / max(len(finite), 1), "grad_norm_max": max(finite, default=0.0),
                "clipped_share": self._clipped_steps / max(len(self._grad_norms), 1)}

    def on_train_epoch_end(self) -> None:
        if self._loss_windows:
            self.log("train/loss", self.epoch_loss(), sync_dist=True)
        for key, value in self.gradient_summary().items():
            self.log(f"train/{key}", value, sync_dist=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        self.log("train/teacher_forcing", self.teacher_forcing_ratio)

    def configure_optimizers(self):
        from forecaster.training.optim import configure

        return configure(self.parameters(), optimizer=self.optimizer_name, lr=self.lr, weight_decay=self.weight_decay,
                         schedule=self.lr_schedule, max_epochs=self.max_epochs, monitor=self.monitor)
