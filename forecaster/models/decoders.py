"""The decoders: the ways of making the horizon out of what an encoder (forecaster.models.encoder) read.

Every decoder is called the same way and emits ordered quantiles:

    decoder(memory [B, L', E] or None, state, last_target [B, C], future [B, H, Ff], teacher [B, H, C] or None)
        -> [B, H, C, Q]

`memory` and `state` are the encoder's outputs, `last_target` the lookback's last targets, `future` the known-future
features over the horizon, `teacher` the true targets a roll-out reads instead of its own forecasts (teacher
forcing), or None. A decoder reads only what its strategy needs.
"""

from __future__ import annotations

import torch
from torch import nn

from forecaster.models.encoder import State, pad_steps


class LuongAttention(nn.Module):
    """Global attention with Luong et al.'s (2015) "general" score, read after each decoder step.

        score_l = h^T W m_l,  a = softmax_l(score),  context = sum_l a_l m_l,  out = tanh(W_c [context; h])

    query h [B, S, E] (decoder outputs), memory m [B, L, E] (encoder outputs) -> [B, S, E].
    Luong rather than Bahdanau: attention here reads the decoder's output instead of feeding its input, so a
    teacher-forced horizon still runs as one fused RNN call.
    """

    def __init__(self, size: int):
        super().__init__()
        self.score = nn.Linear(size, size, bias=False)
        self.combine = nn.Linear(2 * size, size)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(query) @ memory.transpose(1, 2), dim=-1)  # [B, S, L]
        context = weights @ memory  # [B, S, E]
        return torch.tanh(self.combine(torch.cat([context, query], dim=-1)))


class DirectHead(nn.Module):
    """`direct`: one linear layer emits all H steps at once from the top layer's final state and the flattened
    known-future features. Fast, no error accumulation, a fixed horizon. Reads neither memory nor teacher."""

    def __init__(self, width: int, horizon: int, n_future_features: int, channels: int, n_outputs: int,
                 dropout: float):
        super().__init__()
        self.shape = (horizon, channels, n_outputs)  # (H, C, Q)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width + horizon * n_future_features, horizon * channels * n_outputs)

    def forward(self, memory: torch.Tensor | None, state: State, last_target: torch.Tensor, future: torch.Tensor,
                teacher: torch.Tensor | None) -> torch.Tensor:
        summary = (state[0] if isinstance(state, tuple) else state)[-1]  # [B, E]: h of the top layer
        features = torch.cat([summary, future.flatten(1)], dim=-1)  # [B, E + H*Ff]
        z = self.head(self.dropout(features))  # [B, H*C*Q]
        return ordered(z.unflatten(-1, self.shape))  # [B, H, C, Q]


