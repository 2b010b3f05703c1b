"""Baselines: exact values on a hand-made batch, a linear fit of a noiseless AR process, JSON round trips."""

import json

import pytest
import torch

from forecaster.errors import ConfigError
from forecaster.models.catalog import baseline_from_dict, make_baseline


def hand_batch(horizon=6):
    """Two windows of two targets and one covariate: target 0 counts 0..5, target 1 counts 10..15 backwards."""
    steps = torch.arange(6.0)
    x_past = torch.stack([steps, 15 - steps, torch.full((6,), -99.0)], dim=-1)  # [L=6, 3]
    x_past = torch.stack([x_past, x_past + 100])  # [B=2, 6, 3]
    return {"x_past": x_past, "x_future": torch.zeros(2, horizon, 0), "y": torch.zeros(2, horizon, 2)}


def test_naive_repeats_the_last_value():
    batch = hand_batch()
    pred = make_baseline("naive").fit([batch]).predict(batch["x_past"], batch["x_future"])
    expected = torch.tensor([[5.0, 10.0], [105.0, 110.0]])[:, None].expand(2, 6, 2)
    assert torch.equal(pred, expected)


def test_seasonal_naive_repeats_the_last_season_beyond_one_season():
    batch = hand_batch(horizon=6)
    untouched = batch["x_past"].clone()
    pred = make_baseline("seasonal_naive", season_length=4).fit([batch]).predict(batch["x_past"], batch["x_future"])
    assert torch.equal(pred[0, :, 0], torch.tensor([2.0, 3.0, 4.0, 5.0, 2.0, 3.0]))
    assert torch.equal(pred[1, :, 1], torch.tensor([113.0, 112.0, 111.0, 110.0, 113.0, 112.0]))
    assert torch.equal(batch["x_past"], untouched)


def test_seasonal_naive_needs_a_season_inside_the_lookback():
    with pytest.raises(ConfigError, match="season_length 7 is longer than the lookback 6"):
        make_baseline("seasonal_naive", season_length=7).fit([hand_batch()])
    with pytest.raises(ConfigError, match="window.lookback"):
        make_baseline("seasonal_naive", season_length=7, lookback=6)
    with pytest.raises(ConfigError, match="model.season_length"):
        make_baseline("seasonal_naive")


def ar_batches(n_batches=4, lookback=8, horizon=5):
    """x_t = 1.5 x_{t-1} - 0.7 x_{t-2}, no noise, from random starts: two targets per window."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n_batches):
        values = [torch.randn(32, 2, generator=generator), torch.randn(32, 2, generator=generator)]
        for _ in range(lookback + horizon - 2):
            values.append(1.5 * values[-1] - 0.7 * values[-2])
        series = torch.stack(values, dim=1)  # [32, L+H, 2]
        x_past = torch.cat([series[:, :lookback], torch.randn(32, lookback, 1, generator=generator)], dim=-1)
        batches.append({"x_past": x_past, "x_future": torch.zeros(32, horizon, 0), "y": series[:, lookback:]})
    return batches


def test_linear_baseline_fits_a_noiseless_ar_process():
    train, test = ar_batches()[:3], ar_batches()[3]
    model = make_baseline("linear", alpha=1e-6).fit(train)
    pred = model.predict(test["x_past"], test["x_future"])
    assert pred.shape == test["y"].shape
    torch.testing.assert_close(pred, test["y"], atol=1e-3, rtol=0)
    assert model.n_params == 8 * 5 + 5


@pytest.mark.parametrize("name", ["naive", "seasonal_naive", "linear"])
def test_json_round_trip_predicts_the_same(name):
    batches = ar_batches()
    model = make_baseline(name, season_length=3).fit(batches)
    state = json.loads(json.dumps(model.to_dict()))
    restored = baseline_from_dict(state)
    assert restored.n_targets == 2
    x_past, x_future = batches[0]["x_past"], batches[0]["x_future"]
    assert torch.equal(restored.predict(x_past, x_future), model.predict(x_past, x_future))


def test_unknown_baseline_names_the_choices():
    with pytest.raises(ConfigError, match="naive, seasonal_naive, linear"):
        make_baseline("prophet")


def test_every_registered_baseline_is_built_from_the_settings_it_reads_and_the_config_lists_the_registry():
    from forecaster.config import BASELINES
    from forecaster.models.catalog import baseline_classes

    assert list(BASELINES) == list(baseline_classes())
    built = {name: make_baseline(name, season_length=3, alpha=0.5, seasonalities=[3, 6]) for name in BASELINES}
    assert {name: type(model).name for name, model in built.items()} == {name: name for name in BASELINES}
    assert built["seasonal_naive"].season_length == 3 and built["linear"].alpha == 0.5
    assert built["mstl"].seasonalities == [3, 6] and built["ets"].season_length == 3
    with pytest.raises(ConfigError, match="seasonal_naive needs a season length"):
        make_baseline("seasonal_naive")
