"""Choose a setting on validation data, then read the test split once, for the chosen setting only.

Each `--candidate` is a set of config overrides on top of the benchmark's shipped settings ("" is the shipped
setting itself). Every candidate is trained and scored on the validation split; the lowest validation score
wins (ETTh1: standardised MSE, `val_mse`; M4 Weekly: `val_owa` on the last 13 training weeks, relative to
Naive2 there). Only then is the winner's test split forecast and scored: the other candidates never see it.
With `--seeds 0 1 2` each candidate is trained once per seed and compared by its mean validation score;
`--validation-only` stops before the test split.

    python benchmarks/selection.py ett-uni --horizon 96 --threads 1 [--seeds 0 1 2] --name select-ett-uni-h96 \\
        --candidate "" --candidate "model.segment_length=48" --candidate "model.loss=mae"
    python benchmarks/selection.py m4 --threads 1 --candidate "" --candidate "model.hidden_size=128"

Benchmarks: `ett-uni` (configs/etth1-ot.yaml), `ett-multi` (configs/etth1-multi.yaml), `m4` (`NETWORK` in
benchmarks/m4.py, lookback 52). Writes results/NAME.json and NAME.md: one row per candidate with its validation
score, training cost and wall time; the chosen row also carries the test score.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT, Stopwatch, fit_model, forecast_split, peak_rss_mb, set_threads, shared_data, write_results,
)

from forecaster.config import parse_overrides  # noqa: E402


@dataclass
class Benchmark:
    """How to train a candidate and score the trained model on each split; `metric` is the validation score
    (a key of `validate`'s result) to minimise."""

    metric: str
    fit: Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]  # overrides -> (trained, cost figures)
    validate: Callable[[Any], dict[str, float]]
    test: Callable[[Any], dict[str, float]]


