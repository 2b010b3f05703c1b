"""The encoders: what reads the lookback before a decoder (forecaster.models.decoders) makes the horizon.

Every encoder is called the same way and returns what a decoder starts from:

    encoder(targets [B, L, C], covariates [B, L, Cov]) -> (memory [B, L', E] or None, state)

`state` is the recurrent state a decoder starts from, `[layers, B, E]` for RNN and GRU and a pair of them for the
LSTMs, or None when there was nothing to read; `memory` holds the per-step outputs attention reads. C is the
number of target columns in one row (1 when channel independent), Cov the covariates after them, the last
F_future of which are the known-future features. Each encoder builds its own cell; a decoder that continues in
that cell (recursive, segment) is handed `encoder.rnn`.
"""

from __future__ import annotations

import torch
from torch import nn

from forecaster.models.cells import make_rnn

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class Encoder(nn.Module):
    """The `direct` and `seq2seq` encoder: one recurrent layer over every lookback column.

    -> memory [B, L, E], state [layers, B, E] (each of h and c), E = D * hidden_size with D = 2 when
    bidirectional: per layer, the final states of both directions side by side.
    """

    def __init__(self, cell: str, n_inputs: int, hidden_size: int, num_layers: int, dropout: float,
                 bidirectional: bool):
        super().__init__()
        self.rnn = make_rnn(cell, n_inputs, hidden_size, num_layers, dropout, bidirectional)
        self.width = (2 if bidirectional else 1) * hidden_size  # E

    def forward(self, targets: torch.Tensor, covariates: torch.Tensor) -> tuple[torch.Tensor, State]:
        memory, state = self.rnn(torch.cat([targets, covariates], dim=-1))  # memory [B, L, E]
        return memory, merge_directions(state, self.rnn.num_layers)


class WarmUp(nn.Module):
    """The `recursive` encoder: the one-step cell its decoder rolls out, run over the lookback on true values.

    Step t reads [y_{t-1}, known_t], as it will over the horizon, so the lookback's last target is left for the
    decoder's first step to read. Past-only covariates are unknown beyond the lookback, so they are not read.
    -> memory None, state [layers, B, hidden_size] (each of h and c), None for a lookback of one step.
    """

    def __init__(self, cell: str, n_targets: int, n_future_features: int, hidden_size: int, num_layers: int,
                 dropout: float):
        super().__init__()
        self.n_future_features = n_future_features
        self.rnn = make_rnn(cell, n_targets + n_future_features, hidden_size, num_layers, dropout)

    def forward(self, targets: torch.Tensor, covariates: torch.Tensor) -> tuple[None, State | None]:
        known = covariates[..., covariates.size(-1) - self.n_future_features :]  # [B, L, Ff]
        steps = torch.cat([targets[:, :-1], known[:, 1:]], dim=-1)  # [B, L-1, C+Ff]: y_{t-1} beside known_t
        return None, self.rnn(steps)[1] if steps.size(1) else None


class SegmentEncoder(nn.Module):
    """The `segment` encoder (SegRNN, Lin et al., 2023): the lookback cut into segments of w steps, each embedded
    by one linear layer, so the cell runs L/w steps instead of L.

    A lookback that is not a whole number of segments is padded at its start with its first step, so the oldest
    step is still read. -> memory None, state [layers, B, hidden_size] (each of h and c).
    """

    def __init__(self, cell: str, n_inputs: int, hidden_size: int, num_layers: int, dropout: float,
                 segment_length: int, lookback: int):
        super().__init__()
        self.segment_length = segment_length
        self.n_segments = -(-lookback // segment_length)
        self.embed = nn.Sequential(nn.Linear(segment_length * n_inputs, hidden_size), nn.ReLU())
        self.rnn = make_rnn(cell, hidden_size, hidden_size, num_layers, dropout)

    def forward(self, targets: torch.Tensor, covariates: torch.Tensor) -> tuple[None, State]:
        past = pad_steps(torch.cat([targets, covariates], dim=-1), self.n_segments * self.segment_length,
                         at_start=True)  # [B, S*w, F]
        segments = self.embed(past.reshape(past.size(0), self.n_segments, -1))  # [B, S, w*F] -> [B, S, E]
        return None, self.rnn(segments)[1]


def merge_directions(state: State, num_layers: int) -> State:
    """[D*layers, B, H] -> [layers, B, D*H] (each of h and c): per layer, the forward and backward final states
    side by side. Concatenating loses nothing and adds no parameters; it is the identity when D = 1."""
    if isinstance(state, tuple):
        return tuple(merge_directions(part, num_layers) for part in state)
    if state.size(0) == num_layers:  # one direction (the only shape of xLSTM's matrix memory): nothing to merge
        return state
    _, batch, hidden = state.shape
    return state.view(num_layers, -1, batch, hidden).permute(0, 2, 1, 3).reshape(num_layers, batch, -1)


def pad_steps(x: torch.Tensor, steps: int, at_start: bool) -> torch.Tensor:
    """[B, S, F] -> [B, steps, F], repeating the first (at_start) or the last step; `steps` >= S."""
    missing = steps - x.size(1)
    if missing == 0:
        return x
    edge = (x[:, :1] if at_start else x[:, -1:]).expand(-1, missing, -1)
    return torch.cat([edge, x] if at_start else [x, edge], dim=1)
