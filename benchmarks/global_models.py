"""Benchmark: global models over many series, training and batch prediction as the panel grows.

A synthetic panel of N hourly series (1,000 rows each by default; long layout `series_id, timestamp, value`; each
series with its own level, scale, daily and weekly seasonality, a slight trend and noise) is written as Parquet to
a temporary folder. For each N of `--series` and each model:

- `gru-segment`: the shipped segment GRU (the `model:` and `train:` sections of configs/etth1-ot.yaml);
- `lstm-reference`: the reference LSTM of benchmarks/speed.py (`REFERENCE`: hidden 64, 2 layers, direct);

both at lookback 96, horizon 24, batch 64, the library's default split (validation 10 %, test 20 % of each
series' rows), the `train` row reports data preparation (`prepare_data`: read, validate, scale, window:
`prepare_s`), training windows per second over one epoch limited to `--train-batches` batches, the seconds a full
training epoch would take at that rate (extrapolated), the full validation pass (`val_s`, measured) and the peak
RSS of the process.

For each N of `--predict-series` a `predict` row runs the real CLI, `forecaster predict --format parquet --json`,
on a history file holding the last lookback + 24 rows of N series, with a segment GRU trained for a few batches on
a 1,000-series panel (its forecasts' quality is irrelevant here). Wall time runs from launch to exit (interpreter
start-up and imports included); the job's own stage timings (load model, read, predict, write) come from the
manifest it writes, so a stage that grows faster than the data shows.

Every measurement runs in its own child process of this script, so its peak RSS is its own.

    python benchmarks/global_models.py [--series 1000 10000] [--predict-series 10000 100000] [--threads 2]
                                       [--train-batches 200] [--name global-models]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Stopwatch, peak_rss_mb, set_threads, write_results  # noqa: E402
from speed import REFERENCE, TrainClock  # noqa: E402

ROWS, LOOKBACK, HORIZON, BATCH = 1000, 96, 24, 64
HISTORY_ROWS = LOOKBACK + 24  # rows per series a predict history holds: what a user sends, not the whole file
BUNDLE_SERIES, BUNDLE_BATCHES = 1000, 20
MODELS = {"gru-segment": {},  # configs/etth1-ot.yaml's model and train sections as they are
          "lstm-reference": {key: value for key, value in REFERENCE.items() if key.startswith(("model.", "train."))}}
CLI = Path(sys.executable).parent / "forecaster"
RESULT = "RESULT "  # prefix of the one line a child prints for the parent


def synthetic_panel(path: Path, n_series: int, rows: int, first_row: int = 0, seed: int = 0) -> int:
    """Write hours `first_row .. first_row + rows` of `n_series` synthetic series to Parquet; return the row count.
    Vectorised over [series, rows]: no Python loop per row or per series."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    level = rng.lognormal(4.0, 1.0, n_series)[:, None]  # [S, 1]
    scale = level * rng.uniform(0.05, 0.3, (n_series, 1))
    daily, weekly = rng.uniform(0, 2 * np.pi, (2, n_series, 1))
    weekly_share = rng.uniform(0.0, 0.8, (n_series, 1))
    trend = scale * rng.normal(0.0, 2e-4, (n_series, 1))  # per hour: a slight drift over the series
    hours = np.arange(first_row, first_row + rows, dtype=np.float64)[None, :]  # [1, R]
    values = (level + trend * hours + scale * (np.sin(2 * np.pi * hours / 24 + daily)
                                               + weekly_share * np.sin(2 * np.pi * hours / 168 + weekly))
              + 0.3 * scale * rng.standard_normal((n_series, rows)))  # [S, R]
    start = np.datetime64("2020-01-01T00:00", "ns") + np.timedelta64(first_row, "h")
    stamps = start + np.arange(rows).astype("timedelta64[h]")
    ids = pa.array([f"s{i:06d}" for i in range(n_series)])  # plain strings, as a user's file would hold
    table = pa.table({"series_id": pc.take(ids, pa.array(np.repeat(np.arange(n_series), rows))),
                      "timestamp": pa.array(np.tile(stamps, n_series)),
                      "value": pa.array(values.astype(np.float32).reshape(-1))})
    pq.write_table(table, path)
    return table.num_rows


def panel_config(panel: Path, model: str, threads: int, overrides: dict | None = None):
    """configs/etth1-ot.yaml pointed at the synthetic panel, with `model`'s settings and the default split."""
    from forecaster.config import load_config

    return load_config(ROOT / "configs" / "etth1-ot.yaml", overrides={
        "data.path": str(panel), "data.timestamp": "timestamp", "data.target": "value", "data.series_id": "series_id",
        "data.freq": "h", "split.train_end": None, "split.val_end": None, "split.test_end": None,
        "window.lookback": LOOKBACK, "window.horizon": HORIZON, "train.batch_size": BATCH, "train.threads": threads,
        "train.progress": False, "train.max_epochs": 1, "train.patience": 0, **MODELS[model], **(overrides or {})})


