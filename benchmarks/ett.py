"""Benchmark: ETTh1 accuracy and cost under the standard protocol (../shared/data/README.md).

Univariate (`--mode uni`: OT in, OT out, configs/etth1-ot.yaml) or multivariate (`--mode multi`: all seven columns
in and out, configs/etth1-multi.yaml); lookback 96; train rows [0, 8640), validation [8640, 11520), test
[11520, 14400); every test window (stride 1); MSE and MAE on the standardised scale. For each horizon: the
repeat-last-value (`naive`) and `linear` baselines, then each network (`rnn`, `lstm`, `gru`, or `cell-strategy`
such as `lstm-seq2seq`) through `fit_network`, early-stopped on validation loss. Every row also scores the
validation split (`val_mse`, `val_mae`), the only numbers a setting may be chosen on (benchmarks/selection.py).
Also training windows/s (windows seen / training seconds, validation included), prediction origins/s over the
test split, wall time and the process's peak RSS after each model. With `--seeds 0 1 2` every network is trained
once per seed (`train.seed`) and a `mean ± std` row follows its runs; the baselines are deterministic and run once.

    python benchmarks/ett.py --mode uni --horizons 24 96 [--models naive linear rnn lstm gru] [--threads 1]
        [--epochs 20] [--seeds 0 1 2] [--set model.hidden_size=128 ...] [--name ett-uni]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT, Stopwatch, fit_and_forecast, peak_rss_mb, seeded_configs, set_threads, shared_data, write_results,
)

from forecaster.config import load_config, parse_overrides  # noqa: E402

CONFIGS = {"uni": "etth1-ot.yaml", "multi": "etth1-multi.yaml"}
HORIZONS = (24, 96, 192, 336, 720)


def run_one(config, datamodule, model: str) -> dict:
    from forecaster.evaluation import score

    with Stopwatch() as wall:
        _, forecasts, cost = fit_and_forecast(model, config, datamodule)
    val, test = score(forecasts["val"], datamodule), score(forecasts["test"], datamodule)
    return {
        "model": model, "mse": round(test["mse"], 4), "mae": round(test["mae"], 4),
        "val_mse": round(val["mse"], 4), "val_mae": round(val["mae"], 4), **cost,
        "test_windows": len(forecasts["test"].pred), "wall_s": round(wall.seconds, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def seed_summary(runs: list[dict]) -> dict:
    """One row: mean ± sample standard deviation of MSE and MAE over the seeds' runs of one model."""
    summary = {"mode": runs[0]["mode"], "horizon": runs[0]["horizon"], "model": runs[0]["model"],
               "seed": f"mean of {len(runs)}"}
    for metric in ("mse", "mae", "val_mse", "val_mae"):
        values = np.array([run[metric] for run in runs])
        summary[metric] = f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(CONFIGS), default="uni")
    parser.add_argument("--horizons", type=int, nargs="+", default=[24, 96], choices=HORIZONS)
    parser.add_argument("--models", nargs="+", default=["naive", "linear", "rnn", "lstm", "gru"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a loaded machine)")
    parser.add_argument("--epochs", type=int, default=None, help="train.max_epochs (default: the config's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="train each network once per seed and add a mean ± std row (default: the config's seed)")
    parser.add_argument("--name", default=None, help="results file name (default ett-MODE)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    data = shared_data("ETT-small/ETTh1.csv")
    threads = set_threads(args.threads)
    from forecaster.runtime import set_allocator
    from pipelines.train import prepare_data

    allocator = set_allocator()
    overrides = {"data.path": str(data), "train.progress": False, **parse_overrides(args.set)}
    if args.epochs:
        overrides["train.max_epochs"] = args.epochs
    rows = []
    for horizon in args.horizons:
        config = load_config(ROOT / "configs" / CONFIGS[args.mode], overrides={**overrides, "window.horizon": horizon})
        datamodule = prepare_data(config)
        for model in args.models:
            runs = []
            for seed, seeded in seeded_configs(model, config, args.seeds):
                row = {"mode": args.mode, "horizon": horizon, **run_one(seeded, datamodule, model), "seed": seed,
                       "threads": threads}
                runs.append(row)
                print(row, flush=True)
            rows += runs + ([seed_summary(runs)] if len(runs) > 1 else [])
    name = args.name or f"ett-{args.mode}"
    command = "python benchmarks/ett.py " + " ".join(sys.argv[1:])
    extra = {"overrides": overrides, "threads": threads, "allocator_tuned": allocator,
             "lookback": 96, "borders": [8640, 11520, 14400]}
    print(write_results(name, rows, ["mode", "horizon", "model", "seed", "val_mse", "val_mae", "mse", "mae", "epochs",
                                     "best_epoch", "train_windows_per_s", "origins_per_s", "wall_s", "peak_rss_mb",
                                     "threads"],
                        command, extra))


if __name__ == "__main__":
    main()
