"""RecurrentForecaster: one recurrent network for every cell and forecasting strategy.

    forward(x_past [B, L, F_past], x_future [B, H, F_future], y [B, H, T] = None, teacher_forcing = 0.0)
        -> [B, H, T, Q]

`x_past` holds the T (scaled) targets first, then covariates; its last F_future columns are the known-future
features (future covariates, calendar) over the lookback, the same columns `x_future` holds over the horizon
(docs/architecture.md). Q is the number of quantiles, 1 for a point loss.

The core is an encoder (forecaster.models.encoder) that reads the lookback and a decoder
(forecaster.models.decoders) that makes the horizon from it; a strategy is the pair, built by name from
`STRATEGIES`:
- `direct`: an encoder reads the lookback; one linear head emits all H steps at once from its final state and the
  flattened known-future features. Fast, no error accumulation, a fixed horizon.
- `recursive`: a single one-step model. Step t reads [y_{t-1}, known_t] and predicts y_t: over the lookback it
  warms up on true values, over the horizon it reads its own forecasts (or, teacher forced, the truth). Past-only
  covariates are unknown beyond the lookback, so this strategy does not read them.
- `seq2seq`: an encoder reads every lookback feature; a decoder of the same cell, started from the encoder's final
  state, rolls out the horizon as `recursive` does, optionally attending over all encoder outputs.
- `segment`: SegRNN's segment recurrence with parallel multi-step decoding (Lin et al., 2023): the cell reads the
  lookback in embedded segments of `segment_length` steps, then decodes all the horizon's segments at once, each
  by one step of the same cell. Few recurrent steps mean short gradient paths and fast training; nothing is fed
  back, so errors do not accumulate.

Two wrappers act around any of them: RevIN (normalise the targets per window, restore the forecast) and channel
independence (each target variable a row of its own through shared weights). A linear skip path (`linear_skip`)
may run beside the recurrence: one linear map from the (normalised) lookback of each target to its horizon, added to
every output (as in DLinear/NLinear, Zeng et al., 2023): the recurrence then has to learn only what a linear model
on lags misses. It starts at zero, so a new network begins as it would without it. With `skip_start="ridge"` the
network instead begins as the `linear` baseline: the skip reads the series-scaled lags and adds to the forecast
RevIN restored, fitted in closed form on the training windows, and the decoder's head starts at zero
(`start_at_ridge`); training scores that start before its first epoch and keeps it when no epoch beats it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from forecaster.errors import ConfigError, ModelError
from forecaster.models.cells import make_rnn
from forecaster.models.decoders import DirectHead, RollOut, SegmentDecoder
from forecaster.models.encoder import Encoder, SegmentEncoder, WarmUp
from forecaster.models.losses import n_outputs as count_outputs
from forecaster.models.losses import point_index as find_point_index
from forecaster.models.revin import RevIN

if TYPE_CHECKING:
    from forecaster.config import Config, ModelConfig

SEGMENT_LENGTH = 24  # the default segment, cut to the horizon when that is shorter
RIDGE_ALPHA = 1.0  # the skip path's ridge start: the `linear` baseline's own penalty
# Weights saved before the encoder and decoder were parts of their own kept every layer on the network itself:
# the encoder's cell as `encoder`, seq2seq's decoder cell as `decoder`, the rest (head, attention, embeddings)
# under their own names. New prefix -> old prefix, first match wins.
LEGACY_PREFIXES = (("encoder.rnn.", "encoder."), ("encoder.", ""), ("decoder.rnn.", "decoder."), ("decoder.", ""))


def _direct(net: RecurrentForecaster) -> tuple[nn.Module, nn.Module]:
    encoder = Encoder(net.cell, net.channels + net.n_covariates, net.hidden_size, net.num_layers, net.dropout,
                      net.bidirectional)
    return encoder, DirectHead(encoder.width, net.horizon, net.n_future_features, net.channels, net.n_outputs,
                               net.dropout)


def _recursive(net: RecurrentForecaster) -> tuple[nn.Module, nn.Module]:
    encoder = WarmUp(net.cell, net.channels, net.n_future_features, net.hidden_size, net.num_layers, net.dropout)
    return encoder, RollOut(encoder.rnn, net.channels, net.n_outputs, net.point_index, net.dropout, attention=False)


def _seq2seq(net: RecurrentForecaster) -> tuple[nn.Module, nn.Module]:
    encoder = Encoder(net.cell, net.channels + net.n_covariates, net.hidden_size, net.num_layers, net.dropout,
                      net.bidirectional)
    # The decoder is as wide as both encoder directions together, so it starts from their concatenated states.
    rnn = make_rnn(net.cell, net.channels + net.n_future_features, encoder.width, net.num_layers, net.dropout)
    return encoder, RollOut(rnn, net.channels, net.n_outputs, net.point_index, net.dropout, net.attention)


def _segment(net: RecurrentForecaster) -> tuple[nn.Module, nn.Module]:
    encoder = SegmentEncoder(net.cell, net.channels + net.n_covariates, net.hidden_size, net.num_layers,
                             net.dropout, net.segment_length, net.lookback)
    n_channels = net.n_targets if net.channel_independent else 1
    return encoder, SegmentDecoder(encoder.rnn, net.segment_length, net.horizon, n_channels, net.channels,
                                   net.n_future_features, net.n_outputs, net.dropout)


STRATEGIES = {"direct": _direct, "recursive": _recursive, "seq2seq": _seq2seq, "segment": _segment}


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
        point_index: int | None = None, segment_length: int | None = None, linear_skip: bool = False,
        skip_start: str = "zero",
    ):
        super().__init__()
        self.n_targets, self.n_past_features, self.n_future_features = n_targets, n_past_features, n_future_features
        self.lookback, self.horizon, self.n_outputs = lookback, horizon, n_outputs
        self.cell, self.strategy, self.hidden_size, self.num_layers = cell, strategy, hidden_size, num_layers
        self.dropout, self.bidirectional, self.attention = dropout, bidirectional, attention
        self.channel_independent = channel_independent
        self.point_index = n_outputs // 2 if point_index is None else point_index
        self.segment_length = segment_length or min(SEGMENT_LENGTH, horizon)
        self._check_options()

        self.channels = 1 if channel_independent else n_targets  # C: target columns in one row of the core
        self.n_covariates = n_past_features - n_targets
        self.revin = RevIN(n_targets, affine=revin_affine) if revin else None
        self.encoder, self.decoder = STRATEGIES[strategy](self)
        self.skip = _zero_linear(lookback, horizon) if linear_skip else None
        # Started at zero, the skip reads each window's normalised lags (NLinear-like); started at the ridge fit, it
        # is the `linear` baseline itself: the series-scaled lags, added to the forecast RevIN restored.
        self.skip_outside = linear_skip and skip_start == "ridge"

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
            linear_skip=model.linear_skip, skip_start=model.skip_start,
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
        lags = targets
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
        memory, state = self.encoder(targets, covariates)
        pred = self.decoder(memory, state, targets[:, -1], x_future, teacher)  # [B', H, C, Q]
        if self.skip is not None and not self.skip_outside:  # one shift for every quantile, so their order is kept
            pred = pred + self.skip(targets.transpose(1, 2)).transpose(1, 2).unsqueeze(-1)  # [B', H, C, 1]
        if self.channel_independent:
            pred = pred.reshape(batch, self.n_targets, self.horizon, self.n_outputs).transpose(1, 2)  # [B, H, T, Q]
        if self.revin is not None:
            pred = self.revin.restore(pred, stats)
        if self.skip_outside:  # [B, L, T] -> [B, T, H] -> [B, H, T, 1], broadcast over Q
            pred = pred + self.skip(lags.transpose(1, 2)).transpose(1, 2).unsqueeze(-1)
        return pred

    @torch.no_grad()
    def start_at_ridge(self, batches, alpha: float = RIDGE_ALPHA) -> int:
        """Start as the `linear` baseline: move the skip path outside RevIN (it reads the series-scaled lags and
        adds to the restored forecast), fit it in closed form on `batches` (dicts with `x_past` and `y`), and zero
        the decoder's head so that the recurrence adds nothing until training moves it. Returns the rows fitted on
        (windows x targets).

        Training can then only keep what validation rewards: `fit_network` scores this start before the first
        epoch, so early stopping may keep it.
        """
        if self.skip is None:
            raise ConfigError("model.skip_start: ridge needs model.linear_skip: true (the ridge fit is the skip path)")
        self.skip_outside = True
        width = self.lookback + 1  # the lags and an intercept
        gram = torch.zeros(width, width, dtype=torch.float64)
        cross = torch.zeros(width, self.horizon, dtype=torch.float64)
        rows = 0
        for batch in batches:
            lags, future = self._skip_rows(batch["x_past"][..., : self.n_targets], batch["y"])
            lags = torch.cat([lags, torch.ones_like(lags[:, :1])], dim=1)  # [N, L+1]
            gram += lags.t() @ lags
            cross += lags.t() @ future
            rows += lags.size(0)
        if rows == 0:
            raise ModelError("model.skip_start: ridge found no training windows to fit on; check the split")
        penalty = torch.full((width,), float(alpha), dtype=torch.float64)
        penalty[-1] = 0.0  # the intercept is not shrunk, as in scikit-learn's Ridge
        solution = torch.linalg.solve(gram + torch.diag(penalty), cross)  # [L+1, H]
        self.skip.weight.copy_(solution[:-1].t())
        self.skip.bias.copy_(solution[-1])
        nn.init.zeros_(self.decoder.head.weight)
        nn.init.zeros_(self.decoder.head.bias)
        return rows

    def _skip_rows(self, targets: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lookback [B, L, T] and future [B, H, T] targets as the skip path outside RevIN fits them, [B*T, L] and
        [B*T, H] in float64: the series-scaled lags, and what the zeroed recurrence leaves of the future (RevIN
        restores a zero to the lookback's mean)."""
        targets, y = targets.double(), y.double()
        if self.revin is not None:
            y = y - targets.mean(dim=1, keepdim=True)
        return _one_row_per_target(targets).squeeze(-1), _one_row_per_target(y).squeeze(-1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Rename the keys of weights saved before the encoder and decoder were parts of their own, so that older
        bundles and checkpoints load (this hook, unlike `load_state_dict`, also runs when a LightningModule
        holding this network loads). Keys already in the current layout are left alone."""
        renamed = {}
        for name in self.state_dict():
            old = self._legacy_name(name)
            if prefix + name not in state_dict and prefix + old in state_dict:
                renamed[prefix + name] = prefix + old
        for new, old in renamed.items():
            state_dict[new] = state_dict[old]
        for old in set(renamed.values()):
            del state_dict[old]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _legacy_name(self, name: str) -> str:
        """A state-dict key's name before the split. A decoder that steps the encoder's own cell (recursive,
        segment) holds it under `decoder.rnn` as well as `encoder.rnn`; both were once `encoder`."""
        if name.startswith("decoder.rnn.") and self.decoder.rnn is self.encoder.rnn:
            name = "encoder." + name.removeprefix("decoder.")
        for new, old in LEGACY_PREFIXES:
            if name.startswith(new):
                return old + name.removeprefix(new)
        return name

    def describe(self) -> str:
        """One line for logs: 'gru seq2seq (2x64, bidirectional, attention, RevIN), Q=3: 52,417 parameters'."""
        flags = {"bidirectional": self.bidirectional, "attention": self.attention,
                 "channel-independent": self.channel_independent, "RevIN": self.revin is not None,
                 "linear skip": self.skip is not None and not self.skip_outside,
                 "linear skip from the ridge fit": self.skip_outside}
        flags[f"segments of {self.segment_length}"] = self.strategy == "segment"
        options = ", ".join([f"{self.num_layers}x{self.hidden_size}", *(name for name, on in flags.items() if on)])
        n_parameters = sum(p.numel() for p in self.parameters())
        return f"{self.cell} {self.strategy} ({options}), Q={self.n_outputs}: {n_parameters:,} parameters"

    def extra_repr(self) -> str:
        return self.describe()

    def _check_options(self) -> None:
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
        if self.attention and self.strategy != "seq2seq":
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


def network_from_dims(config: Config, dims: dict[str, int]) -> RecurrentForecaster:
    """The network `config.model` describes, for data of the given widths (n_targets, n_past_features,
    n_future_features: `ForecastDataModule.dims`)."""
    return RecurrentForecaster.from_config(config.model, lookback=config.window.lookback,
                                           horizon=config.window.horizon, **dims)


def _draw(y: torch.Tensor | None, teacher_forcing: float) -> bool:
    """Whether this batch is teacher forced: with probability `teacher_forcing`, and only when `y` is given."""
    if y is None or teacher_forcing <= 0.0:
        return False
    return teacher_forcing >= 1.0 or torch.rand(()).item() < teacher_forcing


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear map that starts at zero: the network begins as it would without the skip path."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _one_row_per_target(x: torch.Tensor) -> torch.Tensor:
    """[B, S, T] -> [B*T, S, 1], row b*T + t holding variable t of window b."""
    batch, steps, n_targets = x.shape
    return x.transpose(1, 2).reshape(batch * n_targets, steps, 1)
