"""Training losses over a network's `[B, H, T, Q]` output, and the point forecast taken out of it.

Q is 1 for the point losses (mse, mae, huber) and the number of quantiles for `quantile`. Every loss is a mean
over all of B, H, T (and Q), so its scale does not depend on the batch size, horizon or number of targets.

`LOSSES` is the registry `model.loss` reads: a new loss is one `register_loss` here (and its name in
`config.Loss`, which loads without torch; a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from forecaster.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossType:
    """A registered loss: `make(quantiles)` returns `loss(pred [B, H, T, Q], y [B, H, T]) -> scalar`, picklable
    (DDP spawn, workers); `per_quantile`: one output per quantile (else Q = 1, a point forecast)."""

    name: str
    make: Callable[[tuple[float, ...]], Loss]
    per_quantile: bool = False


LOSSES: Registry[LossType] = Registry("loss")
register_loss = LOSSES.add


def n_outputs(loss_name: str, quantiles: Sequence[float]) -> int:
    """Q, the size of the network's last output axis."""
    return len(quantiles) if _loss(loss_name).per_quantile else 1


def point_index(loss_name: str, quantiles: Sequence[float]) -> int:
    """Which of the Q outputs is the point forecast: the quantile nearest 0.5 (the median), or the only one."""
    if not _loss(loss_name).per_quantile:
        return 0
    return min(range(len(quantiles)), key=lambda index: abs(quantiles[index] - 0.5))


def point_forecast(pred: torch.Tensor, loss_name: str, quantiles: Sequence[float]) -> torch.Tensor:
    """pred [B, H, T, Q] -> [B, H, T]."""
    _check_outputs(pred, n_outputs(loss_name, quantiles))
    return pred[..., point_index(loss_name, quantiles)]


def pinball_loss(pred: torch.Tensor, y: torch.Tensor, quantiles: Sequence[float]) -> torch.Tensor:
    """Mean pinball (quantile) loss: pred [B, H, T, Q], y [B, H, T] -> scalar.

    For quantile q and error e = y - pred: q * e when the forecast is below the truth, (q - 1) * e above it. Its
    minimiser is the q-quantile of y, so one output per q learns a predictive interval.
    """
    _check_outputs(pred, len(quantiles))
    q = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device)  # [Q]
    error = y.unsqueeze(-1) - pred  # [B, H, T, 1] - [B, H, T, Q] -> [B, H, T, Q]
    return torch.maximum(q * error, (q - 1) * error).mean()


def _point_loss(pred: torch.Tensor, y: torch.Tensor, loss: Callable[..., torch.Tensor]) -> torch.Tensor:
    _check_outputs(pred, 1)
    return loss(pred.squeeze(-1), y)


def _point(loss: Callable[..., torch.Tensor]) -> Callable[[tuple[float, ...]], Loss]:
    return lambda quantiles: partial(_point_loss, loss=loss)


# Huber uses delta = 1, one standard deviation of the scaled targets: quadratic for ordinary errors, linear for
# outliers.
register_loss(LossType("mse", _point(F.mse_loss)))
register_loss(LossType("mae", _point(F.l1_loss)))
register_loss(LossType("huber", _point(F.huber_loss)))
register_loss(LossType("quantile", lambda quantiles: partial(pinball_loss, quantiles=quantiles), per_quantile=True))


def make_loss(name: str, quantiles: Sequence[float] = (0.5,)) -> Loss:
    """`loss(pred [B, H, T, Q], y [B, H, T]) -> scalar`. A `functools.partial`, so it pickles (DDP spawn, workers)."""
    return _loss(name).make(tuple(quantiles))


def _loss(name: str) -> LossType:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def _check_outputs(pred: torch.Tensor, expected: int) -> None:
    if pred.size(-1) != expected:
        raise ValueError(
            f"expected a forecast [B, H, T, {expected}], got {list(pred.shape)}: "
            "was the network built for another loss or set of quantiles?"
        )
