"""Batch forecasts on Spark (`local[2]`) equal the pandas engine's, row for row. Needs pyspark and Java."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from model_store import DEMO_CSV, train_and_register

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
    from forecaster.serving.spark import PARTITION_COLUMN

    config = store.config.with_overrides({"predict.output": str(tmp_path / "pandas"), "predict.format": "parquet",
                                          "predict.data": str(DEMO_CSV)})
    expected = pd.read_parquet(predict.run(config).paths.forecast)

    # Through the job users run: `forecaster predict --engine spark --format parquet`.
    result = predict.run(config.with_overrides({"predict.engine": "spark", "predict.output": str(tmp_path / "spark"),
                                                "predict.spark_master": "local[2]"}))
    written = pd.read_parquet(result.output)

    assert sorted(path.name for path in result.output.glob(f"{PARTITION_COLUMN}=*")) == \
        [f"{PARTITION_COLUMN}=2024-03-30"]
    actual = written.drop(columns=PARTITION_COLUMN)
    assert list(actual.columns) == list(expected.columns)
    assert "forecast_q90" in actual.columns
    assert (result.rows, result.series) == (len(expected), expected["series_id"].nunique())
    assert actual["created_at"].nunique() == 1

    actual = actual.sort_values(KEY, ignore_index=True).drop(columns="created_at")
    expected = expected.sort_values(KEY, ignore_index=True).drop(columns="created_at")
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, check_exact=False, rtol=1e-5)
