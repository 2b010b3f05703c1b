"""Benchmark: training and prediction throughput of the reference model, through the library and bare.

Reference: LSTM, hidden 64, 2 layers, no dropout, direct, lookback 96, horizon 24, batch 64, float32 on ETTh1 OT
(configs/etth1-ot.yaml, the library's defaults otherwise: RevIN, channel-independent): the peers' reference LSTM
(../shared/peers/README.md), which has no dropout; results measured before 2026-12-07 had dropout 0.1 between
the layers, whose mask cost about 6 % of the step. In one process:

- `kernel train`: the same network's forward + MSE + backward + clip + AdamW step over pre-built batch tensors;
- `pipeline train`: `fit_network` (Lightning Trainer, DataLoader over `WindowDataset`), timed over the training
  epochs only (a callback stops the clock around validation). Kernel and pipeline alternate `--repeats` times
  and the medians are compared: `pipeline_kernel_ratio` (target: at least 0.95);
- `kernel predict` / `pipeline predict`: forward passes over pre-built tensors vs `forecast_windows` over the
  test DataLoader, at the training batch size and at larger ones;
- the options: training batch 256, glibc malloc thresholds (`forecaster.runtime.set_allocator`), bfloat16 autocast, torch.compile.

The allocator is measured first untuned, then tuned for the rest of the run (mallopt cannot be undone cleanly).
`overhead` = pipeline seconds / kernel seconds - 1 for the same windows. `--profile` writes where one pipeline
epoch spends its time (cProfile, cumulative) to results/<name>-profile.txt.

    python benchmarks/speed.py [--threads 2] [--repeats 3] [--profile] [--compile] [--skip-bf16]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, peak_rss_mb, set_threads, shared_data, write_results  # noqa: E402

from forecaster.config import load_config  # noqa: E402

TINY = {"model.cell": "gru", "model.hidden_size": 4, "model.num_layers": 1, "window.lookback": 8,
        "window.horizon": 2, "model.segment_length": 2}
REFERENCE = {"model.cell": "lstm", "model.strategy": "direct", "model.hidden_size": 64, "model.num_layers": 2,
             "model.dropout": 0.0, "train.lr": 0.001,
             "window.lookback": 96, "window.horizon": 24, "train.batch_size": 64, "train.precision": "32-true",
             "train.progress": False}


class TrainClock:
    """A Lightning callback that adds up the seconds spent in training epochs. Lightning runs the validation pass
    inside the training epoch (before `on_train_epoch_end`), so the clock stops around it. It hooks no step, so
    it adds nothing to a step's cost."""

    def __new__(cls):
        import pytorch_lightning as pl

        class _Clock(pl.Callback):
            def __init__(self):
                self.seconds, self.validation_seconds, self.epochs = 0.0, 0.0, 0

            def on_train_epoch_start(self, trainer, module):
                self._start = time.perf_counter()

            def on_validation_start(self, trainer, module):
                self._validation = time.perf_counter()

            def on_validation_end(self, trainer, module):
                self.validation_seconds += time.perf_counter() - self._validation

            def on_train_epoch_end(self, trainer, module):
                self.seconds += time.perf_counter() - self._start
                self.epochs += 1

        return _Clock()


def lstm_flops_per_window(lookback: int, n_inputs: int, hidden: int, layers: int) -> float:
    """Multiply-adds x 2 of one window's LSTM forward pass: per step and layer, the gate products
    [4H x (inputs + H)]. Backward costs about twice the forward, so a training step is ~3x this."""
    per_step = sum(2 * 4 * hidden * ((n_inputs if layer == 0 else hidden) + hidden) for layer in range(layers))
    return float(lookback * per_step)


def gemm_gflops(batch: int, hidden: int, repeats: int = 2000, dtype: torch.dtype = torch.float32) -> float:
    """This CPU's GFLOP/s on the LSTM step's own product, [B x 2H] @ [2H x 4H], back to back: what the
    recurrence could reach if nothing but its matrix products ran (in `dtype`)."""
    a, b = torch.randn(batch, 2 * hidden, dtype=dtype), torch.randn(2 * hidden, 4 * hidden, dtype=dtype)
    out = torch.empty(batch, 4 * hidden, dtype=dtype)
    for _ in range(50):
        torch.mm(a, b, out=out)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b, out=out)
    return 2 * batch * 2 * hidden * 4 * hidden * repeats / (time.perf_counter() - started) / 1e9


