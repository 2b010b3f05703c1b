"""Reversible instance normalisation, RevIN (Kim et al., ICLR 2022).

Each window's target columns are standardised by their own lookback mean and standard deviation before the
network sees them, and the forecast is mapped back with the same statistics. The network then models the shape of
a window, not its level or spread, which is what shifts between training and test periods (distribution shift).

The statistics are returned to the caller instead of being stored on the module, so one module can serve
concurrent forward passes and nothing is left over between batches.
"""

from __future__ import annotations

import torch
from torch import nn

Stats = tuple[torch.Tensor, torch.Tensor]


class RevIN(nn.Module):
    """normalise: (x - mean) / std * scale + shift;  restore: (z - shift) / scale * std + mean.

    With `affine`, scale and shift are learned per target variable. The scale is kept positive (stored as its
    log) so that `restore` is increasing: quantile forecasts keep their order, and there is no division by a
    learned number near zero (the paper's version divides by `weight + eps**2`).
    """

    def __init__(self, n_targets: int, affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.log_scale = nn.Parameter(torch.zeros(n_targets)) if affine else None
        self.shift = nn.Parameter(torch.zeros(n_targets)) if affine else None

    def statistics(self, x: torch.Tensor) -> Stats:
        """x [B, L, T] -> (mean, std), each [B, 1, T]: per window and variable, over the lookback."""
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)
        return mean, std

    def normalise(self, x: torch.Tensor, stats: Stats) -> torch.Tensor:
        """x [B, S, T] (the lookback, or true future targets fed back by teacher forcing) -> [B, S, T]."""
        mean, std = stats
        z = (x - mean) / std
        if self.log_scale is not None:
            z = z * self.log_scale.exp() + self.shift
        return z

    def restore(self, z: torch.Tensor, stats: Stats) -> torch.Tensor:
        """z [B, H, T, Q] (every quantile is mapped the same way) -> [B, H, T, Q] on the input's scale."""
        mean, std = (s.unsqueeze(-1) for s in stats)  # [B, 1, T] -> [B, 1, T, 1]
        if self.log_scale is not None:
            z = (z - self.shift[:, None]) / self.log_scale.exp()[:, None]
        return z * std + mean
