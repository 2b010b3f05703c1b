"""The benchmarks' own logic: the M4 validation weeks (the metrics themselves are tested in test_metrics.py),
seeds, throughput, and the choice of a setting on validation data alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from m4 import validation_scorer, validation_weeks  # noqa: E402

from forecaster.metrics import naive2_weekly  # noqa: E402


@pytest.mark.parametrize(("limit", "expected"), [(None, 1000), (5, 5 * 64), (100, 1000), (0.25, 250)])
def test_throughput_counts_only_the_windows_an_epoch_sees(limit, expected):
    """`train.limit_train_batches` caps an epoch; windows/s computed from every training window would flatter."""
    from common import windows_per_epoch

    from forecaster.config import Config

    config = Config().with_overrides({"train.limit_train_batches": limit, "train.batch_size": 64})
    assert windows_per_epoch(config, 1000) == expected


def test_seed_summary_reports_mean_and_sample_spread():
    from ett import seed_summary

    runs = [{"mode": "uni", "horizon": 24, "model": "gru", "mse": mse, "mae": mse * 2, "val_mse": mse * 3,
             "val_mae": mse * 4} for mse in (0.1, 0.2, 0.3)]
    summary = seed_summary(runs)
    assert summary["mse"] == "0.2000 ± 0.1000" and summary["mae"] == "0.4000 ± 0.2000"
    assert summary["val_mse"] == "0.6000 ± 0.3000" and summary["val_mae"] == "0.8000 ± 0.4000"
    assert summary["seed"] == "mean of 3"


def test_networks_run_once_per_seed_and_baselines_once():
    from common import seeded_configs

    from forecaster.config import Config

    config = Config().with_overrides({"train.seed": 7})
    assert [(seed, c.train.seed) for seed, c in seeded_configs("gru-segment", config, [0, 1])] == [(0, 0), (1, 1)]
    assert [(seed, c.train.seed) for seed, c in seeded_configs("gru", config, None)] == [(7, 7)]
    assert [(seed, c) for seed, c in seeded_configs("linear", config, [0, 1])] == [(None, config)]


def test_m4_validation_is_the_last_13_training_weeks_scored_against_naive2_there():
    train = [np.arange(1.0, 21.0), np.array([5.0, 1.0] * 10)]  # 20 weeks each
    history, actual = validation_weeks(train)
    assert [len(row) for row in history] == [7, 7] and actual.tolist()[0] == list(range(8, 21))
    scores = validation_scorer(train)
    assert scores(naive2_weekly(history, 13))["val_owa"] == pytest.approx(1.0)  # Naive2 on the same weeks
    assert scores(actual) == pytest.approx({"val_smape": 0.0, "val_mase": 0.0, "val_owa": 0.0})


def test_the_choice_reads_validation_only_and_tests_the_chosen_candidate_alone():
    """Candidate "b" has the lowest validation score, "a" would have the lowest test score: "b" must win, and the
    test split is scored once, for "b", after every candidate was validated."""
    from selection import Benchmark, choose

    val = {"a": 0.30, "b": 0.20, "c": 0.40}
    test = {"a": 0.10, "b": 0.50, "c": 0.05}
    calls = []

    def fit(overrides):
        calls.append(("fit", overrides["name"]))
        return overrides["name"], {"epochs": 1}

    def validate(trained):
        calls.append(("val", trained))
        return {"val_mse": val[trained]}

    def score_test(trained):
        calls.append(("test", trained))
        return {"test_mse": test[trained]}

    candidates = {label: {"name": label} for label in val}
    rows, chosen = choose(candidates, Benchmark("val_mse", fit, validate, score_test))
    assert chosen["candidate"] == "b" and chosen["test_mse"] == 0.50
    assert [call for call in calls if call[0] == "test"] == [("test", "b")] and calls[-1] == ("test", "b")
    assert [row["val_mse"] for row in rows] == [0.30, 0.20, 0.40]
    assert [row.get("test_mse") for row in rows] == [None, 0.50, None]
    assert [row.get("chosen") for row in rows] == [None, "yes", None]


def test_validation_only_never_reads_the_test_split():
    from selection import Benchmark, choose

    def no_test(trained):
        raise AssertionError("the test split was read")

    benchmark = Benchmark("val_mse", lambda overrides: (overrides["v"], {}), lambda v: {"val_mse": v}, no_test)
    rows, chosen = choose({"a": {"v": 0.2}, "b": {"v": 0.1}}, benchmark, read_test=False)
    assert chosen["candidate"] == "b" and not any(key.startswith("test_") for row in rows for key in row)


def test_the_training_clock_leaves_out_the_validation_pass_lightning_runs_inside_the_epoch(tmp_path, monkeypatch):
    """speed.py and global_models.py compare training rates with a kernel that validates nothing: a validation
    pass counted as training would make the pipeline look slower than it is."""
    import time

    from helpers import shrink_config
    from speed import pipeline_train

    from forecaster.training.module import ForecastModule
    from forecaster_pipelines.train import prepare_data

    validation_step = ForecastModule.validation_step

    def slow_validation(self, batch, batch_idx):
        time.sleep(0.3)
        return validation_step(self, batch, batch_idx)

    monkeypatch.setattr(ForecastModule, "validation_step", slow_validation)
    config = shrink_config("demo.yaml", tmp_path, **{"train.limit_train_batches": 2, "model.hidden_size": 8})
    started = time.perf_counter()
    seconds, windows, _ = pipeline_train(config, prepare_data(config), epochs=1)
    elapsed = time.perf_counter() - started
    assert windows > 0
    assert seconds < elapsed - 0.3  # at least one sleeping validation batch left out


def test_the_synthetic_panel_has_every_series_on_an_hourly_grid(tmp_path):
    import pandas as pd
    from global_models import synthetic_panel

    rows = synthetic_panel(tmp_path / "panel.parquet", n_series=3, rows=50, first_row=10)
    frame = pd.read_parquet(tmp_path / "panel.parquet")
    assert rows == len(frame) == 150
    assert frame["series_id"].nunique() == 3 and frame.groupby("series_id").size().eq(50).all()
    steps = frame.groupby("series_id")["timestamp"].diff().dropna()
    assert (steps == pd.Timedelta(hours=1)).all()
    assert frame["timestamp"].min() == pd.Timestamp("2020-01-01 10:00")
    assert frame.groupby("series_id")["value"].std().gt(0).all()


def test_a_tuned_config_wins_only_beyond_twice_the_standard_error_of_the_gap():
    from tune_check import verdict

    base = [0.1080, 0.1096, 0.1063]
    assert verdict([0.1022, 0.1000, 0.0982], base)[0]  # 0.0078 lower, standard error 0.0015
    wins, why = verdict([0.1459, 0.1466, 0.1367], [0.1402, 0.1396, 0.1496])  # 0.0001 lower, error 0.0045
    assert not wins and why.startswith("a tie")
    wins, why = verdict([0.1180, 0.1190, 0.1170], base)
    assert not wins and why.startswith("the win is reversed")
    assert verdict([0.10], [0.11]) == (True, "lower on one seed: no spread to judge the gap by")


def test_tune_check_takes_the_tuned_scores_only_from_the_run_that_wrote_the_config(tmp_path):
    from tune_check import earlier_scores

    shipped = ROOT / "configs" / "etth1-multi-h336-tuned.yaml"
    params = {"cell": "gru", "lookback": 336, "hidden_size": 128, "lr": 0.0004325411366821177}
    rows = [{"seed": seed, "val_mse": 1.2 + seed / 100, "test_mse": 0.44, "test_mae": 0.44, "epochs": 5}
            for seed in (2, 0, 1)]

    def results(text: str, best_params: dict) -> Path:
        path = tmp_path / "tune.json"
        path.write_text(json.dumps({"tuned_config": text, "result": {"best_params": best_params},
                                    "retrained": rows}))
        return path

    written = results(shipped.read_text(), params)
    assert [row["seed"] for row in earlier_scores(written, shipped, [0, 1, 2])] == [0, 1, 2]
    with pytest.raises(SystemExit, match=r"no retraining on seed\(s\) \[3\]"):
        earlier_scores(written, shipped, [0, 3])
    other_lr = shipped.read_text().replace("lr: 0.0004325411366821177", "lr: 0.001")
    with pytest.raises(SystemExit, match="is not the run that wrote etth1-multi-h336-tuned.yaml.*train.lr"):
        earlier_scores(results(other_lr, {**params, "lr": 0.001}), shipped, [0, 1, 2])
    other_horizon = shipped.read_text().replace("horizon: 336", "horizon: 720")
    with pytest.raises(SystemExit, match="window.horizon"):
        earlier_scores(results(other_horizon, params), shipped, [0, 1, 2])


@pytest.mark.slow
def test_the_suite_runs_init_and_compare_with_defaults_on_a_panel_of_known_structure(tmp_path):
    """benchmarks/suite.py in its reduced mode: init writes the config, compare trains every default candidate
    (statistical models and the ensemble included) and the rows carry validation and test MASE for each."""
    import suite

    rows = suite.run_dataset("synthetic-seasonal", tmp_path, quick=True, overrides={"train.threads": 1})
    by_model = {row["model"]: row for row in rows}
    assert {"gru", "lstm", "naive", "seasonal_naive", "linear", "ets", "theta", "ensemble"} <= set(by_model)
    assert all(np.isfinite(row[key]) for row in rows for key in ("val_mase", "test_mase", "val_mse", "test_mse"))
    assert len({row["compare_seconds"] for row in rows}) == 1 and rows[0]["compare_seconds"] > 0
    assert [row["model"] for row in rows if row["champion"]] in ([], [rows[0]["model"]])  # only the ranked first
    # Daily and weekly cycles: repeating the last day beats repeating the last hour, and the statistical models,
    # which find the cycles from the data, beat seasonal naive on the validation split.
    assert by_model["seasonal_naive"]["val_mase"] < by_model["naive"]["val_mase"]
    assert min(by_model["ets"]["val_mase"], by_model["theta"]["val_mase"]) < by_model["seasonal_naive"]["val_mase"]


def test_the_suite_before_its_test_split_cuts_each_series_where_its_test_rows_begin(tmp_path):
    """`suite.py --before-test` makes choices on the rows before the protocol's test split: the file it rewrites
    must end, per series, exactly where `split` puts the test rows, and keep everything before."""
    import pandas as pd
    import suite

    from forecaster.config import load_config
    from forecaster.data.datamodule import ForecastDataModule
    from forecaster_pipelines import init

    data, protocol = suite.DATASETS["synthetic-shifts"](tmp_path, True)
    before = pd.read_csv(data)
    config = load_config(init.run(data, output=tmp_path / "c.yaml", force=True).config_path, overrides=protocol)
    datamodule = ForecastDataModule(config)
    datamodule.setup()
    suite.cut_test_rows(data, config)
    after = pd.read_csv(data)
    key = config.data.series_id
    for series, val_end in zip(datamodule.panel.series_ids, datamodule.borders.val_end):
        kept, was = after[after[key].astype(str) == series], before[before[key].astype(str) == series]
        assert 0 < len(kept) == val_end < len(was)
        pd.testing.assert_frame_equal(kept.reset_index(drop=True), was.iloc[:val_end].reset_index(drop=True))
