"""What a network trains in: `train.precision` as Lightning reads it, with `auto` resolved for this machine.

`auto` trains in `bf16-mixed` (weights, optimiser state and loss in float32, the recurrence's matrix products in
bfloat16 under autocast) where that was measured faster, and in `32-true` everywhere else:

- on a CPU that computes bfloat16 natively (AVX512-BF16 or AMX, `forecaster.inference.native_bf16`);
- for the networks whose whole recurrence is one fused oneDNN call (`BF16_MODELS`): the LSTM (torch runs only the
  LSTM through oneDNN's RNN primitive on a CPU) with the direct strategy, where bfloat16 autocast trained 1.27x
  faster. `rnn` and `gru` (torch's own step loop), the decoders that step through the horizon and our own cells
  mostly ran slower (0.56-0.97x), the casts costing more than the products gained; the two rows above 1, LSTM
  seq2seq (1.12x) and mLSTM segment (1.09x), were not kept: LSTM seq2seq ran at 0.95x in an earlier run
  (`benchmarks/train_precision.py`, README Results);
- in one process: the ranks of a distributed training must agree, and GPUs were not measured here.

The networks trained in bfloat16 reached the validation error float32's did (README Results, "Training in
bfloat16"). The rule reads only the config and the machine, so a rerun and a resume on the same machine train in
the same precision; the saved model's config records what was used. Any other value goes to the Trainer unchanged.
"""

from __future__ import annotations

from forecaster.config import Config
from forecaster.runtime import trains_on_cpu

BF16_MODELS = frozenset({("lstm", "direct")})  # (model.cell, model.strategy): one oneDNN RNN call end to end


def training_precision(config: Config) -> tuple[str, str]:
    """The precision the Trainer gets for `config` on this machine, and why, in words for the log."""
    from forecaster.inference import native_bf16

    wanted = config.train.precision
    if wanted != "auto":
        return wanted, "train.precision"
    train = config.train
    if not trains_on_cpu(train.accelerator):
        return "32-true", "auto: float32 off the CPU, where bfloat16 training was not measured"
    if train.num_nodes > 1 or train.strategy != "auto" or train.devices not in (1, "1", "auto"):
        return "32-true", "auto: float32 for a distributed training"
    model = config.model
    if (model.cell, model.strategy) not in BF16_MODELS:
        return "32-true", f"auto: float32 for {model.cell} with the {model.strategy} strategy, which bfloat16 " \
                          "does not speed up"
    if not native_bf16():
        return "32-true", "auto: float32, this CPU has no native bfloat16"
    return "bf16-mixed", f"auto: bfloat16 autocast, {model.cell} with the {model.strategy} strategy on a CPU with " \
                         "native bfloat16"