def batches_of(dataset, batch_size: int, shuffle: bool, limit: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Pre-built batches: the kernel loop's input, gathered before the clock starts."""
    order = torch.randperm(len(dataset)) if shuffle else torch.arange(len(dataset))
    chunks = order.split(batch_size)[:limit]
    return [dataset.__getitems__(chunk.tolist()) for chunk in chunks]


def kernel_train(network, batches, autocast: bool = False, step_fn=None) -> float:
    """Seconds for one pass of forward, MSE, backward, clip and AdamW step over `batches`."""
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    network.train()

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            pred = network(batch["x_past"], batch["x_future"])[..., 0]  # [B, H, T]
        loss = torch.mean((pred.float() - batch["y"]) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()

    step = step_fn(step) if step_fn else step
    step(batches[0])  # warm-up, not timed
    started = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - started


def kernel_predict(network, batches, autocast: bool = False) -> float:
    network.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        network(batches[0]["x_past"], batches[0]["x_future"])
        started = time.perf_counter()
        for batch in batches:
            network(batch["x_past"], batch["x_future"])
    return time.perf_counter() - started


def pipeline_train(config, datamodule, epochs: int, profile: Path | None = None) -> tuple[float, int, object]:
    """Seconds in `epochs` training epochs of `fit_network` (validation excluded), windows trained on, the fit.
    With `profile`, the whole fit runs under cProfile and the functions that cost most are written there."""
    from forecaster.training.fit import fit_network

    clock = TrainClock()
    config = config.with_overrides({"train.max_epochs": epochs, "train.patience": 0})
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as tmp:
        if profiler:
            profiler.enable()
        fitted = fit_network(config, datamodule, Path(tmp), extra_callbacks=[clock])
        if profiler:
            profiler.disable()
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        profile.write_text(text.getvalue())
    return clock.seconds - clock.validation_seconds, clock.epochs * len(datamodule.train_dataset), fitted


def pipeline_predict(predictor, datamodule, batch_size: int) -> tuple[float, int]:
    from forecaster.evaluation import forecast_windows

    loader = datamodule.dataloader("test")
    loader = torch.utils.data.DataLoader(loader.dataset, batch_size=batch_size, collate_fn=loader.collate_fn)
    forecast_windows(predictor, [next(iter(loader))])  # warm-up
    started = time.perf_counter()
    forecasts = forecast_windows(predictor, loader)
    return time.perf_counter() - started, len(forecasts.pred)


def dims_inputs(dims) -> int:
    """Columns one channel-independent row of the reference model reads: its target plus the covariates."""
    return 1 + dims["n_past_features"] - dims["n_targets"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1, help="training epochs a pipeline repeat runs")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved kernel and pipeline training repeats")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one pipeline epoch: results/<name>-profile.txt")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--name", default="speed", help="results file name")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    shared_data("ETT-small/ETTh1.csv")
    threads = set_threads(args.threads)

    from forecaster.inference import choose_precision
    from forecaster.runtime import set_allocator
    from forecaster.models.network import network_from_dims
    from forecaster.training.precision import training_precision
    from pipelines.train import prepare_data

    config = load_config(ROOT / "configs" / "etth1-ot.yaml", overrides=REFERENCE)
    config = config.with_overrides({"data.path": str(shared_data("ETT-small/ETTh1.csv"))})
    datamodule = prepare_data(config)
    dims = datamodule.dims
    train_batches = batches_of(datamodule.train_dataset, 64, shuffle=True)
    n_train = sum(len(b["y"]) for b in train_batches)
    rows: list[dict] = []

    def add(name: str, kind: str, seconds: float, windows: int, batch: int, note: str = "", base: float | None = None):
        rate = windows / seconds
        rows.append({"measure": name, "kind": kind, "batch": batch, "threads": threads, "windows": windows,
                     "seconds": round(seconds, 3), "per_s": round(rate), "note": note,
                     "vs_base": round(rate / base, 2) if base else None})
        print(rows[-1], flush=True)
        return rate

    def fresh():
        torch.manual_seed(0)
        return network_from_dims(config, dims)

    base = add("kernel train", "train", kernel_train(fresh(), train_batches), n_train, 64, "glibc malloc defaults")
    allocator = set_allocator()
    kernel_rate = add("kernel train", "train", kernel_train(fresh(), train_batches), n_train, 64,
                      f"tuned allocator ({allocator})", base)
    if torch.set_flush_denormal(True):  # tiny gradients as zeros: x86 slows down on subnormal floats
        add("kernel train", "train", kernel_train(fresh(), train_batches), n_train, 64,
            "tuned allocator, denormals flushed to zero", kernel_rate)
        torch.set_flush_denormal(False)
    # Kernel and pipeline alternate, so that a burst of load elsewhere on a noisy machine hits both; the medians
    # of the repeats and their ratio are the result.
    # The third in each round: `train.precision: auto`, what `init` writes and the shipped configs carry.
    auto_config = config.with_overrides({"train.precision": "auto"})
    auto_precision, auto_why = training_precision(auto_config)
    kernel_rates, pipe_rates, auto_rates, fitted = [], [], [], None
    for _ in range(args.repeats):
        kernel_rates.append(n_train / kernel_train(fresh(), train_batches))
        seconds, windows, fitted = pipeline_train(config, datamodule, args.epochs)
        pipe_rates.append(windows / seconds)
        seconds, windows, _ = pipeline_train(auto_config, datamodule, args.epochs)
        auto_rates.append(windows / seconds)
    kernel_rate = statistics.median(kernel_rates)
    pipe_rate = statistics.median(pipe_rates)
    auto_rate = statistics.median(auto_rates)
    repeats = f"median of {args.repeats} interleaved with the pipeline's, tuned allocator"
    add("kernel train", "train", n_train / kernel_rate, n_train, 64, repeats, kernel_rate)
    add("pipeline train (fit_network)", "train", n_train / pipe_rate, n_train, 64,
        repeats.replace("pipeline's", "kernel's"), kernel_rate)
    add("pipeline train (fit_network)", "train", n_train / auto_rate, n_train, 64,
        f"train.precision auto: {auto_precision}; median of {args.repeats} interleaved with the kernel's and the "
        f"float32 pipeline's, tuned allocator", kernel_rate)
    ratio = pipe_rate / kernel_rate
    overhead_train = kernel_rate / pipe_rate - 1
    profile_path = None
    if args.profile:
        profile_path = ROOT / "benchmarks" / "results" / f"{args.name}-profile.txt"
        pipeline_train(config, datamodule, 1, profile=profile_path)
    # The loop's own cost a step, apart from any model: a network so small (GRU 1x4, L 8, H 2) that its step is
    # mostly the loop around it. Kernel and pipeline alternate as above.
    tiny_config = config.with_overrides(TINY)
    tiny_data = prepare_data(tiny_config)
    tiny_batches = batches_of(tiny_data.train_dataset, 64, shuffle=True)
    tiny_windows = sum(len(b["y"]) for b in tiny_batches)
    tiny_kernel, tiny_pipe = [], []
    for _ in range(args.repeats):
        torch.manual_seed(0)
        tiny_kernel.append(kernel_train(network_from_dims(tiny_config, tiny_data.dims), tiny_batches))
        tiny_pipe.append(pipeline_train(tiny_config, tiny_data, 1)[0])
    steps = len(tiny_batches)
    add("kernel train (tiny network)", "train", statistics.median(tiny_kernel), tiny_windows, 64,
        f"GRU 1x4, L 8, H 2: median of {args.repeats}")
    add("pipeline train (tiny network)", "train", statistics.median(tiny_pipe), tiny_windows, 64,
        f"GRU 1x4, L 8, H 2: median of {args.repeats}")
    loop_ms = (statistics.median(tiny_pipe) - statistics.median(tiny_kernel)) / steps * 1000
    large_batches = batches_of(datamodule.train_dataset, 256, shuffle=True)
    add("kernel train", "train", kernel_train(fresh(), large_batches), n_train, 256, "tuned allocator", kernel_rate)
    seconds, windows, _ = pipeline_train(config.with_overrides({"train.batch_size": 256}), datamodule, args.epochs)
    add("pipeline train (fit_network)", "train", seconds, windows, 256, "tuned allocator", kernel_rate)

    test_sets = {size: batches_of(datamodule.test_dataset, size, shuffle=False) for size in (64, 1024)}
    n_test = len(datamodule.test_dataset)
    network = fitted.network
    predict_base = add("kernel predict", "predict", kernel_predict(network, test_sets[64]), n_test, 64)
    pipe_predict = {}
    for size in (64, 1024):
        if size != 64:
            add("kernel predict", "predict", kernel_predict(network, test_sets[size]), n_test, size, "", predict_base)
        seconds, windows = pipeline_predict(fitted.predictor, datamodule, size)
        pipe_predict[size] = add("pipeline predict (forecast_windows)", "predict", seconds, windows, size, "",
                                 predict_base)
    # What `forecaster predict` computes in by default (predict.precision: auto), checked on the model's examples
    choice = choose_precision(fitted.predictor, test_sets[64][0])
    auto_predictor = replace(fitted.predictor, precision=choice.precision)
    for size in (64, 1024):
        seconds, windows = pipeline_predict(auto_predictor, datamodule, size)
        pipe_predict[f"auto-{size}"] = add("pipeline predict (forecast_windows)", "predict", seconds, windows, size,
                                           f"predict.precision auto: {choice.precision} ({choice.reason})",
                                           predict_base)

    if not args.skip_bf16:
        try:
            add("kernel train", "train", kernel_train(fresh(), train_batches, autocast=True), n_train, 64,
                "bf16 autocast", kernel_rate)
            add("kernel predict", "predict", kernel_predict(network, test_sets[1024], autocast=True), n_test, 1024,
                "bf16 autocast", predict_base)
        except RuntimeError as exc:  # oneDNN refusing the LSTM under bf16 autocast
            rows.append({"measure": "bf16 autocast", "note": f"failed: {str(exc).splitlines()[0][:160]}"})
            print(rows[-1], flush=True)
    if args.compile:
        compiled = torch.compile(fresh())
        started = time.perf_counter()
        kernel_train(compiled, train_batches[:2])
        compile_seconds = time.perf_counter() - started
        add("kernel train", "train", kernel_train(compiled, train_batches), n_train, 64,
            f"torch.compile (compile {compile_seconds:.0f} s)", kernel_rate)

    hidden = REFERENCE["model.hidden_size"]
    flops = 3 * lstm_flops_per_window(REFERENCE["window.lookback"], dims_inputs(dims), hidden,
                                      REFERENCE["model.num_layers"])
    ceiling = gemm_gflops(REFERENCE["train.batch_size"], hidden)
    ceiling_bf16 = gemm_gflops(REFERENCE["train.batch_size"], hidden, dtype=torch.bfloat16)
    extra = {"threads": threads, "reference": REFERENCE, "train_windows_per_epoch": n_train,
             "train_mflop_per_window": round(flops / 1e6, 1),
             "kernel_train_gflops": round(kernel_rate * flops / 1e9, 1), "gemm_gflops_step_shape": round(ceiling, 1),
             "windows_per_s_at_gemm_rate": round(ceiling * 1e9 / flops),
             "gemm_gflops_step_shape_bf16": round(ceiling_bf16, 1),
             "kernel_train_share_of_gemm": round(kernel_rate * flops / 1e9 / ceiling, 3),
             "pipeline_train_auto_precision": auto_precision, "pipeline_train_auto_reason": auto_why,
             "pipeline_train_auto_repeats": [round(r) for r in auto_rates],
             "pipeline_train_auto_share_of_gemm": round(auto_rate * flops / 1e9 / ceiling, 3),
             "predict_auto_precision": choice.record(),
             "test_windows": n_test, "pipeline_train_overhead": round(overhead_train, 3),
             "pipeline_kernel_ratio": round(ratio, 3), "kernel_train_repeats": [round(r) for r in kernel_rates],
             "pipeline_train_repeats": [round(r) for r in pipe_rates],
             "pipeline_predict_overhead_batch64": round(predict_base / pipe_predict[64] - 1, 3),
             "loop_ms_per_step": round(loop_ms, 3), "peak_rss_mb": round(peak_rss_mb())}
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    notes = (f"A training window costs about {flops / 1e6:.1f} MFLOP (forward x 3); the bare kernel ran at "
             f"{extra['kernel_train_gflops']} GFLOP/s, and this CPU multiplies the step's matrices at "
             f"{extra['gemm_gflops_step_shape']} GFLOP/s back to back (bfloat16: "
             f"{extra['gemm_gflops_step_shape_bf16']}): {extra['windows_per_s_at_gemm_rate']:,} "
             f"windows/s if the step were nothing but its float32 matrix products. The float32 kernel ran at "
             f"{extra['kernel_train_share_of_gemm']:.0%} of that rate; the pipeline with train.precision auto "
             f"({auto_precision}) at {extra['pipeline_train_auto_share_of_gemm']:.0%} "
             f"(median of {[round(r) for r in auto_rates]} windows/s). "
             f"Pipeline training runs at {ratio:.3f} of the bare kernel's rate (medians of {args.repeats} interleaved "
             f"repeats: kernel {[round(r) for r in kernel_rates]}, pipeline {[round(r) for r in pipe_rates]} "
             f"windows/s), {overhead_train:.1%} added time; the loop itself costs {loop_ms:.2f} ms a step (tiny network, "
             f"pipeline minus kernel); prediction at batch 64 adds "
             f"{extra['pipeline_predict_overhead_batch64']:.1%}. `vs_base`: rate over the first row of its kind "
             f"(train: tuned-allocator kernel, except the first line's base; predict: kernel at batch 64). "
             f"Peak RSS {extra['peak_rss_mb']} MiB.")
    print(write_results(args.name, rows, ["measure", "batch", "threads", "per_s", "vs_base", "seconds", "note"],
                        command, extra, notes))


if __name__ == "__main__":
    main()
