"""Chronological train/validation/test borders per series, window counting, and rolling-origin folds.

A split is a per-series range of *target* rows `[lo, hi)`, counted from each series' start: train `[0,
train_end)`, validation `[train_end, val_end)`, test `[val_end, test_end)`; rows from `test_end` on are unused.
A window's inputs may reach `lookback` rows back before `lo` (never before the series start), so validation and
test windows see the end of the previous split as history but never predict its rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.config import SplitConfig
from forecaster.data.panel import Panel
from forecaster.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Borders:
    """Ends of the three target ranges per series, each [S] int64 rows from the series start."""

    train_end: np.ndarray
    val_end: np.ndarray
    test_end: np.ndarray

    def target_range(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(`lo`, `hi`), each [S]: the target rows of `split` ('train', 'val' or 'test')."""
        if split == "train":
            return np.zeros_like(self.train_end), self.train_end
        if split == "val":
            return self.train_end, self.val_end
        if split == "test":
            return self.val_end, self.test_end
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")

    def before_test(self) -> Borders:
        """The borders one split earlier, for selection without the test split: the validation rows become the
        scored range, and as many rows at the end of training become the validation (early-stopping) rows."""
        n_val = self.val_end - self.train_end
        return Borders(self.train_end - n_val, self.train_end, self.val_end)

    def shifted(self, rows: int | np.ndarray) -> Borders:
        """All three borders moved `rows` (scalar or [S]) rows earlier."""
        return Borders(self.train_end - rows, self.val_end - rows, self.test_end - rows)


def count_windows(
    lo: np.ndarray, hi: np.ndarray, lookback: int, horizon: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """First window start [S] and number of windows [S] whose targets lie in `[lo, hi)`.

    Window starts (rows from the series start) are `first, first + stride, ...` up to `hi - lookback - horizon`.
    """
    first = np.maximum(np.asarray(lo, np.int64) - lookback, 0)
    last = np.asarray(hi, np.int64) - lookback - horizon
    counts = np.where(last >= first, (last - first) // stride + 1, 0)
    return first, counts.astype(np.int64)


def check_lengths(panel: Panel, lookback: int, horizon: int) -> None:
    """Every series holds at least one window of `lookback + horizon` rows."""
    short = np.flatnonzero(panel.lengths < lookback + horizon)
    if len(short):
        listed = ", ".join(f"'{panel.series_ids[i]}' ({panel.lengths[i]} rows)" for i in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise DataError(
            f"{panel.source}: series {listed}{more} too short: a window needs lookback + horizon = "
            f"{lookback} + {horizon} = {lookback + horizon} rows. Lower window.lookback or window.horizon, or "
            f"remove those series."
        )


def compute_borders(panel: Panel, split: SplitConfig, lookback: int, horizon: int) -> Borders:
    """Borders for every series of `panel` from `split`.

    An explicit `*_end` (row count, or timestamp T meaning rows before T) wins; then `*_size`, rows counted back
    from each series' `test_end` (by default its last row), as M4 defines holdouts; then the fractions of the rows
    before `test_end`. An empty validation or test split is allowed: it has no windows and no metrics.
    """
    check_lengths(panel, lookback, horizon)
    test_end = _border(split.test_end, "split.test_end", panel, default=panel.lengths)
    n_test = split.test_size if split.test_size is not None else np.floor(test_end * split.test_fraction)
    n_val = split.val_size if split.val_size is not None else np.floor(test_end * split.val_fraction)
    val_end = _border(split.val_end, "split.val_end", panel, default=test_end - n_test)
    train_end = _border(split.train_end, "split.train_end", panel, default=val_end - n_val)
    borders = Borders(train_end, val_end, test_end)
    check_borders(borders, panel, lookback, horizon)
    return borders


def _border(value: int | str | None, key: str, panel: Panel, default: np.ndarray) -> np.ndarray:
    """[S] int64 rows: `default`, a row count for every series, or the rows before a timestamp."""
    if value is None:
        return np.asarray(default, dtype=np.int64)
    if isinstance(value, int):
        return np.full(panel.n_series, value, dtype=np.int64)
    try:
        border = panel.clock.at(value)
    except ValueError:
        raise DataError(f"{key}={value!r} is neither a row count nor a timestamp such as 2017-06-01.") from None
    return np.array(
        [np.searchsorted(panel.series_timestamps(i), border, side="left") for i in range(panel.n_series)],
        dtype=np.int64,
    )


def check_borders(borders: Borders, panel: Panel, lookback: int, horizon: int, context: str = "") -> None:
    """`0 < train_end <= val_end <= test_end <= length` per series, and training windows exist; a split with
    rows but no window at all is an error too."""
    where = f"{panel.source}{context}"
    checks = [
        (borders.train_end < 1, "leaves no training rows"),
        (borders.val_end < borders.train_end, "puts val_end before train_end"),
        (borders.test_end < borders.val_end, "puts test_end before val_end"),
        (borders.test_end > panel.lengths, "reaches past the end of the series"),
    ]
    for failed, what in checks:
        if failed.any():
            i = int(np.argmax(failed))
            raise DataError(
                f"{where}: the split {what} for series '{panel.series_ids[i]}' ({panel.lengths[i]} rows): "
                f"train_end={borders.train_end[i]}, val_end={borders.val_end[i]}, test_end={borders.test_end[i]}. "
                f"Adjust split.train_end/val_end/test_end, split.val_size/test_size or split.val_fraction/test_fraction."
            )
    for name in SPLITS:
        lo, hi = borders.target_range(name)
        _, counts = count_windows(lo, hi, lookback, horizon)
        if (hi > lo).any() and counts.sum() == 0:
            need = lookback + horizon if name == "train" else horizon
            raise DataError(
                f"{where}: the {name} split has no window in any series: it needs at least {need} rows in one "
                f"series (lookback={lookback}, horizon={horizon}) but has at most {int((hi - lo).max())}. "
                f"Give it more rows (split.*) or shorten window.lookback/window.horizon."
            )


def rolling_origin_folds(
    borders: Borders, panel: Panel, n_folds: int, step: int | None, lookback: int, horizon: int
) -> list[Borders]:
    """`n_folds` borders, oldest first; the last is `borders` itself.

    Fold k moves all three borders back by `(n_folds - 1 - k) * step` rows, so each fold's training rows end
    where its validation rows begin and its test range moves back by `step` per fold. `step=None` means each
    series' test length (non-overlapping test ranges).
    """
    if n_folds < 1:
        raise ValueError("n_folds must be at least 1")
    rows = borders.test_end - borders.val_end if step is None else np.int64(step)
    folds = []
    for k in range(n_folds):
        fold = borders.shifted((n_folds - 1 - k) * rows)
        check_borders(
            fold, panel, lookback, horizon,
            context=f" (rolling-origin fold {k + 1} of {n_folds}; use fewer folds or a smaller step)",
        )
        folds.append(fold)
    return folds
