"""Features derived from time alone: calendar sin/cos pairs and future timestamps (the seasonal period and
other facts of a frequency: `forecaster.data.frequency`).

Calendar features are computed with numpy date arithmetic from datetime64 values of any shape, so a batch of
windows gets them on the fly ([B, L + H] timestamps -> [B, L + H, 2K]) and nothing is stored per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

CALENDAR_PERIODS = {"hour": 24.0, "weekday": 7.0, "month": 12.0, "dayofyear": 366.0}


def calendar_columns(names: Sequence[str]) -> list[str]:
    """Column names of `calendar_features`: `hour_sin, hour_cos, weekday_sin, ...` (2K names)."""
    return [f"{name}_{part}" for name in names for part in ("sin", "cos")]


def calendar_features(timestamps: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """[..., 2K] float32 sin/cos pairs in [-1, 1] for timestamps [...] (datetime64 or int64 ns).

    hour is the fractional hour of day (so 15-minute data gets a smooth daily cycle), weekday 0 = Monday,
    month 0 = January, dayofyear 0 = 1 January.
    """
    stamps = np.asarray(timestamps).astype("datetime64[ns]")
    days = stamps.astype("datetime64[D]")
    phases = []
    for name in names:
        if name == "hour":
            position = (stamps - days).astype(np.int64) / 3.6e12
        elif name == "weekday":
            position = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        elif name == "month":
            position = stamps.astype("datetime64[M]").astype(np.int64) % 12
        elif name == "dayofyear":
            position = (days - stamps.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
        else:
            raise ValueError(f"unknown calendar feature {name!r}; expected one of {list(CALENDAR_PERIODS)}")
        phases.append(2 * np.pi * position / CALENDAR_PERIODS[name])
    if not phases:
        return np.empty((*stamps.shape, 0), dtype=np.float32)
    angle = np.stack(phases, axis=-1)  # [..., K]
    pairs = np.stack([np.sin(angle), np.cos(angle)], axis=-1)  # [..., K, 2]
    return pairs.reshape(*stamps.shape, 2 * len(phases)).astype(np.float32)


def future_timestamps(last_timestamp: np.datetime64 | pd.Timestamp, freq: str, horizon: int) -> np.ndarray:
    """[horizon] datetime64[ns]: the `horizon` grid steps after `last_timestamp`."""
    stamps = pd.date_range(pd.Timestamp(last_timestamp), periods=horizon + 1, freq=freq)
    return stamps[1:].as_unit("ns").to_numpy()


def future_grid(last_timestamps: np.ndarray, freq: str, horizon: int) -> np.ndarray:
    """[S, horizon] datetime64[ns]: the `horizon` grid steps after each of the S `last_timestamps`.

    Fixed-length frequencies (hours, minutes, days) are one broadcast add; calendar ones (weeks, months) go
    series by series through `future_timestamps`.
    """
    try:
        step = pd.Timedelta(to_offset(freq)).to_timedelta64()
    except ValueError:
        return np.stack([future_timestamps(last, freq, horizon) for last in last_timestamps])
    steps = np.arange(1, horizon + 1, dtype=np.int64) * step  # [H]
    return np.asarray(last_timestamps, dtype="datetime64[ns]")[:, None] + steps  # [S, H]
