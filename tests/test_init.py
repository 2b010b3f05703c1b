"""`forecaster init`: from a bare data file to a config that loads, validates and trains.

Each case checks what was detected, that the written file loads with `load_config`, and that the validate job
finds no problem in it: the config is only useful if the next command (`forecaster validate`) passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from forecaster.config import load_config
from forecaster.data.frequency import suggest_window
from forecaster.errors import ConfigError, DataError
from forecaster_pipelines import init, validate


def _init_and_load(data, output):
    """Run init, then load and validate the written config as a user's next command would."""
    result = init.run(data, output)
    config = load_config(result.config_path)
    assert result.ok, result.problems
    assert validate.run(config).ok
    return result, config


def _hourly_meters(n_series: int, length: int) -> pd.DataFrame:
    """A long table: a low-cardinality `region` column (several series per region, so not the id) before the
    real id `meter_id`; rows ordered by time, series interleaved."""
    rng = np.random.default_rng(0)
    stamps = pd.date_range("2024-03-01", periods=length, freq="h")
    frames = []
    for i in range(n_series):
        level = 50 + i
        load = level + 10 * np.sin(np.arange(length) * 2 * np.pi / 24) + rng.normal(0, 1, length)
        frames.append(pd.DataFrame({
            "region": f"r{i % 3}", "timestamp": stamps, "meter_id": f"meter_{i:03d}",
            "kwh": load.round(3), "temp": rng.normal(10, 3, length).round(2),
        }))
    return pd.concat(frames).sort_values(["timestamp", "meter_id"], kind="stable")


def _weekly(length: int, absent=(), empty=()) -> pd.DataFrame:
    stamps = pd.date_range("2019-01-06", periods=length, freq="W-SUN")
    frame = pd.DataFrame({"week": stamps.strftime("%Y-%m-%d"), "sales": 100 + np.arange(length) % 52 * 2.0,
                          "price": np.linspace(1.0, 2.0, length)})
    frame.loc[list(empty), "sales"] = np.nan
    return frame.drop(index=list(absent))


def test_demo_file_is_long_hourly_with_gaps_filled(demo_csv, tmp_path):
    result, config = _init_and_load(demo_csv, tmp_path / "demo.yaml")
    assert (result.layout, result.series_id, result.n_series) == ("long", "series_id", 4)
    assert (result.timestamp, result.freq, result.delimiter) == ("timestamp", "h", ",")
    assert (result.targets, result.covariates) == (["load"], ["temperature"])
    # data/make_demo.py removes 6 timestamps and empties 5 cells: both must be counted, and filled
    assert (result.gaps, result.missing_cells, config.data.missing) == (6, 5, "interpolate")
    assert (config.window.lookback, config.window.horizon) == (168, 24)
    assert config.data.path == str(demo_csv)
    assert "gru" in config.compare.models and {"naive", "seasonal_naive", "linear"} <= set(config.compare.models)
    assert {"ets", "theta"} <= set(config.compare.models)  # the affordable statistical types; not mstl, arima
    assert config.compare.metric == "mase"  # scale-free per series: no series dominates the ranking
    assert config.model.loss == "mae"  # the loss that matches an absolute-error ranking
    assert config.model.linear_skip  # chosen on the suite's validation scores
    assert config.model.skip_start == "auto"  # the linear start where it beats seasonal naive


def test_etth1_is_wide_with_ot_as_target(etth1_csv, tmp_path):
    result, config = _init_and_load(etth1_csv, tmp_path / "ett.yaml")
    assert (result.layout, result.series_id, result.n_series) == ("wide", None, 1)
    assert (result.timestamp, result.freq) == ("date", "h")
    assert result.targets == ["OT"]
    assert result.covariates == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
    assert (result.gaps, result.missing_cells, config.data.missing) == (0, 0, "error")
    assert config.data.series_id is None
    # 17420 rows: the default fractions leave thousands of validation rows, no need for fixed sizes
    assert config.split.val_size is None and config.split.test_size is None


