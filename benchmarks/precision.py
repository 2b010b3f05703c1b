"""Benchmark: bfloat16 against float32 inference, accuracy and speed, on ETTh1 OT and M4 Weekly.

One network per data set is trained once (float32, as always); then the same weights forecast every test window
in float32 and in bfloat16 (`predictor.Predictor(precision=...)`, the path `forecaster predict` takes), and
the test scores of both are reported side by side with the largest difference between the two forecasts. The
test split is read only to measure what the precision changes in a model that is already fixed; nothing is
chosen on it. Speed: forecast windows per second at batch 1024, float32 and bfloat16 passes interleaved
`--repeats` times, medians. `auto` is what `predict.precision: auto` chooses for that model on this machine.

- ETTh1 OT: configs/etth1-ot.yaml at `--ett-horizon` (default 96), seed 42, the shipped training settings.
- M4 Weekly: the network of benchmarks/m4.py (`NETWORK`), lookback 52, horizon 13, with `--m4-epochs` epochs at
  most (the shipped setting allows 30; fewer keep the run short, which the notes then say).

    python benchmarks/precision.py [--threads 1] [--repeats 3] [--ett-horizon 96] [--m4-epochs 30]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, fit_model, set_threads, shared_data, write_results  # noqa: E402

BATCH = 1024


def windows_per_s(predictor, batches, repeats: int) -> dict[str, float]:
    """Median windows/s of float32 and bfloat16 passes over `batches`, interleaved so load hits both alike."""
    rates = {"32": [], "bf16": []}
    count = sum(len(batch["x_past"]) for batch in batches)
    with torch.inference_mode():
        for _ in range(repeats):
            for precision in rates:
                chosen = replace(predictor, precision=precision)
                chosen(batches[0]["x_past"], batches[0]["x_future"])  # warm-up
                started = time.perf_counter()
                for batch in batches:
                    chosen(batch["x_past"], batch["x_future"])
                rates[precision].append(count / (time.perf_counter() - started))
    return {precision: statistics.median(values) for precision, values in rates.items()}


def batches_of(dataset, limit: int) -> list[dict[str, torch.Tensor]]:
    picks = np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).astype(int)
    return [dataset.__getitems__(chunk) for chunk in np.array_split(picks, max(1, len(picks) // BATCH))]


def compare(name: str, fitted, datamodule, score, speed_windows, repeats: int, threads: int) -> list[dict]:
    """Rows: the test scores in float32 and bfloat16, their speed, the largest difference, `auto`'s choice."""
    from forecaster.bundle import example_windows
    from forecaster.evaluation import forecast_windows
    from forecaster.inference import choose_precision

    forecasts = {precision: forecast_windows(replace(fitted.predictor, precision=precision),
                                             datamodule.dataloader("test")) for precision in ("32", "bf16")}
    difference = float(np.abs(forecasts["bf16"].pred - forecasts["32"].pred).max())  # scaled axis
    rates = windows_per_s(fitted.predictor, speed_windows, repeats)
    auto = choose_precision(fitted.predictor, example_windows(datamodule), "auto")
    rows = []
    for precision in ("32", "bf16"):
        rows.append({"data": name, "measure": "predict (Predictor)", "precision": precision, "batch": BATCH,
                     "threads": threads, "per_s": round(rates[precision]),
                     **{key: round(value, 4) for key, value in score(forecasts[precision]).items()},
                     "max_difference": round(difference, 5) if precision == "bf16" else None,
                     "note": f"auto chooses {auto.precision}: {auto.reason}" if precision == "bf16" else ""})
        print(rows[-1], flush=True)
    return rows


def ett_rows(args, threads: int) -> list[dict]:
    from forecaster.config import load_config
    from forecaster.evaluation import score
    from pipelines.train import prepare_data

    config = load_config(ROOT / "configs" / "etth1-ot.yaml", {
        "window.horizon": args.ett_horizon, "train.progress": False,
        "data.path": str(shared_data("ETT-small/ETTh1.csv"))})
    datamodule = prepare_data(config)
    fitted, _ = fit_model("gru-segment", config, datamodule)

    def scores(forecasts):
        return {key: value for key, value in score(forecasts, datamodule).items() if key in ("mse", "mae")}

    return compare(f"ETTh1 OT h{args.ett_horizon}", fitted, datamodule, scores,
                   batches_of(datamodule.test_dataset, 8 * BATCH), args.repeats, threads)


def m4_rows(args, threads: int) -> list[dict]:
    from m4 import HORIZON, in_series_order, load_weekly, weekly_config, weekly_panel

    from forecaster.data.datamodule import ForecastDataModule
    from forecaster.metrics import m4_scores

    ids, train, actual = load_weekly()
    config = weekly_config(52, {"train.max_epochs": args.m4_epochs})
    panel, borders = weekly_panel(ids, train, actual)
    datamodule = ForecastDataModule(config, panel, borders)
    datamodule.setup()
    fitted, _ = fit_model("gru-segment", config, datamodule)

    def scores(forecasts):
        return m4_scores(in_series_order(forecasts, datamodule), actual, train)

    assert HORIZON == config.window.horizon
    return compare("M4 Weekly", fitted, datamodule, scores, batches_of(datamodule.train_dataset, 8 * BATCH),
                   args.repeats, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ett-horizon", type=int, default=96)
    parser.add_argument("--m4-epochs", type=int, default=30)
    parser.add_argument("--name", default="precision")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    threads = set_threads(args.threads)
    from forecaster.inference import native_bf16
    from forecaster.runtime import set_allocator

    set_allocator()
    rows = ett_rows(args, threads) + m4_rows(args, threads)
    command = "python benchmarks/precision.py " + " ".join(sys.argv[1:])
    notes = (f"One network per data set (seed 42), trained in float32; the same weights forecast every test window "
             f"in float32 and in bfloat16. `max_difference`: the largest |bfloat16 - float32| forecast on the "
             f"scaled axis (standard deviations of each series). Speed: 8,192 windows at batch {BATCH}, medians of "
             f"{args.repeats} interleaved passes, {threads} thread(s). This CPU computes bfloat16 natively: "
             f"{native_bf16()}. M4 network trained for at most {args.m4_epochs} epochs.")
    print(write_results(args.name, rows, ["data", "precision", "mse", "mae", "smape", "mase", "owa", "max_difference",
                                          "per_s", "batch", "threads", "note"],
                        command, {"threads": threads, "native_bf16": native_bf16()}, notes))


if __name__ == "__main__":
    main()
