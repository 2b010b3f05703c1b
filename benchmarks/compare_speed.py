"""Benchmark: `forecaster compare` with its networks one after another (`compare.jobs=1`) against worker processes
(`compare.jobs=auto`, or a number), alone and beside busy neighbours (a pure-Python loop each).

The data is `benchmarks/contention.py`'s hourly load file (5 zones x 8,784 hours) with the config `forecaster init`
writes for it, every candidate `init` chose, epochs capped by `--epochs` so a run takes a minute or two. Each
measurement is a fresh CLI process with its own store, started after the neighbours; settings are interleaved and
repeated, so their ratios are comparable on a noisy machine. Each row also says whether the leaderboard's ranking
matched the serial run's of the same round (model order, and the largest relative difference of the ranking metric:
the workers train with their share of threads, which can change the last bits of a sum).

    python benchmarks/compare_speed.py [--jobs 1 auto] [--neighbours 0 1] [--repeats 2] [--epochs 4]
        [--name compare-speed]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results  # noqa: E402
from contention import busy_neighbours, load_file  # noqa: E402

PLAN = re.compile(r"compare: (\d+) networks in parallel \((.*)\)")


def measure(config: Path, jobs: str, neighbours: int, epochs: int) -> dict:
    load = busy_neighbours(neighbours)
    time.sleep(0.5)  # the neighbours at full speed before compare looks at the machine
    try:
        with tempfile.TemporaryDirectory(prefix="forecaster-compare-speed-") as tmp:
            settings = [f"train.max_epochs={epochs}", "train.progress=false", f"compare.jobs={jobs}",
                        f"tracking.state_dir={tmp}"]
            command = [sys.executable, "-m", "forecaster_pipelines", "compare", str(config), "--json",
                       *(part for item in settings for part in ("--set", item))]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
            wall = time.perf_counter() - started
    finally:
        for process in load:
            process.kill()
            process.wait()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    plan = PLAN.search(done.stderr)
    return {"jobs": jobs, "neighbours": neighbours, "wall_s": round(wall, 1),
            "plan": plan.group(2) if plan else "one after another", "board": _board(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", nargs="+", default=["1", "auto"])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--name", default="compare-speed")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="forecaster-compare-speed-data-") as folder:
        config = load_file(Path(folder))
        for repeat in range(args.repeats):
            for neighbours in args.neighbours:
                serial = None
                for jobs in args.jobs:
                    row = {"round": repeat + 1, **measure(config, jobs, neighbours, args.epochs)}
                    board = row.pop("board")
                    serial = serial or board
                    row["winner"] = board["winner"]
                    row["same_order"] = board["order"] == serial["order"]
                    row["max_rel_diff"] = max(abs(board["scores"][m] - serial["scores"][m]) / abs(serial["scores"][m])
                                              for m in serial["scores"])
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    for row in rows:
        alone = next(r for r in rows if r["round"] == row["round"] and r["neighbours"] == row["neighbours"]
                     and r["jobs"] == args.jobs[0])
        row["speedup"] = round(alone["wall_s"] / row["wall_s"], 2)
    write_results(args.name, rows, ["round", "neighbours", "jobs", "plan", "wall_s", "speedup", "winner", "same_order",
                                    "max_rel_diff"], "python benchmarks/compare_speed.py " + " ".join(sys.argv[1:]))


def _board(stdout: str) -> dict:
    """The winner, model order and ranking scores from `compare --json`'s last line."""
    result = json.loads(stdout.strip().splitlines()[-1])
    metric = result["metric"]
    return {"winner": result["winner"], "order": [row["model"] for row in result["leaderboard"]],
            "scores": {row["model"]: row[metric] for row in result["leaderboard"]}}


if __name__ == "__main__":
    main()
