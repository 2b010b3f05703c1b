"""Composite series keys: a table whose series are named by several columns (store x item) is detected by `init`,
trained and compared as such, and its forecasts and monitoring carry the same columns back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.config import DataConfig, load_config
from forecaster.data.io import read_table
from forecaster.data.panel import build_panel
from forecaster.errors import DataError
from forecaster_pipelines import compare, init, monitor, predict

STORES, ITEMS, DAYS = ["S1", "S2", "S3"], ["apple", "pear"], 160


def sales_file(path, days=DAYS):
    """Daily sales per store and item: a weekly cycle whose size depends on both, so each pair is its own series."""
    stamps = pd.date_range("2023-01-01", periods=days, freq="D")
    rng = np.random.default_rng(0)
    frames = []
    for s, store in enumerate(STORES):
        for i, item in enumerate(ITEMS):
            level = 10 + 5 * s + 20 * i
            sales = level + 3 * np.sin(2 * np.pi * np.arange(days) / 7) + rng.normal(0, 0.5, days)
            frames.append(pd.DataFrame({"date": stamps.strftime("%Y-%m-%d"), "store": store, "item": item,
                                        "sales": sales.round(2)}))
    frame = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)  # any row order
    frame.to_csv(path, index=False)
    return frame


def test_a_composite_key_names_each_series_by_its_parts(tmp_path):
    sales_file(tmp_path / "sales.csv")
    cfg = DataConfig(path=str(tmp_path / "sales.csv"), timestamp="date", series_id=["store", "item"], target="sales")
    panel = build_panel(read_table(cfg), cfg, source="sales.csv")
    assert sorted(panel.series_ids) == sorted(f"{s}/{i}" for s in STORES for i in ITEMS)
    assert DataConfig(series_id=["store"]).series_id == "store"  # a key of one column is that column


def test_a_key_part_holding_the_separator_is_refused_by_name(tmp_path):
    frame = sales_file(tmp_path / "sales.csv")
    frame.loc[frame.index[0], "item"] = "apple/green"
    frame.to_csv(tmp_path / "sales.csv", index=False)
    cfg = DataConfig(path=str(tmp_path / "sales.csv"), timestamp="date", series_id=["store", "item"], target="sales")
    with pytest.raises(DataError, match=r"column 'item'.*'apple/green' holds '/'"):
        read_table(cfg)


@pytest.mark.slow  # compare, predict and monitor with a real store
def test_composite_keys_round_trip_through_init_compare_predict_and_monitor(tmp_path):
    full = sales_file(tmp_path / "sales.csv")
    result = init.run(tmp_path / "sales.csv", tmp_path / "sales.yaml")
    assert result.series_id == ["store", "item"] and result.n_series == 6
    config = load_config(result.config_path, {
        "tracking.state_dir": str(tmp_path / "state"), "compare.models": ["naive", "seasonal_naive", "linear"],
        "compare.ensemble": False, "predict.output": str(tmp_path / "out")})
    compared = compare.run(config)
    assert compared.registered_version is not None

    horizon = config.window.horizon
    recent = full[pd.to_datetime(full["date"]) < pd.Timestamp("2023-01-01") + pd.Timedelta(days=DAYS - horizon)]
    recent.to_csv(tmp_path / "history.csv", index=False)
    done = predict.run(config.with_overrides({"predict.model": f"models:/{config.registry.name}@champion",
                                              "predict.data": str(tmp_path / "history.csv")}))
    written = pd.read_csv(done.paths.forecast, dtype=str)
    assert list(written.columns[:3]) == ["series_id", "store", "item"]
    pairs = set(zip(written["store"], written["item"], strict=True))
    assert pairs == {(s, i) for s in STORES for i in ITEMS}
    assert (written["series_id"] == written["store"] + "/" + written["item"]).all()

    checked = monitor.run(config)  # the full file holds the actuals of every forecast step
    assert checked.pending == 0 and checked.absent_series == []
    assert len(checked.by_series) == 6 and np.isfinite(checked.by_series["mae"]).all()
    assert set(zip(checked.by_series["store"], checked.by_series["item"], strict=True)) == pairs
