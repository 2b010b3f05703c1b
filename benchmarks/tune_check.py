"""A shipped tuned config against the config it replaces, on the same seeds: does its validation win hold?

`benchmarks/tune.py` searches on one seed (42) and, where asked, retrains the winner on more. This script takes a
tuned config already shipped (configs/etth1-<target>-h<H>-tuned.yaml) and the shipped base config at the same
horizon (configs/etth1-ot.yaml or etth1-multi.yaml), trains both on every `--seeds`, and compares their mean
validation MSE. The tuned config wins only by more than twice the standard error of the gap between the two
means. The test split is read once per trained network, only to report; the verdict is the validation one.

Training is deterministic per seed (the checks reproduced tune.py's retrained scores to four decimals, with one
thread or two), so `--tuned-from` can take the tuned config's scores from the tune.py results that shipped it
instead of training it again: only the base config is trained then. The results file must hold the shipped
config's tuned values (checked) and every seed asked.

    python benchmarks/tune_check.py --target ot --horizon 720 --seeds 0 1 2 --threads 2
    python benchmarks/tune_check.py --target multi --horizon 720 --seeds 0 1 2 \
        --tuned-from benchmarks/results/tune-ett-multi-h720.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Stopwatch, log_to_terminal, forecast_split, shared_data, write_results  # noqa: E402

BASE = {"ot": "etth1-ot.yaml", "multi": "etth1-multi.yaml"}


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def retrain(config_path: Path, overrides: dict, seeds: list[int], folder: Path) -> list[dict]:
    """Train `config_path` (with `overrides`) once per seed; score validation, then read the test split once."""
    from forecaster.config import load_config
    from forecaster.evaluation import score
    from forecaster.training.fit import fit_network
    from pipelines.train import prepare_data

    scores = []
    for seed in seeds:
        config = load_config(config_path, {**overrides, "train.seed": seed})
        datamodule = prepare_data(config)
        fitted = fit_network(config, datamodule, folder / f"{config_path.stem}-{seed}")
        val = score(forecast_split(fitted, datamodule, "val")[0], datamodule)
        test = score(forecast_split(fitted, datamodule, "test")[0], datamodule)  # once, to report
        scores.append({"seed": seed, "val_mse": val["mse"], "test_mse": test["mse"], "test_mae": test["mae"],
                       "epochs": fitted.training.epochs_run})
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=sorted(BASE), default="ot")
    parser.add_argument("--horizon", type=int, default=720, choices=[96, 192, 336, 720])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--tuned-from", type=Path, metavar="RESULTS_JSON",
                        help="take the tuned config's scores from the tune.py results that shipped it")
    args = parser.parse_args()
    shared_data("ETT-small/ETTh1.csv")
    os.chdir(ROOT)  # the configs' data paths are relative to the repository root
    log_to_terminal()

    tuned_path = ROOT / "configs" / f"etth1-{args.target}-h{args.horizon}-tuned.yaml"
    if not tuned_path.is_file():
        sys.exit(f"{tuned_path.relative_to(ROOT)} does not exist: nothing shipped at this horizon to check")
    common = {"train.progress": False, "train.threads": args.threads}
    candidates = {
        BASE[args.target]: (ROOT / "configs" / BASE[args.target], {**common, "window.horizon": args.horizon}),
        tuned_path.name: (tuned_path, common),
    }
    earlier = {tuned_path.name: earlier_scores(args.tuned_from, tuned_path, args.seeds)} if args.tuned_from else {}
    with tempfile.TemporaryDirectory(prefix="forecaster-tune-check-") as folder, Stopwatch() as watch:
        results = {label: earlier[label] if label in earlier else retrain(path, overrides, args.seeds, Path(folder))
                   for label, (path, overrides) in candidates.items()}

    name = f"tune-check-ett-{'uni' if args.target == 'ot' else 'multi'}-h{args.horizon}"
    command = "python benchmarks/tune_check.py " + " ".join(sys.argv[1:])
    ran = f"{watch.seconds / 60:.1f} min, {args.threads} thread(s)"
    if args.tuned_from:
        ran += f"; {tuned_path.name}'s scores taken from {args.tuned_from}, not trained again"
    print(report(name, command, results, BASE[args.target], tuned_path.name, ran))


def earlier_scores(results_json: Path, tuned_path: Path, seeds: list[int]) -> list[dict]:
    """The tuned config's per-seed scores from the tune.py run that wrote it, for `seeds`; refused (SystemExit)
    when that run's best trial is not the shipped config or lacks a seed."""
    import yaml

    from forecaster.config import flatten, load_config
    from forecaster.search import dotted

    found = json.loads(results_json.read_text())
    written = flatten(yaml.safe_load(found["tuned_config"]))
    shipped = load_config(tuned_path).flat()
    keys = ["data.target", "window.horizon", *(dotted(name) for name in found["result"]["best_params"])]
    if differ := {key: (written.get(key), shipped.get(key)) for key in keys if written.get(key) != shipped.get(key)}:
        sys.exit(f"{results_json} is not the run that wrote {tuned_path.name}: (its value, the config's) {differ}")
    by_seed = {row["seed"]: row for row in found["retrained"]}
    if missing := [seed for seed in seeds if seed not in by_seed]:
        sys.exit(f"{results_json} has no retraining on seed(s) {missing}: run without --tuned-from")
    return [by_seed[seed] for seed in seeds]


