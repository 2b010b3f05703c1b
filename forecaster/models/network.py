"""RecurrentForecaster: one recurrent network for every cell and forecasting strategy.

    forward(x_past [B, L, F_past], x_future [B, H, F_future], y [B, H, T] = None, teacher_forcing = 0.0)
        -> [B, H, T, Q]

`x_past` holds the T (scaled) targets first, then covariates; its last F_future columns are the known-future
features (future covariates, calendar) over the lookback, the same columns `x_future` holds over the horizon
(docs/architecture.md). Q is the number of quantiles, 1 for a point loss.

The strategies share the cell, the wrappers and the head's layout; they differ only in how the horizon is made:
- `direct`: an encoder reads the lookback; one linear head emits all H steps at once from its final state and the
  flattened known-future features. Fast, no error accumulation, a fixed horizon.
- `recursive`: a single one-step model. Step t reads [y_{t-1}, known_t] and predicts y_t: over the lookback it
  warms up on true values, over the horizon it reads its own forecasts (or, teacher forced, the truth). Past-only
  covariates are unknown beyond the lookback, so this strategy does not read them.
- `seq2seq`: an encoder reads every lookback feature; a decoder of the same cell, started from the encoder's final
  state, rolls out the horizon as `recursive` does, optionally attending over all encoder outputs.
- `segment`: SegRNN's segment recurrence with parallel multi-step decoding (Lin et al., 2023). The lookback is cut
  into segments of `segment_length` steps, each embedded by one linear layer, so the cell runs L/w steps instead
  of L; the horizon's H/w segments are then decoded at once, each by one step of the same cell from the encoder's
  final state, reading a learned position embedding (which segment) beside a learned channel embedding (which
  target) and, when there are any, the segment's known-future features. Few recurrent steps mean short gradient
  paths and fast training; nothing is fed back, so errors do not accumulate.

Two wrappers act around any of them: RevIN (normalise the targets per window, restore the forecast) and channel
independence (each target variable a row of its own through shared weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from forecaster.errors import ConfigError, ModelError
from forecaster.models.cells import make_rnn
from forecaster.models.losses import n_outputs as count_outputs
from forecaster.models.losses import point_index as find_point_index
from forecaster.models.revin import RevIN

if TYPE_CHECKING:
    from forecaster.config import ModelConfig

STRATEGIES = ("direct", "recursive", "seq2seq", "segment")
SEGMENT_LENGTH = 24  # the default segment, cut to the horizon when that is shorter
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


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


class RecurrentForecaster(nn.Module):
    """See the module docstring. Constructor defaults are `ModelConfig`'s; `from_config` is the usual way in.

    n_past_features, n_future_features: F_past (targets included) and F_future. `n_outputs`: Q.
    `point_index`: which of the Q outputs is fed back as the forecast in recursive/seq2seq roll-outs (default:
    the middle one; `from_config` picks the quantile nearest 0.5). `dropout` acts between the stacked layers of
    the encoder and of the decoder, and on everything the head reads.
    """

    def __init__(
        self, n_targets: int, n_past_features: int, n_future_features: int, lookback: int, horizon: int,
        n_outputs: int = 1, *, cell: str = "lstm", strategy: str = "direct", hidden_size: int = 64,
        num_layers: int = 2, dropout: float = 0.1, bidirectional: bool = False, attention: bool = False,
        channel_independent: bool = True, revin: bool = True, revin_affine: bool = True,
        point_index: int | None = None, segment_length: int | None = None,
    ):
        super().__init__()
        self.n_targets, self.n_past_features, self.n_future_features = n_targets, n_past_features, n_future_features
        self.lookback, self.horizon, self.n_outputs = lookback, horizon, n_outputs
        self.cell, self.strategy, self.hidden_size, self.num_layers = cell, strategy, hidden_size, num_layers
        self.bidirectional, self.channel_independent = bidirectional, channel_independent
        self.point_index = n_outputs // 2 if point_index is None else point_index
        self.segment_length = segment_length or min(SEGMENT_LENGTH, horizon)
        self._check_options(attention)

        self.channels = 1 if channel_independent else n_targets  # C: target columns in one row of the core
        n_covariates = n_past_features - n_targets
        width = (2 if bidirectional else 1) * hidden_size  # E: encoder outputs and decoder state
        step_inputs = self.channels + n_future_features  # a roll-out step reads [y_{t-1}, known_t]
        self.revin = RevIN(n_targets, affine=revin_affine) if revin else None
        if strategy == "segment":
            self._build_segments(n_covariates, n_future_features, dropout)
            return
        if strategy == "recursive":
            self.encoder = make_rnn(cell, step_inputs, hidden_size, num_layers, dropout)
        else:
            self.encoder = make_rnn(cell, self.channels + n_covariates, hidden_size, num_layers, dropout, bidirectional)
        # The decoder is as wide as both encoder directions together, so it starts from their concatenated states.
        self.decoder = make_rnn(cell, step_inputs, width, num_layers, dropout) if strategy == "seq2seq" else None
        self.attention = LuongAttention(width) if attention else None
        self.dropout = nn.Dropout(dropout)
        if strategy == "direct":
            self.head = nn.Linear(width + horizon * n_future_features, horizon * self.channels * n_outputs)
        else:
            self.head = nn.Linear(width, self.channels * n_outputs)

    def _build_segments(self, n_covariates: int, n_future_features: int, dropout: float) -> None:
        """The `segment` strategy's layers: segment embedding, one cell for encoding and decoding, the position
        and channel embeddings that make each decoder step's input, and a head emitting one segment per step."""
        width, hidden = self.segment_length, self.hidden_size
        self.n_segments_in, self.n_segments_out = -(-self.lookback // width), -(-self.horizon // width)
        self.embed = nn.Sequential(nn.Linear(width * (self.channels + n_covariates), hidden), nn.ReLU())
        self.encoder = make_rnn(self.cell, hidden, hidden, self.num_layers, dropout)
        self.decoder = self.attention = None
        # Half the decoder input says which output segment, half which target (one row of weights when the
        # targets share a row); torch.randn as in SegRNN, so both start as distinct as the weights they meet.
        self.position = nn.Parameter(torch.randn(self.n_segments_out, hidden // 2))
        n_channels = self.n_targets if self.channel_independent else 1
        self.channel = nn.Parameter(torch.randn(n_channels, hidden - hidden // 2))
        self.future_embed = nn.Linear(width * n_future_features, hidden) if n_future_features else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, width * self.channels * self.n_outputs)

    @classmethod
    def from_config(cls, model: ModelConfig, n_targets: int, n_past_features: int, n_future_features: int,
                    lookback: int, horizon: int) -> RecurrentForecaster:
        """Build from `config.model`; Q and the fed-back output follow from `model.loss` and `model.quantiles`."""
        return cls(
            n_targets, n_past_features, n_future_features, lookback, horizon,
            n_outputs=count_outputs(model.loss, model.quantiles),
            point_index=find_point_index(model.loss, model.quantiles),
            cell=model.cell, strategy=model.strategy, hidden_size=model.hidden_size, num_layers=model.num_layers,
            dropout=model.dropout, bidirectional=model.bidirectional, attention=model.attention,
            channel_independent=model.channel_independent, revin=model.revin, segment_length=model.segment_length,
        )

    def forward(self, x_past: torch.Tensor, x_future: torch.Tensor, y: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        """-> [B, H, T, Q], quantiles in increasing order along Q.

        With `y` and `teacher_forcing` p > 0, recursive and seq2seq read the true y_{t-1} instead of their own
        forecast, for the whole batch with probability p (one draw per call, as in PyTorch's seq2seq tutorial):
        a teacher-forced horizon is then one fused RNN call, and each batch trains either the training or the
        inference situation rather than a mixture. `direct` ignores `y`. This holds in train and eval mode alike.
        """
        self._check_inputs(x_past, x_future, y)
        batch, targets, covariates = x_past.size(0), x_past[..., : self.n_targets], x_past[..., self.n_targets :]
        teacher = y if self.strategy != "direct" and _draw(y, teacher_forcing) else None
        if self.revin is not None:
            stats = self.revin.statistics(targets)
            targets = self.revin.normalise(targets, stats)
            teacher = None if teacher is None else self.revin.normalise(teacher, stats)  # the same scale as the inputs
        if self.channel_independent:
            targets = _one_row_per_target(targets)  # [B, L, T] -> [B*T, L, 1]
            teacher = None if teacher is None else _one_row_per_target(teacher)  # [B, H, T] -> [B*T, H, 1]
            covariates = covariates.repeat_interleave(self.n_targets, dim=0)  # [B, L, Cov] -> [B*T, L, Cov]
            x_future = x_future.repeat_interleave(self.n_targets, dim=0)  # [B, H, Ff] -> [B*T, H, Ff]
        pred = self._forecast(targets, covariates, x_future, teacher)  # [B', H, C, Q]
        if self.channel_independent:
            pred = pred.reshape(batch, self.n_targets, self.horizon, self.n_outputs).transpose(1, 2)  # [B, H, T, Q]
        if self.revin is not None:
            pred = self.revin.restore(pred, stats)
        return pred

    def _forecast(self, targets: torch.Tensor, covariates: torch.Tensor, future: torch.Tensor,
                  teacher: torch.Tensor | None) -> torch.Tensor:
        """The strategy: targets [B, L, C], covariates [B, L, Cov], future [B, H, Ff], teacher [B, H, C] or None
        -> [B, H, C, Q]."""
        if self.strategy == "direct":
            _, state = self.encoder(torch.cat([targets, covariates], dim=-1))
            summary = _merge_directions(_hidden(state), self.num_layers)[-1]  # [B, E]: the top layer's final state
            features = torch.cat([summary, future.flatten(1)], dim=-1)  # [B, E + H*Ff]
            z = self.head(self.dropout(features))  # [B, H*C*Q]
            return _ordered(z.unflatten(-1, (self.horizon, self.channels, self.n_outputs)))  # [B, H, C, Q]
        if self.strategy == "segment":
            return self._segment_forecast(torch.cat([targets, covariates], dim=-1), future)
        if self.strategy == "recursive":
            known = covariates[..., covariates.size(-1) - self.n_future_features :]  # [B, L, Ff]
            warmup = torch.cat([targets[:, :-1], known[:, 1:]], dim=-1)  # [B, L-1, C+Ff]: y_{t-1} beside known_t
            state = self.encoder(warmup)[1] if warmup.size(1) else None
            return self._roll_out(self.encoder, state, targets[:, -1], future, teacher, memory=None)
        memory, state = self.encoder(torch.cat([targets, covariates], dim=-1))  # memory [B, L, E]
        state = _merge_directions(state, self.num_layers)
        return self._roll_out(self.decoder, state, targets[:, -1], future, teacher, memory)

    def _segment_forecast(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """past [B, L, F], future [B, H, Ff] -> [B, H, C, Q]. A lookback that is not a whole number of segments is
        padded at its start with its first step; the last output segment is cut to the horizon."""
        rows, width, n_out = past.size(0), self.segment_length, self.n_segments_out
        past = _pad_steps(past, self.n_segments_in * width, at_start=True)
        _, state = self.encoder(self.embed(past.reshape(rows, self.n_segments_in, -1)))  # [layers, B, E] (each)
        channels = torch.arange(rows, device=past.device) % self.channel.size(0)  # row b*T + t holds target t
        queries = torch.cat([self.position.expand(rows, -1, -1),
                             self.channel[channels].unsqueeze(1).expand(-1, n_out, -1)], dim=-1)  # [B, S, E]
        if self.future_embed is not None:
            future = _pad_steps(future, n_out * width, at_start=False)
            queries = queries + self.future_embed(future.reshape(rows, n_out, -1))
        # Every (row, output segment) pair is one sequence of one step, all started from the row's encoder state.
        state = tuple(s.repeat_interleave(n_out, dim=1) for s in state) if isinstance(state, tuple) \
            else state.repeat_interleave(n_out, dim=1)
        output, _ = self.encoder(queries.reshape(rows * n_out, 1, -1), state)  # [B*S, 1, E]
        z = self.head(self.dropout(output[:, 0]))  # [B*S, w*C*Q]
        z = z.reshape(rows, n_out * width, self.channels, self.n_outputs)[:, : self.horizon]
        return _ordered(z)  # [B, H, C, Q]

    def _roll_out(self, rnn: nn.Module, state: State | None, last_target: torch.Tensor, future: torch.Tensor,
                  teacher: torch.Tensor | None, memory: torch.Tensor | None) -> torch.Tensor:
        """Emit the horizon from `state`, step t reading [y_{t-1}, known_t].

        last_target [B, C]: the last observed targets, read by the first step. future [B, H, Ff]. teacher
        [B, H, C]: true targets to read instead of the forecasts, or None. memory [B, L, E]: encoder outputs to
        attend over (with attention). -> [B, H, C, Q]
        """
        if teacher is not None:  # every step's input is known in advance: one call over the whole horizon
            previous = torch.cat([last_target.unsqueeze(1), teacher[:, :-1]], dim=1)  # [B, H, C]: y_{t-1} per step t
            output, _ = rnn(torch.cat([previous, future], dim=-1), state)  # [B, H, E]
            return self._emit(output, memory)
        steps, previous = [], last_target
        for t in range(self.horizon):
            step_input = torch.cat([previous, future[:, t]], dim=-1).unsqueeze(1)  # [B, 1, C+Ff]
            output, state = rnn(step_input, state)  # [B, 1, E]
            step = self._emit(output, memory)  # [B, 1, C, Q]
            previous = step[:, 0, :, self.point_index]  # [B, C]: the point forecast is what the next step reads
            steps.append(step)
        return torch.cat(steps, dim=1)

    def _emit(self, output: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """RNN outputs [B, S, E] -> ordered forecasts [B, S, C, Q]."""
        if self.attention is not None:
            output = self.attention(output, memory)
        z = self.head(self.dropout(output))  # [B, S, C*Q]
        return _ordered(z.unflatten(-1, (self.channels, self.n_outputs)))  # [B, S, C, Q]

    def describe(self) -> str:
        """One line for logs: 'gru seq2seq (2x64, bidirectional, attention, RevIN), Q=3: 52,417 parameters'."""
        flags = {"bidirectional": self.bidirectional, "attention": self.attention is not None,
                 "channel-independent": self.channel_independent, "RevIN": self.revin is not None}
        flags[f"segments of {self.segment_length}"] = self.strategy == "segment"
        options = ", ".join([f"{self.num_layers}x{self.hidden_size}", *(name for name, on in flags.items() if on)])
        n_parameters = sum(p.numel() for p in self.parameters())
        return f"{self.cell} {self.strategy} ({options}), Q={self.n_outputs}: {n_parameters:,} parameters"

    def extra_repr(self) -> str:
        return self.describe()

    def _check_options(self, attention: bool) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"model.strategy: unknown strategy {self.strategy!r}; "
                              f"choose one of {', '.join(STRATEGIES)}")
        if self.bidirectional and self.strategy == "recursive":
            raise ConfigError("model.bidirectional: a recursive model steps forward in time and cannot read the "
                              "future; use strategy direct or seq2seq, or set bidirectional to false")
        if self.bidirectional and self.strategy == "segment":
            raise ConfigError("model.bidirectional: the segment strategy decodes with its encoder's own cell, which "
                              "runs forward only; use strategy direct or seq2seq, or set bidirectional to false")
        if not 1 <= self.segment_length <= max(self.lookback, self.horizon):
            raise ConfigError(f"model.segment_length: {self.segment_length} is not between 1 and the longer of the "
                              f"lookback ({self.lookback}) and the horizon ({self.horizon})")
        if attention and self.strategy != "seq2seq":
            raise ConfigError(f"model.attention: attention needs strategy seq2seq (got {self.strategy}); "
                              "set attention to false or strategy to seq2seq")
        needed = self.n_targets + (self.n_future_features if self.strategy == "recursive" else 0)
        if self.n_past_features < needed:
            raise ValueError(f"x_past has {self.n_past_features} columns, fewer than the {needed} this network reads "
                             "(the targets, and for recursive the known-future features at its end)")
        if not 0 <= self.point_index < self.n_outputs:
            raise ValueError(f"point_index {self.point_index} is not one of {self.n_outputs} outputs")

    def _check_inputs(self, x_past: torch.Tensor, x_future: torch.Tensor, y: torch.Tensor | None) -> None:
        expected = {"x_past": [self.lookback, self.n_past_features], "x_future": [self.horizon, self.n_future_features],
                    "y": [self.horizon, self.n_targets]}
        for name, tensor in (("x_past", x_past), ("x_future", x_future), ("y", y)):
            if tensor is not None and (tensor.dim() != 3 or list(tensor.shape[1:]) != expected[name]):
                raise ModelError(f"{name}: this network expects [B, {', '.join(map(str, expected[name]))}], got "
                                 f"{list(tensor.shape)}; was it trained with another lookback, horizon or columns?")


def _draw(y: torch.Tensor | None, teacher_forcing: float) -> bool:
    """Whether this batch is teacher forced: with probability `teacher_forcing`, and only when `y` is given."""
    if y is None or teacher_forcing <= 0.0:
        return False
    return teacher_forcing >= 1.0 or torch.rand(()).item() < teacher_forcing


def _pad_steps(x: torch.Tensor, steps: int, at_start: bool) -> torch.Tensor:
    """[B, S, F] -> [B, steps, F], repeating the first (at_start) or the last step; `steps` >= S."""
    missing = steps - x.size(1)
    if missing == 0:
        return x
    edge = (x[:, :1] if at_start else x[:, -1:]).expand(-1, missing, -1)
    return torch.cat([edge, x] if at_start else [x, edge], dim=1)


def _one_row_per_target(x: torch.Tensor) -> torch.Tensor:
    """[B, S, T] -> [B*T, S, 1], row b*T + t holding variable t of window b."""
    batch, steps, n_targets = x.shape
    return x.transpose(1, 2).reshape(batch * n_targets, steps, 1)


def _hidden(state: State) -> torch.Tensor:
    """h out of an LSTM's (h, c), or the state itself for RNN and GRU."""
    return state[0] if isinstance(state, tuple) else state


def _merge_directions(state: State, num_layers: int) -> State:
    """[D*layers, B, H] -> [layers, B, D*H] (each of h and c): per layer, the forward and backward final states
    side by side. Concatenating loses nothing and adds no parameters; it is the identity when D = 1."""
    if isinstance(state, tuple):
        return tuple(_merge_directions(part, num_layers) for part in state)
    _, batch, hidden = state.shape
    return state.view(num_layers, -1, batch, hidden).permute(0, 2, 1, 3).reshape(num_layers, batch, -1)


def _ordered(z: torch.Tensor) -> torch.Tensor:
    """Sort the Q quantile outputs so they never cross. Rearranging a set of quantile estimates into increasing
    order never makes them worse (Chernozhukov et al., 2010), and unlike a base-plus-increments head it leaves
    each output free to take any value."""
    return z.sort(dim=-1).values
