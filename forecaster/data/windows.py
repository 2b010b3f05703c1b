"""`WindowDataset`: forecasting windows over a (scaled) `Panel`, sliced on demand, never materialised.

The dataset keeps, per series, the global row of its first window and its window count; a flat index maps to
(series, start row) with `np.searchsorted` over the cumulative counts. `__getitems__` gathers a whole batch
with one fancy index `values[starts[:, None] + arange(L + H)]`, so a `DataLoader` with `collate_fn=collate`
gets ready-made batches (`sampler=ShuffledWindows(dataset)` shuffles without a Python list of every index):

    x_past  [B, L, T + Cp + Cf + 2K]   scaled targets, past covariates, future covariates, calendar features
    x_future [B, H, Cf + 2K]           future covariates and calendar features over the horizon
    y       [B, H, T]                  scaled targets over the horizon
    series  [B] int64                  index into `Panel.series_ids`
    origin  [B] int64                  global row (into `Panel.values`) of the first horizon step
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, RandomSampler

from forecaster.config import WindowConfig
from forecaster.data.features import calendar_features
from forecaster.data.panel import Panel
from forecaster.data.splits import Borders, count_windows

Batch = dict[str, torch.Tensor]


class WindowDataset(Dataset):
    """Windows of `panel` whose targets lie in the per-series row ranges `[lo, hi)` ([S] each).

    Holds references to `panel.values` (and `panel.timestamps` when `calendar` is set), plus O(S) bookkeeping.
    """

    def __init__(
        self,
        panel: Panel,
        lo: np.ndarray,
        hi: np.ndarray,
        lookback: int,
        horizon: int,
        stride: int = 1,
        calendar: Sequence[str] = (),
    ) -> None:
        self.values = np.ascontiguousarray(panel.values, dtype=np.float32)  # [N, V], no copy when already so
        self.calendar = list(calendar)
        self.timestamps = panel.clock.local(panel.timestamps) if self.calendar else None  # the zone's local time
        self.lookback, self.horizon, self.stride = lookback, horizon, stride
        self.n_targets = len(panel.targets)
        self.n_past_covariates = len(panel.covariates)
        self.n_future_covariates = len(panel.future_covariates)
        first, counts = count_windows(lo, hi, lookback, horizon, stride)
        self.first_row = panel.offsets[:-1] + first  # [S] global row of each series' first window start
        self.counts = counts  # [S]
        self.cumulative = np.cumsum(counts)  # [S]
        self._steps = np.arange(lookback + horizon, dtype=np.int64)  # [L + H]

    @classmethod
    def from_borders(
        cls, panel: Panel, borders: Borders, split: str, window: WindowConfig, calendar: Sequence[str] = ()
    ) -> WindowDataset:
        """The windows of `split` ('train', 'val' or 'test')."""
        lo, hi = borders.target_range(split)
        return cls(panel, lo, hi, window.lookback, window.horizon, window.stride, calendar)

    @property
    def n_past_features(self) -> int:
        """Width of `x_past`: T + Cp + Cf + 2K."""
        return self.values.shape[1] + 2 * len(self.calendar)

    @property
    def n_future_features(self) -> int:
        """Width of `x_future`: Cf + 2K."""
        return self.n_future_covariates + 2 * len(self.calendar)

    def __len__(self) -> int:
        return int(self.cumulative[-1]) if len(self.cumulative) else 0

    def locate(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Series index [B] and global start row [B] of the windows `indices` (negative ones count from the end)."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        size = len(self)
        if index.size and (index.min() < -size or index.max() >= size):
            raise IndexError(f"window index out of range for a dataset of {size} windows")
        if index.size and index.min() < 0:
            index = np.where(index < 0, index + size, index)
        series = np.searchsorted(self.cumulative, index, side="right")  # [B]
        before = self.cumulative[series] - self.counts[series]  # windows of earlier series
        return series, self.first_row[series] + (index - before) * self.stride

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """The batch of windows `indices`, as a dict of tensors (see the module docstring)."""
        series, start = self.locate(indices)
        rows = start[:, None] + self._steps  # [B, L + H]
        block = self.values[rows]  # [B, L + H, V]
        if self.calendar:
            block = np.concatenate([block, calendar_features(self.timestamps[rows], self.calendar)], axis=2)
        lookback, future_from = self.lookback, self.n_targets + self.n_past_covariates
        return {
            "x_past": torch.from_numpy(np.ascontiguousarray(block[:, :lookback])),  # [B, L, T+Cp+Cf+2K]
            "x_future": torch.from_numpy(np.ascontiguousarray(block[:, lookback:, future_from:])),  # [B, H, Cf+2K]
            "y": torch.from_numpy(np.ascontiguousarray(block[:, lookback:, : self.n_targets])),  # [B, H, T]
            "series": torch.from_numpy(series),
            "origin": torch.from_numpy(start + lookback),
        }

    def __getitem__(self, index: int) -> Batch:
        """One window: the batch entries without the batch dimension."""
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def collate(batch: Batch | list[Batch]) -> Batch:
    """`collate_fn` for a `DataLoader` over a `WindowDataset`: a batch from `__getitems__` passes through;
    a list of single windows (a sampler without batching support) is stacked."""
    if isinstance(batch, dict):
        return batch
    return {key: torch.stack([item[key] for item in batch]) for key in batch[0]}


class ShuffledWindows(RandomSampler):
    """`RandomSampler` (same order for the same seed) that hands out its permutation one chunk at a time.

    torch's version turns the whole permutation into a Python list, about 36 bytes per window (50 MB for 1.4
    million windows, six times the series itself); this one keeps the int64 tensor (8 bytes per window). Being a
    `RandomSampler`, Lightning still swaps it for a `DistributedSampler` when training on several devices.
    """

    chunk = 65_536

    def __iter__(self) -> Iterator[int]:
        if self.replacement or self.num_samples != len(self.data_source):
            yield from super().__iter__()
            return
        generator = self.generator
        if generator is None:  # seeded from the global RNG exactly as torch does
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        for chunk in torch.randperm(self.num_samples, generator=generator).split(self.chunk):
            yield from chunk.tolist()
