"""The benchmarks' own logic: M4 scoring on hand-computed examples (sMAPE, MASE, OWA, weekly Naive2, the
validation weeks), seeds, throughput, and the choice of a setting on validation data alone."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from m4 import (  # noqa: E402
    NAIVE2_MASE, NAIVE2_SMAPE, m4_scores, mase_per_series, naive2_weekly, smape_per_series, validation_scorer,
    validation_weeks,
)


def test_smape_matches_the_competition_formula_per_series():
    actual = np.array([[100.0, 100.0], [10.0, 30.0]])
    forecast = np.array([[100.0, 50.0], [20.0, 30.0]])
    # series 1: (0 + 200*50/150) / 2 = 33.33; series 2: (200*10/30 + 0) / 2 = 33.33
    assert smape_per_series(actual, forecast) == pytest.approx([100 / 3, 100 / 3])


def test_mase_scales_by_the_whole_training_rows_one_step_naive_error():
    history = [np.array([1.0, 3.0, 2.0, 4.0]), np.array([5.0, 5.0, 6.0])]  # naive MAEs: 5/3 and 1/2
    actual = np.array([[4.0, 4.0], [6.0, 6.0]])
    forecast = np.array([[5.0, 2.0], [6.0, 7.0]])  # MAEs 1.5 and 0.5
    assert mase_per_series(history, actual, forecast) == pytest.approx([1.5 / (5 / 3), 0.5 / 0.5])


def test_weekly_naive2_repeats_the_last_value():
    forecast = naive2_weekly([np.array([1.0, 2.0, 7.0]), np.array([3.0, 9.0])], horizon=3)
    assert forecast.tolist() == [[7.0, 7.0, 7.0], [9.0, 9.0, 9.0]]


def test_owa_is_one_for_scores_equal_to_naive2s():
    history = [np.array([0.0, 1.0])]  # scale 1
    actual = np.array([[1.0]])
    # |y - f| = MASE; choose f so that MASE = 2.777, then sMAPE follows and OWA = mean of the two ratios.
    forecast = np.array([[1.0 + NAIVE2_MASE]])
    scores = m4_scores(history, actual, forecast)
    assert scores["mase"] == pytest.approx(NAIVE2_MASE)
    assert scores["owa"] == pytest.approx((scores["smape"] / NAIVE2_SMAPE + 1.0) / 2)


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
    assert scores(naive2_weekly(history))["val_owa"] == pytest.approx(1.0)  # Naive2 on the same weeks
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
