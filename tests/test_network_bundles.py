"""Weights saved by earlier versions of the network still load and still forecast the same.

Each folder under tests/data/bundles was written by the network as it was before its encoder and decoders became
parts of their own: `weights.pt` is the state dict as `ModelBundle.save` writes it, `config.json` the `from_config`
arguments, `io.pt` a seeded input and the forecasts that network made from it (free running, and teacher forced
on `y`). The weights were drawn at random, not left at their initialisation (zero biases and peepholes), so a
tensor loaded into the wrong place changes the forecast.
"""

import json
from pathlib import Path

import pytest
import torch

from forecaster.config import ModelConfig
from forecaster.models.network import RecurrentForecaster

BUNDLES = Path(__file__).parent / "data" / "bundles"
CASES = sorted(folder.name for folder in BUNDLES.iterdir() if folder.is_dir())


def test_every_strategy_has_a_saved_bundle():
    assert {name.split("-")[0] for name in CASES} == {"direct", "recursive", "seq2seq", "segment"}


def rebuild(name):
    """The network a saved bundle describes, freshly initialised, and its saved weights and recorded forecasts."""
    folder = BUNDLES / name
    config = json.loads((folder / "config.json").read_text())
    net = RecurrentForecaster.from_config(ModelConfig(**config["model"]), **config["dims"])
    weights = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    return net, weights, torch.load(folder / "io.pt", weights_only=True)


@pytest.mark.parametrize("name", CASES)
@torch.no_grad()
def test_saved_weights_load_and_forecast_as_before(name):
    net, weights, recorded = rebuild(name)
    net.load_state_dict(weights)  # strict, as ModelBundle.load does
    net.eval()
    free = net(recorded["x_past"], recorded["x_future"])
    forced = net(recorded["x_past"], recorded["x_future"], recorded["y"], teacher_forcing=1.0)
    torch.testing.assert_close(free, recorded["free"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forced, recorded["forced"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CASES)
@torch.no_grad()
def test_saved_weights_load_inside_the_lightning_module(name):
    """A training checkpoint and the early-stopping callback's best state hold the weights under `network.`, and
    load through the LightningModule, not through the network's own `load_state_dict`."""
    from forecaster.training.module import ForecastModule

    net, weights, recorded = rebuild(name)
    module = ForecastModule(net)
    module.load_state_dict({f"network.{key}": value for key, value in weights.items()})
    torch.testing.assert_close(net.eval()(recorded["x_past"], recorded["x_future"]), recorded["free"],
                               atol=1e-5, rtol=1e-5)
