"""The metrics, forecaster's own and the M4 competition's, on hand-computed examples and on the published
Naive2 scores of M4 Weekly (read from ../shared/data/M4 when it is there)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import SHARED_DATA

from forecaster.metrics import (
    M4_NAIVE2, m4_scores, mase, mase_per_series, naive2_weekly, naive_scale, owa, smape, smape_per_series,
)


def test_smape_matches_the_competition_formula_per_series():
    pred = np.array([[100.0, 50.0], [20.0, 30.0]])
    actual = np.array([[100.0, 100.0], [10.0, 30.0]])
    # series 1: (0 + 200*50/150) / 2 = 33.33; series 2: (200*10/30 + 0) / 2 = 33.33
    assert smape_per_series(pred, actual) == pytest.approx([100 / 3, 100 / 3])
    assert smape(pred, actual) == pytest.approx(100 / 3)
    assert smape(np.zeros(3), np.zeros(3)) == 0.0  # both zero: a perfect forecast, not a division by zero


def test_m4_mase_scales_by_the_whole_training_rows_one_step_naive_error():
    history = [np.array([1.0, 3.0, 2.0, 4.0]), np.array([5.0, 5.0, 6.0])]  # naive MAEs: 5/3 and 1/2
    actual = np.array([[4.0, 4.0], [6.0, 6.0]])
    pred = np.array([[5.0, 2.0], [6.0, 7.0]])  # MAEs 1.5 and 0.5
    assert mase_per_series(pred, actual, history) == pytest.approx([1.5 / (5 / 3), 0.5 / 0.5])
    assert mase_per_series(pred, actual, history, m=2)[0] == pytest.approx(1.5 / 1.0)  # |2-1|, |4-3|


def test_forecasters_mase_leaves_out_series_without_a_scale():
    scale = np.array([[2.0], [np.nan]])  # the second series is constant: no usable scale
    pred, actual = np.array([[[3.0]], [[5.0]]]), np.array([[[1.0]], [[1.0]]])
    assert mase(pred, actual, scale) == pytest.approx(1.0)
    assert np.isnan(naive_scale(np.ones((5, 1)), 1)).all()


def test_owa_is_one_for_scores_equal_to_naive2s():
    assert owa(9.161, 2.777, M4_NAIVE2["weekly"]) == pytest.approx(1.0)
    history, actual = [np.array([0.0, 1.0])], np.array([[1.0]])  # scale 1
    scores = m4_scores(np.array([[1.0 + 2.777]]), actual, history)
    assert scores["mase"] == pytest.approx(2.777)
    assert scores["owa"] == pytest.approx((scores["smape"] / 9.161 + 1.0) / 2)


def test_weekly_naive2_repeats_the_last_value():
    assert naive2_weekly([np.array([1.0, 2.0, 7.0]), np.array([3.0, 9.0])], 3).tolist() == [[7.0] * 3, [9.0] * 3]


def read_m4(name: str) -> list[np.ndarray]:
    path = SHARED_DATA / "M4" / name
    if not path.is_file():
        pytest.skip(f"real data not available: {path} is absent (see ../shared/data/README.md)")
    frame = pd.read_csv(path, index_col=0)
    return [row.dropna().to_numpy(dtype=np.float64) for _, row in frame.iterrows()]


def test_naive2_reproduces_the_published_m4_weekly_scores():
    train, test = read_m4("Weekly-train.csv"), np.stack(read_m4("Weekly-test.csv"))
    scores = m4_scores(naive2_weekly(train, test.shape[1]), test, train)
    assert (round(scores["smape"], 3), round(scores["mase"], 3)) == (9.161, 2.777)
    assert scores["owa"] == pytest.approx(1.0, abs=1e-3)


def test_rmsse_and_wape_match_hand_computed_numbers():
    from forecaster.metrics import rmsse, wape

    pred = np.array([[[1.0], [2.0]], [[0.0], [4.0]]])  # [N=2, H=2, T=1]
    actual = np.array([[[2.0], [2.0]], [[3.0], [1.0]]])
    scale_sq = np.array([[4.0], [9.0]])  # [N, T]
    # window 1: sqrt(mean(1, 0) / 4) = sqrt(1/8); window 2: sqrt(mean(9, 9) / 9) = 1
    assert rmsse(pred, actual, scale_sq) == pytest.approx((np.sqrt(1 / 8) + 1.0) / 2)
    assert wape(pred, actual) == pytest.approx(100 * (1 + 0 + 3 + 3) / (2 + 2 + 3 + 1))
    assert np.isnan(wape(pred, np.zeros_like(actual)))
    assert naive_scale(np.array([[1.0], [3.0], [2.0]]), 1, power=2)[0] == pytest.approx((4 + 1) / 2)


def test_every_registered_metric_is_rankable_and_reported():
    from forecaster.config import Config, load_config
    from forecaster.errors import ConfigError
    from forecaster.metrics import METRICS, Windows, score_windows

    rng = np.random.default_rng(0)
    windows = Windows(*(rng.normal(size=(3, 4, 2)) for _ in range(4)), np.ones((3, 2)), np.ones((3, 2)))
    scores = score_windows(windows)
    assert set(scores) == set(METRICS) and {"rmsse", "wape"} <= set(scores)
    assert all(np.isfinite(value) for value in scores.values())
    assert Config().with_overrides({"compare.metric": "rmsse", "tune.metric": "wape"}).compare.metric == "rmsse"
    with pytest.raises(ConfigError, match=r"unknown metric 'mape'.*rmsse.*wape"):
        load_config(None, {"compare.metric": "mape"})
