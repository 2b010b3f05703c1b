"""The two cells of xLSTM (Beck et al., 2024): `slstm`, an LSTM with exponential gating and a normaliser state,
and `mlstm`, whose memory is a matrix written with key/value outer products.

Both keep the interface of `nn.LSTM` (batch first, `rnn(x [B, L, F], state) -> (output [B, L, H], state)`) so every
strategy can use them; their state is a tuple whose first part is `h [layers, B, H]`, as the decoders expect.

Exponential gates grow without bound, so both cells carry a stabiliser `m` in log space: with log-gates
i~ (input) and log f = log sigmoid(f~) (forget), `m_t = max(log f_t + m_{t-1}, i~_t)`, and the gates applied are
`i' = exp(i~_t - m_t) <= 1` and `f' = exp(log f_t + m_{t-1} - m_t) <= 1`. The normaliser `n` sums the same gated
inputs as the memory, so dividing by it cancels the scale the stabiliser took out: `h` is as if unstabilised.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FORGET_BIAS = 3.0  # sigmoid(3) = 0.95: an untrained cell keeps most of its memory from step to step (as in the paper)


class SLSTMCell(nn.Module):
    """One step of the sLSTM: scalar memory, exponential input gate, normaliser state, recurrent weights.

        z_t = tanh(W_z x_t + R_z h_{t-1} + b_z)            candidate
        i~_t = W_i x_t + R_i h_{t-1} + b_i                 input gate, log space
        f~_t = W_f x_t + R_f h_{t-1} + b_f                 forget gate, log f = log sigmoid(f~)
        o_t = sigmoid(W_o x_t + R_o h_{t-1} + b_o)         output gate
        c_t = f' c_{t-1} + i' z_t,   n_t = f' n_{t-1} + i' (stabilised gates, module docstring)
        h_t = o_t * c_t / n_t

    `weight_ih [4H, F]`, `weight_hh [4H, H]` and `bias [4H]` hold the gates in the order i, f, z, o.
    State (h, c, n, m), each [B, H].
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier input weights and orthogonal recurrent weights per gate block, zero biases but the forget gate's."""
        hidden = self.hidden_size
        with torch.no_grad():
            for block in self.weight_ih.split(hidden):
                nn.init.xavier_uniform_(block)
            for block in self.weight_hh.split(hidden):
                nn.init.orthogonal_(block)
            self.bias.zero_()
            self.bias[hidden : 2 * hidden] = FORGET_BIAS

    def initial_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zeros = like.new_zeros(batch, self.hidden_size)
        return zeros, zeros, zeros, torch.full_like(zeros, -math.inf)  # m = -inf: the first step's i' is 1

    def step(self, gates_x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """gates_x [B, 4H] = W x_t + b; state (h, c, n, m) each [B, H] -> the new state."""
        h, c, n, m = state
        i_log, f_raw, z, o = torch.addmm(gates_x, h, self.weight_hh.t()).chunk(4, dim=1)
        f_log = F.logsigmoid(f_raw)
        m_new = torch.maximum(f_log + m, i_log)
        i_gate, f_gate = torch.exp(i_log - m_new), torch.exp(f_log + m - m_new)
        c = f_gate * c + i_gate * torch.tanh(z)
        n = f_gate * n + i_gate
        h = torch.sigmoid(o) * c / n
        return h, c, n, m_new


class MLSTMCell(nn.Module):
    """One step of the mLSTM: a matrix memory written with outer products, read with a query; no recurrent weights.

        q_t = W_q x_t + b_q,  k_t = (W_k x_t + b_k) / sqrt(H),  v_t = W_v x_t + b_v
        i~_t = w_i x_t + b_i,  f~_t = w_f x_t + b_f       scalar gates, log space (module docstring)
        o_t = sigmoid(W_o x_t + b_o)
        C_t = f' C_{t-1} + i' v_t k_t^T   [H, H],   n_t = f' n_{t-1} + i' k_t   [H]
        h_t = o_t * C_t q_t / max(|n_t . q_t|, exp(-m_t))

    `weight_ih [4H + 2, F]` and `bias [4H + 2]` hold q, k, v, o, then the input and forget gates.
    State (h [B, H], C [B, H, H], n [B, H], m [B, 1]).
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size + 2, input_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size + 2))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        hidden = self.hidden_size
        with torch.no_grad():
            for block in self.weight_ih[: 4 * hidden].split(hidden):
                nn.init.xavier_uniform_(block)
            nn.init.normal_(self.weight_ih[4 * hidden :], std=0.1)
            self.bias.zero_()
            self.bias[-1] = FORGET_BIAS

    def initial_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.hidden_size
        return (like.new_zeros(batch, hidden), like.new_zeros(batch, hidden, hidden), like.new_zeros(batch, hidden),
                like.new_full((batch, 1), -math.inf))  # m = -inf: the first step's i' is 1

    def step(self, gates_x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """gates_x [B, 4H + 2] = W x_t + b; state (h, C, n, m) -> the new state."""
        _, memory, n, m = state
        hidden = self.hidden_size
        q, k, v, o = gates_x[:, : 4 * hidden].chunk(4, dim=1)  # each [B, H]
        k = k / math.sqrt(hidden)
        i_log, f_log = gates_x[:, -2:-1], F.logsigmoid(gates_x[:, -1:])  # [B, 1] each
        m_new = torch.maximum(f_log + m, i_log)
        i_gate, f_gate = torch.exp(i_log - m_new), torch.exp(f_log + m - m_new)  # [B, 1]
        memory = f_gate[:, :, None] * memory + i_gate[:, :, None] * (v[:, :, None] * k[:, None, :])  # [B, H, H]
        n = f_gate * n + i_gate * k
        read = torch.bmm(memory, q[:, :, None]).squeeze(2)  # [B, H]
        floor = torch.exp(torch.clamp(-m_new, max=60.0))  # exp(-m), kept finite for extreme inputs
        # exp(-m) underflows to 0 for m > 88: then a query of zeros would read 0 / 0 (the true value is 0)
        scale = torch.maximum((n * q).sum(dim=1, keepdim=True).abs(), floor).clamp_min(torch.finfo(q.dtype).tiny)
        h = torch.sigmoid(o) * read / scale
        return h, memory, n, m_new


class XLSTM(nn.Module):
    """A stack of `SLSTMCell`s or `MLSTMCell`s with `nn.LSTM`'s interface (batch first, one direction).

    forward(x [B, L, F], state or None) -> output [B, L, H], state: a tuple of the cell's state parts, each
    stacked over layers (`h [layers, B, H]` first). Dropout between layers, not after the last.
    """

    def __init__(self, cell: type[nn.Module], input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bidirectional: bool = False, batch_first: bool = True):
        super().__init__()
        if bidirectional or not batch_first:
            raise ValueError("the xLSTM cells run batch first and in one direction")
        self.input_size, self.hidden_size, self.num_layers, self.dropout = input_size, hidden_size, num_layers, dropout
        self.cells = nn.ModuleList(cell(input_size if layer == 0 else hidden_size, hidden_size)
                                   for layer in range(num_layers))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}"

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None):
        finals = []
        for layer, cell in enumerate(self.cells):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            current = cell.initial_state(x.size(0), x) if state is None else tuple(part[layer] for part in state)
            gates_x = F.linear(x, cell.weight_ih, cell.bias).unbind(1)  # L x [B, G]: every step's input share at once
            hs = []
            for gates_t in gates_x:
                current = cell.step(gates_t, current)
                hs.append(current[0])
            x = torch.stack(hs, dim=1)  # [B, L, H]
            finals.append(current)
        return x, tuple(torch.stack(parts) for parts in zip(*finals, strict=True))
