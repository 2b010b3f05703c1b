"""Batch forecasts on Apache Spark: the pandas engine's forecasts, computed by Spark tasks, written as Parquet.

The driver resolves the model and ships its bundle folder (weights and JSON, no pickles) to every executor with
`SparkContext.addFile`. Spark reads the history (CSV or Parquet), keeps the model's columns, and deals the series
into `buckets` groups by a hash of the series id: every series lies whole in one group. `applyInPandas` hands each
group to `ModelBundle.predict`, which validates and forecasts all its series in batches, exactly as the pandas
engine does for the whole file. A group of many series, not one per series, keeps the network's batches full.

Output: a Parquet dataset in `output_dir`, partitioned by `origin_date` (the date of each series' forecast
origin), with the pandas engine's columns in its order. Partitions are overwritten one by one, so rerunning a
day's batch replaces that day and leaves the others. The same job runs on a cluster when `master` names it
(`spark://host:7077`, `yarn`, `k8s://...`); executors need forecaster and its dependencies installed.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.errors import DataError

if TYPE_CHECKING:
    from forecaster.bundle import ModelBundle
    from forecaster.serving.resolve import ResolvedModel

DEFAULT_MASTER = "local[2]"
PARTITION_COLUMN = "origin_date"
METADATA_COLUMNS = ("model_uri", "model_version", "source_run_id", "forecast_origin", "created_at")


@dataclass
class SparkPredictResult:
    output: Path  # the Parquet dataset folder
    rows: int
    series: int
    forecast_origin: str  # the latest origin over all series, ISO 8601
    created_at: str
    seconds: float
    master: str

    def summary(self) -> dict[str, Any]:
        return {"engine": "spark", "output": str(self.output), "rows": self.rows, "series": self.series,
                "forecast_origin": self.forecast_origin, "created_at": self.created_at,
                "seconds": round(self.seconds, 3), "master": self.master,
                "forecasts_per_s": round(self.rows / self.seconds, 1) if self.seconds > 0 else None}


def predict_spark(
    model: str | ResolvedModel,
    data_path: str | Path,
    output_dir: str | Path,
    master: str | None = None,
    *,
    created_at=None,
    skip_bad_series: bool = False,
    batch_size: int = 1024,
    buckets: int | None = None,
    spark=None,
) -> SparkPredictResult:
    """Forecast every series in `data_path` with `model` on Spark; write Parquet under `output_dir`.

    `model`: a model URI or folder (resolved with the tracking URI set now) or a `resolve_model` result.
    `master`: a Spark master URL (default `local[2]`); ignored when an active `spark` session is passed.
    `created_at`: the batch's timestamp (default now, UTC), the same in every row.
    `buckets`: groups the series are dealt into (default: 4 per core Spark offers).
    """
    import pandas as pd

    from forecaster.serving.resolve import resolve_model

    started = time.perf_counter()
    resolved = resolve_model(model) if isinstance(model, str) else model
    bundle = resolved.bundle
    created = pd.Timestamp(created_at if created_at is not None else pd.Timestamp.now(tz="UTC")).floor("s")
    if created.tzinfo is None:
        created = created.tz_localize("UTC")
    session = spark if spark is not None else spark_session(master or DEFAULT_MASTER)
    master = session.sparkContext.master
    try:
        with tempfile.TemporaryDirectory(prefix="forecaster-spark-") as tmp:
            folder = Path(tmp) / f"bundle-{uuid.uuid4().hex}"  # executors keep files by name: one per batch
            bundle.save(folder)
            session.sparkContext.addFile(str(folder), recursive=True)
            history = _read_history(session, bundle, Path(data_path))
            settings = {"bundle_name": folder.name, "skip_bad_series": skip_bad_series, "batch_size": batch_size,
                        "metadata": {"model_uri": resolved.uri, "model_version": resolved.version,
                                     "source_run_id": resolved.run_id, "created_at": created}}

            def forecast_group(history):  # a plain function: Spark inspects it, and warns about a partial
                return _forecast_group(history, **settings)

            groups = buckets or 4 * session.sparkContext.defaultParallelism
            _write(session, history, bundle, forecast_group, groups, Path(output_dir))
        counts = _counts(session, Path(output_dir), created)
    finally:
        if spark is None:
            session.stop()
    return SparkPredictResult(output=Path(output_dir), seconds=time.perf_counter() - started,
                              created_at=created.isoformat(), master=master, **counts)


def forecast_schema(bundle: ModelBundle):
    """The pandas engine's columns and order: bundle forecast columns, then who-made-this columns."""
    from pyspark.sql import types as T

    quantiles = [f"forecast_q{round(q * 100):02d}" for q in bundle.quantiles or []]
    return T.StructType([
        T.StructField("series_id", T.StringType()),
        T.StructField("target", T.StringType()),
        T.StructField("timestamp", T.TimestampNTZType()),
        T.StructField("step", T.LongType()),
        *[T.StructField(name, T.DoubleType()) for name in ("forecast", *quantiles)],
        T.StructField("model_uri", T.StringType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("source_run_id", T.StringType()),
        T.StructField("forecast_origin", T.TimestampNTZType()),
        T.StructField("created_at", T.TimestampType()),
    ])


def spark_session(master: str = DEFAULT_MASTER):
    """A session configured as `predict_spark` needs it: UTC, per-partition overwrite, Arrow, this interpreter."""
    from pyspark.sql import SparkSession

    # Python workers run `PYSPARK_PYTHON`, else whatever `python3` is first on PATH, which need not have
    # forecaster's packages; local workers should run this interpreter unless the user chose another.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (SparkSession.builder.master(master).appName("forecaster-predict")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # not INT96: keeps the UTC zone
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.pyspark.python", sys.executable)  # local workers run this interpreter
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate())


