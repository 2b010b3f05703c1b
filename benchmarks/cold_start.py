"""Benchmark: where the wall time of a small `forecaster predict` goes (the demo file, a registered model).

Each measure runs as a fresh process, the way cron runs the command, `--repeats` times, and reports the median:
the interpreter alone, `forecaster --help` (the CLI without heavy imports), `import torch`, `import mlflow`,
`import pandas`, and the whole `forecaster predict` command; then one in-process run of the job with its own
phase timings (tracking set-up, model load, read, forecast, write and log). A model is trained and registered
first, in a temporary store (a baseline: the measure is the job around the model, not the network).

    python benchmarks/cold_start.py [--repeats 5] [--name cold-start]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_results  # noqa: E402

CLI = Path(sys.executable).with_name("forecaster")


def wall(command: list[str], cwd: Path, repeats: int) -> float:
    """Median wall seconds of `command`, each run a fresh process."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="cold-start")
    args = parser.parse_args()
    demo = ROOT / "data" / "demo.csv"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = ["--set", f"tracking.state_dir={work / 'state'}", "--set", f"data.path={demo}"]
        compare = [str(CLI), "compare", str(ROOT / "configs" / "demo.yaml"), *store,
                   "--set", "compare.models=[naive, seasonal_naive, linear]"]
        subprocess.run(compare, cwd=work, check=True, capture_output=True)
        predict = [str(CLI), "predict", str(ROOT / "configs" / "demo.yaml"), *store, "--model",
                   "models:/demo@champion", "--data", str(demo), "--output", str(work / "out"), "--overwrite"]
        python = [sys.executable, "-c"]
        rows = [
            {"measure": "python -c pass", "seconds": wall([*python, "pass"], work, args.repeats)},
            {"measure": "forecaster --help", "seconds": wall([str(CLI), "--help"], work, args.repeats)},
            {"measure": "import pandas", "seconds": wall([*python, "import pandas"], work, args.repeats)},
            {"measure": "import torch", "seconds": wall([*python, "import torch"], work, args.repeats)},
            {"measure": "import mlflow", "seconds": wall([*python, "import mlflow"], work, args.repeats)},
            {"measure": "import mlflow, torch, pandas", "seconds": wall(
                [*python, "import mlflow, torch, pandas; import mlflow.store.tracking.sqlalchemy_store"], work,
                args.repeats)},
            {"measure": "forecaster predict (demo, 4 series)", "seconds": wall(predict, work, args.repeats)},
        ]
        phases = subprocess.run(
            [*python, "import json, sys; from forecaster.config import load_config; from forecaster_pipelines import predict; "
                      "c = load_config(sys.argv[1], sys.argv[2:]); r = predict.run(c); "
                      "print(json.dumps(r.manifest['timings_s']))",
             str(ROOT / "configs" / "demo.yaml"), f"tracking.state_dir={work / 'state'}", f"data.path={demo}",
             "predict.model=models:/demo@champion", f"predict.data={demo}", f"predict.output={work / 'out2'}"],
            cwd=work, check=True, capture_output=True, text=True)
        for key, value in __import__("json").loads(phases.stdout.strip().splitlines()[-1]).items():
            rows.append({"measure": f"in the job: {key}", "seconds": value})
    for row in rows:
        row["seconds"] = round(row["seconds"], 3)
    command = "python benchmarks/cold_start.py " + " ".join(sys.argv[1:])
    print(write_results(args.name, rows, ["measure", "seconds"], command, {"repeats": args.repeats}))


if __name__ == "__main__":
    main()
