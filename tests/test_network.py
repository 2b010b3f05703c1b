"""RecurrentForecaster: one contract over every cell, strategy and option, then teacher forcing, RevIN and channel
independence, each checked for the property that a real bug would break."""

import inspect
import io

import pytest
import torch

from forecaster.config import ModelConfig
from forecaster.errors import ConfigError, ModelError
from forecaster.models.cells import CELLS
from forecaster.models.network import STRATEGIES, RecurrentForecaster

B, L, H = 3, 10, 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors this small only pay for thread hand-offs, and on a busy 2-core machine those cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
SIZES = {"hidden_size": 6, "num_layers": 2, "dropout": 0.1}
# (targets, past covariates, known-future features): the data layer puts targets, past covariates, then the
# known-future features in x_past, and the known-future features alone in x_future.
DATA = {"one-target": (1, 0, 0), "three-targets": (3, 1, 2)}
OPTIONS = {
    "plain": {"channel_independent": False, "revin": False},
    "channel-independent+revin+quantiles": {"channel_independent": True, "revin": True, "n_outputs": 3},
    "linear-skip+quantiles": {"channel_independent": False, "revin": True, "n_outputs": 3, "linear_skip": True},
    "bidirectional+attention": {"channel_independent": False, "revin": True, "bidirectional": True, "attention": True},
}


def build(strategy, data, cell="lstm", **options):
    n_targets, n_covariates, n_known = DATA[data]
    options = {**SIZES, **options}
    if strategy != "seq2seq":
        options.pop("attention", None)
    return RecurrentForecaster(n_targets, n_targets + n_covariates + n_known, n_known, L, H, cell=cell,
                               strategy=strategy, **options)


def make_batch(data, seed=0):
    n_targets, n_covariates, n_known = DATA[data]
    generator = torch.Generator().manual_seed(seed)
    known = torch.randn(B, L + H, n_known, generator=generator)
    x_past = torch.cat([torch.randn(B, L, n_targets + n_covariates, generator=generator), known[:, :L]], dim=-1)
    return {"x_past": x_past, "x_future": known[:, L:], "y": torch.randn(B, H, n_targets, generator=generator)}


CASES = [
    pytest.param(cell, strategy, data, options, id=f"{cell}-{strategy}-{data}-{options}")
    for cell in CELLS
    for strategy in STRATEGIES
    for data in DATA
    for options in OPTIONS
    if not ((strategy in ("recursive", "segment") or not CELLS[cell].bidirectional)
            and OPTIONS[options].get("bidirectional"))
]


@pytest.mark.parametrize(("cell", "strategy", "data", "options"), CASES)
def test_network_contract(cell, strategy, data, options):
    torch.manual_seed(0)
    net = build(strategy, data, cell, **OPTIONS[options])
    batch = make_batch(data)
    untouched = {key: value.clone() for key, value in batch.items()}
    n_targets, n_outputs = DATA[data][0], OPTIONS[options].get("n_outputs", 1)

    net.train()
    forced = net(batch["x_past"], batch["x_future"], y=batch["y"], teacher_forcing=1.0)
    free = net(batch["x_past"], batch["x_future"])
    for pred in (forced, free):
        assert pred.shape == (B, H, n_targets, n_outputs)
        assert torch.isfinite(pred).all()
        assert (pred.diff(dim=-1) >= 0).all(), "quantiles must not cross"
    (forced.square().mean() + free.square().mean()).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"no gradient reaches {name}"
    for key, value in batch.items():
        assert torch.equal(value, untouched[key]), f"forward changed {key}"

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    reloaded = build(strategy, data, cell, **OPTIONS[options])
    reloaded.load_state_dict(torch.load(buffer, weights_only=True))
    net.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.equal(net(batch["x_past"], batch["x_future"]), reloaded(batch["x_past"], batch["x_future"]))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("strategy", ["recursive", "seq2seq"])
@torch.no_grad()
def test_teacher_forcing_reads_past_truth_only(cell, strategy):
    """Step t reads y_{t-1}: changing y_k changes steps after k and nothing before; without forcing, y is unused."""
    net = build(strategy, "three-targets", cell, channel_independent=True, revin=True).eval()
    batch = make_batch("three-targets")
    forced = net(batch["x_past"], batch["x_future"], batch["y"], teacher_forcing=1.0)
    free = net(batch["x_past"], batch["x_future"])
    for k in range(H):
        y = batch["y"].clone()
        y[:, k] += 1.0
        changed = net(batch["x_past"], batch["x_future"], y, teacher_forcing=1.0)
        torch.testing.assert_close(changed[:, : k + 1], forced[:, : k + 1], atol=1e-6, rtol=0)
        assert (changed[:, k + 1 :] - forced[:, k + 1 :]).abs().amax(dim=(0, 2, 3)).gt(1e-4).all()
        assert torch.equal(net(batch["x_past"], batch["x_future"], y, teacher_forcing=0.0), free)


