"""Batch forecasts on Spark (`local[2]`) equal the pandas engine's, row for row. Needs pyspark and Java."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from helpers import DEMO_CSV, train_and_register

from forecaster_pipelines import predict

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(not (shutil.which("java") or os.environ.get("JAVA_HOME")),
                       reason="Spark needs Java 17+ (java on PATH or JAVA_HOME)"),
]
pytest.importorskip("pyspark", reason="pyspark not installed: pip install 'forecaster[spark]'")

KEY = ["series_id", "target", "step"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return train_and_register(tmp_path_factory.mktemp("store"), kind="network",
                              overrides={"model.loss": "quantile", "model.hidden_size": 8})


def test_spark_forecasts_equal_the_pandas_engine_row_for_row(store, tmp_path):
    from forecaster.spark import PARTITION_COLUMN

    config = store.config.with_overrides({"predict.output": str(tmp_path / "pandas"), "predict.format": "parquet",
                                          "predict.data": str(DEMO_CSV), "predict.precision": "32"})
    expected = pd.read_parquet(predict.run(config).paths.forecast)

    # Through the job users run: `forecaster predict --engine spark --format parquet`.
    result = predict.run(config.with_overrides({"predict.engine": "spark", "predict.output": str(tmp_path / "spark"),
                                                "predict.spark_master": "local[2]"}))
    written = pd.read_parquet(result.paths.forecast)

    assert sorted(path.name for path in result.paths.forecast.glob(f"{PARTITION_COLUMN}=*")) == \
        [f"{PARTITION_COLUMN}=2024-03-30"]
    actual = written.drop(columns=PARTITION_COLUMN)
    assert list(actual.columns) == list(expected.columns)
    assert "forecast_q90" in actual.columns
    assert (result.rows, result.series) == (len(expected), expected["series_id"].nunique())
    assert actual["created_at"].nunique() == 1

    actual = actual.sort_values(KEY, ignore_index=True).drop(columns="created_at")
    expected = expected.sort_values(KEY, ignore_index=True).drop(columns="created_at")
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, rtol=1e-5)


def spark_config(store, output):
    return store.config.with_overrides({"predict.engine": "spark", "predict.format": "parquet",
                                        "predict.output": str(output), "predict.data": str(DEMO_CSV),
                                        "predict.spark_master": "local[2]"})


def visible(folder):
    return sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))


@pytest.mark.slow  # three Spark jobs
def test_a_spark_batch_that_fails_before_its_commit_leaves_nothing_and_a_rerun_writes_once(store, tmp_path,
                                                                                           monkeypatch):
    from forecaster import outputs

    real_move = outputs._move_into_place

    def crash(staging, path):
        assert any(staging.glob("origin_date=*/*.parquet"))  # the dataset is written whole, not yet committed
        raise OSError("the machine went down between write and commit")

    monkeypatch.setattr(outputs, "_move_into_place", crash)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="between write and commit"):
        predict.run(spark_config(store, out))
    assert list(out.iterdir()) == []  # neither a dataset, nor a manifest, nor the staging folder

    monkeypatch.setattr(outputs, "_move_into_place", real_move)
    first = predict.run(spark_config(store, out))
    assert first.status == predict.WRITTEN and first.rows == 96
    assert visible(out) == sorted([first.paths.forecast.name, first.paths.manifest.name])
    assert first.paths.forecast.is_dir() and first.paths.forecast.name.endswith("_20240330T230000.parquet")
    assert outputs.existing_manifest(first.paths) == first.manifest
    assert first.manifest["engine"] == "spark" and first.manifest["counts"] == {"rows": 96, "series": 4}
    written = outputs.output_fingerprint(first.paths.forecast)

    again = predict.run(spark_config(store, out))
    assert again.status == predict.SKIPPED_EXISTING and again.run_id == first.run_id
    assert outputs.output_fingerprint(first.paths.forecast) == written
    assert sorted(out.iterdir()) == sorted([first.paths.forecast, first.paths.manifest])  # staging discarded

    replaced = predict.run(spark_config(store, out).with_overrides({"predict.overwrite": True}))
    assert replaced.status == predict.WRITTEN and replaced.run_id != first.run_id
    assert sorted(out.iterdir()) == sorted([first.paths.forecast, first.paths.manifest])
    assert len(pd.read_parquet(first.paths.forecast)) == 96


KILLED_SPARK_BATCH = """
import sys
from forecaster.spark import predict_spark
predict_spark(sys.argv[1], sys.argv[2], sys.argv[3], master="local[1]")
"""


@pytest.mark.slow  # a Spark batch in a subprocess, killed, then two more in this process
def test_a_spark_batch_killed_mid_write_leaves_no_partial_output(store, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import mlflow

    from forecaster import outputs
    from forecaster.spark import SKIPPED_EXISTING, WRITTEN, predict_spark
    from forecaster.tracking import setup_tracking

    setup_tracking(store.config.tracking)
    model = Path(mlflow.artifacts.download_artifacts(artifact_uri=store.model_uri, dst_path=str(tmp_path / "m")))
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-c", KILLED_SPARK_BATCH, str(model), str(DEMO_CSV), str(out)],
                             cwd=Path(__file__).parents[1], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out.is_dir() and any(out.glob(".staging-*/forecasts/_temporary"))):
            assert batch.poll() is None, "the batch ended before it began writing"
            assert time.monotonic() < deadline, "no staging folder appeared"
            time.sleep(0.05)
    finally:
        os.killpg(batch.pid, signal.SIGKILL)  # the driver and its JVM, as a power cut would
        batch.wait()
    assert visible(out) == []
    assert [path.name.split("-")[0] for path in out.iterdir()] == [".staging"]

    first = predict_spark(str(model), DEMO_CSV, out, master="local[1]")
    assert first.status == WRITTEN and first.rows == 96
    assert sorted(out.iterdir()) == sorted([first.paths.forecast, first.paths.manifest])  # the leftover is gone
    assert outputs.existing_manifest(first.paths) == first.manifest

    again = predict_spark(str(model), DEMO_CSV, out, master="local[1]")
    assert again.status == SKIPPED_EXISTING and again.manifest == first.manifest
    assert sorted(out.iterdir()) == sorted([first.paths.forecast, first.paths.manifest])


@pytest.mark.slow
def test_a_statistical_model_forecasts_the_same_on_spark_as_with_pandas(tmp_path_factory, tmp_path):
    """ETS keeps parameters per series: each Spark partition must find its own series' parameters."""
    store = train_and_register(tmp_path_factory.mktemp("ets-store"), kind="ets")
    config = store.config.with_overrides({"predict.output": str(tmp_path / "pandas"), "predict.format": "parquet",
                                          "predict.data": str(DEMO_CSV)})
    expected = pd.read_parquet(predict.run(config).paths.forecast)
    result = predict.run(spark_config(store, tmp_path / "spark"))
    from forecaster.spark import PARTITION_COLUMN

    actual = pd.read_parquet(result.paths.forecast).drop(columns=PARTITION_COLUMN)
    actual = actual.sort_values(KEY, ignore_index=True).drop(columns="created_at")
    expected = expected.sort_values(KEY, ignore_index=True).drop(columns="created_at")
    assert expected["forecast"].nunique() > 4 * 2  # per-series ETS forecasts, not a constant
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, rtol=1e-5)