def verdict(tuned: list[float], base: list[float]) -> tuple[bool, str]:
    """Does the tuned config win on validation? Only by more than twice the standard error of the difference of
    the two means: over three seeds a smaller gap is seed noise (a one-seed search's gap often is)."""
    gap = statistics.mean(base) - statistics.mean(tuned)
    if min(len(tuned), len(base)) < 2:
        return gap > 0, f"{'lower' if gap > 0 else 'not lower'} on one seed: no spread to judge the gap by"
    error = math.sqrt(statistics.variance(tuned) / len(tuned) + statistics.variance(base) / len(base))
    if gap > 2 * error:
        return True, f"the win holds: lower by {gap:.4f}, more than twice the standard error ({error:.4f})"
    if gap < -2 * error:
        return False, f"the win is reversed: higher by {-gap:.4f} (standard error {error:.4f})"
    return False, f"a tie: the gap ({gap:+.4f}) is within twice the standard error ({error:.4f})"


def report(name: str, command: str, results: dict[str, list[dict]], base: str, tuned: str, ran: str) -> str:
    """The per-seed and mean rows, the verdict, written to results/NAME.{md,json}; returns the markdown."""
    rows = []
    for label, scores in results.items():
        rows += [{"config": label, "seed": s["seed"], "epochs": s["epochs"], "val_mse": round(s["val_mse"], 4),
                  "test_mse": round(s["test_mse"], 4), "test_mae": round(s["test_mae"], 4)} for s in scores]
        rows.append({"config": label, "seed": "mean", "val_mse": mean_spread([s["val_mse"] for s in scores]),
                     "test_mse": mean_spread([s["test_mse"] for s in scores]),
                     "test_mae": mean_spread([s["test_mae"] for s in scores])})
    val = {label: statistics.mean(s["val_mse"] for s in scores) for label, scores in results.items()}
    wins, why = verdict([s["val_mse"] for s in results[tuned]], [s["val_mse"] for s in results[base]])
    seeds = "/".join(str(s["seed"]) for s in results[tuned])
    notes = (f"Both configs trained on seeds {seeds} ({ran}). Mean validation MSE: {tuned} {val[tuned]:.4f}, "
             f"{base} {val[base]:.4f}: {why}. The test columns only report.")
    return write_results(name, rows, ["config", "seed", "epochs", "val_mse", "test_mse", "test_mae"], command,
                         {"validation_mean": val, "tuned_wins_on_validation": wins, "verdict": why,
                          "scores": results}, notes)


if __name__ == "__main__":
    main()
