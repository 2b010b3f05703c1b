"""Benchmark: training on a busy machine. Epoch time alone and beside one and two busy neighbours (a pure-Python
loop each, the kind of work a notebook or a second job puts on a small server), with `train.threads: auto` against
a fixed 1 and 2 threads; and the wall time of a small `forecaster compare` in the same settings.

The data is an hourly load file of 5 zones x 8,784 hours (a leap year; daily and weekly cycles, weather-like noise),
configured by `forecaster init` as a user's would be. Each measurement is a fresh process (`forecaster train` or a
`forecaster compare` of the GRU against seasonal naive and the linear model, each in its own temporary store),
started after the neighbours, so `auto` sees the machine as a user's job would. The epoch time is
the median of the epochs after the first (which also pays for start-up), read from the per-epoch log lines. All
settings run in one invocation, interleaved, so their ratios are comparable on a noisy machine.

    python benchmarks/contention.py [--neighbours 0 1 2] [--threads auto 1 2] [--epochs 4] [--no-compare]
        [--wait cli active passive] [--name contention]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results  # noqa: E402

COMPARE_MODELS = "compare.models=[gru,seasonal_naive,linear]"
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+: .*\s(\d+(?:\.\d+)?) s$", re.M)


def load_file(folder: Path) -> Path:
    """5 zones x 8,784 hourly rows, as a CSV; and `forecaster init`'s config for it beside it."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    stamps = pd.date_range("2024-01-01", periods=8784, freq="h")
    hours, days = stamps.hour.to_numpy(), stamps.day_of_week.to_numpy()
    frames = []
    for zone in range(5):
        noise = np.convolve(rng.normal(0, 3, len(stamps)), np.ones(12) / 12, mode="same")
        load = 100 + 10 * zone + 15 * np.sin(2 * np.pi * (hours - 6) / 24) - 8 * (days >= 5) + noise
        frames.append(pd.DataFrame({"timestamp": stamps, "zone": f"zone_{zone}", "load": load.round(2)}))
    path = folder / "load.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    subprocess.run([sys.executable, "-m", "forecaster_pipelines", "init", str(path), "-o", str(folder / "load.yaml")],
                   cwd=ROOT, check=True, capture_output=True)
    return folder / "load.yaml"


def busy_neighbours(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def forecaster(command_name: str, config: Path, settings: list[str], threads: str, wait: str,
               workdir: Path) -> tuple[float, str]:
    """(wall seconds, stderr) of `forecaster COMMAND CONFIG` with the `settings` (KEY=VALUE),
    `train.threads=threads` and its own store."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if wait != "cli":  # else what the CLI sets by default
        env["OMP_WAIT_POLICY"] = wait.upper()
    overrides = [*settings, f"train.threads={threads}", f"tracking.state_dir={workdir / 'state'}",
                 f"predict.output={workdir / 'out'}"]
    command = [sys.executable, "-m", "forecaster_pipelines", command_name, str(config),
               *(part for item in overrides for part in ("--set", item))]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return wall, done.stderr


def epoch_seconds(log: str) -> float:
    """The median epoch time after the first epoch, from the CLI's per-epoch lines."""
    times = [float(seconds) for epoch, seconds in EPOCH_LINE.findall(log) if int(epoch) > 1]
    return statistics.median(times) if times else float("nan")


def chosen_threads(log: str) -> str:
    found = re.search(r"threads: (\d+) \(train\.threads=auto", log)
    return found.group(1) if found else ""


def measure(config: Path, neighbours: int, threads: str, wait: str, epochs: int, with_compare: bool) -> dict:
    load = busy_neighbours(neighbours)
    time.sleep(0.5)  # let the neighbours reach full speed before `auto` looks at the machine
    try:
        with tempfile.TemporaryDirectory(prefix="forecaster-contention-") as tmp:
            quick = [f"train.max_epochs={epochs}", "train.patience=0", "train.progress=false"]
            train_wall, log = forecaster("train", config, quick, threads, wait, Path(tmp))
            row = {"neighbours": neighbours, "threads": threads, "wait": wait, "chosen": chosen_threads(log),
                   "epoch_s": round(epoch_seconds(log), 3), "train_wall_s": round(train_wall, 1)}
            if with_compare:
                compare_wall, _ = forecaster("compare", config, [*quick, COMPARE_MODELS, "compare.ensemble=false"],
                                             threads, wait, Path(tmp) / "compare")
                row["compare_wall_s"] = round(compare_wall, 1)
    finally:
        for process in load:
            process.kill()
            process.wait()
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", nargs="+", default=["auto", "1", "2"])
    parser.add_argument("--wait", nargs="+", choices=["cli", "passive", "active"], default=["cli"],
                        help="OpenMP's wait policy for idle threads: the CLI's default, or set")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument("--name", default="contention")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="forecaster-contention-data-") as folder:
        config = load_file(Path(folder))
        rows = [measure(config, neighbours, threads, wait, args.epochs, not args.no_compare)
                for neighbours in args.neighbours for wait in args.wait for threads in args.threads]
    columns = ["neighbours", "threads", "wait", "chosen", "epoch_s", "train_wall_s",
               *(["compare_wall_s"] if not args.no_compare else [])]
    write_results(args.name, rows, columns, "python benchmarks/contention.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
