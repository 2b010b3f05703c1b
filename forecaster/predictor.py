"""The one call that turns scaled windows into forecasts: `Predictor` wraps a trained network or baseline (its
model config says which of its outputs is the point forecast and which are quantiles), and `scaled_forecasts`
runs it over batches.

Every forecast goes through here, whoever asks for it: the evaluation (`forecaster.evaluation`), batch predict
and the pyfunc model (`forecaster.forecasting`), an ensemble's members, the precision check. A trained model
(`forecaster.bundle.ModelBundle`) hands out its predictor as `bundle.predictor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forecaster.models.losses import LOSSES, point_index

if TYPE_CHECKING:
    from forecaster.config import ModelConfig


def output_quantiles(model: ModelConfig, is_network: bool) -> list[float] | None:
    """What a model's Q outputs are: the quantiles of a network trained with a per-quantile loss; None for one
    point output (a point loss, or a baseline)."""
    return list(model.quantiles) if is_network and LOSSES[model.loss].per_quantile else None


def output_point_index(model: ModelConfig, is_network: bool) -> int:
    """Which of the Q outputs is the point forecast: the median of a quantile network, else the only one."""
    quantiles = output_quantiles(model, is_network)
    return 0 if quantiles is None else point_index(model.loss, quantiles)


@dataclass(frozen=True)
class Predictor:
    """A trained network or baseline, called one way: scaled windows in, `[B, H, T, Q]` out."""

    model: ModelConfig  # the loss and quantiles the network was trained with
    network: torch.nn.Module | None = None
    baseline: Any = None
    precision: str = "32"  # "32" or "bf16": what a network computes in (`inference.choose_precision`)

    def __post_init__(self) -> None:
        if self.network is not None:
            self.network.eval()  # forecasts never use dropout

    @property
    def quantiles(self) -> list[float] | None:
        return output_quantiles(self.model, self.network is not None)

    @property
    def point_index(self) -> int:
        return output_point_index(self.model, self.network is not None)

    def __call__(self, x_past: torch.Tensor, x_future: torch.Tensor, series: np.ndarray | None = None) -> torch.Tensor:
        """[B, L, F_past], [B, H, F_future] -> [B, H, T, Q] on the scaled axis. `series` [B]: each window's
        series index in the model's training data, read by the models fitted per series (ets, theta, ...)."""
        if self.network is None:
            return self.baseline.predict(x_past, x_future, series)[..., None]  # [B, H, T] -> [B, H, T, 1]
        if self.precision == "bf16":
            with torch.autocast(x_past.device.type, dtype=torch.bfloat16):
                return self.network(x_past, x_future).float()
        return self.network(x_past, x_future)


def scaled_forecasts(predictor: Predictor, batches: Iterable[dict[str, torch.Tensor]],
                     series_map: np.ndarray | None = None) -> Iterator[tuple[dict[str, torch.Tensor], np.ndarray]]:
    """Each batch with its forecasts, float32 `[B, H, T, Q]` on the scaled axis. A batch's `series` indexes the
    panel its windows come from; `series_map` turns that into the model's training index (None: the same)."""
    for batch in batches:
        series = batch["series"].cpu().numpy()
        with torch.inference_mode():  # per batch: the mode is thread state and must not leak past a `yield`
            pred = predictor(batch["x_past"], batch["x_future"], series if series_map is None else series_map[series])
        yield batch, pred.float().cpu().numpy()
