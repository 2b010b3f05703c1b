"""Benchmark: the training step in float32 and under bfloat16 autocast, for every cell and strategy.

`train.precision: auto` trains in `bf16-mixed` only where this benchmark found it faster
(`forecaster.training.precision.BF16_MODELS`). Each row is the
bare step of `benchmarks/speed.py` (forward, MSE, backward, clip, AdamW over pre-built batches of ETTh1 OT,
lookback 96, horizon 24, batch 64, hidden 64, 2 layers), float32 and bfloat16 alternating `--repeats` times;
`speedup` is the ratio of their medians, measured in the same rounds.

`--accuracy-seeds` also trains whole networks through `fit_network` in `32-true` and in `bf16-mixed` on the same
seeds (ETTh1 OT, the validation split only; the test split is not read) and forecasts the validation windows in
float32: the reference LSTM and the GRU-segment network `init` writes. Results: results/NAME.md and
results/NAME-accuracy.md.

    python benchmarks/train_precision.py [--threads 2] [--repeats 3] [--batches 20] [--cells ...]
        [--accuracy-seeds 0 1 2] [--max-epochs 10]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, set_threads, shared_data, write_results  # noqa: E402
from speed import REFERENCE, batches_of, kernel_train  # noqa: E402

from forecaster.config import load_config  # noqa: E402

STRATEGIES = ("direct", "segment", "seq2seq", "recursive")
# The networks the accuracy check trains: the peers' reference LSTM, and what `init` writes (pipelines/init.py)
# with the start from zero, so that every epoch counts
ACCURACY_MODELS = {
    "reference lstm-direct 2x64": {},
    "init gru-segment 1x64, linear skip": {"model.cell": "gru", "model.strategy": "segment", "model.num_layers": 1,
                                            "model.linear_skip": True, "model.skip_start": "zero",
                                            "model.loss": "mae", "train.patience": 3},
}


def accuracy_rows(data: str, seeds: list[int], max_epochs: int, threads: int) -> list[dict]:
    """Validation MSE and MAE (scaled axis, forecast in float32) of networks trained in each precision."""
    from common import forecast_split
    from forecaster.training.fit import fit_network
    from pipelines.train import prepare_data

    rows = []
    for label, overrides in ACCURACY_MODELS.items():
        for seed in seeds:
            for precision in ("32-true", "bf16-mixed"):
                config = load_config(ROOT / "configs" / "etth1-ot.yaml", overrides={
                    **REFERENCE, **overrides, "data.path": data, "train.seed": seed, "train.precision": precision,
                    "train.max_epochs": max_epochs})
                datamodule = prepare_data(config)
                with tempfile.TemporaryDirectory() as tmp:
                    fitted = fit_network(config, datamodule, Path(tmp))
                val, _ = forecast_split(fitted, datamodule, "val")
                error = val.pred - val.actual
                record = fitted.training
                rows.append({"model": label, "seed": seed, "precision": precision,
                             "val_mse": round(float((error ** 2).mean()), 4),
                             "val_mae": round(float(abs(error).mean()), 4), "best_epoch": record.best_epoch,
                             "epochs": record.epochs_run, "train_s": round(record.train_seconds, 1),
                             "threads": threads})
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    from forecaster.models.cells import CELLS
    from forecaster.models.network import network_from_dims
    from forecaster.runtime import set_allocator
    from forecaster.inference import native_bf16
    from forecaster.training.precision import BF16_MODELS
    from pipelines.train import prepare_data

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating float32 / bfloat16 rounds")
    parser.add_argument("--batches", type=int, default=20, help="training batches a round times")
    parser.add_argument("--cells", nargs="+", default=list(CELLS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--accuracy-seeds", type=int, nargs="*", default=[],
                        help="also train whole networks in both precisions on these seeds")
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs of each accuracy training")
    parser.add_argument("--name", default="train-precision", help="results file name")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    threads = set_threads(args.threads)
    set_allocator()
    data = str(shared_data("ETT-small/ETTh1.csv"))
    rows = []
    for cell in args.cells:
        for strategy in args.strategies:
            overrides = {**REFERENCE, "model.cell": cell, "model.strategy": strategy, "data.path": data}
            config = load_config(ROOT / "configs" / "etth1-ot.yaml", overrides=overrides)
            datamodule = prepare_data(config)
            batches = batches_of(datamodule.train_dataset, 64, shuffle=True, limit=args.batches)
            windows = sum(len(batch["y"]) for batch in batches)
            rates: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeats):
                for autocast in (False, True):
                    torch.manual_seed(0)
                    network = network_from_dims(config, datamodule.dims)
                    rates[autocast].append(windows / kernel_train(network, batches, autocast=autocast))
            fp32, bf16 = statistics.median(rates[False]), statistics.median(rates[True])
            auto = "bf16-mixed" if (cell, strategy) in BF16_MODELS else "32-true"
            rows.append({"cell": cell, "strategy": strategy, "fp32_per_s": round(fp32), "bf16_per_s": round(bf16),
                         "speedup": round(bf16 / fp32, 2), "auto": auto, "threads": threads, "batch": 64})
            print(rows[-1], flush=True)
    command = "python benchmarks/train_precision.py " + " ".join(sys.argv[1:])
    note = (f"Bare training step (forward, MSE, backward, clip, AdamW) over {args.batches} pre-built batches of 64 "
            f"ETTh1 OT windows (lookback 96, horizon 24, hidden 64, 2 layers), float32 and bfloat16 autocast "
            f"alternating, medians of {args.repeats} rounds, {threads} thread(s). This CPU computes bfloat16 "
            f"natively: {native_bf16()}. `auto`: what `train.precision: auto` trains this cell in on such a CPU.")
    write_results(args.name, rows, ["cell", "strategy", "fp32_per_s", "bf16_per_s", "speedup", "auto", "threads",
                                    "batch"], command, notes=note)
    if args.accuracy_seeds:
        rows = accuracy_rows(data, args.accuracy_seeds, args.max_epochs, threads)
        by = {(row["model"], row["seed"], row["precision"]): row for row in rows}
        lines = []
        for label in ACCURACY_MODELS:
            gaps = [by[label, seed, "bf16-mixed"]["val_mse"] / by[label, seed, "32-true"]["val_mse"] - 1
                    for seed in args.accuracy_seeds]
            lines.append(f"{label}: bf16-mixed validation MSE against float32's, per seed: "
                         f"{', '.join(f'{gap:+.1%}' for gap in gaps)} (mean {statistics.mean(gaps):+.1%}).")
        note = (f"ETTh1 OT, configs/etth1-ot.yaml's split, lookback 96, horizon 24; trained by fit_network for at most "
                f"{args.max_epochs} epochs (early stopping, best validation epoch kept), {threads} thread(s); "
                f"validation windows forecast in float32, errors on the scaled axis. The test split is not read. "
                + " ".join(lines))
        write_results(f"{args.name}-accuracy", rows, ["model", "seed", "precision", "val_mse", "val_mae",
                                                      "best_epoch", "epochs", "train_s", "threads"],
                      command, notes=note)


if __name__ == "__main__":
    main()
