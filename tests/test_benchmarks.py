"""The M4 scoring in benchmarks/m4.py on hand-computed examples: sMAPE, MASE, OWA and weekly Naive2."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from m4 import NAIVE2_MASE, NAIVE2_SMAPE, m4_scores, mase_per_series, naive2_weekly, smape_per_series  # noqa: E402


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

    runs = [{"mode": "uni", "horizon": 24, "model": "gru", "mse": mse, "mae": mse * 2} for mse in (0.1, 0.2, 0.3)]
    summary = seed_summary(runs)
    assert summary["mse"] == "0.2000 ± 0.1000" and summary["mae"] == "0.4000 ± 0.2000"
    assert summary["seed"] == "mean of 3"


def test_networks_run_once_per_seed_and_baselines_once():
    from common import seeded_configs

    from forecaster.config import Config

    config = Config().with_overrides({"train.seed": 7})
    assert [(seed, c.train.seed) for seed, c in seeded_configs("gru-segment", config, [0, 1])] == [(0, 0), (1, 1)]
    assert [(seed, c.train.seed) for seed, c in seeded_configs("gru", config, None)] == [(7, 7)]
    assert [(seed, c) for seed, c in seeded_configs("linear", config, [0, 1])] == [(None, config)]