def test_weekly_series_with_gaps_gets_interpolate_and_holdout_sizes(tmp_path):
    path = tmp_path / "visits.csv"
    _weekly(150, absent=[40, 41, 90], empty=[10, 120]).to_csv(path, index=False)
    result, config = _init_and_load(path, tmp_path / "visits.yaml")
    assert (result.timestamp, result.freq, result.layout) == ("week", "W-SUN", "wide")
    # the usual name wins over the position; a price is set in advance, so it is a known-future covariate
    assert (result.targets, result.covariates, result.future_covariates) == (["sales"], [], ["price"])
    assert (result.gaps, result.missing_cells) == (3, 2)
    assert config.data.missing == "interpolate"
    assert (config.window.lookback, config.window.horizon) == (52, 13)
    # 150 weeks: 10 % would be under two horizons, so two horizons each are held out from every series' end
    assert (config.split.val_size, config.split.test_size) == (26, 26)
    assert config.model.season_length is None  # the lookback holds one yearly season


def test_the_same_gappy_file_under_missing_error_is_refused(tmp_path):
    """The policy is what makes the gappy file usable: without it, validation must complain."""
    path = tmp_path / "visits.csv"
    _weekly(150, absent=[40]).to_csv(path, index=False)
    result = init.run(path, tmp_path / "visits.yaml")
    refused = validate.run(load_config(result.config_path, {"data.missing": "error"}))
    assert result.ok and not refused.ok and "gaps" in refused.problems[0]


def test_short_series_shrink_the_lookback_and_say_so(tmp_path):
    path = tmp_path / "short.csv"
    _weekly(80).to_csv(path, index=False)
    result, config = _init_and_load(path, tmp_path / "short.yaml")
    assert config.window.horizon == 13 and config.window.lookback < 52
    # the lookback no longer holds a yearly season: seasonal naive would refuse to run without this
    assert config.model.season_length == 1
    assert any("80 rows" in note for note in result.notes)
    assert "80 rows" in (tmp_path / "short.yaml").read_text()


def test_a_series_too_short_for_any_window_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny.csv"
    _weekly(9).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"'series' has only 9 rows.*Remove the short series"):
        init.run(path, tmp_path / "tiny.yaml")
    assert not (tmp_path / "tiny.yaml").exists()


def test_many_series_long_file_finds_the_id_among_text_columns(tmp_path):
    path = tmp_path / "meters.csv"
    _hourly_meters(300, 400).to_csv(path, index=False)
    result, config = _init_and_load(path, tmp_path / "meters.yaml")
    # `region` comes first and is text with few values, but its groups repeat timestamps: not the id
    assert (result.layout, result.series_id, result.n_series) == ("long", "meter_id", 300)
    assert result.ignored == {"region": "not numeric"}
    assert (result.freq, result.targets, result.covariates) == ("h", ["kwh"], ["temp"])
    assert (config.split.val_size, config.split.test_size) == (48, 48)
    assert validate.run(config).report["length"].eq(400).all()


def test_semicolon_file_without_usual_names(tmp_path):
    path = tmp_path / "umsatz.csv"
    stamps = pd.date_range("2023-01-01", periods=400, freq="D")
    pd.DataFrame({"Datum": stamps.strftime("%Y-%m-%d"), "Preis": np.linspace(1, 2, 400),
                  "Menge": np.arange(400) % 7 * 1.5}).to_csv(path, sep=";", index=False)
    result, config = _init_and_load(path, tmp_path / "umsatz.yaml")
    assert (result.delimiter, config.data.delimiter) == (";", ";")
    assert (result.timestamp, result.freq) == ("Datum", "D")  # no date-like name: found by parsing
    # no usual target name in a wide file: the last numeric column, and the comment says so
    assert (result.targets, result.covariates) == (["Menge"], ["Preis"])
    assert "took the last numeric column" in (tmp_path / "umsatz.yaml").read_text()
    assert (config.window.lookback, config.window.horizon) == (56, 14)


