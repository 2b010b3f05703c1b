"""Calendar features, future timestamps and seasonal periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.data.features import calendar_columns, calendar_features, future_timestamps
from forecaster.data.frequency import season_length


def test_calendar_features_match_pandas_fields():
    stamps = pd.date_range("1969-12-30 05:30", periods=500, freq="17h")  # crosses the epoch and year ends
    features = calendar_features(stamps.to_numpy(), ["hour", "weekday", "month", "dayofyear"])
    assert features.shape == (500, 8) and features.dtype == np.float32
    hour = stamps.hour + stamps.minute / 60
    fields = np.stack([hour, stamps.day_of_week, stamps.month - 1, stamps.day_of_year - 1], axis=1)
    angle = 2 * np.pi * fields / np.array([24, 7, 12, 366])
    np.testing.assert_allclose(features[:, 0::2], np.sin(angle), atol=1e-6)
    np.testing.assert_allclose(features[:, 1::2], np.cos(angle), atol=1e-6)
    assert calendar_columns(["hour", "month"]) == ["hour_sin", "hour_cos", "month_sin", "month_cos"]


def test_calendar_features_keep_the_batch_shape():
    stamps = np.arange(np.datetime64("2024-01-01T00"), np.datetime64("2024-01-02T00")).astype("datetime64[ns]")
    assert calendar_features(stamps.reshape(4, 6), ["hour"]).shape == (4, 6, 2)
    assert calendar_features(stamps, []).shape == (24, 0)


def test_future_timestamps_continue_the_grid():
    hourly = future_timestamps(np.datetime64("2024-02-28T23:00"), "h", 2)
    np.testing.assert_array_equal(hourly, np.array(["2024-02-29T00:00", "2024-02-29T01:00"], dtype="datetime64[ns]"))
    monthly = future_timestamps(pd.Timestamp("2024-01-01"), "MS", 3)
    assert monthly.dtype == np.dtype("datetime64[ns]")
    assert [str(stamp)[:10] for stamp in monthly] == ["2024-02-01", "2024-03-01", "2024-04-01"]


@pytest.mark.parametrize(
    ("freq", "season"),
    [("h", 24), ("15min", 96), ("2h", 12), ("D", 7), ("B", 5), ("W-MON", 52), ("MS", 12), ("QS-JAN", 4), ("YE-DEC", 1)],
)
def test_season_length_by_frequency(freq, season):
    assert season_length(freq) == season


@pytest.mark.parametrize("freq", ["h", "15min", "D", "W-MON", "MS"])
def test_future_grid_matches_the_calendar_series_by_series(freq):
    from forecaster.data.features import future_grid, future_timestamps

    last = pd.date_range("2024-01-29", periods=3, freq="MS" if freq == "MS" else freq).as_unit("ns").to_numpy()
    grid = future_grid(last, freq, 5)
    expected = np.stack([future_timestamps(stamp, freq, 5) for stamp in last])
    np.testing.assert_array_equal(grid, expected)
