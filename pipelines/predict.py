"""The predict job: forecasts for every series in a history file, from any saved model, written safely.

`run(config)` reads `predict.*`: resolve the model (an MLflow URI or a folder), forecast every series of the
history with `forecasting.forecast` (pandas engine: in this process; Spark engine: in Spark tasks, staged as a
Parquet dataset), and commit the forecasts and their manifest through `forecaster.outputs` under a name fixed by
the model version and the forecast origin, the same way for both engines. Rerunning for the same model version
and origin writes nothing unless `predict.overwrite` is set. Each written batch is an MLflow run in the
experiment `<tracking.experiment>-predictions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import forecaster
from forecaster import outputs
from forecaster.outputs import SKIPPED_EXISTING, WRITTEN, CommittedOutput
from forecaster.config import Config
from forecaster.errors import ConfigError
from forecaster.tracking import file_fingerprint, redact, setup_tracking, tracked_run, tracking_uri

@dataclass
class PredictResult(CommittedOutput):
    input_changed: bool = False  # SKIPPED_EXISTING only: the existing output was made from other input bytes
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        """The MLflow run of the batch that wrote the output (an earlier one for SKIPPED_EXISTING)."""
        return self.manifest.get("batch_run_id")

    @property
    def forecasts_per_s(self) -> float | None:
        """Forecast rows (series x targets x steps) per second, end to end; None when nothing was forecast now."""
        return self.rows / self.seconds if self.status == WRITTEN and self.seconds > 0 else None

    def summary(self) -> dict[str, Any]:
        model = self.manifest["model"]
        return {
            "status": self.status, "output": str(self.paths.forecast), "manifest": str(self.paths.manifest),
            "rows": self.rows, "series": self.series, "skipped": self.skipped,
            "model_uri": model["uri"], "model_version": model["version"], "source_run_id": model["source_run_id"],
            "forecast_origin": self.manifest["forecast_origin"], "run_id": self.run_id,
            "seconds": round(self.seconds, 3), "input_changed": self.input_changed,
            "forecasts_per_s": None if self.forecasts_per_s is None else round(self.forecasts_per_s, 1),
        }


def run(config: Config) -> PredictResult:
    """`forecaster predict`: forecast every series in `predict.data` with `predict.model`."""
    from forecaster.forecasting import forecast  # noqa: F401  (torch is imported here: the timings measure the job)
    from forecaster.runtime import set_threads
    from forecaster.mlflow_model.resolve import resolve_model

    settings = _checked_settings(config)
    started = time.perf_counter()
    if settings.engine == "pandas":  # Spark's workers take one thread each; predict's output stays one line
        set_threads(config.train.threads, level=logging.DEBUG)
    timings: dict[str, float] = {}
    experiment = f"{config.tracking.experiment}-predictions"
    experiment_id = setup_tracking(config.tracking.model_copy(update={"experiment": experiment}))

    with _timed(timings, "load_model_s"):
        model = resolve_model(settings.model)
    stage = _stage_spark if settings.engine == "spark" else _stage_pandas
    staged = stage(model, settings, timings)
    fingerprint = file_fingerprint(settings.data)
    future = {"path": str(Path(settings.future).resolve()), **file_fingerprint(settings.future)} \
        if settings.future else None

    paths = outputs.output_paths(settings.output, model.label, staged.origin, settings.format)
    existing = outputs.existing_manifest(paths)
    if existing is not None and not settings.overwrite:
        if isinstance(staged.forecasts, Path):
            outputs.discard(staged.forecasts)
        return PredictResult(
            status=SKIPPED_EXISTING, paths=paths, manifest=existing, seconds=time.perf_counter() - started,
            input_changed=(existing["input"]["sha256"] != fingerprint["sha256"]
                           or (existing.get("future") or {}).get("sha256") != (future or {}).get("sha256")),
            skipped=staged.skipped or {},
        )

    with tracked_run(experiment_id=experiment_id, run_name=f"predict {paths.forecast.stem}") as batch:
        manifest = {
            "created_at": staged.created_at.isoformat(), "forecaster_version": forecaster.__version__,
            "batch_run_id": batch.info.run_id, "tracking_uri": redact(tracking_uri(config.tracking)),
            **({"engine": "spark", "spark_master": staged.master} if staged.master else {}),
            "input": {"path": str(Path(settings.data).resolve()), **fingerprint},
            **({"future": future} if future else {}),
            **({"scenarios": staged.scenarios} if staged.scenarios else {}),
            "model": model.record(), "forecast_origin": staged.origin.isoformat(),
            "counts": staged.counts,
            **({"skipped_series": staged.skipped} if staged.skipped is not None else {}),
            **({"inference": staged.inference} if staged.inference else {}), "timings_s": timings,
        }
        try:
            manifest = outputs.write_output(staged.forecasts, paths, manifest)
        finally:
            if isinstance(staged.forecasts, Path):
                outputs.discard(staged.forecasts)  # gone already when it was moved into place
        seconds = time.perf_counter() - started
        _log_batch(manifest, settings, seconds)
    return PredictResult(status=WRITTEN, paths=paths, manifest=manifest, seconds=seconds,
                         skipped=staged.skipped or {})


def _checked_settings(config: Config):
    settings = config.predict
    if settings.engine == "spark" and settings.format != "parquet":
        raise ConfigError("predict.engine: spark writes a partitioned Parquet dataset; add --format parquet.")
    if settings.engine == "spark" and settings.future:
        raise ConfigError("predict.future: the spark engine reads the known future from the history file itself: "
                          "put those rows after each series' last target, targets empty, and leave --future out")
    missing = [f"predict.{key} (--{key})" for key in ("model", "data") if not getattr(settings, key)]
    if missing:
        example = f"models:/{config.registry.name}@{config.registry.alias}"
        raise ConfigError(f"{' and '.join(missing)} not set. Example: forecaster predict --model {example} "
                          f"--data history.csv --output outputs/")
    return settings


@dataclass
class _Staged:
    """An engine's forecasts, ready to commit: a frame (pandas), or a dataset in a staging folder (Spark)."""

    forecasts: pd.DataFrame | Path
    origin: pd.Timestamp  # the latest last-observed time among the series
    counts: dict[str, int]
    created_at: pd.Timestamp
    skipped: dict[str, str] | None = None  # series left out and why; None: not known (Spark)
    master: str | None = None  # Spark's
    inference: dict[str, Any] | None = None  # batch size and precision the network ran with (pandas engine)
    scenarios: list[str] | None = None  # the futures forecast, when the future rows name scenarios


