"""Per-series borders: fractions, row counts, timestamps, the ETTh1 protocol, and rolling-origin folds."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.config import DataConfig, SplitConfig
from forecaster.data.panel import load_panel
from forecaster.data.splits import compute_borders, count_windows, rolling_origin_folds
from forecaster.errors import DataError

ETT_SPLIT = SplitConfig(train_end=8640, val_end=11520, test_end=14400)


def window_counts(panel, borders, lookback=96, horizon=24, stride=1):
    return [int(count_windows(*borders.target_range(name), lookback, horizon, stride)[1].sum())
            for name in ("train", "val", "test")]


def test_fractions_are_taken_per_series(make_panel):
    borders = compute_borders(make_panel([100, 250]), SplitConfig(val_fraction=0.1, test_fraction=0.2), 10, 5)
    assert borders.train_end.tolist() == [70, 175]
    assert borders.val_end.tolist() == [80, 200]
    assert borders.test_end.tolist() == [100, 250]


def test_explicit_row_counts_win_and_the_rest_follows_the_fractions(make_panel):
    split = SplitConfig(test_end=200, val_fraction=0.1, test_fraction=0.2)
    borders = compute_borders(make_panel([300, 400]), split, 10, 5)
    assert borders.test_end.tolist() == [200, 200]
    assert borders.val_end.tolist() == [160, 160] and borders.train_end.tolist() == [140, 140]


def test_timestamp_borders_count_the_rows_before_them(make_panel):
    panel = make_panel([100, 60])  # both start 2024-01-01 00:00, hourly
    borders = compute_borders(panel, SplitConfig(train_end="2024-01-02", val_end="2024-01-02 12:00"), 6, 3)
    assert borders.train_end.tolist() == [24, 24]
    assert borders.val_end.tolist() == [36, 36]
    assert borders.test_end.tolist() == [100, 60]


def test_etth1_protocol_window_counts_on_a_panel_of_the_same_length(make_panel):
    panel = make_panel([17420])
    assert window_counts(panel, compute_borders(panel, ETT_SPLIT, 96, 24)) == [8521, 2857, 2857]


def test_etth1_protocol_window_counts_on_the_real_file(etth1_csv):
    panel = load_panel(DataConfig(path=str(etth1_csv), timestamp="date", target="OT"))
    borders = compute_borders(panel, ETT_SPLIT, 96, 24)
    assert window_counts(panel, borders) == [8521, 2857, 2857]


def test_count_windows_follows_the_documented_formula():
    first, counts = count_windows(np.array([0, 50, 10]), np.array([40, 80, 12]), lookback=10, horizon=5, stride=3)
    assert first.tolist() == [0, 40, 0]
    assert counts.tolist() == [len(range(0, 40 - 15 + 1, 3)), len(range(40, 80 - 15 + 1, 3)), 0]


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        (SplitConfig(test_end=250), "reaches past the end of the series for series 's1' (200 rows)"),
        (SplitConfig(train_end=90, val_end=80), "puts val_end before train_end for series 's0'"),
        (SplitConfig(train_end="2023-01-01"), "leaves no training rows for series 's0'"),
        (SplitConfig(train_end=10), "the train split has no window in any series"),
        (SplitConfig(val_fraction=0.01, test_fraction=0.1), "the val split has no window in any series"),
    ],
)
def test_impossible_borders_are_explained(make_panel, split, expected):
    with pytest.raises(DataError, match="split") as error:
        compute_borders(make_panel([300, 200]), split, 12, 6)
    assert expected in str(error.value)


def test_a_border_that_is_not_a_timestamp_names_the_key(make_panel):
    with pytest.raises(DataError, match=r"split.val_end='soon' is neither a row count nor a timestamp"):
        compute_borders(make_panel([300]), SplitConfig(val_end="soon"), 12, 6)


def test_rolling_origin_folds_move_back_by_step_oldest_first(make_panel):
    panel = make_panel([500, 400])
    base = compute_borders(panel, SplitConfig(val_fraction=0.1, test_fraction=0.1), 24, 12)
    folds = rolling_origin_folds(base, panel, n_folds=3, step=30, lookback=24, horizon=12)
    assert len(folds) == 3 and folds[-1].test_end.tolist() == base.test_end.tolist()
    for k, fold in enumerate(folds):
        shift = (2 - k) * 30
        assert (fold.test_end == base.test_end - shift).all()
        assert (fold.val_end == base.val_end - shift).all() and (fold.train_end == base.train_end - shift).all()


def test_rolling_origin_default_step_is_the_test_length(make_panel):
    panel = make_panel([500])
    base = compute_borders(panel, SplitConfig(val_fraction=0.1, test_fraction=0.1), 24, 12)
    older, latest = rolling_origin_folds(base, panel, n_folds=2, step=None, lookback=24, horizon=12)
    assert older.test_end[0] == latest.val_end[0]


def test_too_many_folds_are_refused_with_the_fold_named(make_panel):
    panel = make_panel([200])
    base = compute_borders(panel, SplitConfig(val_fraction=0.1, test_fraction=0.2), 24, 12)
    with pytest.raises(DataError, match=r"fold 1 of 10; use fewer folds"):
        rolling_origin_folds(base, panel, n_folds=10, step=40, lookback=24, horizon=12)


def test_sizes_count_back_from_each_series_end(make_panel):
    borders = compute_borders(make_panel([300, 200]), SplitConfig(val_size=30, test_size=20), 12, 6)
    assert borders.test_end.tolist() == [300, 200]
    assert borders.val_end.tolist() == [280, 180]
    assert borders.train_end.tolist() == [250, 150]


def test_sizes_win_over_fractions_and_an_explicit_end_wins_over_sizes(make_panel):
    split = SplitConfig(val_size=30, test_size=20, val_fraction=0.3, test_fraction=0.3, test_end=250)
    borders = compute_borders(make_panel([300]), split, 12, 6)
    assert (borders.train_end[0], borders.val_end[0], borders.test_end[0]) == (200, 230, 250)


@pytest.mark.parametrize("split", [SplitConfig(test_size=0), SplitConfig(test_fraction=0.0)])
def test_an_empty_test_split_is_allowed_and_has_no_window(make_panel, split):
    panel = make_panel([300, 200])
    borders = compute_borders(panel, split, 12, 6)
    assert (borders.test_end == borders.val_end).all()
    assert window_counts(panel, borders, 12, 6)[2] == 0


def test_selection_folds_end_before_the_test_split(make_panel):
    panel = make_panel([500, 400])
    base = compute_borders(panel, SplitConfig(val_size=40, test_size=40), 24, 12)
    folds = rolling_origin_folds(base.before_test(), panel, n_folds=3, step=None, lookback=24, horizon=12)
    assert (folds[-1].test_end == base.val_end).all() and (folds[-1].val_end == base.train_end).all()
    for fold in folds:  # each fold scores its `test` range: never a row of the real test split
        assert (fold.test_end <= base.val_end).all()
        assert (fold.val_end - fold.train_end == 40).all()
