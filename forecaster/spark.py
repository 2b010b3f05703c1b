"""Batch forecasts on Apache Spark: the pandas engine's forecasts, computed by Spark tasks, written as Parquet.

The driver resolves the model and ships its bundle folder (weights and JSON, no pickles) to every executor with
`SparkContext.addFile`. Spark reads the history (CSV or Parquet), keeps the model's columns, and deals the series
into `buckets` groups by a hash of the series id: every series lies whole in one group. `applyInPandas` hands each
group to `forecasting.forecast` and `forecasting.with_metadata`, the pandas engine's own path for a whole file. A
group of many series, not one per series, keeps the network's batches full.

Output: `stage_spark` writes a Parquet dataset, partitioned by `origin_date` (the date of each series' forecast
origin), with the pandas engine's columns in its order, into a hidden staging folder inside the output folder.
`predict_spark` then commits it through `forecaster.outputs` exactly as the pandas engine commits its file: renamed
to `forecast_<model>_<origin>.parquet/`, then the manifest written; a rerun for the same model and origin
discards its staging folder and writes nothing unless `overwrite`. The same job runs on a cluster when `master`
names it (`spark://host:7077`, `yarn`, `k8s://...`); executors need forecaster and its dependencies installed, and
the output folder must be one file system the driver can rename in.
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
from forecaster.outputs import SKIPPED_EXISTING, WRITTEN, CommittedOutput

if TYPE_CHECKING:
    import pandas as pd

    from forecaster.bundle import ModelBundle
    from forecaster.mlflow_model.resolve import ResolvedModel

DEFAULT_MASTER = "local[2]"
PARTITION_COLUMN = "origin_date"


@dataclass
class StagedForecasts:
    """A Spark batch's forecasts, written whole into `folder` (a hidden staging folder), not yet committed."""

    folder: Path
    rows: int
    series: int
    forecast_origin: pd.Timestamp | None  # the latest origin over all series; None when nothing was forecast
    created_at: pd.Timestamp
    master: str
    seconds: float


@dataclass
class SparkPredictResult(CommittedOutput):
    """`paths.forecast` is the Parquet dataset folder."""

    master: str

    @property
    def output(self) -> Path:
        return self.paths.forecast

    def summary(self) -> dict[str, Any]:
        return {"engine": "spark", "status": self.status, "output": str(self.output), "rows": self.rows,
                "series": self.series, "forecast_origin": self.manifest["forecast_origin"],
                "created_at": self.manifest["created_at"], "seconds": round(self.seconds, 3), "master": self.master,
                "forecasts_per_s": round(self.rows / self.seconds, 1) if self.seconds > 0 else None}


def predict_spark(
    model: str | ResolvedModel,
    data_path: str | Path,
    output_dir: str | Path,
    master: str | None = None,
    *,
    overwrite: bool = False,
    **options,
) -> SparkPredictResult:
    """Forecast every series in `data_path` with `model` on Spark and commit the Parquet dataset and its manifest
    under `output_dir`, named after the model and the forecast origin; `options` as for `stage_spark`. When a
    complete output for the same model and origin is there already, write nothing (`SKIPPED_EXISTING`) unless
    `overwrite`."""
    import forecaster
    from forecaster import outputs
    from forecaster.mlflow_model.resolve import resolve_model
    from forecaster.tracking import file_fingerprint

    resolved = resolve_model(model) if isinstance(model, str) else model
    staged = stage_spark(resolved, data_path, output_dir, master, **options)
    if staged.forecast_origin is None:
        outputs.discard(staged.folder)
        raise DataError(f"{data_path}: no series left to forecast")
    paths = outputs.output_paths(output_dir, resolved.label, staged.forecast_origin, "parquet")
    existing = outputs.existing_manifest(paths)
    if existing is not None and not overwrite:
        outputs.discard(staged.folder)
        return SparkPredictResult(SKIPPED_EXISTING, paths, existing, staged.seconds, staged.master)
    manifest = outputs.write_output(staged.folder, paths, {
        "created_at": staged.created_at.isoformat(), "forecaster_version": forecaster.__version__,
        "engine": "spark", "spark_master": staged.master,
        "input": {"path": str(Path(data_path).resolve()), **file_fingerprint(data_path)},
        "model": resolved.record(), "forecast_origin": staged.forecast_origin.isoformat(),
        "counts": {"rows": staged.rows, "series": staged.series}, "timings_s": {"spark_s": round(staged.seconds, 4)},
    })
    return SparkPredictResult(WRITTEN, paths, manifest, staged.seconds, staged.master)


