"""The metrics, forecaster's own and the M4 competition's, on hand-computed examples and on the published
Naive2 scores of M4 Weekly (read from ../shared/data/M4 when it is there)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA

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