def case_train(args) -> dict:
    """One model on one panel: data preparation, one epoch of `--train-batches` batches, the validation pass."""
    import pyarrow.parquet  # noqa: F401  (imported before the clock: prepare_s is the data's cost, not imports')

    import forecaster.data.datamodule  # noqa: F401
    from forecaster.training.fit import fit_network
    from pipelines.train import prepare_data

    config = panel_config(args.panel, args.model, args.threads, {"train.limit_train_batches": args.train_batches})
    with Stopwatch() as prepare:
        datamodule = prepare_data(config)
    clock = TrainClock()  # training batches only: it stops around the validation pass
    with tempfile.TemporaryDirectory() as tmp, Stopwatch() as fit:
        fit_network(config, datamodule, Path(tmp), extra_callbacks=[clock])
    windows_per_epoch = len(datamodule.train_dataset)
    windows = min(args.train_batches * BATCH, windows_per_epoch)
    seconds = clock.seconds - clock.validation_seconds
    rate = windows / seconds
    return {"measure": "train (fit_network)", "model": args.model, "series": args.series, "batch": BATCH,
            "threads": args.threads, "windows": windows, "seconds": round(seconds, 3), "per_s": round(rate),
            "seconds_per_epoch": round(windows_per_epoch / rate, 1), "train_windows": windows_per_epoch,
            "val_windows": len(datamodule.val_dataset), "val_s": round(clock.validation_seconds, 2),
            "prepare_s": round(prepare.seconds, 2), "fit_s": round(fit.seconds, 2),
            "peak_rss_mb": round(peak_rss_mb()),
            "note": f"epoch extrapolated from {windows // BATCH} batches; val_s: full validation pass"}


def case_bundle(args) -> dict:
    """A segment GRU trained for a few batches (no validation split: its quality is irrelevant), saved as a
    model folder `forecaster predict --model` reads."""
    from forecaster.training.fit import fit_network
    from pipelines.train import prepare_data

    config = panel_config(args.panel, "gru-segment", args.threads,
                          {"train.limit_train_batches": BUNDLE_BATCHES, "split.val_fraction": 0.0})
    datamodule = prepare_data(config)
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit_network(config, datamodule, Path(tmp))
    fitted.save(args.bundle)
    return {"train_s": round(fitted.training.train_seconds, 2), "series": datamodule.panel.n_series}