def _read_history(session, bundle: ModelBundle, path: Path):
    """The model's columns of the history file. Timestamps stay text and numbers are doubles, as
    `pandas.read_csv` gives them to the pandas engine, so both engines validate the same values."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from forecaster.data.io import file_format

    data = bundle.config.data
    if not path.exists():
        raise DataError(f"data file not found: {path} (predict.data)")
    numeric = [*data.targets, *data.covariates]
    text = [data.timestamp, *([data.series_id] if data.series_id else [])]
    if file_format(path, data.format) == "csv":
        schema = T.StructType([T.StructField(name, T.StringType()) for name in text]
                              + [T.StructField(name, T.DoubleType()) for name in numeric])
        header = session.read.csv(str(path), header=True, sep=data.delimiter).columns
        missing = [name for name in text + numeric if name not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the model reads {text + numeric}")
        frame = session.read.csv(str(path), header=True, sep=data.delimiter, enforceSchema=False,
                                 schema=T.StructType([schema[name] if name in text + numeric
                                                      else T.StructField(name, T.StringType())
                                                      for name in header]))
    else:
        frame = session.read.parquet(str(path))
        missing = [name for name in text + numeric if name not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the model reads {text + numeric}")
    return frame.select(*[F.col(name).cast("string") for name in text],
                        *[F.col(name).cast("double") for name in numeric])


def _write(session, history, bundle: ModelBundle, forecast_group, groups: int, output: Path) -> None:
    from pyspark.errors import PythonException
    from pyspark.sql import functions as F

    series = bundle.config.data.series_id
    bucket = F.pmod(F.xxhash64(F.col(series)), F.lit(groups)) if series else F.lit(0)
    forecasts = (history.groupBy(bucket.alias("_bucket"))
                 .applyInPandas(forecast_group, schema=forecast_schema(bundle))
                 .withColumn(PARTITION_COLUMN, F.to_date("forecast_origin")))
    try:
        forecasts.write.mode("overwrite").partitionBy(PARTITION_COLUMN).parquet(str(output))
    except PythonException as exc:
        reason = str(exc).strip().splitlines()
        raise DataError(f"spark predict failed in a task: {reason[-1] if reason else exc}") from None


def _counts(session, output: Path, created) -> dict[str, Any]:
    """Rows, series and the latest origin of this batch (earlier days' partitions stay in the dataset)."""
    from pyspark.sql import functions as F

    written = session.read.parquet(str(output)).where(F.col("created_at") == F.lit(created.to_pydatetime()))
    row = written.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("series_id").alias("series"),
                      F.max("forecast_origin").alias("origin")).first()
    origin = row["origin"].isoformat() if row["origin"] is not None else ""
    return {"rows": int(row["rows"]), "series": int(row["series"]), "forecast_origin": origin}


def _forecast_group(history, *, bundle_name: str, skip_bad_series: bool, batch_size: int, metadata: dict):
    """One group of whole series -> its forecast rows, with the pandas engine's columns. Runs on executors."""
    import pandas as pd

    bundle = _executor_bundle(bundle_name)
    forecast = bundle.predict(history, skip_bad_series=skip_bad_series, batch_size=batch_size)
    frame = forecast.frame.copy()
    frame["series_id"] = frame["series_id"].astype(str)
    for key in ("model_uri", "model_version", "source_run_id"):
        frame[key] = metadata[key]
    origins = {series_id: pd.Timestamp(stamp) for series_id, stamp in forecast.origins.items()}
    frame["forecast_origin"] = frame["series_id"].map(origins)
    frame["created_at"] = metadata["created_at"]
    return frame


@functools.lru_cache(maxsize=4)
def _executor_bundle(bundle_name: str) -> ModelBundle:
    """Load the shipped bundle once per Python worker; Spark reuses workers across tasks. One torch thread per
    worker: Spark already runs one task per core."""
    import torch
    from pyspark import SparkFiles

    from forecaster.bundle import ModelBundle

    torch.set_num_threads(1)
    return ModelBundle.load(SparkFiles.get(bundle_name))