def _stage_pandas(model, settings, timings: dict[str, float]) -> _Staged:
    from forecaster.forecasting import forecast, with_metadata

    with _timed(timings, "read_s"):
        history = read_history(model.bundle, settings)
    with _timed(timings, "predict_s"):
        result = forecast(model.bundle, history, skip_bad_series=settings.skip_bad_series, source=settings.data,
                          **inference_settings(settings))
    created_at = pd.Timestamp.now(tz="UTC").floor("s")
    frame = with_metadata(result, model_uri=model.uri, model_version=model.version, source_run_id=model.run_id,
                          created_at=created_at)
    counts = {"rows": len(frame), "series": len(result.origins), "skipped": len(result.skipped)}
    scenarios = [str(name) for name in pd.unique(frame["scenario"])] if "scenario" in frame else None
    return _Staged(forecasts=frame, origin=max(pd.Timestamp(stamp) for stamp in result.origins.values()),
                   counts=counts, created_at=created_at, skipped=result.skipped,
                   inference={"batch_size": result.batch_size, **result.precision.record()}, scenarios=scenarios)


def read_history(bundle, settings) -> pd.DataFrame:
    """`predict.data` as a frame, with the rows of `predict.future` (if any) under it, targets empty."""
    from forecaster.data.future import append_future
    from forecaster.data.io import read_table

    data = bundle.config.data
    history = read_table(data, settings.data)
    if settings.future:
        if not data.future_covariates:
            raise ConfigError(f"predict.future ({settings.future}): this model reads no future covariates "
                              f"(data.future_covariates is empty); leave --future out")
        history = append_future(history, read_table(data, settings.future), data, settings.future)
    return history