def stage_spark(
    model: ResolvedModel,
    data_path: str | Path,
    output_dir: str | Path,
    master: str | None = None,
    *,
    created_at=None,
    skip_bad_series: bool = False,
    inference: dict | None = None,
    buckets: int | None = None,
    spark=None,
) -> StagedForecasts:
    """Forecast every series in `data_path` with `model` on Spark, into a new hidden staging folder in
    `output_dir`; commit it with `outputs.write_output` (or drop it with `outputs.discard`). A failure removes it.

    `master`: a Spark master URL (default `local[2]`); ignored when an active `spark` session is passed.
    `created_at`: the batch's timestamp (default now, UTC), the same in every row.
    `buckets`: groups the series are dealt into (default: 4 per core Spark offers).
    `inference`: `forecasting.forecast`'s batch_size, memory_mb, precision and tolerance (its defaults if None).
    """
    import pandas as pd

    from forecaster import outputs

    started = time.perf_counter()
    bundle = model.bundle
    created = pd.Timestamp(created_at if created_at is not None else pd.Timestamp.now(tz="UTC")).floor("s")
    if created.tzinfo is None:
        created = created.tz_localize("UTC")
    session = spark if spark is not None else spark_session(master or DEFAULT_MASTER)
    master = session.sparkContext.master
    staging = outputs.staging_folder(output_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="forecaster-spark-") as tmp:
            folder = Path(tmp) / f"bundle-{uuid.uuid4().hex}"  # executors keep files by name: one per batch
            bundle.save(folder)
            session.sparkContext.addFile(str(folder), recursive=True)
            history = _read_history(session, bundle, Path(data_path))
            settings = {"bundle_name": folder.name, "skip_bad_series": skip_bad_series, "inference": inference or {},
                        "metadata": {"model_uri": model.uri, "model_version": model.version,
                                     "source_run_id": model.run_id, "created_at": created}}

            def forecast_group(history):  # a plain function: Spark inspects it, and warns about a partial
                return _forecast_group(history, **settings)

            groups = buckets or 4 * session.sparkContext.defaultParallelism
            _write(session, history, bundle, forecast_group, groups, staging)
        counts = _counts(session, staging)
    except BaseException:
        outputs.discard(staging)
        raise
    finally:
        if spark is None:
            session.stop()
    return StagedForecasts(folder=staging, created_at=created, master=master,
                           seconds=time.perf_counter() - started, **counts)


def forecast_schema(bundle: ModelBundle):
    """The pandas engine's columns and order (`outputs.output_columns`: the forecast, quantile and interval
    columns, then the metadata) as Spark types."""
    from pyspark.sql import types as T

    from forecaster.outputs import output_columns

    types = {"series_id": T.StringType(), **{name: T.StringType() for name in bundle.config.data.key_columns},
             "target": T.StringType(), "timestamp": T.TimestampNTZType(),
             "step": T.LongType(), "forecast": T.DoubleType(), "model_uri": T.StringType(),
             "model_version": T.StringType(), "source_run_id": T.StringType(),
             "forecast_origin": T.TimestampNTZType(), "created_at": T.TimestampType()}
    return T.StructType([T.StructField(name, types.get(name, T.DoubleType())) for name in output_columns(bundle)])


def spark_session(master: str = DEFAULT_MASTER):
    """A session configured as `predict_spark` needs it: UTC, Arrow, this interpreter."""
    from pyspark.sql import SparkSession

    # Python workers run `PYSPARK_PYTHON`, else whatever `python3` is first on PATH, which need not have
    # forecaster's packages; local workers should run this interpreter unless the user chose another.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (SparkSession.builder.master(master).appName("forecaster-predict")
            .config("spark.sql.session.timeZone", "UTC")
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
    numeric = [*data.targets, *data.covariates, *data.future_covariates]
    text = [data.timestamp, *data.key_columns]
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

    keys = bundle.config.data.key_columns
    bucket = F.pmod(F.xxhash64(*[F.col(name) for name in keys]), F.lit(groups)) if keys else F.lit(0)
    forecasts = (history.groupBy(bucket.alias("_bucket"))
                 .applyInPandas(forecast_group, schema=forecast_schema(bundle))
                 .withColumn(PARTITION_COLUMN, F.to_date("forecast_origin")))
    try:
        forecasts.write.mode("errorifexists").partitionBy(PARTITION_COLUMN).parquet(str(output))
    except PythonException as exc:
        reason = str(exc).strip().splitlines()
        raise DataError(f"spark predict failed in a task: {reason[-1] if reason else exc}") from None


def _counts(session, output: Path) -> dict[str, Any]:
    """Rows, series and the latest forecast origin of the dataset written at `output`."""
    import pandas as pd
    from pyspark.sql import functions as F

    row = session.read.parquet(str(output)).agg(
        F.count(F.lit(1)).alias("rows"), F.countDistinct("series_id").alias("series"),
        F.max("forecast_origin").alias("origin")).first()
    origin = pd.Timestamp(row["origin"]) if row["origin"] is not None else None
    return {"rows": int(row["rows"]), "series": int(row["series"]), "forecast_origin": origin}


def _forecast_group(history, *, bundle_name: str, skip_bad_series: bool, inference: dict, metadata: dict):
    """One group of whole series -> its forecast rows, with the pandas engine's columns. Runs on executors.
    Times with a zone are written as UTC (the Parquet columns are TIMESTAMP_NTZ, whatever the zone)."""
    from forecaster.forecasting import forecast, with_metadata

    bundle = _executor_bundle(bundle_name)
    frame = with_metadata(forecast(bundle, history, skip_bad_series=skip_bad_series, **inference), **metadata)
    for column in ("timestamp", "forecast_origin"):
        if frame[column].dt.tz is not None:
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
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
