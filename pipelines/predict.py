"""The predict job: forecasts for every series in a history file, from any saved model, written safely.

`run(config)` reads `predict.*`: resolve the model (an MLflow URI or a folder), read the history in the model's
own data layout, let the bundle validate it and forecast all series in batches (no Lightning Trainer, no GPU),
add who-made-this columns, and write the forecast file and its manifest atomically under a name fixed by the
model version and the forecast origin. Rerunning for the same model version and origin writes nothing unless
`predict.overwrite` is set. Each written batch is an MLflow run in the experiment `<tracking.experiment>-predictions`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import forecaster
from forecaster import outputs
from forecaster.config import Config
from forecaster.errors import ConfigError
from forecaster.tracking import file_fingerprint, setup_tracking, tracking_uri

WRITTEN = "written"
SKIPPED_EXISTING = "skipped-existing"


@dataclass
class PredictResult:
    status: str  # WRITTEN or SKIPPED_EXISTING
    paths: outputs.OutputPaths
    manifest: dict[str, Any]  # as written now, or as found for SKIPPED_EXISTING
    seconds: float
    input_changed: bool = False  # SKIPPED_EXISTING only: the existing output was made from other input bytes
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.manifest["counts"]["rows"])

    @property
    def series(self) -> int:
        return int(self.manifest["counts"]["series"])

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
    import mlflow

    import forecaster.bundle  # noqa: F401  (imports torch now, so that the timings below measure the job)
    from forecaster.data.io import read_table
    from forecaster.serving.resolve import resolve_model

    settings = _checked_settings(config)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    experiment = f"{config.tracking.experiment}-predictions"
    experiment_id = setup_tracking(config.tracking.model_copy(update={"experiment": experiment}))

    with _timed(timings, "load_model_s"):
        model = resolve_model(settings.model)
    if settings.engine == "spark":
        return _run_spark(config, model, experiment_id)
    with _timed(timings, "read_s"):
        history = read_table(model.bundle.config.data, settings.data)
        fingerprint = file_fingerprint(settings.data)
    with _timed(timings, "predict_s"):
        forecast = model.bundle.predict(history, skip_bad_series=settings.skip_bad_series,
                                        batch_size=settings.batch_size, source=settings.data)

    origin = max(pd.Timestamp(stamp) for stamp in forecast.origins.values())
    paths = outputs.output_paths(settings.output, model.label, origin, settings.format)
    existing = outputs.existing_manifest(paths)
    if existing is not None and not settings.overwrite:
        return PredictResult(
            status=SKIPPED_EXISTING, paths=paths, manifest=existing, seconds=time.perf_counter() - started,
            input_changed=existing["input"]["sha256"] != fingerprint["sha256"], skipped=forecast.skipped,
        )

    created_at = pd.Timestamp.now(tz="UTC").floor("s")
    frame = _with_metadata(forecast, model, created_at)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"predict {paths.forecast.stem}") as batch:
        manifest = {
            "created_at": created_at.isoformat(), "forecaster_version": forecaster.__version__,
            "batch_run_id": batch.info.run_id, "tracking_uri": tracking_uri(config.tracking),
            "input": {"path": str(Path(settings.data).resolve()), **fingerprint},
            "model": _model_record(model), "forecast_origin": origin.isoformat(),
            "counts": {"rows": len(frame), "series": len(forecast.origins), "skipped": len(forecast.skipped)},
            "skipped_series": forecast.skipped, "timings_s": timings,
        }
        manifest = outputs.write_output(frame, paths, manifest)
        seconds = time.perf_counter() - started
        _log_batch(manifest, settings, seconds)
    return PredictResult(status=WRITTEN, paths=paths, manifest=manifest, seconds=seconds, skipped=forecast.skipped)


def _checked_settings(config: Config):
    settings = config.predict
    if settings.engine == "spark" and settings.format != "parquet":
        raise ConfigError("predict.engine: spark writes a partitioned Parquet dataset; add --format parquet.")
    missing = [f"predict.{key} (--{key})" for key in ("model", "data") if not getattr(settings, key)]
    if missing:
        example = f"models:/{config.registry.name}@{config.registry.alias}"
        raise ConfigError(f"{' and '.join(missing)} not set. Example: forecaster predict --model {example} "
                          f"--data history.csv --output outputs/")
    return settings


def _run_spark(config: Config, model, experiment_id: str):
    """The same forecasts on Apache Spark (`predict.spark_master`), written as partitioned Parquet; the batch is
    recorded as an MLflow run like a pandas batch."""
    import mlflow

    from forecaster.serving.spark import predict_spark

    settings = config.predict
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"predict spark {model.label}"):
        result = predict_spark(
            model, settings.data, Path(settings.output) / f"forecast_{outputs.safe_label(model.label)}",
            master=settings.spark_master, skip_bad_series=settings.skip_bad_series, batch_size=settings.batch_size,
        )
        mlflow.set_tags({"forecaster.job": "predict", "forecaster.engine": "spark",
                         "forecaster.model_uri": model.uri, "forecaster.model_version": model.version or ""})
        mlflow.log_params({"model_uri": model.uri, "model_version": model.version, "source_run_id": model.run_id,
                           "input_path": str(Path(settings.data).resolve()), "output_dir": str(result.output),
                           "spark_master": result.master, "forecast_origin": result.forecast_origin})
        mlflow.log_metrics({"rows": result.rows, "series": result.series, "duration_s": result.seconds})
    return result


def _model_record(model) -> dict[str, Any]:
    bundle = model.bundle
    return {"uri": model.uri, "name": model.name, "version": model.version, "model_id": model.model_id,
            "source_run_id": model.run_id, "kind": bundle.kind, "lookback": bundle.lookback,
            "horizon": bundle.horizon, "quantiles": bundle.quantiles}


def _with_metadata(forecast, model, created_at: pd.Timestamp) -> pd.DataFrame:
    """The bundle's forecast columns, then the columns that say which model made each row, from where, when."""
    frame = forecast.frame.copy()
    frame["model_uri"] = model.uri
    frame["model_version"] = model.version
    frame["source_run_id"] = model.run_id
    origins = {series_id: pd.Timestamp(stamp) for series_id, stamp in forecast.origins.items()}
    frame["forecast_origin"] = frame["series_id"].map(origins)
    frame["created_at"] = created_at
    return frame


def _log_batch(manifest: dict[str, Any], settings, seconds: float) -> None:
    import mlflow

    model, counts = manifest["model"], manifest["counts"]
    mlflow.set_tags({"forecaster.job": "predict", "forecaster.model_uri": model["uri"],
                     "forecaster.model_version": model["version"] or "",
                     "forecaster.output": manifest["output"]["file"]})
    mlflow.log_params({
        "model_uri": model["uri"], "model_name": model["name"], "model_version": model["version"],
        "source_run_id": model["source_run_id"], "input_path": manifest["input"]["path"],
        "input_sha256": manifest["input"]["sha256"], "forecast_origin": manifest["forecast_origin"],
        "output_dir": str(Path(settings.output).resolve()), "format": settings.format,
        "batch_size": settings.batch_size, "skip_bad_series": settings.skip_bad_series,
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
    if not isinstance(result, PredictResult):  # a Spark batch
        return (f"wrote {result.rows:,} forecasts for {result.series:,} series to {result.output} (Spark "
                f"{result.master}, forecast origin {result.forecast_origin}, {result.seconds:.1f} s)")
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
