"""The monitor job: score the forecasts already written against the actuals that have arrived, and flag decay.

`run(config)` reads every committed output under `predict.output` (a forecast file whose manifest matches it;
files without one are partial or being replaced and are skipped), reads the actuals file (`monitor.actuals`,
else `data.path`) with the data config, scores each forecast point that has an actual beside seasonal naive
(`forecaster.monitoring`), folds the points into the monitoring record (`<forecasts>/monitoring.parquet`, or
`monitor.record`), and judges decay for the live model: the one that made the newest forecast. Each pass is an
MLflow run in `<tracking.experiment>-monitoring`, its per-origin metrics stepped by the origin's Unix time in
seconds. The CLI exits 3 when `result.decay`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster import metrics, monitoring, outputs
from forecaster.config import Config
from forecaster.errors import ConfigError, DataError

log = logging.getLogger(__name__)

RECORD_FILE = "monitoring.parquet"
SCORES = [metric.monitored_as for metric in metrics.monitored()]  # mae, rmse, smape, mase, rmsse, wape
EXPECTED_METRIC = "validation/mae_original"  # logged by training on the validation split, in original units


@dataclass
class MonitorResult:
    forecasts_dir: Path
    actuals: Path
    record_path: Path
    record: pd.DataFrame  # every point ever scored: the monitoring record after this pass
    files: int  # committed forecast files read
    added: int  # points new to the record in this pass
    updated: int  # points already recorded whose actual changed
    pending: int  # forecast points whose actual has not arrived
    absent_series: list[str]
    duplicates: int  # forecast rows found in more than one file, counted once
    by_model: pd.DataFrame
    by_origin: pd.DataFrame
    by_step: pd.DataFrame
    by_series: pd.DataFrame
    expected: dict[str, float | None]
    verdict: monitoring.DecayVerdict | None  # of the live model; None when nothing was ever forecast
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None

    @property
    def decay(self) -> bool:
        return self.verdict is not None and self.verdict.decay

    def summary(self) -> dict[str, Any]:
        overall = monitoring.summarise(self.record).iloc[0]
        verdict = self.verdict
        return {
            "decay": self.decay, "verdict": verdict.text if verdict else "nothing forecast yet",
            "live_model": verdict.model if verdict else None,
            "origins": int(self.record["forecast_origin"].nunique()) if len(self.record) else 0,
            "series": int(self.record["series_id"].nunique()) if len(self.record) else 0,
            "points": int(overall["points"]), "added": self.added, "updated": self.updated, "pending": self.pending,
            **{name: _number(overall[name]) for name in (*SCORES, "bias", "snaive_mae", "coverage")},
            "window": None if verdict is None else {
                "origins": [o.isoformat() for o in verdict.origins], "mae": _number(verdict.mae),
                "snaive_mae": _number(verdict.snaive_mae), "expected_mae": verdict.expected_mae,
                "ratio": verdict.ratio, "reasons": verdict.reasons},
            "model_versions": sorted(self.by_model["model"]) if len(self.by_model) else [],
            "models": _records(self.by_model), "expected_mae": self.expected,
            "absent_series": self.absent_series, "duplicates": self.duplicates, "files": self.files,
            "notes": self.notes, "record": str(self.record_path), "run_id": self.run_id,
        }


def run(config: Config, forecasts: str | Path | None = None, actuals: str | Path | None = None) -> MonitorResult:
    """`forecaster monitor`: score every committed forecast under `forecasts` (default `predict.output`) that has
    actuals in `actuals` (default `monitor.actuals`, else `data.path`)."""
    from forecaster.data.frequency import season_length
    from forecaster.data.io import read_table, with_key_columns
    from forecaster.data.validate import scan_frame

    folder = Path(forecasts or config.predict.output)
    if not folder.is_dir():
        raise ConfigError(f"forecasts folder not found: {folder} (--forecasts, default predict.output). Point it "
                          f"at the folder `forecaster predict` writes to.")
    actuals_path = Path(actuals or config.monitor.actuals or config.data.path)
    scan = scan_frame(read_table(config.data, actuals_path), config.data, source=str(actuals_path))
    season = config.model.season_length or season_length(scan.freq)

    frame, files, notes = committed_points(folder, config.predict.base_scenario)
    frame, duplicates = monitoring.deduplicate(frame)
    joined = monitoring.score_points(frame, scan, season)
    record_path = Path(config.monitor.record) if config.monitor.record else folder / RECORD_FILE
    record, added, updated = monitoring.merge_record(read_record(record_path), _aligned(joined.points))
    outputs.write_frame(record, record_path, "parquet")

    result = MonitorResult(
        forecasts_dir=folder, actuals=actuals_path, record_path=record_path, record=record, files=files,
        added=added, updated=updated, pending=joined.pending, absent_series=joined.absent_series,
        duplicates=duplicates, by_model=monitoring.summarise(record, ["model"]),
        by_origin=monitoring.summarise(record, ["model", "forecast_origin"]),
        by_step=monitoring.summarise(record, ["model", "step"]),
        by_series=with_key_columns(monitoring.summarise(record, ["model", "series_id", "target"]), config.data),
        expected={}, verdict=None, notes=notes,
    )
    _note_partial_origins(result, frame)
    _log_pass(config, result, live_model(frame, record), season)
    return result


def committed_points(folder: Path, base_scenario: str | None = None) -> tuple[pd.DataFrame, int, list[str]]:
    """Every committed forecast file in `folder` (`outputs.read_committed`) as monitoring's point rows, with the
    model's identity and the file's name and creation time; and notes on what was skipped. A model is
    `NAME-vVERSION` when registered, else its logged model id or `run-RUN_ID`: the same model found under two URIs
    counts once. Of a file with what-if scenarios, only the base scenario's rows are scored (`base_scenario`)."""
    found, notes = outputs.read_committed(folder)
    frames = []
    for output in found:
        name = output.paths.forecast.name
        try:
            table = output.read()
            if "scenario" in table:
                table, note = _base_scenario(table, base_scenario, name)
                notes.append(note)
            model = output.manifest["model"]
            rows = monitoring.point_forecasts(table, model_key(model))
        except (OSError, ValueError, KeyError) as exc:
            notes.append(f"{name}: cannot read its forecasts ({type(exc).__name__}: {exc}); skipped")
            continue
        frames.append(rows.assign(
            model_uri=model.get("uri"), model_name=model.get("name"), model_version=_text(model.get("version")),
            source_run_id=model.get("source_run_id"), forecast_file=name,
            created_at=pd.Timestamp(output.manifest["created_at"]).tz_convert("UTC").tz_localize(None),
        ))
    empty = monitoring.point_forecasts(pd.DataFrame(columns=["forecast_origin", "series_id", "target", "step",
                                                             "timestamp", "forecast"]), "").assign(
        model_uri=None, model_name=None, model_version=None, source_run_id=None, forecast_file=None,
        created_at=pd.NaT)
    frame = pd.concat(frames, ignore_index=True) if frames else empty
    return frame, len(frames), notes


