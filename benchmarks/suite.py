"""Benchmark: forecaster's defaults on a suite of datasets: `forecaster init` + `forecaster compare`, as a new user runs
them, on every real dataset in ../shared/data and on synthetic panels of known structure.

For each dataset the script writes the data as the CSV file a user would have, runs `init` on it, applies only
what the dataset's published protocol fixes (its horizon and test split; the ETTh1 target choice), then runs
`compare` with everything else as `init` wrote it, in a store of its own. It prints and writes one table: per
dataset and candidate, the validation and test MASE (original units, scaled by each series' in-sample
seasonal-naive error) and MSE (standardised), the champion (`*`: the winner `compare` registered), and the
wall time of the whole `compare`. Models are ranked on validation only; the test columns are read once, after.

M4 Weekly also gets the competition's own scores: each candidate's model, trained without the last 26 weeks,
forecasts the 13 test weeks from the training rows through `forecaster.forecasting.forecast`, and sMAPE, MASE
(m = 1) and OWA are computed as the competition computed them (`forecaster.metrics.m4_scores`).

Datasets (`--datasets`; all by default):
- `etth1-ot`: ETTh1, target OT, the other six columns as past covariates, as `init` files them.
- `etth1-multi`: ETTh1, all seven columns as targets.
- `m4-weekly`: 359 weekly series of 80 to 2,597 weeks, horizon 13, the competition's test weeks as test split.
- `epf`: day-ahead prices of four markets, hourly, horizon 24, the last 168 hours test and the 168 before
  validation (the data's README); as `init` files the columns: the weekday flags known ahead
  (`data.future_covariates`, by their names), the load and generation forecasts (Exogenous1, Exogenous2) as past
  covariates.
- `epf-none-covariates`, `epf-past-covariates`, `epf-future-covariates`: the same with every exogenous column
  left out, read as past covariates, or read as known ahead (as the data's README says they are: the change
  `init`'s comment asks a user to make for the load and generation forecasts).
- `synthetic-seasonal`: 12 hourly series of 90 days: daily and weekly cycles, a trend, noise.
- `synthetic-shifts`: 20 daily series of two years: a weekly cycle and level shifts at random days.
- `synthetic-intermittent`: 20 daily series of two years of sales with many zero days.

`--quick` shrinks every training (one epoch of a few batches) and the synthetic panels, for the test suite.

    python benchmarks/suite.py [--datasets epf synthetic-seasonal] [--quick] [--threads 1] [--lookback-scale 2]
        [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DATA, log_to_terminal, set_threads, write_results  # noqa: E402

log = logging.getLogger("suite")
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
QUICK = {"train.max_epochs": 1, "train.limit_train_batches": 3, "model.hidden_size": 8}
COLUMNS = ["dataset", "model", "champion", "val_mase", "test_mase", "val_mse", "test_mse", "test_owa",
           "train_seconds", "compare_seconds"]


# -- the datasets, as the files a user would have ----------------------------------------------------------

def etth1(folder: Path, quick: bool, multi: bool) -> tuple[Path, dict]:
    frame = pd.read_csv(SHARED_DATA / "ETT-small" / "ETTh1.csv")
    if quick:
        frame = frame.iloc[:2000]
    path = folder / "ETTh1.csv"
    frame.to_csv(path, index=False)
    return path, {"data.target": ETT_COLUMNS, "data.covariates": []} if multi else {}


def m4_weekly(folder: Path, quick: bool) -> tuple[Path, dict]:
    from m4 import HORIZON, load_weekly

    ids, train, test = load_weekly()
    if quick:
        ids, train, test = ids[:12], train[:12], test[:12]
    frames = []
    for sid, row, future in zip(ids, train, test, strict=True):
        values = np.concatenate([row, future])
        frames.append(pd.DataFrame({"series_id": sid, "week": pd.date_range("2000-01-03", periods=len(values),
                                                                            freq="W-MON"), "value": values}))
    path = folder / "m4-weekly.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path, {"window.horizon": HORIZON, "split.test_size": HORIZON, "split.val_size": HORIZON}


def epf(folder: Path, quick: bool) -> tuple[Path, dict]:
    frame = pd.read_csv(SHARED_DATA / "EPF" / "electricity-short-with-ex-vars.csv")
    if quick:
        frame = frame.groupby("unique_id").tail(700)
    path = folder / "epf.csv"
    frame.to_csv(path, index=False)
    return path, {"window.horizon": 24, "split.test_size": 168, "split.val_size": 168}


EPF_EXOGENOUS = ["Exogenous1", "Exogenous2", *(f"day_{day}" for day in range(7))]
EPF_ROLES = {  # how the exogenous columns are read, beside `init`'s own choice (`epf`)
    "none": {"data.covariates": [], "data.future_covariates": []},
    "past": {"data.covariates": EPF_EXOGENOUS, "data.future_covariates": []},
    "future": {"data.covariates": [], "data.future_covariates": EPF_EXOGENOUS},
}


def epf_as(folder: Path, quick: bool, role: str) -> tuple[Path, dict]:
    """EPF with every exogenous column read one way: not at all, as past covariates, or as known in advance (as
    the data's README says they are: the change `init`'s comment asks a user to make for the load and generation
    forecasts)."""
    path, protocol = epf(folder, quick)
    return path, {**protocol, **EPF_ROLES[role]}


def synthetic(folder: Path, quick: bool, kind: str) -> tuple[Path, dict]:
    """Panels whose structure is known: what a good model has to find."""
    rng = np.random.default_rng(7)
    frames = []
    if kind == "seasonal":
        (n_series, steps), freq = (4, 24 * 40) if quick else (12, 24 * 90), "h"
    else:
        (n_series, steps), freq = (5, 400) if quick else (20, 730), "D"
    t = np.arange(steps)
    for index in range(n_series):
        if kind == "seasonal":  # daily and weekly cycles, a slow trend, noise
            values = (100 + 10 * index + 15 * np.sin(2 * np.pi * t / 24 + index) + 8 * np.sin(2 * np.pi * t / 168)
                      + 0.01 * t + rng.normal(0, 3, steps))
        elif kind == "shifts":  # a weekly cycle and two or three level shifts
            level = np.zeros(steps)
            for day in rng.choice(np.arange(60, steps - 30), size=rng.integers(2, 4), replace=False):
                level[day:] += rng.normal(0, 20)
            values = 200 + level + 12 * np.sin(2 * np.pi * t / 7 + index) + rng.normal(0, 4, steps)
        else:  # intermittent sales: most days zero, a weekly pattern in how often an item sells
            rate = (0.3 + 0.25 * np.sin(2 * np.pi * t / 7 + index)) * (1 + index % 3)
            values = rng.poisson(np.clip(rate, 0.05, None)).astype(float)
        frames.append(pd.DataFrame({"date": pd.date_range("2022-01-01", periods=steps, freq=freq),
                                    "item": f"{kind}-{index:02d}", "sales" if kind == "intermittent" else "value":
                                    values}))
    path = folder / f"synthetic-{kind}.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path, {}


DATASETS = {
    "etth1-ot": lambda folder, quick: etth1(folder, quick, multi=False),
    "etth1-multi": lambda folder, quick: etth1(folder, quick, multi=True),
    "m4-weekly": m4_weekly,
    "epf": epf,
    **{f"epf-{role}-covariates": (lambda folder, quick, role=role: epf_as(folder, quick, role)) for role in EPF_ROLES},
    "synthetic-seasonal": lambda folder, quick: synthetic(folder, quick, "seasonal"),
    "synthetic-shifts": lambda folder, quick: synthetic(folder, quick, "shifts"),
    "synthetic-intermittent": lambda folder, quick: synthetic(folder, quick, "intermittent"),
}
NEEDS_SHARED = {"etth1-ot": "ETT-small/ETTh1.csv", "etth1-multi": "ETT-small/ETTh1.csv",
                "m4-weekly": "M4/Weekly-train.csv", "epf": "EPF/electricity-short-with-ex-vars.csv",
                **{f"epf-{role}-covariates": "EPF/electricity-short-with-ex-vars.csv" for role in EPF_ROLES}}


# -- one dataset: init, compare, the table's rows ----------------------------------------------------------

def run_dataset(name: str, folder: Path, quick: bool, overrides: dict, lookback_scale: float = 1.0,
                before_test: bool = False) -> list[dict]:
    from forecaster.config import load_config
    from forecaster_pipelines import compare, init

    folder.mkdir(parents=True, exist_ok=True)
    data, protocol = DATASETS[name](folder, quick)
    written = init.run(data, output=folder / f"{name}.yaml", force=True)
    if before_test:  # the protocol's test rows are cut off, unread: init and compare run on what lies before them
        cut_test_rows(data, load_config(written.config_path, overrides=protocol))
        written = init.run(data, output=folder / f"{name}.yaml", force=True)
    if lookback_scale != 1.0:  # init's lookback times a factor, for a search in whole seasons across frequencies
        protocol = {**protocol, "window.lookback": round(written.lookback * lookback_scale)}
    config = load_config(written.config_path, overrides={
        **protocol, "tracking.state_dir": str(folder / "state"), "train.progress": False,
        **(QUICK if quick else {}), **overrides})
    log.info("%s: %s, %d series, %s, lookback %d, horizon %d, candidates %s", name, data.name, written.n_series,
             written.freq, config.window.lookback, config.window.horizon, ", ".join(map(str, config.compare.models)))
    started = time.perf_counter()
    result = compare.run(config)
    seconds = time.perf_counter() - started
    owa = m4_owa(result, data) if name == "m4-weekly" else {}
    rows = []
    for record in result.leaderboard.to_dict(orient="records"):
        model = record["model"]
        rows.append({"dataset": name, "model": model,
                     "champion": "*" if model == result.winner and result.registered_version else "",
                     **{key: record.get(key) for key in ("val_mase", "test_mase", "val_mse", "test_mse")},
                     "test_owa": owa.get(model), "train_seconds": record.get("train_seconds"),
                     "compare_seconds": round(seconds, 1)})
    log.info("%s: champion %s; compare took %.0f s", name, result.winner if result.registered_version else "none",
             seconds)
    return rows


def cut_test_rows(data: Path, config) -> None:
    """Rewrite `data` without each series' test rows (from its validation end on, as `config.split` places them),
    so that a choice made on the rest, scored on its own inner test split, never reads the protocol's test split."""
    from forecaster.data.datamodule import ForecastDataModule

    datamodule = ForecastDataModule(config)
    datamodule.setup()
    keep = dict(zip(datamodule.panel.series_ids, datamodule.borders.val_end.tolist()))
    lengths = dict(zip(datamodule.panel.series_ids, datamodule.panel.lengths))
    frame = pd.read_csv(data)
    key = config.data.series_id
    groups = frame.groupby(key, sort=False) if key else [(datamodule.panel.series_ids[0], frame)]
    parts = []
    for series, rows in groups:
        if len(rows) != lengths[str(series)]:
            raise SystemExit(f"{data}: series {series} has gaps; --before-test cuts by row count")
        parts.append(rows.iloc[: keep[str(series)]])
    pd.concat(parts).to_csv(data, index=False)
    log.info("%s: the test rows cut off (%d of %d rows kept)", data.name, sum(map(len, parts)), len(frame))


