"""From a raw table to a Panel: layouts, frequency, the missing-value policies, and every bad-input message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.config import DataConfig, build_config
from forecaster.data.panel import build_panel, load_panel
from forecaster.data.splits import compute_borders
from forecaster.errors import DataError
from forecaster_pipelines.validate import format_report, run

LONG = DataConfig(timestamp="ts", series_id="id", target="y", covariates=["x"])


def long_frame(ids=("a", "b"), length=6, start="2024-01-01", freq="h"):
    stamps = pd.date_range(start, periods=length, freq=freq).strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame(
        {
            "ts": np.tile(stamps, len(ids)),
            "id": np.repeat(ids, length),
            "y": np.arange(length * len(ids), dtype=float),
            "x": np.arange(length * len(ids), dtype=float) * 10,
        }
    )


def error_of(frame, cfg, source="data.csv") -> str:
    with pytest.raises(DataError) as error:
        build_panel(frame, cfg, source)
    return str(error.value)


def test_long_layout_keeps_first_appearance_order_and_sorts_time():
    frame = long_frame(ids=("b", "a")).sample(frac=1.0, random_state=0)  # shuffled rows
    first = frame["id"].iloc[0]
    panel = build_panel(frame, LONG, "data.csv")
    assert panel.series_ids[0] == first and sorted(panel.series_ids) == ["a", "b"]
    assert panel.offsets.tolist() == [0, 6, 12]
    assert panel.freq == "h" and panel.values.dtype == np.float32
    assert panel.timestamps.dtype == np.dtype("datetime64[ns]")
    assert (np.diff(panel.series_timestamps(0)) == np.timedelta64(1, "h")).all()
    assert panel.columns == ["y", "x"]


def test_wide_layout_is_one_series_with_columns_in_role_order():
    frame = pd.DataFrame({"date": ["2024-01-01", "2024-01-02", "2024-01-03"], "a": [1, 2, 3], "b": [4, 5, 6],
                          "c": [7, 8, 9], "unused": [0, 0, 0]})
    panel = build_panel(frame, DataConfig(timestamp="date", target=["b", "a"], future_covariates=["c"]), "w.csv")
    assert panel.series_ids == ["series"] and panel.freq == "D"
    assert panel.targets == ["b", "a"] and panel.future_covariates == ["c"]
    assert panel.values[0].tolist() == [4, 1, 7]


@pytest.mark.parametrize(
    ("freq", "expected"),
    [("h", "h"), ("15min", "15min"), ("D", "D"), ("W-SUN", "W-SUN"), ("MS", "MS"), ("ME", "ME"), ("QS-JAN", "QS-JAN")],
)
def test_frequency_is_inferred_from_the_most_common_step(freq, expected):
    frame = long_frame(length=10, start="2023-01-01", freq=freq).drop(index=[3])  # one gap does not confuse it
    assert build_panel(frame, LONG.model_copy(update={"missing": "interpolate"}), "f.csv").freq == expected


def test_timezones_and_date_only_midnights_are_read():
    frame = pd.DataFrame({"ts": ["2024-01-01", "2024-01-01 01:00:00"], "id": ["a", "a"], "y": [1, 2], "x": [0, 0]})
    assert build_panel(frame, LONG, "d.csv").freq == "h"
    frame["ts"] = ["2024-03-31 01:00:00+01:00", "2024-03-31 03:00:00+02:00"]  # across a DST change: UTC
    assert build_panel(frame, LONG, "d.csv").timestamps[0] == np.datetime64("2024-03-31T00:00")


def test_missing_column_suggests_the_closest_name():
    frame = pd.DataFrame({"date": ["2024-01-01"], "OT": [1.0], "HUFL": [2.0]})
    message = error_of(frame, DataConfig(timestamp="date", target="Ot", covariates=["HUFLL"]), "ETTh1.csv")
    assert "ETTh1.csv" in message
    assert "'Ot' (data.target) not found (did you mean 'OT'?)" in message
    assert "'HUFLL' (data.covariates) not found (did you mean 'HUFL'?)" in message
    assert "Columns in the file: date, OT, HUFL" in message


def test_a_column_with_two_roles_is_refused():
    message = error_of(long_frame(), LONG.model_copy(update={"covariates": ["y"]}))
    assert "both data.target and data.covariates" in message


@pytest.mark.parametrize(
    ("column", "row", "value", "expected"),
    [
        ("ts", 3, "2024-13-01 00:00:00", ["column 'ts' (data.timestamp)", "line 5", "'2024-13-01 00:00:00'"]),
        ("ts", 2, None, ["column 'ts' (data.timestamp)", "line 4", "empty"]),
        ("id", 1, None, ["column 'id' (data.series_id)", "line 3", "empty"]),
        ("y", 8, "abc", ["column 'y'", "series 'b'", "line 10", "'abc' is not a number"]),
        ("x", 7, "3,5", ["column 'x'", "series 'b'", "line 9", "decimal comma"]),
        ("y", 2, "inf", ["column 'y'", "series 'a'", "line 4", "infinite"]),
        ("y", 4, "1e39", ["column 'y'", "series 'a'", "line 6", "too large for float32"]),
    ],
)
def test_bad_cells_are_named_by_column_series_and_line(column, row, value, expected):
    frame = long_frame().astype({column: "object"})
    frame.loc[row, column] = value
    message = error_of(frame, LONG)
    assert message.startswith("data.csv: ")
    for part in expected:
        assert part in message


def test_rows_of_a_non_csv_source_are_0_based_positions():
    frame = long_frame().astype({"y": "object"})
    frame.loc[8, "y"] = "abc"
    assert "row 8:" in error_of(frame, LONG, source="<frame>")


def test_numeric_timestamps_are_refused():
    frame = long_frame().assign(ts=np.arange(12))
    assert "holds numbers, not dates" in error_of(frame, LONG)


def test_duplicate_timestamps_name_series_timestamp_and_both_lines():
    frame = long_frame()
    frame.loc[4, "ts"] = frame.loc[2, "ts"]
    message = error_of(frame, LONG)
    assert "series 'a' has the timestamp 2024-01-01 02:00:00 twice, at line 4 and line 6" in message


def test_duplicates_without_series_id_suggest_setting_it():
    message = error_of(long_frame(), DataConfig(timestamp="ts", target="y"))
    assert "set data.series_id" in message


def test_off_grid_timestamp_is_an_irregular_frequency():
    frame = long_frame()
    frame.loc[9, "ts"] = "2024-01-01 03:30:00"
    message = error_of(frame, LONG)
    assert "series 'b' is not on a regular 'h' grid" in message and "2024-01-01 03:30:00 (line 11)" in message


def test_series_with_different_frequencies_are_mixed():
    frame = pd.concat([long_frame(ids=("a",)), long_frame(ids=("b",), freq="D")], ignore_index=True)
    message = error_of(frame, LONG)
    assert "mixed frequencies" in message and "series 'a' is 'h'" in message and "series 'b' is 'D'" in message


def test_configured_frequency_is_checked():
    assert "not a pandas frequency alias" in error_of(long_frame(), LONG.model_copy(update={"freq": "hourly"}))
    sparse = error_of(long_frame(freq="D"), LONG.model_copy(update={"freq": "h"}))
    assert "series 'a'" in sparse and "more than half its timestamps would be missing" in sparse


def test_a_far_away_timestamp_does_not_build_a_huge_grid():
    frame = long_frame(length=50)
    frame.loc[10, "ts"] = "2200-01-01 00:00:00"
    assert "more than half its timestamps would be missing" in error_of(frame, LONG)
    frame.loc[10, "ts"] = "2990-01-01 00:00:00"
    assert "line 12: '2990-01-01 00:00:00' is outside the supported years" in error_of(frame, LONG)


def gappy_frame():
    """Series 'a': 02:00 absent and y empty at 03:00 (line 4); series 'b' complete."""
    frame = long_frame()
    frame.loc[3, "y"] = np.nan
    return frame.drop(index=[2]).reset_index(drop=True)


def test_missing_error_lists_series_first_gaps_and_the_fix():
    message = error_of(gappy_frame(), LONG)
    assert "1 of 2 series" in message and "series 'a'" in message and "series 'b'" not in message
    assert "absent from the 'h' grid (first: 2024-01-01 02:00:00)" in message
    assert "first: column 'y', line 4" in message
    assert "--set data.missing=interpolate" in message


@pytest.mark.parametrize(
    ("policy", "expected_y"),
    [("interpolate", [0, 1, 2, 3, 4, 5]), ("ffill", [0, 1, 1, 1, 1, 5]), ("zero", [0, 1, 0, 0, 0, 5])],
)
def test_fill_policies_fill_the_grid_and_report_counts(policy, expected_y):
    frame = gappy_frame()
    frame.loc[3, "y"] = np.nan  # 04:00 empty too
    panel = build_panel(frame, LONG.model_copy(update={"missing": policy}), "g.csv")
    assert panel.series_values(0)[:, 0].tolist() == expected_y
    report = panel.report_frame().set_index("series_id")
    assert report.loc["a", ["length", "gaps", "missing_values", "filled"]].tolist() == [5, 1, 2, 4]
    assert report.loc["b", "filled"] == 0


def test_drop_series_drops_and_reports_them():
    panel = build_panel(gappy_frame(), LONG.model_copy(update={"missing": "drop_series"}), "g.csv")
    assert panel.series_ids == ["b"] and panel.offsets.tolist() == [0, 6]
    assert panel.report_frame().set_index("series_id")["dropped"].to_dict() == {"a": True, "b": False}
    everything = gappy_frame().query("id == 'a'")
    assert "dropped every series" in error_of(everything, LONG.model_copy(update={"missing": "drop_series"}))


def test_a_column_without_any_value_cannot_be_interpolated():
    frame = long_frame().assign(x=lambda f: np.where(f["id"] == "b", np.nan, f["x"]))
    message = error_of(frame, LONG.model_copy(update={"missing": "interpolate"}))
    assert "series 'b' has no values at all in column 'x'" in message


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 38), min_size=1, max_size=10, unique=True), st.integers(-5, 5), st.floats(-3, 3))
def test_interpolation_restores_a_straight_line(absent, intercept, slope):
    stamps = pd.date_range("2024-01-01", periods=40, freq="h").astype(str)
    frame = pd.DataFrame({"ts": stamps, "y": intercept + slope * np.arange(40.0)})
    panel = build_panel(frame.drop(index=absent), DataConfig(timestamp="ts", target="y", missing="interpolate"))
    assert len(panel.values) == 40
    np.testing.assert_allclose(panel.values[:, 0], frame["y"].to_numpy(np.float32), rtol=1e-5, atol=1e-4)


def test_series_too_short_for_the_window_names_series_length_and_need():
    frame = pd.concat([long_frame(ids=("a",), length=30), long_frame(ids=("b",), length=10)], ignore_index=True)
    panel = build_panel(frame, LONG, "s.csv")
    with pytest.raises(DataError, match=r"series 'b' \(10 rows\) too short.*lookback \+ horizon = 12 \+ 6 = 18"):
        compute_borders(panel, build_config({}).split, lookback=12, horizon=6)


def demo_config(**data):
    base = {"path": "data/demo.csv", "series_id": "series_id", "target": "load", "covariates": ["temperature"]}
    return build_config({"data": {**base, **data}, "window": {"lookback": 48, "horizon": 24}})


def test_validate_pipeline_reports_demo_gaps_as_a_problem(demo_csv, monkeypatch):
    monkeypatch.chdir(demo_csv.parents[1])
    result = run(demo_config())
    assert not result.ok and result.panel is None
    assert result.report["gaps"].tolist() == [0, 3, 1, 2]
    assert result.report["missing_values"].tolist() == [2, 1, 1, 1]
    assert "data.missing=interpolate" in result.problems[0]
    assert "1 problem(s)" in format_report(result)


def test_validate_pipeline_shows_what_interpolation_filled(demo_csv, monkeypatch):
    monkeypatch.chdir(demo_csv.parents[1])
    result = run(demo_config(missing="interpolate"))
    assert result.ok and result.panel.n_series == 4
    assert result.report["filled"].tolist() == [2, 7, 3, 5]  # 3 absent rows x 2 columns + 1 empty cell, ...
    text = format_report(result)
    assert "site_b (7 cells)" in text and text.endswith("OK")


def test_validate_pipeline_flags_a_split_without_windows(demo_csv, monkeypatch):
    monkeypatch.chdir(demo_csv.parents[1])
    result = run(demo_config(missing="interpolate").with_overrides({"split.test_fraction": 0.005}))
    assert result.problems and "test split has no window" in result.problems[0]


def test_validate_pipeline_on_etth1_reports_one_hourly_series_without_gaps(etth1_csv):
    config = build_config({"data": {"path": str(etth1_csv), "timestamp": "date", "target": "OT"},
                           "split": {"train_end": 8640, "val_end": 11520, "test_end": 14400}})
    result = run(config)
    assert result.ok
    assert len(result.report) == 1
    row = result.report.iloc[0]
    assert (row["freq"], row["length"], row["gaps"], row["missing_values"]) == ("h", 17420, 0, 0)


def test_load_panel_reads_the_configured_file(demo_csv):
    panel = load_panel(demo_config(path=str(demo_csv), missing="zero").data)
    assert panel.series_ids == ["site_a", "site_b", "site_c", "site_d"]
    assert panel.lengths.tolist() == [2160] * 4


def test_interpolation_never_reads_a_later_split():
    """Rows 2-3 of series 'a' are empty and row 3 starts validation: the training row takes the last known
    value (a forward fill), the validation row interpolates towards the next validation value."""
    from forecaster.data.panel import without_look_ahead

    frame = long_frame(ids=("a",), length=8)
    frame.loc[[2, 3], "y"] = np.nan
    frame.loc[[4, 5, 6, 7], "y"] = 10.0
    panel = build_panel(frame, LONG.model_copy(update={"missing": "interpolate"}), "g.csv")
    assert panel.series_values(0)[2, 0] > 1.0  # plain interpolation reads row 4, a validation value
    train_end, val_end, test_end = np.array([3]), np.array([6]), np.array([8])
    honest = without_look_ahead(panel, (train_end, val_end, test_end))
    assert honest.series_values(0)[:4, 0].tolist() == [0.0, 1.0, 1.0, pytest.approx(1.0 + (10.0 - 1.0) * 2 / 3)]
    assert honest.series_values(0)[:, 1].tolist() == panel.series_values(0)[:, 1].tolist()  # x had no holes
    complete = build_panel(long_frame(), LONG.model_copy(update={"missing": "interpolate"}), "c.csv")
    assert without_look_ahead(complete, (train_end, val_end, test_end)) is complete


@settings(max_examples=40, deadline=None)
@given(
    freq=st.sampled_from(["h", "15min", "D", "2h"]),
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    gaps=st.integers(0, 3),
    offset=st.integers(0, 7),
    seed=st.integers(0, 1000),
)
def test_placing_every_series_at_once_equals_placing_them_one_by_one(freq, lengths, gaps, offset, seed):
    """The vectorised grid for fixed steps must give exactly what the per-series path gives: the same grid, rows,
    values and frequency, for series of any length, starts off the hour and missing rows."""
    rng = np.random.default_rng(seed)
    frames = []
    for index, length in enumerate(lengths):
        start = pd.Timestamp("2024-01-01") + index * pd.Timedelta(minutes=offset)
        stamps = pd.date_range(start, periods=length + gaps, freq=freq)
        keep = np.sort(rng.choice(length + gaps, size=length, replace=False)) if length > 1 else [0]
        frames.append(pd.DataFrame({"ts": stamps[keep].strftime("%Y-%m-%d %H:%M:%S"), "id": f"s{index}",
                                    "y": rng.normal(size=len(keep)), "x": rng.normal(size=len(keep))}))
    frame = pd.concat(frames).sample(frac=1.0, random_state=seed)
    cfg = LONG.model_copy(update={"freq": freq if all(n == 1 for n in lengths) else None})
    fast, slow = scanned(frame, cfg, at_once=True), scanned(frame, cfg, at_once=False)
    if isinstance(fast, str) or isinstance(slow, str):  # too sparse for its frequency: the same message
        assert fast == slow
        return
    assert fast.freq == slow.freq
    np.testing.assert_array_equal(fast.offsets, slow.offsets)
    np.testing.assert_array_equal(fast.timestamps, slow.timestamps)
    np.testing.assert_array_equal(fast.values, slow.values)
    np.testing.assert_array_equal(fast.rows, slow.rows)


def scanned(frame, cfg, at_once: bool):
    """`scan_frame` with or without the all-series-at-once path; a DataError's message instead of raising."""
    import forecaster.data.validate as validate

    with pytest.MonkeyPatch.context() as patch:
        if not at_once:
            patch.setattr(validate, "_place_fixed_step", lambda *args: None)
        try:
            return validate.scan_frame(frame, cfg, "data.csv")
        except DataError as error:
            return str(error)


