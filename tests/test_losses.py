"""Losses over [B, H, T, Q] forecasts, and the point forecast taken out of them."""

import pickle

import pytest
import torch
import torch.nn.functional as F

from forecaster.models.losses import make_loss, n_outputs, point_forecast, point_index

QUANTILES = [0.1, 0.5, 0.9]


def test_pinball_loss_by_hand():
    pred = torch.tensor([[0.5, 1.0, 2.0], [-1.0, 0.0, 1.0]]).view(2, 1, 1, 3)  # [B=2, H=1, T=1, Q=3]
    y = torch.tensor([1.0, 0.0]).view(2, 1, 1)
    # window 1, errors y - pred = (0.5, 0, -1): 0.1*0.5, 0, (0.9-1)*(-1) -> 0.05 + 0 + 0.1
    # window 2, errors (1, 0, -1): 0.1*1, 0, 0.1                         -> 0.1 + 0 + 0.1
    expected = (0.15 + 0.2) / 6
    torch.testing.assert_close(make_loss("quantile", QUANTILES)(pred, y), torch.tensor(expected))


def test_pinball_loss_is_lowest_at_the_true_quantile():
    y = torch.randn(4000).view(-1, 1, 1)
    loss = make_loss("quantile", [0.9])
    true_quantile = torch.quantile(y, 0.9)
    at = loss(true_quantile.expand(y.shape).unsqueeze(-1), y)
    for offset in (-0.3, 0.3):
        assert at < loss((true_quantile + offset).expand(y.shape).unsqueeze(-1), y)


@pytest.mark.parametrize(("name", "reference"), [("mse", F.mse_loss), ("mae", F.l1_loss), ("huber", F.huber_loss)])
def test_point_losses_are_torch_losses_on_the_single_output(name, reference):
    pred, y = torch.randn(2, 4, 3, 1) * 3, torch.randn(2, 4, 3)
    torch.testing.assert_close(make_loss(name, QUANTILES)(pred, y), reference(pred[..., 0], y))


def test_point_forecast_picks_the_median():
    pred = torch.arange(3.0).expand(2, 4, 3, 3)  # output q holds the value q
    assert torch.equal(point_forecast(pred, "quantile", QUANTILES), torch.ones(2, 4, 3))
    assert point_index("quantile", [0.1, 0.45, 0.7, 0.9]) == 1  # no 0.5: the nearest one
    assert torch.equal(point_forecast(pred[..., :1], "mse", QUANTILES), pred[..., 0])


def test_output_counts_and_mismatches():
    assert n_outputs("quantile", QUANTILES) == 3 and n_outputs("huber", QUANTILES) == 1
    with pytest.raises(ValueError, match=r"\[B, H, T, 1\]"):
        make_loss("mse", QUANTILES)(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="choose one of"):
        make_loss("rmse", QUANTILES)


def test_losses_pickle():
    """Multi-process training (DDP spawn) pickles the module, loss included."""
    loss = pickle.loads(pickle.dumps(make_loss("quantile", QUANTILES)))
    assert loss(torch.zeros(1, 1, 1, 3), torch.zeros(1, 1, 1)) == 0


def test_the_configs_loss_names_are_the_registry():
    from typing import get_args

    from forecaster.config import Loss
    from forecaster.models.losses import LOSSES

    assert list(get_args(Loss)) == list(LOSSES)
    assert [name for name, loss in LOSSES.items() if loss.per_quantile] == ["quantile"]