@pytest.mark.slow
def test_future_covariates_and_a_composite_key_forecast_the_same_on_spark_as_with_pandas(tmp_path):
    """Store x item series with a price known in advance: the history file carries the horizon's prices after each
    series' last sale (the one-table form); Spark reads them as the pandas engine does, and writes the key
    columns back."""
    import numpy as np
    from helpers import shrink_config

    from forecaster.spark import PARTITION_COLUMN
    from forecaster_pipelines import train

    rng = np.random.default_rng(5)
    stamps = pd.date_range("2024-01-01", periods=220, freq="D").strftime("%Y-%m-%d")
    frames = []
    for store_name in ("north", "south"):
        for item in ("tea", "coffee"):
            price = rng.uniform(1, 3, len(stamps)).round(2)
            sales = (40 - 8 * price + 3 * np.sin(np.arange(len(stamps)) * 2 * np.pi / 7)).round(2)
            frames.append(pd.DataFrame({"day": stamps, "store": store_name, "item": item, "price": price,
                                        "sales": sales}))
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(tmp_path / "train.csv", index=False)
    config = shrink_config(None, tmp_path / "state", **{
        "data.path": str(tmp_path / "train.csv"), "data.timestamp": "day", "data.series_id": ["store", "item"],
        "data.target": "sales", "data.future_covariates": ["price"], "window.lookback": 28, "window.horizon": 7,
        "split.val_size": 28, "split.test_size": 28, "tracking.experiment": "spark-future"})
    model_dir = train.run(config).model_dir
    history = frame.copy()
    history.loc[history.groupby(["store", "item"]).tail(7).index, "sales"] = np.nan  # the last week: prices only
    history.to_csv(tmp_path / "history.csv", index=False)
    settings = {"predict.model": model_dir, "predict.data": str(tmp_path / "history.csv"),
                "predict.format": "parquet", "predict.precision": "32"}
    expected = pd.read_parquet(predict.run(config.with_overrides(
        {**settings, "predict.output": str(tmp_path / "pandas")})).paths.forecast)
    result = predict.run(config.with_overrides({**settings, "predict.engine": "spark",
                                                "predict.output": str(tmp_path / "spark"),
                                                "predict.spark_master": "local[2]"}))
    actual = pd.read_parquet(result.paths.forecast).drop(columns=PARTITION_COLUMN)
    assert list(actual.columns) == list(expected.columns) and list(actual.columns[:3]) == ["series_id", "store", "item"]
    unregistered = ["model_version", "source_run_id"]  # a model folder: no version, no run (null in both engines)
    assert actual[unregistered].isna().all(axis=None) and expected[unregistered].isna().all(axis=None)
    actual = actual.sort_values(KEY, ignore_index=True).drop(columns=["created_at", *unregistered])
    expected = expected.sort_values(KEY, ignore_index=True).drop(columns=["created_at", *unregistered])
    assert len(expected) == 4 * 7
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, rtol=1e-5)