@pytest.mark.parametrize("strategy", ["recursive", "seq2seq"])
@torch.no_grad()
def test_teacher_forcing_with_own_forecasts_reproduces_the_free_run(strategy):
    """Fed its own point forecasts as `y`, the one-call teacher-forced path must replay the step-by-step run:
    this pins the alignment of y_{t-1} with step t and that fed-back truth is normalised like the inputs."""
    torch.manual_seed(0)
    net = build(strategy, "three-targets", "gru", channel_independent=True, revin=True, n_outputs=3).eval()
    with torch.no_grad():
        net.revin.log_scale.normal_()
        net.revin.shift.normal_()
    batch = make_batch("three-targets")
    batch["x_past"][..., :3] = batch["x_past"][..., :3] * 5 + 20  # far from the unit scale the core sees
    free = net(batch["x_past"], batch["x_future"])
    replay = net(batch["x_past"], batch["x_future"], y=free[..., net.point_index], teacher_forcing=1.0)
    torch.testing.assert_close(replay, free, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("strategy", ["direct", "segment"])
def test_direct_and_segment_ignore_y(strategy):
    net = build(strategy, "three-targets").eval()
    batch = make_batch("three-targets")
    forced = net(batch["x_past"], batch["x_future"], batch["y"], teacher_forcing=1.0)
    assert torch.equal(forced, net(batch["x_past"], batch["x_future"]))


@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_recursive_with_a_one_step_lookback_starts_from_a_zero_state(cell):
    """With L=1 there is nothing to warm up on (no step has a y_{t-1}): the roll-out must start from the cell's
    zero state instead of running it over an empty sequence, which torch's fused cells refuse."""
    net = RecurrentForecaster(2, 4, 1, 1, H, cell=cell, strategy="recursive", hidden_size=4, num_layers=2).eval()
    x_past, x_future, y = torch.randn(B, 1, 4), torch.randn(B, H, 1), torch.randn(B, H, 2)
    for teacher_forcing in (0.0, 1.0):
        pred = net(x_past, x_future, y, teacher_forcing)
        assert pred.shape == (B, H, 2, 1) and torch.isfinite(pred).all()


@torch.no_grad()
def test_segment_strategy_reads_whole_segments_and_pads_the_oldest():
    """L=10 in segments of 3 is 4 segments, the first padded with the window's first step, so the oldest step
    still reaches the forecast; H=4 is cut from 2 output segments of 3. Each segment embeds w steps of a row's
    columns: its own target and the 3 covariate columns."""
    net = build("segment", "three-targets", "gru", segment_length=3, channel_independent=True, revin=False).eval()
    assert (net.encoder.n_segments, net.decoder.n_segments) == (4, 2)
    batch = make_batch("three-targets")
    pred = net(batch["x_past"], batch["x_future"])
    for step in (0, L - 1):
        x_past = batch["x_past"].clone()
        x_past[:, step, 0] += 1.0
        assert not torch.allclose(net(x_past, batch["x_future"])[:, :, 0], pred[:, :, 0]), f"step {step} unread"
    assert net.encoder.embed[0].in_features == 3 * (1 + 3) and "segments of 3" in net.describe()


@torch.no_grad()
def test_segment_channel_embedding_tells_targets_apart():
    """Channel-independent rows share weights; the channel embedding is what lets one target's forecast differ
    from another's on identical histories."""
    net = build("segment", "three-targets", "gru", channel_independent=True, revin=False).eval()
    batch = make_batch("three-targets")
    x_past = batch["x_past"].clone()
    x_past[..., 1] = x_past[..., 0]
    x_past[..., 2] = x_past[..., 0]
    pred = net(x_past, batch["x_future"])[..., 0]
    assert not torch.allclose(pred[..., 0], pred[..., 1])
    net.decoder.channel.data[:] = net.decoder.channel.data[0]
    same = net(x_past, batch["x_future"])[..., 0]
    torch.testing.assert_close(same[..., 0], same[..., 1])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("channel_independent", [True, False])
@torch.no_grad()
def test_revin_restores_the_input_level_and_scale(strategy, channel_independent):
    net = build(strategy, "three-targets", "lstm", revin=True, channel_independent=channel_independent, n_outputs=3)
    net.eval()
    net.revin.log_scale.normal_()
    net.revin.shift.normal_()
    batch = make_batch("three-targets")
    x_past, x_future, y = batch["x_past"], batch["x_future"], batch["y"]
    level = torch.tensor([50.0, -7.0, 3.0])
    shifted = x_past.clone()
    shifted[..., :3] += level  # the targets only: covariates keep their scale
    scaled = x_past.clone()
    scaled[..., :3] *= 10.0
    for teacher_forcing in (0.0, 1.0):
        pred = net(x_past, x_future, y, teacher_forcing)
        on_shifted = net(shifted, x_future, y + level, teacher_forcing)
        torch.testing.assert_close(on_shifted, pred + level[:, None], atol=1e-3, rtol=1e-5)
        on_scaled = net(scaled, x_future, y * 10.0, teacher_forcing)
        torch.testing.assert_close(on_scaled, pred * 10.0, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES)
@torch.no_grad()
def test_channel_independent_targets_do_not_see_each_other(strategy):
    net = build(strategy, "three-targets", "gru", channel_independent=True, revin=True).eval()
    batch = make_batch("three-targets")
    pred = net(batch["x_past"], batch["x_future"])
    x_past = batch["x_past"].clone()
    x_past[..., 0] += torch.randn(B, L)
    changed = net(x_past, batch["x_future"])
    assert not torch.allclose(changed[:, :, 0], pred[:, :, 0])
    assert torch.equal(changed[:, :, 1:], pred[:, :, 1:]), "target 0 leaked into the others"


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("channel_independent", [True, False])
@torch.no_grad()
def test_linear_skip_adds_a_linear_map_of_each_targets_lookback(strategy, channel_independent):
    torch.manual_seed(0)
    with_skip = build(strategy, "three-targets", "gru", channel_independent=channel_independent, revin=False,
                      n_outputs=3, linear_skip=True).eval()
    without = build(strategy, "three-targets", "gru", channel_independent=channel_independent, revin=False,
                    n_outputs=3).eval()
    without.load_state_dict({k: v for k, v in with_skip.state_dict().items() if not k.startswith("skip.")})
    batch = make_batch("three-targets")
    x_past, x_future = batch["x_past"], batch["x_future"]
    assert torch.equal(with_skip(x_past, x_future), without(x_past, x_future)), "a new skip path must start at zero"

    with_skip.skip.weight.normal_()
    with_skip.skip.bias.normal_()
    added = with_skip(x_past, x_future) - without(x_past, x_future)  # [B, H, T, Q]
    weight, bias = with_skip.skip.weight, with_skip.skip.bias  # [H, L], [H]
    for t in range(3):
        expected = x_past[:, :, t] @ weight.T + bias  # [B, H]: target t's own lookback only
        for q in range(3):
            torch.testing.assert_close(added[:, :, t, q], expected, atol=1e-4, rtol=1e-4)
    assert "linear skip" in with_skip.describe()


def test_from_config_builds_quantile_outputs_around_the_median():
    model = ModelConfig(cell="gru", strategy="seq2seq", hidden_size=8, num_layers=1, attention=True, loss="quantile",
                        quantiles=[0.9, 0.1, 0.45, 0.7])
    net = RecurrentForecaster.from_config(model, n_targets=2, n_past_features=5, n_future_features=1, lookback=L,
                                          horizon=H)
    assert net.n_outputs == 4 and net.point_index == 1  # sorted quantiles: 0.1, 0.45, 0.7, 0.9
    pred = net(torch.randn(B, L, 5), torch.randn(B, H, 1))
    assert pred.shape == (B, H, 2, 4)
    assert "gru seq2seq" in net.describe() and "attention" in net.describe() and "parameters" in net.describe()


def test_constructor_defaults_are_the_config_defaults():
    defaults = ModelConfig()
    for name, parameter in inspect.signature(RecurrentForecaster).parameters.items():
        if name in ModelConfig.model_fields:
            assert parameter.default == getattr(defaults, name), name


@pytest.mark.parametrize(("strategy", "option"),
                         [("recursive", "bidirectional"), ("segment", "bidirectional"), ("direct", "attention")])
def test_options_that_do_not_apply_are_config_errors(strategy, option):
    with pytest.raises(ConfigError, match=f"model.{option}"):
        RecurrentForecaster(1, 1, 0, L, H, strategy=strategy, **{option: True})


def test_inputs_of_the_wrong_shape_name_what_was_expected():
    net = build("direct", "three-targets")
    batch = make_batch("three-targets")
    with pytest.raises(ModelError, match=r"x_past.*\[B, 10, 6\]"):
        net(batch["x_past"][:, 1:], batch["x_future"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_learns_a_sine_in_a_few_steps(strategy):
    """A few seconds of training must beat repeating the last value: catches a head or wiring that cannot learn."""
    torch.manual_seed(0)
    net = RecurrentForecaster(1, 1, 0, L, H, cell="gru", strategy=strategy, hidden_size=16, num_layers=1,
                              dropout=0.0, revin=False)
    starts = torch.rand(64, 1) * 20
    series = torch.sin(0.6 * (starts + torch.arange(L + H))).unsqueeze(-1)  # [64, L+H, 1]
    x_past, x_future, y = series[:, :L], series[:, L:, :0], series[:, L:]
    optimiser = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(60):
        optimiser.zero_grad()
        loss = (net(x_past, x_future, y, teacher_forcing=0.5)[..., 0] - y).square().mean()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        error = (net.eval()(x_past, x_future)[..., 0] - y).square().mean()
    naive = (x_past[:, -1:] - y).square().mean()
    assert error < 0.05 * naive


def test_the_config_accepts_exactly_the_strategies_the_network_builds():
    from typing import get_args

    from forecaster.config import Strategy

    assert list(get_args(Strategy)) == list(STRATEGIES)
