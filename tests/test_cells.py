"""The peephole LSTM and xLSTM's cells against their equations, the peephole LSTM against nn.LSTM, and the layer
factory's contract."""

import pytest
import torch
from torch import nn

from forecaster.errors import ConfigError
from forecaster.models.cells import CELLS, PeepholeLSTM, PeepholeLSTMCell, make_rnn
from forecaster.models.xlstm import XLSTM, MLSTMCell, SLSTMCell


def _random_cell(input_size=3, hidden_size=4):
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(input_size, hidden_size)
    with torch.no_grad():
        for param in cell.parameters():
            param.uniform_(-0.8, 0.8)  # non-zero peepholes, so that they are exercised
    return cell


def _by_hand(cell, xs, h, c):
    """The Gers & Schmidhuber equations, written out with the cell's own parameters."""
    W_i, W_f, W_g, W_o = cell.weight_ih.chunk(4)
    U_i, U_f, U_g, U_o = cell.weight_hh.chunk(4)
    b_i, b_f, b_g, b_o = cell.bias.chunk(4)
    p_i, p_f, p_o = cell.weight_peephole
    hs = []
    for x in xs:
        i = torch.sigmoid(x @ W_i.T + h @ U_i.T + p_i * c + b_i)
        f = torch.sigmoid(x @ W_f.T + h @ U_f.T + p_f * c + b_f)
        g = torch.tanh(x @ W_g.T + h @ U_g.T + b_g)
        c = f * c + i * g
        o = torch.sigmoid(x @ W_o.T + h @ U_o.T + p_o * c + b_o)
        h = o * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs, dim=1), h, c


@torch.no_grad()
def test_peephole_cell_matches_its_equations():
    cell = _random_cell()
    xs = torch.randn(3, 2, 3)  # three steps of [B=2, F=3]
    h0, c0 = torch.randn(2, 4), torch.randn(2, 4)
    expected, h_expected, c_expected = _by_hand(cell, xs, h0, c0)
    h, c = h0, c0
    for step, x in enumerate(xs):
        h, c = cell(x, (h, c))
        torch.testing.assert_close(h, expected[:, step], atol=1e-6, rtol=0)
    torch.testing.assert_close(c, c_expected, atol=1e-6, rtol=0)


@torch.no_grad()
def test_peephole_layer_runs_the_cell_over_time():
    layer = PeepholeLSTM(3, 4)
    layer.cells[0].load_state_dict(_random_cell().state_dict())
    x, h0, c0 = torch.randn(2, 5, 3), torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    output, (h_n, c_n) = layer(x, (h0, c0))
    expected, h_expected, c_expected = _by_hand(layer.cells[0], x.unbind(1), h0[0], c0[0])
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_n[0], h_expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(c_n[0], c_expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("batch_first", [True, False])
@torch.no_grad()
def test_peephole_lstm_without_peepholes_is_torch_lstm(batch_first):
    """Stacking, directions, state layout and initial state, checked against torch's own implementation."""
    torch.manual_seed(1)
    ours = PeepholeLSTM(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first)
    reference = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first)
    for index, cell in enumerate(ours.cells):
        suffix = f"_l{index // 2}" + ("_reverse" if index % 2 else "")
        cell.weight_ih.copy_(getattr(reference, "weight_ih" + suffix))
        cell.weight_hh.copy_(getattr(reference, "weight_hh" + suffix))
        cell.bias.copy_(getattr(reference, "bias_ih" + suffix) + getattr(reference, "bias_hh" + suffix))
        cell.weight_peephole.zero_()
    x = torch.randn(2, 6, 3) if batch_first else torch.randn(6, 2, 3)
    state = (torch.randn(4, 2, 4), torch.randn(4, 2, 4))
    output, (h_n, c_n) = ours(x, state)
    ref_output, (ref_h, ref_c) = reference(x, state)
    torch.testing.assert_close(output, ref_output, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_n, ref_h, atol=1e-6, rtol=0)
    torch.testing.assert_close(c_n, ref_c, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_has_the_same_interface_and_initialisation(cell):
    directions = 2 if CELLS[cell].bidirectional else 1
    rnn = make_rnn(cell, 3, 4, num_layers=2, dropout=0.2, bidirectional=directions == 2)
    output, state = rnn(torch.randn(2, 5, 3))
    assert output.shape == (2, 5, 4 * directions)
    state = state if isinstance(state, tuple) else (state,)
    assert state[0].shape == (2 * directions, 2, 4)  # h first: the decoders read the top layer's h
    for part in state:
        assert part.shape[:2] == (2 * directions, 2)  # [layers * directions, batch, ...]
    for name, param in rnn.named_parameters():
        if "weight_hh" in name:
            for block in param.detach().split(4):
                torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=0)
        if cell in ("lstm", "peephole_lstm") and "bias" in name and "bias_hh" not in name:
            assert torch.equal(param[4:8], torch.ones(4)), "forget-gate bias starts at 1"


