"""How a network computes its forecasts, never what: the precision and the batch size.

`choose_precision` runs the network in float32 and in bfloat16 on the model's own example windows (saved in the
bundle; older bundles: the first batch being forecast) and keeps bfloat16 only where its forecasts lie within
`tolerance` of float32's on the scaled axis, on a machine that computes bfloat16 natively. `inference_batch_size`
is the largest batch whose estimated working memory fits `predict.memory_mb`. `forecasting.forecast` uses both.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from forecaster.errors import ModelError

if TYPE_CHECKING:
    from forecaster.bundle import ModelBundle
    from forecaster.predictor import Predictor

PRECISIONS = ("auto", "32", "bf16")  # `predict.precision`: what `choose_precision` answers (config.InferencePrecision)
EXAMPLE_WINDOWS = 128  # windows a bundle keeps for the precision check


@dataclass(frozen=True)
class PrecisionChoice:
    """What a network computes its forecasts in (`precision`: '32' or 'bf16'), what was asked, and why.
    `max_difference`: the largest |bfloat16 - float32| forecast on the example windows, on the scaled axis (in
    each series' own standard deviations); `speedup`: float32 seconds / bfloat16 seconds on them."""

    precision: str
    requested: str
    reason: str
    max_difference: float | None = None
    speedup: float | None = None

    def record(self) -> dict[str, Any]:
        return asdict(self)


def choose_precision(predictor: Predictor, examples: dict[str, torch.Tensor], requested: str = "auto",
                     tolerance: float = 0.01) -> PrecisionChoice:
    """'32' keeps float32. 'bf16' uses bfloat16 (an error if it cannot run here). 'auto' keeps bfloat16 only on
    a machine with native bfloat16 arithmetic (elsewhere it is emulated, slower than float32) and only if every
    forecast of `examples` lies within `tolerance` of float32's. Both tests are deterministic on a machine, so
    every process (a Spark executor, a rerun) makes the same choice; the measured speed-up is reported only."""
    if requested not in PRECISIONS:
        raise ModelError(f"predict.precision: {requested!r} is not one of {', '.join(PRECISIONS)}")
    if predictor.network is None:
        return PrecisionChoice("32", requested, "a baseline computes in float32")
    if requested == "32":
        return PrecisionChoice("32", requested, "float32 asked for")
    if requested == "auto" and not native_bf16():
        return PrecisionChoice("32", requested, "this machine has no native bfloat16 arithmetic")
    try:
        reference, fp32_seconds = _timed(replace(predictor, precision="32"), examples)
        reduced, bf16_seconds = _timed(replace(predictor, precision="bf16"), examples)
    except RuntimeError as exc:  # a backend without a bfloat16 kernel for some layer
        reason = str(exc).strip().splitlines()[0][:200]
        if requested == "bf16":
            raise ModelError(f"predict.precision=bf16: this machine's torch cannot run the network in bfloat16 "
                             f"({reason}); use predict.precision=auto or 32") from exc
        return PrecisionChoice("32", requested, f"bfloat16 failed here: {reason}")
    difference = float((reduced - reference).abs().max())
    measured = {"max_difference": round(difference, 6),
                "speedup": round(fp32_seconds / bf16_seconds, 2) if bf16_seconds > 0 else None}
    if requested == "bf16":
        return PrecisionChoice("bf16", requested, "bfloat16 asked for", **measured)
    if not difference <= tolerance:
        return PrecisionChoice("32", requested, f"bfloat16 forecasts differ from float32 by up to {difference:.3g}, "
                               f"more than predict.bf16_tolerance={tolerance:g}", **measured)
    return PrecisionChoice("bf16", requested, f"bfloat16 within {tolerance:g} of float32 on the model's examples",
                           **measured)


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX, as oneDNN reports it)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bundle_precision(bundle: ModelBundle, predictor: Predictor, windows, requested: str = "auto",
                     tolerance: float = 0.01) -> PrecisionChoice:
    """`choose_precision` for a loaded bundle (`predictor`: its float32 `Predictor`), measured once per bundle
    object and setting, on the bundle's own example windows; a bundle saved without them is checked on the first
    of `windows` (a `WindowDataset`)."""
    key = (requested, tolerance)
    if key not in bundle.precision_choices:
        examples = bundle.examples or windows.__getitems__(range(min(len(windows), EXAMPLE_WINDOWS)))
        bundle.precision_choices[key] = choose_precision(predictor, examples, requested, tolerance)
    return bundle.precision_choices[key]


def _timed(predictor: Predictor, examples: dict[str, torch.Tensor], repeats: int = 3) -> tuple[torch.Tensor, float]:
    """The forecasts for `examples` and the best of `repeats` timed passes (after one untimed warm-up)."""
    with torch.inference_mode():
        out = predictor(examples["x_past"], examples["x_future"]).float()
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            predictor(examples["x_past"], examples["x_future"])
            best = min(best, time.perf_counter() - started)
    return out, best


def window_bytes(bundle: ModelBundle) -> int:
    """An estimate of the working memory one window takes in a forward pass: the input window and, per row the
    network runs (one per target when channel-independent), every layer's states over the steps it reads,
    with room for a gated cell's four gates, and the decoder's states and outputs; doubled for temporaries."""
    if members := getattr(bundle.baseline, "members", None):  # an ensemble runs its members one after another
        return max(window_bytes(member) for member in members)
    dims = bundle.dims
    lookback, horizon = bundle.lookback, bundle.horizon
    window = (lookback + horizon) * (dims["n_past_features"] + dims["n_future_features"])
    if bundle.network is None:
        return 4 * 2 * window
    network = bundle.network
    rows = network.n_targets if network.channel_independent else 1
    steps = math.ceil(lookback / network.segment_length) if network.strategy == "segment" else lookback
    width = network.hidden_size * (2 if network.bidirectional else 1)
    encoder = network.num_layers * steps * width * 6
    decoder = horizon * (2 * width + dims["n_future_features"] + network.n_outputs + (steps if network.attention else 0))
    return 4 * 2 * (window + rows * (encoder + decoder))


def inference_batch_size(bundle: ModelBundle, memory_mb: float) -> int:
    """The largest batch whose estimated working memory (`window_bytes`) fits `memory_mb` megabytes."""
    return max(1, int(memory_mb * 2**20 // window_bytes(bundle)))
