"""Batch forecasts per second, pandas engine versus Spark, and how the time grows with the number of series.

    python benchmarks/spark_predict.py [--series 10000 100000] [--master local[2]] [--cell lstm]

Trains a small model on the demo data for a few batches (the weights do not change the speed), writes a synthetic
Parquet history of each size in the demo layout (`lookback` rows per series), then times the whole job from file
to written Parquet: `pipelines.predict.run` (pandas engine, one process; its MLflow batch run included) and
`predict_spark` on an already started session (its start-up is reported apart). A forecast is one value for one
series and step. Prints one JSON object on stdout; logs go to stderr. Needs `pip install 'forecaster[spark]'`.
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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--hidden-size", type=int, default=32)
    args = parser.parse_args()

    import torch
    from predict import synthetic_history, train_small_model  # benchmarks/predict.py

    from forecaster.mlflow_model.resolve import resolve_model
    from forecaster.spark import predict_spark, spark_session
    from pipelines import predict

    results = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        root = Path(tmp)
        trained, config = train_small_model(root, args.cell, args.hidden_size)
        model = resolve_model(trained.model_uri)

        started = time.perf_counter()
        session = spark_session(args.master)
        session_start_s = time.perf_counter() - started
        warm = root / "warm.parquet"
        synthetic_history(50, rows=model.bundle.lookback).to_parquet(warm, index=False)
        predict_spark(model, warm, root / "warm-out", spark=session)  # starts the Python workers

        for n_series in args.series:
            data = root / f"history-{n_series}.parquet"
            synthetic_history(n_series, rows=model.bundle.lookback).to_parquet(data, index=False)
            job = predict.run(config.with_overrides({
                "predict.model": trained.model_uri, "predict.data": str(data), "predict.format": "parquet",
                "predict.output": str(root / f"pandas-{n_series}"),
            }))
            spark = predict_spark(model, data, root / f"spark-{n_series}", spark=session)
            assert spark.rows == job.rows, (spark.rows, job.rows)
            results.append({
                "series": n_series, "forecasts": job.rows,
                "pandas_s": round(job.seconds, 2), "pandas_forecasts_per_s": round(job.rows / job.seconds),
                "spark_s": round(spark.seconds, 2), "spark_forecasts_per_s": round(spark.rows / spark.seconds),
            })
        session.stop()

    first, last = results[0], results[-1]
    growth = {engine: round(last[f"{engine}_s"] / first[f"{engine}_s"], 2) for engine in ("pandas", "spark")}
    print(json.dumps({
        "results": results, "time_growth": {"series": round(last["series"] / first["series"], 2), **growth},
        "spark_master": args.master, "spark_session_start_s": round(session_start_s, 2),
        "model": f"{args.cell}, hidden {args.hidden_size}, lookback {model.bundle.lookback}, "
                 f"horizon {model.bundle.horizon}",
        "cpus": os.cpu_count(), "load_average": [round(value, 1) for value in os.getloadavg()],
        "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