def test_tab_separated_parquet_and_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _weekly(150).to_csv("visits.tsv", sep="\t", index=False)
    frame = _weekly(150).assign(week=lambda f: pd.to_datetime(f["week"])).set_index("week")
    frame.to_parquet("visits.parquet")
    tab = init.run("visits.tsv")
    assert (tab.config_path, tab.delimiter, load_config("visits.yaml").data.delimiter) == ("visits.yaml", "\t", "\t")
    parquet = init.run("visits.parquet", "from-parquet.yaml")
    assert (parquet.format, parquet.delimiter, parquet.timestamp, parquet.freq) == ("parquet", None, "week", "W-SUN")
    assert "delimiter" not in yaml.safe_load(open("from-parquet.yaml"))["data"]
    assert validate.run(load_config("from-parquet.yaml")).ok


def test_no_timestamp_column_is_a_clear_error(tmp_path):
    path = tmp_path / "no-time.csv"
    pd.DataFrame({"id": range(50), "date": ["not a date"] * 50, "value": np.arange(50.0)}).to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        init.run(path, tmp_path / "no-time.yaml")
    message = str(caught.value)
    assert "no usable timestamp column" in message
    assert "'date': 'not a date' is not a date" in message  # the name-like column, and why it failed
    assert "Add a timestamp column" in message
    assert not (tmp_path / "no-time.yaml").exists()


def test_existing_config_is_kept_unless_forced(demo_csv, tmp_path):
    output = tmp_path / "mine.yaml"
    output.write_text("# hand-written\n")
    with pytest.raises(ConfigError, match="already exists.*--force"):
        init.run(demo_csv, output)
    assert output.read_text() == "# hand-written\n"
    init.run(demo_csv, output, force=True)
    assert load_config(output).data.series_id == "series_id"


def test_format_result_names_the_findings_and_next_commands(demo_csv, tmp_path):
    result = init.run(demo_csv, tmp_path / "demo.yaml")
    text = init.format_result(result)
    assert "4 series (column 'series_id')" in text and "hourly ('h')" in text
    assert "6 absent timestamps, 5 empty cells -> data.missing: interpolate" in text
    for command in ("validate", "train", "compare"):
        assert f"forecaster {command} {tmp_path / 'demo.yaml'}" in text
    assert "validation OK" in text


@pytest.mark.parametrize(("freq", "lookback", "horizon"), [
    ("h", 168, 24), ("D", 56, 14), ("W-MON", 52, 13), ("MS", 36, 12), ("QS-JAN", 16, 8), ("YE-DEC", 12, 6),
    ("15min", 384, 96), ("3h", 56, 8),
])
def test_window_suggestions_follow_the_frequency(freq, lookback, horizon):
    assert suggest_window(freq)[:2] == (lookback, horizon)


@pytest.mark.slow
def test_a_written_config_trains(tmp_path):
    path = tmp_path / "visits.csv"
    _weekly(150, absent=[40]).to_csv(path, index=False)
    result = init.run(path, tmp_path / "visits.yaml")
    from forecaster_pipelines import train

    config = load_config(result.config_path, {
        "train.max_epochs": 1, "train.limit_train_batches": 2, "train.progress": False,
        "tracking.state_dir": str(tmp_path / "state"),
    })
    trained = train.run(config, kind="naive")
    assert trained.model_uri and np.isfinite(trained.metrics["mae"])


@pytest.mark.parametrize("hostile", ["sales\npredict:\n  output: /tmp/owned", "price # per unit", "a: b", "it's \"q\"",
                                     "x\u2028schedule: {retrain: true}"])