def _stage_spark(model, settings, timings: dict[str, float]) -> _Staged:
    """The same forecasts on Apache Spark (`predict.spark_master`), staged as a partitioned Parquet dataset."""
    from forecaster.errors import DataError
    from forecaster.spark import stage_spark

    with _timed(timings, "spark_s"):
        staged = stage_spark(model, settings.data, settings.output, master=settings.spark_master,
                             skip_bad_series=settings.skip_bad_series, inference=inference_settings(settings))
    if staged.forecast_origin is None:
        outputs.discard(staged.folder)
        raise DataError(f"{settings.data}: no series left to forecast")
    return _Staged(forecasts=staged.folder, origin=staged.forecast_origin,
                   counts={"rows": staged.rows, "series": staged.series}, created_at=staged.created_at,
                   master=staged.master)


def inference_settings(settings) -> dict[str, Any]:
    """How the network computes (`forecasting.forecast`'s keywords), from `predict.*`."""
    return {"batch_size": settings.batch_size, "memory_mb": settings.memory_mb, "precision": settings.precision,
            "tolerance": settings.bf16_tolerance}


def _log_batch(manifest: dict[str, Any], settings, seconds: float) -> None:
    import mlflow

    model, counts = manifest["model"], manifest["counts"]
    inference = manifest.get("inference") or {}  # the pandas engine's; Spark's executors do not report it
    mlflow.set_tags({"forecaster.job": "predict", "forecaster.engine": settings.engine,
                     "forecaster.model_uri": model["uri"],
                     "forecaster.model_version": model["version"] or "",
                     "forecaster.output": manifest["output"]["file"]})
    mlflow.log_params({
        "model_uri": model["uri"], "model_name": model["name"], "model_version": model["version"],
        "source_run_id": model["source_run_id"], "input_path": manifest["input"]["path"],
        "input_sha256": manifest["input"]["sha256"], "forecast_origin": manifest["forecast_origin"],
        "output_dir": str(Path(settings.output).resolve()), "format": settings.format,
        "batch_size": inference.get("batch_size", settings.batch_size),
        "precision": inference.get("precision", settings.precision),
        "skip_bad_series": settings.skip_bad_series,
        **({"spark_master": manifest["spark_master"]} if "spark_master" in manifest else {}),
    })
    mlflow.log_metrics({**{key: float(value) for key, value in counts.items()}, "duration_s": seconds,
                        "forecasts_per_s": counts["rows"] / seconds if seconds > 0 else 0.0,
                        **{f"time/{key}": value for key, value in manifest["timings_s"].items()},
                        "time/write_s": manifest["output"]["write_s"]})
    mlflow.log_dict(manifest, "manifest.json")


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the block's wall time in seconds as `timings[key]`."""
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 4)


def _skipped_lines(skipped: dict[str, str], shown: int = 10) -> str:
    lines = [f"  {series_id}: {reason}" for series_id, reason in list(skipped.items())[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more (all listed in the manifest)")
    return "\n".join(lines)


def format_result(result) -> str:
    model = result.manifest["model"]
    made_by = f"{model['name']} version {model['version']}" if model["version"] else model["uri"]
    if result.status == SKIPPED_EXISTING:
        lines = [f"nothing written: {result.paths.forecast} already holds the forecasts of {made_by} from origin "
                 f"{result.manifest['forecast_origin']} (written {result.manifest['created_at']} by run "
                 f"{result.run_id}). Pass --overwrite (predict.overwrite: true) to replace it."]
        if result.input_changed:
            lines.append("  note: the input file differs from the one that output was made from; --overwrite "
                         "replaces it with forecasts from this input.")
        return "\n".join(lines)
    lines = [
        f"wrote {result.rows:,} forecasts for {result.series:,} series to {result.paths.forecast}",
        f"  model {model['uri']} ({made_by}), forecast origin {result.manifest['forecast_origin']}",
        f"  manifest {result.paths.manifest}",
        f"  batch run {result.run_id}, {result.seconds:.2f} s ({result.forecasts_per_s:,.0f} forecasts/s)",
    ]
    if result.skipped:
        lines.append(f"  skipped {len(result.skipped)} series (--skip-bad-series):")
        lines.append(_skipped_lines(result.skipped))
    return "\n".join(lines)