def _base_scenario(table: pd.DataFrame, base: str | None, name: str) -> tuple[pd.DataFrame, str]:
    """The rows of the scenario that stands for what was expected: `base` (predict.base_scenario) when set, else
    the only scenario, else one named 'base'."""
    names = [str(scenario) for scenario in pd.unique(table["scenario"].astype(str))]
    chosen = base if base is not None else (names[0] if len(names) == 1 else "base")
    if chosen not in names:
        raise ValueError(f"it holds the scenarios {', '.join(names)} but no '{chosen}'; set predict.base_scenario "
                         f"to the one monitoring should score")
    rows = table[table["scenario"].astype(str) == chosen].drop(columns="scenario")
    return rows, f"{name}: scored its scenario '{chosen}' of {len(names)} (predict.base_scenario)"


def model_key(model: dict[str, Any]) -> str:
    if model.get("name") and model.get("version"):
        return f"{model['name']}-v{model['version']}"
    if model.get("model_id"):
        return str(model["model_id"])
    if model.get("source_run_id"):
        return f"run-{model['source_run_id']}"
    return str(model.get("uri"))


def read_record(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return _aligned(pd.read_parquet(path))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: the monitoring record cannot be read ({exc}). Move it aside to start a new "
                        f"record (the forecast files still on disk are scored again).") from None


