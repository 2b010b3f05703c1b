"""The peephole LSTM against its equations, against nn.LSTM, and the layer factory's contract."""

import pytest
import torch
from torch import nn

from forecaster.errors import ConfigError
from forecaster.models.cells import CELLS, PeepholeLSTM, PeepholeLSTMCell, make_rnn


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
    rnn = make_rnn(cell, 3, 4, num_layers=2, dropout=0.2, bidirectional=True)
    output, state = rnn(torch.randn(2, 5, 3))
    assert output.shape == (2, 5, 8)
    for part in state if isinstance(state, tuple) else (state,):
        assert part.shape == (4, 2, 4)
    for name, param in rnn.named_parameters():
        if "weight_hh" in name:
            for block in param.detach().split(4):
                torch.testing.assert_close(block @ block.T, torch.eye(4), atol=1e-5, rtol=0)
        if cell in ("lstm", "peephole_lstm") and "bias" in name and "bias_hh" not in name:
            assert torch.equal(param[4:8], torch.ones(4)), "forget-gate bias starts at 1"


def test_unknown_cell_names_the_choices():
    with pytest.raises(ConfigError, match="peephole_lstm"):
        make_rnn("transformer", 3, 4)