def m4_owa(result, data: Path) -> dict[str, float]:
    """Each candidate's competition OWA on the 13 test weeks, forecast from the training rows."""
    from m4 import HORIZON, load_weekly

    from forecaster.bundle import ModelBundle
    from forecaster.forecasting import forecast
    from forecaster.metrics import m4_scores

    ids, train, test = load_weekly()
    frame = pd.read_csv(data)
    history = frame.groupby("series_id", sort=False).apply(lambda g: g.iloc[:-HORIZON], include_groups=False)
    history = history.reset_index(level=0).reset_index(drop=True)
    present = list(dict.fromkeys(history["series_id"]))
    position = {sid: i for i, sid in enumerate(ids)}
    rows = [position[sid] for sid in present]
    scores = {}
    for candidate in result.results:
        bundle = ModelBundle.load(candidate.model_dir)
        out = forecast(bundle, history).frame
        pred = out.pivot(index="series_id", columns="step", values="forecast").loc[present].to_numpy()  # [S, 13]
        scores[candidate.name] = m4_scores(pred, test[rows], [train[i] for i in rows])["owa"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--quick", action="store_true", help="tiny trainings and panels (the test suite's mode)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="folder for the data files, configs and stores (default: a temporary one)")
    parser.add_argument("--name", default="suite", help="results/NAME.json and NAME.md")
    parser.add_argument("--lookback-scale", type=float, default=1.0,
                        help="multiply the lookback init chose (2: two weeks of hourly data instead of one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--before-test", action="store_true",
                        help="cut each series' test rows off first: choose on the rest, its own test split inner")
    args = parser.parse_args()
    from forecaster.config import parse_overrides

    log_to_terminal()
    set_threads(args.threads)
    overrides = {"train.threads": args.threads, **parse_overrides(args.overrides)}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="forecaster-suite-"))
    rows, skipped = [], []
    for name in args.datasets:
        if name in NEEDS_SHARED and not (SHARED_DATA / NEEDS_SHARED[name]).is_file():
            skipped.append(name)
            log.info("%s: skipped, %s is absent (see ../shared/data/README.md)", name, SHARED_DATA / NEEDS_SHARED[name])
            continue
        rows += run_dataset(name, work / name, args.quick, overrides, args.lookback_scale, args.before_test)
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:])
    print(write_results(args.name, rows, COLUMNS, command, extra={"skipped": skipped, "quick": args.quick}))


if __name__ == "__main__":
    main()