def test_unknown_cell_names_the_choices():
    with pytest.raises(ConfigError, match="peephole_lstm"):
        make_rnn("transformer", 3, 4)


def _xlstm_by_hand(cell, xs):
    """The xLSTM equations without the stabiliser (exact in float64 for inputs this small)."""
    hidden = cell.hidden_size
    h = torch.zeros(xs.size(0), hidden, dtype=torch.float64)
    c, n = torch.zeros_like(h), torch.zeros_like(h)
    memory = torch.zeros(xs.size(0), hidden, hidden, dtype=torch.float64)
    hs = []
    for x in xs.unbind(1):
        if isinstance(cell, SLSTMCell):
            i, f, z, o = (x @ cell.weight_ih.T + h @ cell.weight_hh.T + cell.bias).chunk(4, dim=1)
            i, f = torch.exp(i), torch.sigmoid(f)
            c, n = f * c + i * torch.tanh(z), f * n + i
            h = torch.sigmoid(o) * c / n
        else:
            gates = x @ cell.weight_ih.T + cell.bias
            q, k, v, o = gates[:, : 4 * hidden].chunk(4, dim=1)
            k = k / hidden**0.5
            i, f = torch.exp(gates[:, -2:-1]), torch.sigmoid(gates[:, -1:])
            memory = f[:, :, None] * memory + i[:, :, None] * v[:, :, None] * k[:, None, :]
            n = f * n + i * k
            read = (memory @ q[:, :, None]).squeeze(2)
            h = torch.sigmoid(o) * read / torch.clamp((n * q).sum(dim=1, keepdim=True).abs(), min=1.0)
        hs.append(h)
    return torch.stack(hs, dim=1)


@pytest.mark.parametrize("cell_class", [SLSTMCell, MLSTMCell])
@torch.no_grad()
def test_xlstm_cells_match_their_equations_and_the_stabiliser_changes_nothing(cell_class):
    torch.manual_seed(0)
    layer = XLSTM(cell_class, 3, 4).double()
    with torch.no_grad():
        for param in layer.parameters():
            param.uniform_(-0.8, 0.8)
    xs = torch.randn(2, 7, 3, dtype=torch.float64)
    output, state = layer(xs)
    torch.testing.assert_close(output, _xlstm_by_hand(layer.cells[0], xs), atol=1e-10, rtol=1e-8)
    first, rest = layer(xs[:, :3]), None
    rest, _ = layer(xs[:, 3:], first[1])  # continuing from a state is running on
    torch.testing.assert_close(torch.cat([first[0], rest], dim=1), output, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("cell", ["slstm", "mlstm"])
def test_xlstm_cells_stay_finite_on_long_large_inputs_and_refuse_two_directions(cell):
    """300 steps of inputs 30x the normalised scale: the exponential gates stay finite in float32, gradients too."""
    torch.manual_seed(0)
    rnn = make_rnn(cell, 3, 4, num_layers=2, dropout=0.1)
    output, _ = rnn(30 * torch.randn(2, 300, 3))
    output.sum().backward()
    assert torch.isfinite(output).all()
    assert all(torch.isfinite(param.grad).all() for param in rnn.parameters())
    with pytest.raises(ConfigError, match=f"the {cell} cell runs in one direction"):
        make_rnn(cell, 3, 4, bidirectional=True)


def test_the_configs_cell_names_are_the_registry():
    from typing import get_args

    from forecaster.config import Cell

    assert list(get_args(Cell)) == list(CELLS)
