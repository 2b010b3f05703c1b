"""Shared helpers for the benchmarks: the shared-data path, threads, timing, peak memory, machine facts and
the JSON + markdown output every script writes.

Each benchmark is a script (`python benchmarks/NAME.py ...`) that prints a markdown table and writes
`benchmarks/results/NAME.json` and `NAME.md`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(os.environ.get("FORECASTER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(relative: str) -> Path:
    """The path of a file under `../shared/data/` (or `$FORECASTER_SHARED_DATA`); exit with a clear message (status 0: nothing to measure)
    when the shared data is not there, so a fresh clone elsewhere does not fail."""
    path = SHARED_DATA / relative
    if not path.is_file():
        print(f"skipped: {path} is absent. The benchmarks read the shared data at ../shared/data/ beside the "
              "project (see ../shared/data/README.md); nothing to measure without it.", file=sys.stderr)
        sys.exit(0)
    return path


def log_to_terminal() -> None:
    """INFO lines with the time for a long benchmark; the libraries' start-up lines and warnings filtered as the CLI
    does (a handler filter: Lightning resets its loggers' levels when imported), and no per-epoch lines."""
    import logging

    from forecaster.runtime import quiet_libraries

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    quiet_libraries()
    logging.getLogger("forecaster.training").setLevel(logging.WARNING)


def set_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stopwatch:
    """`with Stopwatch() as watch: ...` then `watch.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu, flags = platform.processor(), ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and not cpu.strip():
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    return {
        "cpu": cpu, "logical_cores": os.cpu_count(), "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__, "python": platform.python_version(), "os": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], command: str,
                  extra: dict[str, Any] | None = None, notes: str = "") -> str:
    """Write results/NAME.json (every field) and results/NAME.md (the table); return the markdown."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    payload = {"benchmark": name, "command": command, "machine": info, **(extra or {}), "rows": list(rows)}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    text = (f"Measured {info['date']} on {info['cpu']} ({info['logical_cores']} logical cores), torch "
            f"{info['torch']}.\n\n`{command}`\n\n{markdown_table(rows, columns)}\n")
    if notes:
        text += f"\n{notes}\n"
    (RESULTS / f"{name}.md").write_text(text)
    return text


def windows_per_epoch(config, n_windows: int) -> int:
    """Training windows one epoch sees: all of them, or what `train.limit_train_batches` lets through."""
    limit = config.train.limit_train_batches
    if limit is None:
        return n_windows
    if isinstance(limit, float):
        return round(n_windows * min(limit, 1.0))
    return min(n_windows, limit * config.train.batch_size)


def seeded_configs(model: str, config, seeds: Sequence[int] | None) -> list[tuple[int | None, Any]]:
    """(seed, config) for each training run of `model`: one per seed for a network (the config's own seed when
    `seeds` is empty), one unseeded run for a baseline, which is deterministic."""
    from forecaster.config import BASELINES

    if model in BASELINES:
        return [(None, config)]
    return [(seed, config.with_overrides({"train.seed": seed})) for seed in seeds or [config.train.seed]]


def fit_model(model: str, config, datamodule) -> tuple[Any, dict[str, Any]]:
    """Fit `model` (a baseline name, a cell, or `cell-strategy` such as `lstm-seq2seq`) through the library's own
    code path. Returns (the trained model, a `ModelBundle`; cost figures)."""
    import tempfile

    from forecaster.config import BASELINES
    from forecaster.training.fit import fit_baseline, fit_network

    if model in BASELINES:
        fitted, epochs = fit_baseline(model, config, datamodule), 0
    else:
        cell, _, strategy = model.partition("-")
        config = config.with_overrides({"model.cell": cell, **({"model.strategy": strategy} if strategy else {})})
        with tempfile.TemporaryDirectory() as tmp:
            fitted = fit_network(config, datamodule, Path(tmp))
        epochs = fitted.training.epochs_run  # Lightning counts the finished epochs
    record = fitted.training
    n_train = windows_per_epoch(config, len(datamodule.train_dataset))
    cost = {"params": record.n_params, "epochs": epochs, "best_epoch": record.best_epoch,
            "train_windows_per_s": round(n_train * epochs / record.train_seconds) if epochs else None,
            "train_s": round(record.train_seconds, 1)}
    return fitted, cost


def forecast_split(fitted, datamodule, split: str) -> tuple[Any, float]:
    """Forecast every window of `split` ('val' or 'test'). Returns (forecasts, prediction seconds)."""
    from forecaster.evaluation import forecast_windows

    started = time.perf_counter()
    forecasts = forecast_windows(fitted.predictor, datamodule.dataloader(split))
    return forecasts, time.perf_counter() - started


def fit_and_forecast(model: str, config, datamodule) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Fit `model` and forecast every validation and every test window. Returns (fitted, {"val": forecasts,
    "test": forecasts}, cost figures); prediction origins/s is measured on the test split."""
    fitted, cost = fit_model(model, config, datamodule)
    val, _ = forecast_split(fitted, datamodule, "val")
    test, predict_seconds = forecast_split(fitted, datamodule, "test")
    cost["origins_per_s"] = round(len(test.pred) / predict_seconds)
    return fitted, {"val": val, "test": test}, cost