class RollOut(nn.Module):
    """`recursive` and `seq2seq`: emit the horizon one step at a time from the encoder's state, step t reading
    [y_{t-1}, known_t] and feeding its point forecast (output `point_index` of Q) to step t+1.

    `rnn` is the encoder's own one-step cell for `recursive` and a cell of its own for `seq2seq`, as wide as the
    encoder's outputs (both directions together) so that it starts from their concatenated states. With
    `attention`, each step's output attends over the encoder's memory before the head reads it.
    """

    def __init__(self, rnn: nn.Module, channels: int, n_outputs: int, point_index: int, dropout: float,
                 attention: bool):
        super().__init__()
        self.rnn, self.point_index, self.shape = rnn, point_index, (channels, n_outputs)
        self.attention = LuongAttention(rnn.hidden_size) if attention else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(rnn.hidden_size, channels * n_outputs)

    def forward(self, memory: torch.Tensor | None, state: State | None, last_target: torch.Tensor,
                future: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        if teacher is not None:  # every step's input is known in advance: one call over the whole horizon
            previous = torch.cat([last_target.unsqueeze(1), teacher[:, :-1]], dim=1)  # [B, H, C]: y_{t-1} per step t
            output, _ = self.rnn(torch.cat([previous, future], dim=-1), state)  # [B, H, E]
            return self._emit(output, memory)
        steps, previous = [], last_target
        for t in range(future.size(1)):
            step_input = torch.cat([previous, future[:, t]], dim=-1).unsqueeze(1)  # [B, 1, C+Ff]
            output, state = self.rnn(step_input, state)  # [B, 1, E]
            step = self._emit(output, memory)  # [B, 1, C, Q]
            previous = step[:, 0, :, self.point_index]  # [B, C]: the point forecast is what the next step reads
            steps.append(step)
        return torch.cat(steps, dim=1)

    def _emit(self, output: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """RNN outputs [B, S, E] -> ordered forecasts [B, S, C, Q]."""
        if self.attention is not None:
            output = self.attention(output, memory)
        z = self.head(self.dropout(output))  # [B, S, C*Q]
        return ordered(z.unflatten(-1, self.shape))  # [B, S, C, Q]


class SegmentDecoder(nn.Module):
    """`segment` (SegRNN, Lin et al., 2023): the horizon's H/w segments decoded at once, each by one step of the
    encoder's own cell from its final state, reading a learned position embedding (which segment) beside a learned
    channel embedding (which target) and, when there are any, the segment's known-future features. Nothing is fed
    back, so errors do not accumulate; reads neither memory nor teacher. The last segment is cut to the horizon.

    `n_channels`: rows of the channel embedding, T when channel independent (row b*T + t of the batch holds target
    t), else 1 (the targets share a row).
    """

    def __init__(self, rnn: nn.Module, segment_length: int, horizon: int, n_channels: int, channels: int,
                 n_future_features: int, n_outputs: int, dropout: float):
        super().__init__()
        hidden = rnn.hidden_size
        self.rnn, self.segment_length, self.horizon = rnn, segment_length, horizon
        self.n_segments = -(-horizon // segment_length)
        self.shape = (channels, n_outputs)
        # Half the input says which output segment, half which target; torch.randn as in SegRNN, so both start as
        # distinct as the weights they meet.
        self.position = nn.Parameter(torch.randn(self.n_segments, hidden // 2))
        self.channel = nn.Parameter(torch.randn(n_channels, hidden - hidden // 2))
        self.future_embed = nn.Linear(segment_length * n_future_features, hidden) if n_future_features else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, segment_length * channels * n_outputs)

    def forward(self, memory: torch.Tensor | None, state: State, last_target: torch.Tensor, future: torch.Tensor,
                teacher: torch.Tensor | None) -> torch.Tensor:
        rows, n_out = future.size(0), self.n_segments
        channels = torch.arange(rows, device=future.device) % self.channel.size(0)  # row b*T + t holds target t
        queries = torch.cat([self.position.expand(rows, -1, -1),
                             self.channel[channels].unsqueeze(1).expand(-1, n_out, -1)], dim=-1)  # [B, S, E]
        if self.future_embed is not None:
            future = pad_steps(future, n_out * self.segment_length, at_start=False)  # [B, S*w, Ff]
            queries = queries + self.future_embed(future.reshape(rows, n_out, -1))
        # Every (row, output segment) pair is one sequence of one step, all started from the row's encoder state.
        state = tuple(s.repeat_interleave(n_out, dim=1) for s in state) if isinstance(state, tuple) \
            else state.repeat_interleave(n_out, dim=1)
        output, _ = self.rnn(queries.reshape(rows * n_out, 1, -1), state)  # [B*S, 1, E]
        z = self.head(self.dropout(output[:, 0]))  # [B*S, w*C*Q]
        z = z.reshape(rows, n_out * self.segment_length, *self.shape)[:, : self.horizon]
        return ordered(z)  # [B, H, C, Q]


def ordered(z: torch.Tensor) -> torch.Tensor:
    """Sort the Q quantile outputs so they never cross. Rearranging a set of quantile estimates into increasing
    order never makes them worse (Chernozhukov et al., 2010), and unlike a base-plus-increments head it leaves
    each output free to take any value."""
    return z.sort(dim=-1).values
