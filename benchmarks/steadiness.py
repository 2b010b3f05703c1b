"""Benchmark: is the training step's rate unsteady, or is the machine? (issue 27, item 3)

In one process, rounds alternate three measures for each thread count: the CPU's GEMM rate on the step's own
product (`speed.gemm_gflops`, [B x 2H] @ [2H x 4H]), the bare training kernel of `speed.py`'s reference LSTM over the
same pre-built batches, and the kernel's rate as a share of that GEMM rate (`efficiency`). If the kernel's rate
swings while its efficiency holds, the machine's speed moved (another tenant, frequency); if the efficiency
swings too, something in the step does. Printed: one JSON row per round and measure, then per thread count the
coefficient of variation (std / mean) of each measure and the correlation of kernel and GEMM rates.

`--bf16` adds, in each round, the same kernel under bfloat16 autocast (what `train.precision: auto` trains the
reference LSTM in on a CPU with native bfloat16) and its share of the same float32 GEMM rate, and the bfloat16
GEMM rate on the same product.

    python benchmarks/steadiness.py [--rounds 8] [--batches 40] [--threads 2 1] [--bf16]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, set_threads, shared_data, write_results  # noqa: E402
from speed import REFERENCE, batches_of, gemm_gflops, kernel_train, lstm_flops_per_window  # noqa: E402

COLUMNS = ["threads", "measure", "mean", "cv", "min", "max", "note"]
NAMES = {"kernel": "kernel windows/s", "gemm": "GEMM GFLOP/s", "efficiency": "kernel share of GEMM rate",
         "kernel_bf16": "kernel windows/s, bf16 autocast", "gemm_bf16": "GEMM GFLOP/s, bfloat16",
         "efficiency_bf16": "bf16 kernel share of the float32 GEMM rate"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40, help="training batches of 64 a kernel round runs")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--bf16", action="store_true", help="also the kernel under bfloat16 autocast")
    parser.add_argument("--name", default="steadiness")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    from forecaster.config import load_config
    from forecaster.models.network import network_from_dims
    from forecaster.runtime import set_allocator
    from pipelines.train import prepare_data

    config = load_config(ROOT / "configs" / "etth1-ot.yaml", overrides=REFERENCE)
    config = config.with_overrides({"data.path": str(shared_data("ETT-small/ETTh1.csv"))})
    datamodule = prepare_data(config)
    batches = batches_of(datamodule.train_dataset, 64, shuffle=True, limit=args.batches)
    windows = sum(len(b["y"]) for b in batches)
    hidden, layers = config.model.hidden_size, config.model.num_layers
    flops = 3 * lstm_flops_per_window(config.window.lookback, datamodule.dims["n_past_features"], hidden, layers)
    set_allocator()
    measures = ["kernel", "gemm", "efficiency"] + (["kernel_bf16", "gemm_bf16", "efficiency_bf16"] if args.bf16 else [])
    samples: dict[int, dict[str, list[float]]] = {t: {m: [] for m in measures} for t in args.threads}
    for round_ in range(args.rounds):
        for threads in args.threads:
            set_threads(threads)
            gemm = gemm_gflops(64, hidden)
            torch.manual_seed(0)
            rate = windows / kernel_train(network_from_dims(config, datamodule.dims), batches)
            efficiency = rate * flops / 1e9 / gemm
            values = {"kernel": rate, "gemm": gemm, "efficiency": efficiency}
            if args.bf16:
                torch.manual_seed(0)
                rate_bf16 = windows / kernel_train(network_from_dims(config, datamodule.dims), batches, autocast=True)
                values.update({"kernel_bf16": rate_bf16, "gemm_bf16": gemm_gflops(64, hidden, dtype=torch.bfloat16),
                               "efficiency_bf16": rate_bf16 * flops / 1e9 / gemm})
            for measure, value in values.items():
                samples[threads][measure].append(value)
            print(json.dumps({"round": round_, "threads": threads,
                              **{k: round(v, 3 if "efficiency" in k else 1) for k, v in values.items()}}), flush=True)
    rows = []
    for threads, by_measure in samples.items():
        kernel, gemm = by_measure["kernel"], by_measure["gemm"]
        correlation = statistics.correlation(kernel, gemm) if len(kernel) > 2 else float("nan")
        for measure, values in by_measure.items():
            mean = statistics.fmean(values)
            rows.append({"threads": threads, "measure": NAMES[measure],
                         "mean": round(mean, 3 if "efficiency" in measure else 1),
                         "cv": round(statistics.stdev(values) / mean, 3), "min": round(min(values), 3),
                         "max": round(max(values), 3),
                         "note": f"kernel-GEMM correlation {correlation:.2f}" if measure == "kernel" else ""})
    command = "python benchmarks/steadiness.py " + " ".join(sys.argv[1:])
    print(write_results(args.name, rows, COLUMNS, command, extra={"rounds": args.rounds, "windows": windows,
                                                                 "flops_per_window": flops}))


if __name__ == "__main__":
    main()
