"""Batch prediction throughput: forecasts per second for many series (default 10,000 at horizon 24).

    python benchmarks/predict.py [--series 10000] [--cell lstm] [--batch-size 1024] [--format csv] [--repeats 3]

Trains a small model on the demo data for a few batches (the weights do not change the speed), writes a
synthetic history of `--series` hourly series in the demo layout, then times two things:
- `bundle.predict`: validation, scaling and the batched forward pass, from a frame in memory (median of
  `--repeats` calls after a warm-up);
- `pipelines.predict.run`: the whole job, from the file on disk to the forecast file, manifest and MLflow run.
A forecast is one value for one series and step. Prints one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]


def synthetic_history(n_series: int, rows: int, seed: int = 0) -> pd.DataFrame:
    """[n_series * rows] hourly rows: a daily cycle per series with its own level, phase and noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(rows)
    level = rng.uniform(50, 150, size=(n_series, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n_series, 1))
    load = level + 20 * np.sin(2 * np.pi * hours / 24 + phase) + rng.normal(0, 3, size=(n_series, rows))
    temperature = 10 + 8 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 1, size=(n_series, rows))
    stamps = pd.date_range("2024-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame({
        "timestamp": np.tile(stamps, n_series),
        "series_id": np.repeat([f"s{index:05d}" for index in range(n_series)], rows),
        "load": load.reshape(-1).round(3),
        "temperature": temperature.reshape(-1).round(3),
    })


def train_small_model(root: Path, cell: str, hidden_size: int):
    """A model trained on the demo data for two batches, logged to an embedded store under `root`: its weights
    do not change how fast it predicts. Returns the train job's result (`.model_uri`) and the config."""
    from forecaster.config import load_config
    from pipelines import train

    config = load_config(REPO_ROOT / "configs" / "demo-lstm.yaml", {
        "data.path": str(REPO_ROOT / "data" / "demo.csv"), "model.cell": cell, "model.hidden_size": hidden_size,
        "train.max_epochs": 1, "train.limit_train_batches": 2, "train.progress": False,
        "tracking.state_dir": str(root / "state"), "tracking.experiment": "benchmark",
    })
    return train.run(config), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--format", default="csv", choices=["csv", "parquet"], help="input and output format")
    parser.add_argument("--repeats", type=int, default=3, help="timed bundle.predict calls, after one warm-up")
    args = parser.parse_args()

    import torch

    from forecaster.mlflow_model.resolve import resolve_model
    from pipelines import predict

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        root = Path(tmp)
        trained, config = train_small_model(root, args.cell, args.hidden_size)
        bundle = resolve_model(trained.model_uri).bundle

        history = synthetic_history(args.series, rows=bundle.lookback + bundle.horizon)
        bundle.predict(synthetic_history(100, rows=bundle.lookback), batch_size=args.batch_size)  # warm-up
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            forecast = bundle.predict(history, batch_size=args.batch_size)
            seconds.append(time.perf_counter() - start)
        predict_s = float(np.median(seconds))
        n_forecasts = len(forecast.frame)

        data_file = root / f"history.{args.format}"
        if args.format == "csv":
            history.to_csv(data_file, index=False)
        else:
            history.to_parquet(data_file, index=False)
        job = predict.run(config.with_overrides({
            "predict.model": trained.model_uri, "predict.data": str(data_file), "predict.output": str(root / "out"),
            "predict.format": args.format, "predict.batch_size": args.batch_size,
        }))

    print(json.dumps({
        "series": args.series, "horizon": bundle.horizon, "lookback": bundle.lookback, "forecasts": n_forecasts,
        "model": f"{args.cell}, hidden {args.hidden_size}, {config.model.num_layers} layer(s)",
        "batch_size": args.batch_size, "format": args.format, "history_rows": len(history),
        "bundle_predict_s": round(predict_s, 3), "bundle_predict_runs_s": [round(value, 3) for value in seconds],
        "forecasts_per_s": round(n_forecasts / predict_s),
        "job_s": round(job.seconds, 3), "job_forecasts_per_s": round(job.rows / job.seconds),
        "job_timings_s": {**job.manifest["timings_s"], "write_s": job.manifest["output"]["write_s"]},
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