def live_model(frame: pd.DataFrame, record: pd.DataFrame) -> str | None:
    """The model that made the newest forecast: the one in production, whose decay matters."""
    source = frame if len(frame) else record
    if not len(source):
        return None
    newest = source.sort_values(["forecast_origin", "created_at"]).iloc[-1]
    return str(newest["model"])


def expected_error(model: dict[str, Any], client) -> tuple[float | None, str | None]:
    """The model's validation MAE in original units (`EXPECTED_METRIC` of the run that selected it: a
    registered version's `source_run` tag, else its run; a refit run leads to the run it refit), and a note
    when it is unknown or the registry no longer holds the version."""
    from mlflow.exceptions import MlflowException

    note, run_id = None, model.get("source_run_id")
    if model.get("model_name") and model.get("model_version"):
        try:
            version = client.get_model_version(model["model_name"], model["model_version"])
            run_id = version.tags.get("source_run") or version.run_id or run_id
        except MlflowException:
            note = (f"{model['model_name']} version {model['model_version']} is no longer in the registry; "
                    f"its forecasts are still scored")
    for _ in range(3):  # the run, then the run a refit was made from
        if not run_id:
            break
        try:
            found = client.get_run(run_id)
        except MlflowException:
            return None, _join(note, f"run {run_id} is not in the tracking store")
        value = found.data.metrics.get(EXPECTED_METRIC)
        if value is not None and math.isfinite(value):
            return float(value), note
        run_id = found.data.tags.get("forecaster.refit_of")
    return None, _join(note, f"no {EXPECTED_METRIC} logged for {model['model']}")


def _log_pass(config: Config, result: MonitorResult, live: str | None, season: int) -> None:
    """Judge decay and record the pass as one MLflow run."""
    import mlflow
    from mlflow.entities import Metric

    from forecaster.tracking import file_fingerprint, setup_tracking, tracked_run

    experiment = f"{config.tracking.experiment}-monitoring"
    experiment_id = setup_tracking(config.tracking.model_copy(update={"experiment": experiment}))
    client = mlflow.MlflowClient()
    identities = result.record.drop_duplicates("model")[["model", "model_name", "model_version", "source_run_id"]]
    for model in identities.to_dict("records"):
        result.expected[model["model"]], note = expected_error(model, client)
        if note:
            result.notes.append(note)
    if live is not None:
        result.verdict = monitoring.judge_decay(result.record, live, result.expected.get(live),
                                                config.monitor.window, config.monitor.decay_ratio)
        (log.warning if result.decay else log.info)("%s", result.verdict.text)
    with tracked_run(experiment_id=experiment_id, run_name=f"monitor {result.forecasts_dir.name}") as run:
        result.run_id = run.info.run_id
        summary = result.summary()
        mlflow.set_tags({"forecaster.job": "monitor", "forecaster.decay": str(result.decay).lower(),
                         "forecaster.live_model": live or "", "forecaster.verdict": summary["verdict"][:5000]})
        mlflow.log_params({"forecasts_dir": str(result.forecasts_dir.resolve()),
                           "actuals": str(result.actuals.resolve()),
                           "actuals_sha256": file_fingerprint(result.actuals)["sha256"],
                           "record": str(result.record_path.resolve()), "window": config.monitor.window,
                           "decay_ratio": config.monitor.decay_ratio, "season_length": season,
                           "origin_step": "unix seconds"})
        flat = {key: summary[key] for key in ("points", "added", "updated", "pending", "duplicates", "files",
                                              "origins", "series", *SCORES, "bias", "snaive_mae", "coverage")}
        if summary["window"] is not None:
            flat |= {f"window/{key}": summary["window"][key] for key in ("mae", "snaive_mae", "expected_mae")}
        mlflow.log_metrics({key: float(value) for key, value in {**flat, "decay": int(result.decay)}.items()
                            if value is not None and np.isfinite(value)})
        now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        stepped = [Metric(f"origin/{row['model']}/{name}", float(row[name]), now,
                          int(pd.Timestamp(row["forecast_origin"]).timestamp()))
                   for row in result.by_origin.to_dict("records")
                   for name in ("mae", "snaive_mae", "mase", "bias", "coverage") if np.isfinite(row[name])]
        for start in range(0, len(stepped), 1000):  # the tracking API takes at most 1000 metrics a call
            client.log_batch(run.info.run_id, metrics=stepped[start : start + 1000])
        for name in ("by_origin", "by_step", "by_series", "by_model"):
            mlflow.log_text(getattr(result, name).to_csv(index=False), f"monitoring/{name}.csv")
        mlflow.log_dict(summary, "monitoring/summary.json")
        if len(result.by_origin):
            fig = monitoring.error_over_time(result.by_origin, result.expected)
            mlflow.log_figure(fig, "plots/error_over_time.png")
            import matplotlib.pyplot as plt

            plt.close(fig)


