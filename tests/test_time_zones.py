"""One rule for time: timestamps with a zone are instants, whether or not the file crosses a daylight-saving change,
at one offset or several, or naive with `data.timezone`; calendar features read the zone's local time; outputs carry
its offset; monitoring joins forecasts to actuals on instants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from forecaster.config import DataConfig, load_config
from forecaster.data.panel import build_panel
from forecaster.data.timestamps import Clock, read_timestamps
from forecaster.data.validate import scan_frame
from forecaster.data.windows import WindowDataset
from forecaster.errors import DataError
from forecaster_pipelines import compare, init, monitor, predict

BERLIN = "Europe/Berlin"
# 2024-10-27: Berlin's clocks go back from 03:00+02:00 to 02:00+01:00, so 02:00 happens twice.
HOURS = pd.date_range("2024-10-26 20:00", periods=12, freq="h", tz=BERLIN)


def written(stamps: pd.DatetimeIndex) -> pd.Series:
    """Times as a CSV holds them: text with the offset."""
    return pd.Series([stamp.isoformat() for stamp in stamps])


def wall_clock(stamps: pd.DatetimeIndex) -> pd.Series:
    """Times as a file without offsets holds them: the local wall clock, so the repeated hour reads alike."""
    return pd.Series(stamps.strftime("%Y-%m-%d %H:%M:%S"))


def test_the_same_instants_read_alike_across_dst_at_one_offset_and_as_wall_clock_with_a_zone():
    crossing, clock = read_timestamps(written(HOURS), "ts", "load.csv")
    assert clock == Clock(BERLIN, instants=True)
    assert (np.diff(crossing) == 3_600 * 10**9).all()  # one hour apart, the repeated 02:00 included
    one_offset, fixed = read_timestamps(written(HOURS.tz_convert("+01:00")), "ts", "load.csv")
    assert fixed == Clock("+01:00", instants=True) and np.array_equal(one_offset, crossing)
    naive, zoned = read_timestamps(wall_clock(HOURS), "ts", "load.csv", zone=BERLIN)
    assert zoned == Clock(BERLIN, instants=True) and np.array_equal(naive, crossing)
    parquet, aware = read_timestamps(pd.Series(HOURS), "ts", "load.parquet")  # a zone-aware column
    assert aware == Clock(BERLIN, instants=True) and np.array_equal(parquet, crossing)
    assert np.array_equal(clock.aware(crossing), HOURS)  # written back with the input's offsets


def test_calendar_features_read_the_zones_local_time():
    stamps, clock = read_timestamps(written(HOURS), "ts", "load.csv")
    local = pd.DatetimeIndex(clock.local(stamps))
    assert list(local.hour) == [20, 21, 22, 23, 0, 1, 2, 2, 3, 4, 5, 6]
    frame = pd.DataFrame({"timestamp": written(HOURS), "load": np.arange(12.0)})
    panel = build_panel(frame, DataConfig(calendar=["hour"], target="load"), "load.csv")
    dataset = WindowDataset(panel, np.array([0]), np.array([12]), 4, 2, calendar=["hour"])
    assert np.array_equal(dataset.timestamps, local.to_numpy("datetime64[ns]"))


def test_a_daily_file_across_dst_stays_on_its_calendar():
    days = pd.date_range("2024-03-25", periods=14, freq="D", tz=BERLIN)  # clocks go forward on 2024-03-31
    frame = pd.DataFrame({"date": written(days), "sales": np.arange(14.0)})
    scan = scan_frame(frame, DataConfig(timestamp="date", target="sales"), "sales.csv")
    assert scan.freq == "D" and scan.gaps().sum() == 0 and scan.clock == Clock(BERLIN, instants=False)
    assert list(pd.DatetimeIndex(scan.timestamps).hour) == [0] * 14  # local midnights, not 23:00 / 22:00 UTC
    assert list(scan.clock.aware(scan.timestamps)) == list(days)


def test_a_repeated_wall_clock_hour_proposes_a_zone_and_one_the_clocks_skip_is_named():
    frame = pd.DataFrame({"timestamp": wall_clock(HOURS), "load": np.arange(12.0)})
    with pytest.raises(DataError, match=r"line 9.*data\.timezone") as caught:
        scan_frame(frame, DataConfig(target="load"), "load.csv")
    assert "Remove one of the rows" not in str(caught.value)
    scan = scan_frame(frame, DataConfig(target="load", timezone=BERLIN), "load.csv")
    assert scan.freq == "h" and scan.gaps().sum() == 0 and len(scan.timestamps) == 12

    spring = pd.DataFrame({"timestamp": ["2024-03-31 01:00:00", "2024-03-31 02:00:00", "2024-03-31 03:00:00"],
                           "load": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match=r"line 3: '2024-03-31 02:00:00' does not exist in Europe/Berlin"):
        scan_frame(spring, DataConfig(target="load", timezone=BERLIN), "load.csv")


def test_an_unknown_zone_is_refused_with_what_to_write():
    with pytest.raises(ValueError, match=r"unknown time zone 'Mars/Olympus'.*Europe/Berlin"):
        DataConfig(timezone="Mars/Olympus")
    assert DataConfig(timezone="+05:30").timezone == "+05:30"


def test_offsets_of_several_zones_are_kept_as_utc_instants():
    stamps = written(pd.date_range("2024-01-01", periods=3, freq="h", tz="+01:00")).tolist() + \
        written(pd.date_range("2024-01-01", periods=3, freq="h", tz="-05:00")).tolist()
    values, clock = read_timestamps(pd.Series(stamps), "ts", "panel.csv")
    assert clock == Clock("UTC", instants=True)
    assert pd.Timestamp(values[3]) == pd.Timestamp("2024-01-01 05:00")  # 00:00-05:00 is 05:00 UTC


def hourly_load(stamps: pd.DatetimeIndex, series=("north", "south")) -> pd.DataFrame:
    """Hourly load per zone: a daily cycle in local time plus slowly fading shocks (which a model on lags can
    follow and seasonal naive cannot), timestamps written with their offsets."""
    rng = np.random.default_rng(0)
    frames = []
    for s, series_id in enumerate(series):
        cycle = 10 * np.sin(2 * np.pi * stamps.hour / 24)  # local hours: the cycle people live by
        shocks = np.zeros(len(stamps))
        for t, noise in enumerate(rng.normal(0, 2, len(stamps))):
            shocks[t] = 0.95 * shocks[t - 1] + noise if t else noise
        frames.append(pd.DataFrame({"timestamp": written(stamps), "zone": series_id,
                                    "load": (100 + 20 * s + cycle + shocks).round(3)}))
    return pd.concat(frames, ignore_index=True)


def test_monitor_joins_on_instants_whatever_the_offsets_of_the_actuals(tmp_path):
    from forecaster import monitoring

    data = DataConfig(series_id="zone", target="load")
    origin = HOURS[5]  # 01:00+02:00; the forecast steps run through both 02:00s
    forecasts = pd.DataFrame({
        "series_id": "north", "target": "load", "timestamp": written(HOURS[6:10]), "step": [1, 2, 3, 4],
        "forecast": [1.0, 2.0, 3.0, 4.0], "forecast_origin": origin.isoformat()})
    points = monitoring.point_forecasts(forecasts, "demo-v1")
    actual_files = {
        "across DST": hourly_load(HOURS, ["north"]),
        "one offset": hourly_load(HOURS, ["north"]).assign(timestamp=written(HOURS.tz_convert("+01:00"))),
        "UTC": hourly_load(HOURS, ["north"]).assign(timestamp=written(HOURS.tz_convert("UTC"))),
    }
    joined = {name: monitoring.score_points(points, scan_frame(frame, data, "actuals.csv"), 24).points
              for name, frame in actual_files.items()}
    naive = hourly_load(HOURS, ["north"]).assign(timestamp=wall_clock(HOURS))
    joined["wall clock"] = monitoring.score_points(
        points, scan_frame(naive, data.model_copy(update={"timezone": BERLIN}), "actuals.csv"), 24).points
    expected = actual_files["across DST"]["load"].to_numpy(np.float32)[6:10]  # the values at 02:00+02:00 ...
    for name, frame in joined.items():
        assert np.allclose(frame.sort_values("step")["actual"], expected), name


@pytest.mark.slow  # init, compare, predict and monitor with a real store
def test_a_file_across_dst_round_trips_through_init_compare_predict_and_monitor(tmp_path):
    stamps = pd.date_range("2024-09-20", "2024-11-10", freq="h", tz=BERLIN)  # crosses 2024-10-27
    full = hourly_load(stamps)
    full.to_csv(tmp_path / "load.csv", index=False)
    result = init.run(tmp_path / "load.csv", tmp_path / "load.yaml")
    assert yaml.safe_load((tmp_path / "load.yaml").read_text())["data"]["timezone"] == BERLIN
    config = load_config(result.config_path, {
        "tracking.state_dir": str(tmp_path / "state"), "compare.models": ["naive", "seasonal_naive", "linear"],
        "compare.ensemble": False, "predict.output": str(tmp_path / "out")})
    assert compare.run(config).registered_version is not None

    # forecast from 2024-10-26 12:00 local: the horizon holds the repeated 02:00, once at each offset
    cut = int(np.flatnonzero(stamps == pd.Timestamp("2024-10-26 12:00", tz=BERLIN))[0]) + 1
    full.groupby("zone").head(cut).to_csv(tmp_path / "history.csv", index=False)
    done = predict.run(config.with_overrides({"predict.model": f"models:/{config.registry.name}@champion",
                                              "predict.data": str(tmp_path / "history.csv")}))
    out = pd.read_csv(done.paths.forecast, dtype=str)
    north = out[out["series_id"] == "north"]
    expected = [stamp.isoformat(sep=" ") for stamp in stamps[cut:cut + config.window.horizon]]
    assert north["timestamp"].tolist() == expected
    assert {"2024-10-27 02:00:00+02:00", "2024-10-27 02:00:00+01:00"} <= set(north["timestamp"])
    assert set(out["forecast_origin"]) == {"2024-10-26 12:00:00+02:00"}

    checked = monitor.run(config)  # the full file holds the actual of every step, the repeated hour's included
    assert checked.pending == 0 and checked.absent_series == []
    assert checked.by_model["points"].sum() == len(out)


def test_a_wall_clock_file_missing_the_hour_clocks_skip_proposes_a_zone():
    spring = pd.date_range("2024-03-30 20:00", periods=12, freq="h", tz=BERLIN)  # 02:00 on 03-31 does not exist
    frame = pd.DataFrame({"timestamp": wall_clock(spring), "load": np.arange(12.0)})
    with pytest.raises(DataError, match=r"absent 2024-03-31 02:00:00 looks like the hour the clocks skip.*timezone"):
        build_panel(frame, DataConfig(target="load"), "load.csv")
    panel = build_panel(frame, DataConfig(target="load", timezone=BERLIN), "load.csv")
    assert len(panel.timestamps) == 12  # as instants the hours are contiguous: nothing to fill


def test_future_rows_are_read_in_the_historys_zone_whatever_offset_they_are_written_at():
    from forecaster.data.future import future_values

    data = DataConfig(series_id="zone", target="load", future_covariates=["temp"])
    # a history before the change holds one offset: its zone comes from data.timezone
    stamps, clock = read_timestamps(written(HOURS[:6]), "timestamp", "load.csv", zone=BERLIN)
    ahead = HOURS[6:10]  # the four hours after 01:00+02:00, both 02:00s among them
    for future_stamps in (written(ahead), written(ahead.tz_convert("UTC")), wall_clock(ahead)):
        future = pd.DataFrame({"timestamp": future_stamps, "zone": "north", "temp": [1.0, 2.0, 3.0, 4.0]})
        values, missing = future_values(future, data, ["north"], stamps[-1:], "h", 4, "future.csv", clock)
        assert missing == {} and values[0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