def case_predict(args) -> dict:
    """`forecaster predict` on the last HISTORY_ROWS rows of `--series` series, timed from launch to exit; its
    peak RSS is the largest of this process's children, the CLI being the only one."""
    import pyarrow.parquet as pq

    work = Path(args.workdir)
    history = work / f"history-{args.series}.parquet"
    synthetic_panel(history, args.series, HISTORY_ROWS, first_row=ROWS - HISTORY_ROWS, seed=1)
    output = work / f"forecasts-{args.series}"
    command = [str(CLI), "predict", str(work / "tracking.yaml"), "--model", str(args.bundle), "--data", str(history),
               "--output", str(output), "--format", "parquet", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"forecaster predict exited {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    manifest = json.loads(Path(summary["manifest"]).read_text())
    stages = {**manifest["timings_s"], "write_s": manifest["output"]["write_s"]}
    rows = pq.read_metadata(summary["output"]).num_rows
    inference = manifest.get("inference", {})  # the batch size and precision the job chose
    return {"measure": "predict (CLI)", "model": "gru-segment", "series": summary["series"],
            "batch": inference.get("batch_size"), "precision": inference.get("precision"), "threads": args.threads, "per_s": round(rows / wall), "wall_s": round(wall, 2),
            "series_per_s": round(summary["series"] / wall), "rows_written": rows, "job_s": summary["seconds"],
            **{key: round(value, 2) for key, value in stages.items()},
            "other_s": round(summary["seconds"] - sum(stages.values()), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
            "note": f"{HISTORY_ROWS} history rows/series; per_s: forecast rows / wall s, CLI start-up included"}


def child(case: str, **options) -> dict:
    """Run `case` in a fresh process of this script; its one RESULT line as a dict (a failure as a note)."""
    command = [sys.executable, __file__, "--case", case]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"measure": case, "note": f"failed (exit {done.returncode}): {tail}",
                **{key: str(value) for key, value in options.items()}}
    return json.loads(lines[-1][len(RESULT):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, nargs="*", default=[1000, 10000], help="panel sizes to train on")
    parser.add_argument("--predict-series", type=int, nargs="*", default=[10000, 100000],
                        help="series in the histories `forecaster predict` reads")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-batches", type=int, default=200, help="batches of the timed training epoch")
    parser.add_argument("--name", default="global-models", help="results file name")
    # a child's own options
    parser.add_argument("--case", choices=["train", "bundle", "predict"], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--panel", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:  # a child: measure one thing, print one line
        logging.disable(logging.WARNING)
        set_threads(args.threads)
        args.series = args.series[0]
        cases = {"train": case_train, "bundle": case_bundle, "predict": case_predict}
        print(RESULT + json.dumps(cases[args.case](args)), flush=True)
        return

    rows: list[dict] = []
    extra: dict = {"rows_per_series": ROWS, "lookback": LOOKBACK, "horizon": HORIZON, "train_batch": BATCH,
                   "threads": args.threads, "train_batches": args.train_batches, "history_rows": HISTORY_ROWS,
                   "models": {"gru-segment": "configs/etth1-ot.yaml model + train sections",
                              "lstm-reference": MODELS["lstm-reference"]}}

    def add(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory(prefix="global-models-") as tmp:
        work = Path(tmp)
        for n in args.series:
            panel = work / f"panel-{n}.parquet"
            with Stopwatch() as made:
                synthetic_panel(panel, n, ROWS)
            print(f"panel of {n:,} series x {ROWS:,} rows written in {made.seconds:.1f} s", flush=True)
            for model in MODELS:
                add(child("train", series=n, model=model, panel=panel, threads=args.threads,
                          train_batches=args.train_batches))
            if n != BUNDLE_SERIES:
                panel.unlink()
        if args.predict_series:
            panel = work / f"panel-{BUNDLE_SERIES}.parquet"
            if not panel.exists():
                synthetic_panel(panel, BUNDLE_SERIES, ROWS)
            bundle = work / "model"
            extra["predict_model"] = child("bundle", series=BUNDLE_SERIES, panel=panel, bundle=bundle,
                                           threads=args.threads)
            store = work / "tracking"  # MLflow's store for the predict batches: in the temporary folder
            (work / "tracking.yaml").write_text(f"tracking:\n  uri: sqlite:///{store}/mlflow.db\n"
                                                f"  state_dir: {store}\n  experiment: global-models\n")
            store.mkdir()
            warm = child("predict", series=10, bundle=bundle, workdir=work, threads=args.threads)
            warm["note"] = "warm-up: creates the MLflow store; the fixed cost of one CLI call"
            add(warm)
            for n in args.predict_series:
                add(child("predict", series=n, bundle=bundle, workdir=work, threads=args.threads))

    command = "python benchmarks/global_models.py " + " ".join(sys.argv[1:])
    notes = (f"Synthetic hourly panels, {ROWS:,} rows per series (level, scale, daily and weekly seasonality, "
             f"slight trend, noise; float32 Parquet). `train`: configs/etth1-ot.yaml's segment GRU and the reference "
             f"LSTM of benchmarks/speed.py, lookback {LOOKBACK}, horizon {HORIZON}, batch {BATCH}, "
             f"{args.threads} torch thread(s), default split (validation 10 %, test 20 % of each series). per_s: "
             f"training windows per second over the first {args.train_batches} batches of one epoch (validation "
             f"excluded); seconds_per_epoch = training windows per epoch (`train_windows`) / per_s, extrapolated; "
             f"val_s: the full validation pass, measured; prepare_s: read, validate, scale and window the panel. "
             f"`predict`: `forecaster predict --format parquet --json` (pandas engine, its default batch from "
             f"predict.memory_mb and precision `auto`, both read back from the manifest; OMP_NUM_THREADS="
             f"{args.threads}) on histories of the last {HISTORY_ROWS} rows (lookback + 24) of each series: users "
             f"send recent history, not the full file (100,000 x {ROWS:,} rows would be 100M rows). The model is a "
             f"segment GRU trained for {BUNDLE_BATCHES} batches on {BUNDLE_SERIES:,} series: its quality is "
             f"irrelevant; the first {BUNDLE_SERIES:,} history series are ones it was trained on, the others get "
             f"scaling statistics from their own history. per_s: forecast rows (series x {HORIZON} steps) per wall "
             f"second, launch to exit; job_s: the job inside the CLI; load_model_s/read_s/predict_s/write_s: its "
             f"stages (manifest timings); other_s: the rest of the job (tracking, input hash, MLflow run). "
             f"peak_rss_mb: peak RSS of the measuring process (train) or of the CLI (predict).")
    columns = ["measure", "model", "series", "batch", "precision", "threads", "per_s", "seconds_per_epoch", "val_s", "prepare_s",
               "wall_s", "read_s", "predict_s", "write_s", "other_s", "peak_rss_mb", "note"]
    print(write_results(args.name, rows, columns, command, extra, notes))


if __name__ == "__main__":
    main()
