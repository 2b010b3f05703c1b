"""The recurrent layers, by name (`CELLS`, the registry `model.cell` reads): torch's fused `rnn`, `lstm`, `gru`,
our own `peephole_lstm`, and xLSTM's `slstm` and `mlstm` (`models/xlstm.py`).

Every layer returned by `make_rnn` has `nn.LSTM`'s interface, batch first:
`rnn(x [B, L, F], state=None) -> (output [B, L, D*H], state)`, where `state` is `h [D*layers, B, H]` for RNN and
GRU and a tuple whose first part is `h` for the others ((h, c) for the LSTMs; D = 2 when bidirectional). The network
therefore never asks which cell it holds.

A new cell is one `register_cell` call here (and its name in `config.Cell`, which loads without torch; a test keeps
the two lists equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from forecaster.errors import ConfigError
from forecaster.models.xlstm import XLSTM, MLSTMCell, SLSTMCell
from forecaster.registry import Registry


class PeepholeLSTMCell(nn.Module):
    """One step of an LSTM whose gates also look at the cell state (Gers & Schmidhuber, 2000).

        i_t = sigmoid(W_i x_t + U_i h_{t-1} + p_i * c_{t-1} + b_i)      input gate
        f_t = sigmoid(W_f x_t + U_f h_{t-1} + p_f * c_{t-1} + b_f)      forget gate
        g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)                         candidate
        c_t = f_t * c_{t-1} + i_t * g_t
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + p_o * c_t + b_o)          output gate: sees the *new* cell state
        h_t = o_t * tanh(c_t)

    `*` is elementwise: the peepholes p are diagonal matrices, stored as the rows of `weight_peephole [3, H]`
    (i, f, o). W and U are stacked in torch's gate order (i, f, g, o) as `weight_ih [4H, F]` and
    `weight_hh [4H, H]`, so one matmul each computes all four gates. One bias suffices (torch keeps two).
    Peepholes let the gates read the cell state even while the output gate is shut, which is what lets an LSTM
    learn precise timings and counts.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.weight_peephole = nn.Parameter(torch.empty(3, hidden_size))
        self.reset_parameters()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    def reset_parameters(self) -> None:
        """torch's own default for its recurrent layers: uniform in +-1/sqrt(H)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x [B, F], state (h, c) each [B, H] (zeros when None) -> new (h, c)."""
        if state is None:
            zeros = x.new_zeros(x.size(0), self.hidden_size)
            state = (zeros, zeros)
        return self.step(F.linear(x, self.weight_ih, self.bias), state)

    def step(self, gates_x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """gates_x [B, 4H] = W x_t + b, already computed; state (h, c) each [B, H] -> new (h, c).

        Taking the input's share precomputed lets `PeepholeLSTM` project a whole sequence with one matmul, so
        the Python loop over time does only the recurrent part.
        """
        h, c = state
        gates = torch.addmm(gates_x, h, self.weight_hh.t())  # [B, 4H]
        i, f, g, o = gates.chunk(4, dim=1)
        peep_i, peep_f, peep_o = self.weight_peephole
        i = torch.sigmoid(i + peep_i * c)
        f = torch.sigmoid(f + peep_f * c)
        c = f * c + i * torch.tanh(g)
        h = torch.sigmoid(o + peep_o * c) * torch.tanh(c)
        return h, c


class PeepholeLSTM(nn.Module):
    """A stack of `PeepholeLSTMCell`s with `nn.LSTM`'s interface (no `proj_size`, 3-D input only).

    forward(x [B, L, F] (or [L, B, F] without batch_first), (h0, c0) each [D*layers, B, H] or None)
        -> output [B, L, D*H], (h_n, c_n) each [D*layers, B, H]
    State index `layer * D + direction`, as in torch; dropout between layers, not after the last.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, batch_first: bool = True):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.bidirectional, self.batch_first = dropout, bidirectional, batch_first
        directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            PeepholeLSTMCell(input_size if layer == 0 else directions * hidden_size, hidden_size)
            for layer in range(num_layers)
            for _ in range(directions)
        )

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}")

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if not self.batch_first:
            x = x.transpose(0, 1)  # [L, B, F] -> [B, L, F]
        directions = 2 if self.bidirectional else 1
        if state is None:
            zeros = x.new_zeros(self.num_layers * directions, x.size(0), self.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                cell = self.cells[index]
                # Every step's input share in one matmul; unbind, not indexing, because the backward of x[:, t]
                # writes a whole [B, L, 4H] gradient per step.
                gates_x = F.linear(x, cell.weight_ih, cell.bias).unbind(1)  # L x [B, 4H]
                h, c = h0[index], c0[index]
                hs = []
                for gates_t in reversed(gates_x) if direction else gates_x:
                    h, c = cell.step(gates_t, (h, c))
                    hs.append(h)
                if direction:
                    hs.reverse()
                outputs.append(torch.stack(hs, dim=1))  # [B, L, H]
                h_n.append(h)
                c_n.append(c)
            x = torch.cat(outputs, dim=-1)  # [B, L, D*H]
        output = x if self.batch_first else x.transpose(0, 1)
        return output, (torch.stack(h_n), torch.stack(c_n))


def init_recurrent_weights(rnn: nn.Module, forget_bias: float = 0.0) -> None:
    """Orthogonal recurrent weights, Xavier input weights, zero biases and peepholes, forget-gate bias `forget_bias`.

    Why: an orthogonal recurrent matrix has all singular values 1, so at the start of training repeated
    multiplication through time neither blows up nor shrinks the signal (Saxe et al., 2014); it is applied per gate
    block, each of which is its own square H x H map. A forget-gate bias of 1 makes an untrained LSTM keep its cell
    state, so gradients reach the start of the lookback from the first step (Jozefowicz et al., 2015). Zero
    peepholes start a peephole LSTM as a plain one. torch's two biases (`bias_ih`, `bias_hh`) add up, so only the
    first carries the forget bias.
    """
    hidden = rnn.hidden_size
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if "weight_hh" in name:
                for block in param.split(hidden):
                    nn.init.orthogonal_(block)
            elif "weight_ih" in name:
                for block in param.split(hidden):
                    nn.init.xavier_uniform_(block)
            else:
                param.zero_()
                if "bias" in name and "bias_hh" not in name:
                    param[hidden : 2 * hidden] = forget_bias  # gate order i, f, g, o: the second block forgets


@dataclass(frozen=True)
class CellType:
    """A registered cell: `build(input_size, hidden_size, num_layers, dropout, bidirectional)` returns its
    initialised batch-first layer; `bidirectional`: whether it can run both ways."""

    name: str
    description: str
    build: Callable[[int, int, int, float, bool], nn.Module]
    bidirectional: bool = True


CELLS: Registry[CellType] = Registry("cell")
register_cell = CELLS.add


def _initialised(layer_class: type[nn.Module], forget_bias: float) -> Callable[..., nn.Module]:
    """A builder of torch-style layers (`nn.LSTM`'s arguments), initialised by `init_recurrent_weights`."""

    def build(input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool) -> nn.Module:
        rnn = layer_class(input_size, hidden_size, num_layers=num_layers, dropout=dropout,
                          bidirectional=bidirectional, batch_first=True)
        init_recurrent_weights(rnn, forget_bias=forget_bias)
        return rnn

    return build


def _xlstm(cell_class: type[nn.Module]) -> Callable[..., nn.Module]:
    return lambda input_size, hidden_size, num_layers, dropout, _: XLSTM(cell_class, input_size, hidden_size,
                                                                         num_layers, dropout)


register_cell(CellType("rnn", "Elman RNN: h_t = tanh(W x_t + U h_{t-1} + b)", _initialised(nn.RNN, 0.0)))
register_cell(CellType("lstm", "LSTM: a cell state behind input, forget and output gates", _initialised(nn.LSTM, 1.0)))
register_cell(CellType("gru", "GRU: update and reset gates, no separate cell state", _initialised(nn.GRU, 0.0)))
register_cell(CellType("peephole_lstm", "LSTM whose gates also read the cell state", _initialised(PeepholeLSTM, 1.0)))
register_cell(CellType("slstm", "xLSTM's sLSTM: exponential input gate and a normaliser state", _xlstm(SLSTMCell),
                       bidirectional=False))
register_cell(CellType("mlstm", "xLSTM's mLSTM: a matrix memory written with key/value outer products",
                       _xlstm(MLSTMCell), bidirectional=False))


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
             bidirectional: bool = False) -> nn.Module:
    """A batch-first recurrent layer by name (`CELLS`), initialised.

    `dropout` acts between stacked layers only, as in torch (which warns when it is set on a single layer).
    """
    if cell not in CELLS:
        raise ConfigError(f"model.cell: unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    if bidirectional and not CELLS[cell].bidirectional:
        raise ConfigError(f"model.bidirectional: the {cell} cell runs in one direction only; set it to false")
    return CELLS[cell].build(input_size, hidden_size, num_layers, dropout if num_layers > 1 else 0.0, bidirectional)