def choose(candidates: dict[str, dict[str, Any]], benchmark: Benchmark,
           read_test: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train and validate every candidate, keep the lowest `benchmark.metric`, then test that one alone (unless
    `read_test` is false). Returns (one row per candidate, the chosen candidate's row, which alone holds test
    scores)."""
    rows, best = [], None
    for label, overrides in candidates.items():
        with Stopwatch() as wall:
            trained, cost = benchmark.fit(overrides)
            scores = benchmark.validate(trained)
        rows.append({"candidate": label, **scores, **cost, "wall_s": round(wall.seconds, 1),
                     "peak_rss_mb": round(peak_rss_mb())})
        print(rows[-1], flush=True)
        if best is None or scores[benchmark.metric] < best[0][benchmark.metric]:
            best = (rows[-1], trained)  # only the best model so far stays in memory
    chosen, trained = best
    chosen.update(chosen="yes", **(benchmark.test(trained) if read_test else {}))
    return rows, chosen


def over_seeds(benchmark: Benchmark, seeds: list[int]) -> Benchmark:
    """The same benchmark with each candidate trained once per seed (`train.seed`) and every score the mean over
    the seeds (each seed's own value beside it, as `KEY_seeds`)."""

    def fit(overrides):
        runs = [benchmark.fit({**overrides, "train.seed": seed}) for seed in seeds]
        costs = {key: " / ".join(str(cost[key]) for _, cost in runs) for key in runs[0][1]}
        return [trained for trained, _ in runs], costs

    def mean_of(score):
        def scores(trained_per_seed) -> dict[str, Any]:
            per_seed = [score(trained) for trained in trained_per_seed]
            means = {key: round(float(np.mean([one[key] for one in per_seed])), 4) for key in per_seed[0]}
            return {**means, **{f"{key}_seeds": " / ".join(str(one[key]) for one in per_seed) for key in means}}
        return scores

    return Benchmark(benchmark.metric, fit, mean_of(benchmark.validate), mean_of(benchmark.test))


def ett_benchmark(mode: str, horizon: int, model: str) -> Benchmark:
    from ett import CONFIGS

    from forecaster.config import load_config
    from forecaster.evaluation import score
    from pipelines.train import prepare_data

    data = shared_data("ETT-small/ETTh1.csv")

    def fit(overrides):
        config = load_config(ROOT / "configs" / CONFIGS[mode], overrides={
            "data.path": str(data), "train.progress": False, "window.horizon": horizon, **overrides})
        datamodule = prepare_data(config)  # per candidate: the loaders take the candidate's batch size
        fitted, cost = fit_model(model, config, datamodule)
        return (fitted, datamodule), cost

    def scorer(split: str):
        def scores(trained) -> dict[str, float]:
            fitted, datamodule = trained
            metrics = score(forecast_split(fitted, datamodule, split)[0], datamodule)
            return {f"{split}_mse": round(metrics["mse"], 4), f"{split}_mae": round(metrics["mae"], 4)}
        return scores

    return Benchmark("val_mse", fit, scorer("val"), scorer("test"))


def m4_benchmark(lookback: int, model: str) -> Benchmark:
    from m4 import in_series_order, load_weekly, validation_scorer, weekly_config, weekly_panel

    from forecaster.metrics import m4_scores

    from forecaster.data.datamodule import ForecastDataModule

    ids, train, actual = load_weekly()
    panel, borders = weekly_panel(ids, train, actual)
    validation_scores = validation_scorer(train)

    def fit(overrides):
        datamodule = ForecastDataModule(weekly_config(lookback, overrides), panel, borders)
        datamodule.setup()
        fitted, cost = fit_model(model, datamodule.config, datamodule)
        return (fitted, datamodule), cost

    def forecast(trained, split: str):
        fitted, datamodule = trained
        return in_series_order(forecast_split(fitted, datamodule, split)[0], datamodule)  # [S, 13]

    def validate(trained):
        return {key: round(value, 3) for key, value in validation_scores(forecast(trained, "val")).items()}

    def test(trained):
        scores = m4_scores(forecast(trained, "test"), actual, train)
        return {f"test_{key}": round(value, 3) for key, value in scores.items()}

    return Benchmark("val_owa", fit, validate, test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["ett-uni", "ett-multi", "m4"])
    parser.add_argument("--candidate", action="append", required=True, metavar='"KEY=VALUE ..."',
                        help='config overrides of one candidate; "" is the shipped setting')
    parser.add_argument("--model", default="gru-segment")
    parser.add_argument("--horizon", type=int, default=96, help="ETTh1 horizon (M4 Weekly: always 13)")
    parser.add_argument("--lookback", type=int, default=52, help="M4 Weekly lookback")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="train each candidate once per seed and compare the mean validation score "
                             "(default: one run, the config's seed)")
    parser.add_argument("--validation-only", action="store_true",
                        help="stop after the validation scores: the test split is not read")
    parser.add_argument("--name", default=None, help="results file name (default select-BENCHMARK)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    candidates = {text.strip() or "shipped": parse_overrides(text.split()) for text in args.candidate}
    threads = set_threads(args.threads)
    if args.benchmark == "m4":
        benchmark = m4_benchmark(args.lookback, args.model)
    else:
        benchmark = ett_benchmark(args.benchmark.removeprefix("ett-"), args.horizon, args.model)
    if args.seeds:
        benchmark = over_seeds(benchmark, args.seeds)
    from forecaster.runtime import set_allocator

    allocator = set_allocator()
    rows, chosen = choose(candidates, benchmark, read_test=not args.validation_only)
    command = "python benchmarks/selection.py " + shlex.join(sys.argv[1:])
    extra = {"model": args.model, "metric": benchmark.metric, "chosen": chosen["candidate"],
             "candidates": candidates, "threads": threads, "allocator_tuned": allocator}
    notes = (f"Chosen on validation ({benchmark.metric}, lowest wins): `{chosen['candidate']}`. "
             + ("The test split was not read." if args.validation_only else
                "The test split was read once, after the choice, for the chosen candidate only.")
             + f" {threads} torch thread(s).")
    columns = ["candidate", *[key for key in rows[0] if key.startswith("val_")], "chosen",
               *[key for key in chosen if key.startswith("test_")], "epochs", "best_epoch", "train_s", "wall_s"]
    print(write_results(args.name or f"select-{args.benchmark}", rows, columns, command, extra, notes))

if __name__ == "__main__":
    main()
