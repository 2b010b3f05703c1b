"""WindowDataset: each window is the right slice, windows respect series and split borders, batches load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from forecaster.config import SplitConfig, WindowConfig
from forecaster.data.features import calendar_features
from forecaster.data.splits import Borders, compute_borders
from forecaster.data.windows import ShuffledWindows, WindowDataset, collate


@st.composite
def layouts(draw):
    """Series lengths, window sizes and per-series borders that leave at least one window per series."""
    lookback, horizon, stride = draw(st.integers(1, 8)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(lookback + horizon, 60), min_size=1, max_size=5))
    borders = []
    for length in lengths:
        a, b = sorted(draw(st.integers(1, length)) for _ in range(2))
        borders.append((a, b, draw(st.integers(b, length))))
    train_end, val_end, test_end = (np.array(column, dtype=np.int64) for column in zip(*borders))
    return lengths, lookback, horizon, stride, Borders(train_end, val_end, test_end)


@settings(max_examples=40, deadline=None)
@given(layouts())
def test_windows_are_exactly_the_valid_slices_of_their_split(make_panel, layout):
    lengths, lookback, horizon, stride, borders = layout
    panel = make_panel(lengths, n_targets=1, n_covariates=1)  # column 0: global row, column 1: series index
    for split in ("train", "val", "test"):
        lo, hi = borders.target_range(split)
        dataset = WindowDataset(panel, lo, hi, lookback, horizon, stride)
        expected = [(s, panel.offsets[s] + r) for s in range(len(lengths))
                    for r in range(max(lo[s] - lookback, 0), hi[s] - lookback - horizon + 1, stride)]
        assert len(dataset) == len(expected)
        if not expected:
            continue
        batch = dataset.__getitems__(list(range(len(dataset))))
        start = batch["x_past"][:, 0, 0].long()
        assert list(zip(batch["series"].tolist(), start.tolist())) == expected
        steps = torch.arange(lookback + horizon)
        rows = torch.cat([batch["x_past"][:, :, 0], batch["y"][:, :, 0]], dim=1).long()
        assert (rows == start[:, None] + steps).all()  # the target immediately follows the input
        assert (batch["origin"] == start + lookback).all()
        assert (batch["x_past"][:, :, 1].long() == batch["series"][:, None]).all()  # never another series' rows
        first_row = torch.from_numpy(panel.offsets[batch["series"].numpy()])
        target_from = rows[:, lookback] - first_row  # row of the first target within its series
        target_to = rows[:, -1] - first_row
        assert (target_from >= torch.from_numpy(lo[batch["series"].numpy()])).all()
        assert (target_to < torch.from_numpy(hi[batch["series"].numpy()])).all()
        assert (rows[:, 0] >= first_row).all()
        if split == "train":  # no validation or test row reaches a training window, inputs included
            assert (target_to < torch.from_numpy(borders.train_end[batch["series"].numpy()])).all()


def test_batch_layout_with_covariates_future_covariates_and_calendar(make_panel):
    panel = make_panel([200, 150], n_targets=2, n_covariates=1, n_future=2)
    borders = compute_borders(panel, SplitConfig(), 24, 6)
    window = WindowConfig(lookback=24, horizon=6)
    dataset = WindowDataset.from_borders(panel, borders, "train", window, ["hour", "weekday"])
    batch = dataset.__getitems__([0, 5, len(dataset) - 1])
    assert batch["x_past"].shape == (3, 24, 2 + 1 + 2 + 4) == (3, 24, dataset.n_past_features)
    assert batch["x_future"].shape == (3, 6, 2 + 4) == (3, 6, dataset.n_future_features)
    assert batch["y"].shape == (3, 6, 2)
    assert all(batch[key].dtype == torch.float32 for key in ("x_past", "x_future", "y"))
    assert batch["series"].dtype == batch["origin"].dtype == torch.int64
    rows = batch["origin"].numpy()[:, None] + np.arange(6)  # [B, H] global rows of the horizon
    np.testing.assert_array_equal(batch["y"].numpy(), panel.values[rows][..., :2])
    np.testing.assert_array_equal(batch["x_future"][..., :2].numpy(), panel.values[rows][..., 3:])
    calendar = calendar_features(panel.timestamps[rows], ["hour", "weekday"])  # [B, H, 4]
    np.testing.assert_array_equal(batch["x_future"][..., 2:].numpy(), calendar)
    past = rows[:, :1] - 24 + np.arange(24)
    np.testing.assert_array_equal(batch["x_past"][..., :5].numpy(), panel.values[past])


def test_without_future_inputs_x_future_has_width_zero(make_panel):
    panel = make_panel([40])
    dataset = WindowDataset(panel, np.array([0]), np.array([40]), 8, 4)
    assert dataset.__getitems__([0, 1])["x_future"].shape == (2, 4, 0)


def test_single_items_negative_indices_and_range(make_panel):
    dataset = WindowDataset(make_panel([30, 30]), np.array([0, 0]), np.array([30, 30]), 5, 3)
    item = dataset[-1]
    assert item["x_past"].shape == (5, 1) and item["y"].shape == (3, 1) and item["series"].item() == 1
    assert item["y"][-1, 0].item() == 59  # last row of the last series
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_dataloader_batches_through_getitems_and_collate(make_panel):
    panel = make_panel([120, 80], n_targets=1, n_covariates=1)
    dataset = WindowDataset(panel, np.array([0, 0]), np.array([120, 80]), 12, 4)
    torch.manual_seed(0)
    batches = list(DataLoader(dataset, batch_size=32, shuffle=True, collate_fn=collate))
    assert [len(batch["y"]) for batch in batches[:-1]] == [32] * (len(batches) - 1)
    starts = torch.cat([batch["x_past"][:, 0, 0] for batch in batches]).long()
    assert sorted(starts.tolist()) == sorted(dataset.locate(np.arange(len(dataset)))[1].tolist())
    assert collate([dataset[0], dataset[1]])["x_past"].shape == (2, 12, 2)


def test_distributed_sampler_splits_the_windows(make_panel):
    dataset = WindowDataset(make_panel([100]), np.array([0]), np.array([100]), 10, 5)
    shards = [list(DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)) for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(len(dataset)))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1)
    loader = DataLoader(dataset, batch_size=8, sampler=sampler, collate_fn=collate)
    assert sum(len(batch["y"]) for batch in loader) == len(shards[1])


def test_no_per_window_state_is_stored(make_panel):
    panel = make_panel([5000, 3000], n_targets=1, n_covariates=1)
    dataset = WindowDataset(panel, np.array([0, 0]), np.array([5000, 3000]), 96, 24, calendar=["hour"])
    assert len(dataset) > 7000
    assert np.shares_memory(dataset.values, panel.values) and dataset.timestamps is panel.timestamps
    arrays = [value for value in vars(dataset).values() if isinstance(value, np.ndarray)]
    assert max(array.size for array in arrays if array is not dataset.values and array is not dataset.timestamps) <= 120


def test_shuffled_windows_gives_random_samplers_order_in_chunks(make_panel):
    dataset = WindowDataset(make_panel([300]), np.array([0]), np.array([300]), 4, 2)
    sampler = ShuffledWindows(dataset)
    sampler.chunk = 7
    torch.manual_seed(3)
    ours = list(sampler)
    torch.manual_seed(3)
    assert ours == list(RandomSampler(dataset))
    assert sorted(ours) == list(range(len(dataset)))