def _note_partial_origins(result: MonitorResult, frame: pd.DataFrame) -> None:
    if result.pending:
        result.notes.append(f"{result.pending} forecast point(s) wait for actuals (not arrived yet, or empty)")
    if result.absent_series:
        shown = ", ".join(result.absent_series[:5]) + (" ..." if len(result.absent_series) > 5 else "")
        result.notes.append(f"{len(result.absent_series)} forecast series absent from the actuals: {shown}")
    if result.duplicates:
        result.notes.append(f"{result.duplicates} forecast row(s) appear in more than one file; counted once "
                            f"(the newest file wins)")
    if len(frame) and len(result.record):
        made = frame.groupby(["model", "forecast_origin"]).size()
        scored = result.record.groupby(["model", "forecast_origin"]).size().reindex(made.index, fill_value=0)
        partial = int(((scored > 0) & (scored < made)).sum())
        if partial:
            result.notes.append(f"{partial} origin(s) scored in part: only some of their steps have actuals yet")


def _aligned(points: pd.DataFrame) -> pd.DataFrame:
    """Stable dtypes, so that a record read back from Parquet and a new pass's points compare key by key."""
    points = points.copy()
    for column in ("forecast_origin", "timestamp", "created_at"):
        if column in points:
            points[column] = pd.to_datetime(points[column]).astype("datetime64[ns]")
    for column in ("model", "series_id", "target", "model_uri", "model_name", "model_version", "source_run_id",
                   "forecast_file"):
        if column in points:
            points[column] = points[column].astype(object).where(points[column].notna(), None)
    points["step"] = points["step"].astype(np.int64)
    return points


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _number(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{key: (_number(value) if isinstance(value, float) else value) for key, value in row.items()}
            for row in table.to_dict("records")]


def format_result(result: MonitorResult) -> str:
    summary = result.summary()
    lines = [f"monitored {summary['points']:,} forecast points ({summary['origins']} origin(s), "
             f"{summary['series']} series) from {result.files} file(s) in {result.forecasts_dir} against "
             f"{result.actuals}: {result.added} new, {result.updated} updated"]
    if len(result.by_model):
        table = result.by_model.assign(expected_mae=result.by_model["model"].map(result.expected))
        lines += ["", table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), ""]
    if result.verdict is not None and result.verdict.origins:
        live = result.by_step[result.by_step["model"] == result.verdict.model]
        steps = ", ".join(f"{int(s)}: {m:.3g}/{n:.3g}" for s, m, n in
                          zip(live["step"], live["mae"], live["snaive_mae"], strict=True))
        lines.append(f"{result.verdict.model} MAE / seasonal naive by step: {steps}")
        worst = result.by_series[result.by_series["model"] == result.verdict.model].nlargest(3, "mase")
        if len(worst):
            lines.append("highest MASE: " + ", ".join(f"{r.series_id}/{r.target} {r.mase:.3g}"
                                                      for r in worst.itertuples()))
    lines += [f"note: {note}" for note in result.notes]
    lines += [summary["verdict"], f"record {result.record_path}, run {result.run_id}"]
    return "\n".join(lines)
