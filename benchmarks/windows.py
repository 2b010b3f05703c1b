"""Benchmark: memory and speed of `WindowDataset` over one long hourly series.

Builds a 2,000,000-point hourly series in memory, scales it, then measures the resident memory just before the
dataset and its shuffled `DataLoader` are created and the peak while every training window is loaded
(lookback 96, horizon 24, batch 256). Prints one JSON object. Target: `dataset_mb` within 3x `raw_series_mb`.
The main figures shuffle with `ShuffledWindows`, as `ForecastDataModule.train_dataloader` does; the figures
ending in `_with_torch_random_sampler` use `DataLoader(shuffle=True)`, whose sampler lists every index as a
Python int.

    python benchmarks/windows.py [--points N]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np
import psutil
from torch.utils.data import DataLoader

from forecaster.config import SplitConfig, WindowConfig
from forecaster.data.panel import Panel
from forecaster.data.scaling import PanelScaler
from forecaster.data.splits import Borders, compute_borders
from forecaster.data.windows import ShuffledWindows, WindowDataset, collate

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def hourly_series(points: int) -> Panel:
    """One hourly series: daily cycle, slow trend and noise, float32 [points, 1]."""
    t = np.arange(points, dtype=np.float64)
    rng = np.random.default_rng(0)
    values = 10 + np.sin(2 * np.pi * t / 24) + t / points + rng.normal(0, 0.1, points)
    start = np.datetime64("2000-01-01T00:00", "ns")
    return Panel(
        series_ids=["series"],
        offsets=np.array([0, points], dtype=np.int64),
        timestamps=start + np.arange(points).astype("timedelta64[h]"),
        values=values.astype(np.float32)[:, None],
        targets=["value"],
        covariates=[],
        future_covariates=[],
        freq="h",
    )


def reset_peak_rss() -> bool:
    """Start a new peak (Linux: VmHWM restarts from the current RSS); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb(sampled_peak: float) -> float:
    """VmHWM since the last reset on Linux, else the largest RSS sampled between batches."""
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return sampled_peak


def measure(scaled: Panel, borders: Borders, window: WindowConfig, torch_shuffle: bool) -> dict[str, float]:
    """Create the training dataset and a shuffled loader, load every window; memory and time of that."""
    process = psutil.Process()
    gc.collect()
    exact_peak = reset_peak_rss()
    rss_before = process.memory_info().rss / 2**20
    started = time.perf_counter()
    dataset = WindowDataset.from_borders(scaled, borders, "train", window)
    shuffling = {"shuffle": True} if torch_shuffle else {"sampler": ShuffledWindows(dataset)}
    loader = DataLoader(dataset, batch_size=256, collate_fn=collate, **shuffling)
    windows, sampled_peak = 0, rss_before
    for batch in loader:
        windows += len(batch["y"])
        sampled_peak = max(sampled_peak, process.memory_info().rss / 2**20)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb(sampled_peak) if exact_peak else sampled_peak
    assert windows == len(dataset)
    return {"windows": windows, "seconds": seconds, "rss_before_mb": rss_before, "peak_rss_mb": peak,
            "peak_method": "VmHWM" if exact_peak else "sampled between batches"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2_000_000)
    args = parser.parse_args()
    window = WindowConfig(lookback=96, horizon=24, stride=1)

    panel = hourly_series(args.points)
    borders = compute_borders(panel, SplitConfig(), window.lookback, window.horizon)
    scaled = PanelScaler().fit(panel, borders.train_end).transform(panel)
    lean = measure(scaled, borders, window, torch_shuffle=False)  # what ForecastDataModule.train_dataloader does
    plain = measure(scaled, borders, window, torch_shuffle=True)  # DataLoader(shuffle=True): torch's RandomSampler

    raw_mb = panel.values.nbytes / 2**20
    dataset_mb = lean["peak_rss_mb"] - lean["rss_before_mb"]
    print(json.dumps({
        "points": args.points,
        "windows": lean["windows"],
        "seconds": round(lean["seconds"], 3),
        "windows_per_s": round(lean["windows"] / lean["seconds"]),
        "rss_before_mb": round(lean["rss_before_mb"], 1),
        "peak_rss_mb": round(lean["peak_rss_mb"], 1),
        "dataset_mb": round(dataset_mb, 1),
        "raw_series_mb": round(raw_mb, 1),
        "within_3x_raw": dataset_mb <= 3 * raw_mb,
        "dataset_mb_with_torch_random_sampler": round(plain["peak_rss_mb"] - plain["rss_before_mb"], 1),
        "windows_per_s_with_torch_random_sampler": round(plain["windows"] / plain["seconds"]),
        "peak_method": lean["peak_method"],
    }))


if __name__ == "__main__":
    main()