def test_a_header_that_would_break_yaml_round_trips_and_injects_nothing(tmp_path, hostile):
    path = tmp_path / "hostile.csv"
    stamps = pd.date_range("2023-01-01", periods=300, freq="D")
    pd.DataFrame({"date": stamps.strftime("%Y-%m-%d"), hostile: np.linspace(1, 2, 300),
                  "units": np.arange(300) % 7 * 1.5}).to_csv(path, index=False)
    result = init.run(path, tmp_path / "hostile.yaml")
    written = yaml.safe_load((tmp_path / "hostile.yaml").read_text())
    assert set(written) == {"data", "window", "split", "model", "train", "tracking", "registry", "compare"}
    data = load_config(result.config_path).data
    assert written["data"]["target"] == "units" and [*data.covariates, *data.future_covariates] == [hostile]


def test_columns_known_in_advance_are_written_as_future_covariates_and_said_so(tmp_path):
    path = tmp_path / "shop.csv"
    stamps = pd.date_range("2023-01-01", periods=300, freq="D")
    rng = np.random.default_rng(0)
    pd.DataFrame({"date": stamps.strftime("%Y-%m-%d"), "footfall": rng.normal(100, 5, 300).round(1),
                  "holiday": (stamps.dayofweek == 6).astype(int), "unit_price": np.linspace(2, 3, 300).round(2),
                  "load_forecast": rng.normal(5, 1, 300).round(2), "sales": rng.poisson(20, 300)}
                 ).to_csv(path, index=False)
    result, config = _init_and_load(path, tmp_path / "shop.yaml")
    assert config.data.targets == ["sales"]
    assert config.data.covariates == ["footfall"]
    assert config.data.future_covariates == ["holiday", "unit_price", "load_forecast"]
    text = (tmp_path / "shop.yaml").read_text()
    assert "known in advance" in text and "--future FILE" in text
    assert "known ahead (data.future_covariates): holiday, unit_price, load_forecast" in init.format_result(result)


PERIOD_FILES = {  # column name, values, the inferred frequency, the first forecast timestamp
    "quarterly": ("Quarter", [f"{y} Q{q}" for y in range(1990, 2010) for q in range(1, 5)], "QS-JAN", "2010-01-01"),
    "quarterly-compact": ("Quarter", [f"{y}Q{q}" for y in range(1990, 2010) for q in range(1, 5)], "QS-JAN",
                          "2010-01-01"),
    "monthly": ("month", [f"{y}-{m:02d}" for y in range(2010, 2016) for m in range(1, 13)], "MS", "2016-01-01"),
    "monthly-m": ("period", [f"{y}M{m:02d}" for y in range(2010, 2016) for m in range(1, 13)], "MS", "2016-01-01"),
    "weekly-iso": ("week", [f"2018-W{w:02d}" for w in range(1, 53)] + [f"2019-W{w:02d}" for w in range(1, 53)]
                   + [f"2020-W{w:02d}" for w in range(1, 54)], "W-MON", "2021-01-04"),
    "yearly": ("Year", list(range(1950, 2021)), "YS-JAN", "2021-01-01"),
}


@pytest.mark.parametrize("kind", PERIOD_FILES)
def test_period_timestamps_are_detected_and_forecast_from_the_next_period(tmp_path, kind):
    from forecaster.bundle import ModelBundle
    from forecaster_pipelines import train

    column, stamps, freq, first = PERIOD_FILES[kind]
    path = tmp_path / f"{kind}.csv"
    pd.DataFrame({column: stamps, "value": 10 + np.arange(len(stamps), dtype=float) % 4}).to_csv(path, index=False)
    result, config = _init_and_load(path, tmp_path / f"{kind}.yaml")
    assert (result.timestamp, result.freq) == (column, freq)
    trained = train.run(config.with_overrides({"tracking.state_dir": str(tmp_path / "state")}), kind="seasonal_naive")
    forecast = ModelBundle.load(trained.model_dir).predict(pd.read_csv(path)).frame
    assert forecast["timestamp"].iloc[0] == pd.Timestamp(first)
    assert forecast["timestamp"].is_monotonic_increasing and len(forecast) == config.window.horizon