def test_a_series_off_the_grid_is_still_named_when_the_others_are_placed_at_once():
    frame = long_frame(ids=("a", "b", "c"), length=8)
    frame.loc[frame.index[12], "ts"] = "2024-01-01 04:30:00"  # series b, between two hours
    message = error_of(frame, LONG.model_copy(update={"freq": "h"}))
    assert "series 'b' is not on a regular 'h' grid" in message and "04:30" in message


def test_fixed_steps_are_placed_at_once_and_calendar_steps_one_by_one():
    from forecaster.data.validate import _place_fixed_step

    stamps = pd.date_range("2024-01-01", periods=6, freq="h").as_unit("ns").asi8
    offsets = np.array([0, 3, 6])
    placed = _place_fixed_step(np.delete(stamps, 4), np.array([0, 3, 5]), "h")  # the second series lacks a row
    grid_offsets, grid, where = placed
    np.testing.assert_array_equal(grid_offsets, [0, 3, 6])
    np.testing.assert_array_equal(grid, stamps)
    np.testing.assert_array_equal(where, [0, 1, 2, 3, 5])
    assert _place_fixed_step(stamps, offsets, "W-MON") is None


def test_a_repeated_hour_at_the_autumn_clock_change_is_explained_not_just_refused(tmp_path):
    """A local wall-clock file across the end of summer time repeats 02:00; the message says why and how to write
    the rows, rather than asking the user to delete a real hour of data."""
    from forecaster.config import DataConfig
    from forecaster.data.io import read_table
    from forecaster.data.panel import build_panel

    stamps = [f"2024-10-27 0{h}:00:00" for h in (0, 1, 2, 2, 3, 4)]
    path = tmp_path / "local.csv"
    pd.DataFrame({"timestamp": stamps, "value": range(6)}).to_csv(path, index=False)
    cfg = DataConfig(path=str(path), target="value")
    with pytest.raises(DataError, match=r"daylight-saving change.*\+02:00 and .*\+01:00") as error:
        build_panel(read_table(cfg), cfg, source=str(path))
    assert "Remove one of the rows" not in str(error.value)
    offsets = ["+02:00"] * 3 + ["+01:00"] * 3  # as the message proposes: every instant distinct, one hour apart
    pd.DataFrame({"timestamp": [f"{s}{o}" for s, o in zip(stamps, offsets, strict=True)], "value": range(6)}
                 ).to_csv(path, index=False)
    panel = build_panel(read_table(cfg), cfg, source=str(path))
    assert panel.freq == "h" and panel.lengths.tolist() == [6]
