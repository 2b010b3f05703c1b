"""Forecast monitoring: the join, the scores and the record on hand-computed numbers; the job on real files and a
real tracking store; and, marked slow, the whole production loop from the command line against an `mlflow server`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli

from forecaster import monitoring, outputs
from forecaster.config import DataConfig
from forecaster.data.validate import scan_frame

DATA = DataConfig(timestamp="timestamp", series_id="series_id", target="load")
# Series a, hourly from 00:00: with season m = 2 the in-sample seasonal-naive errors |y_t - y_{t-2}| are
# 1, 3, 2, 3, 3, 4, so MASE's scale at the origin 03:00 is mean(1, 3) = 2.
VALUES = [1.0, 3.0, 2.0, 6.0, 4.0, 9.0, 7.0, 5.0]
STAMPS = pd.date_range("2024-01-01", periods=8, freq="h")
ORIGIN = STAMPS[3]


def actuals(rows: int = 8, value_of=None) -> pd.DataFrame:
    values = [value_of(i) if value_of else VALUES[i] for i in range(rows)]
    return pd.DataFrame({"timestamp": STAMPS[:rows], "series_id": "a", "load": values})


def forecast_file(model: str = "demo-v1", series=("a",), forecast=(5.0, 7.0, 7.0), quantiles=True) -> pd.DataFrame:
    """Rows as `forecaster predict` writes them: origin 03:00, steps 1..3 for 04:00, 05:00, 06:00."""
    rows = []
    for series_id in series:
        for step, value in enumerate(forecast, start=1):
            row = {"series_id": series_id, "target": "load", "timestamp": str(STAMPS[3 + step]), "step": step,
                   "forecast": value, "model_uri": "models:/demo@champion", "model_version": "1",
                   "source_run_id": "r1", "forecast_origin": str(ORIGIN), "created_at": "2024-01-01T04:00:00+00:00"}
            if quantiles:
                row |= {"forecast_q10": (4.5, 6.0, 6.5)[step - 1], "forecast_q50": value,
                        "forecast_q90": (5.5, 8.0, 8.0)[step - 1]}
            rows.append(row)
    return pd.DataFrame(rows)


def scored(frame: pd.DataFrame, history: pd.DataFrame, model: str = "demo-v1") -> monitoring.Join:
    points = monitoring.point_forecasts(frame, model)
    return monitoring.score_points(points, scan_frame(history, DATA, "actuals.csv"), season_length=2)


def test_scores_match_hand_computed_numbers():
    join = scored(forecast_file(), actuals())
    points = join.points.sort_values("step")
    assert points["actual"].tolist() == [4.0, 9.0, 7.0]
    # seasonal naive from the origin (row 3): step h repeats row 3 + h - 2 * ceil(h / 2): rows 2, 3, 2
    assert points["snaive"].tolist() == [2.0, 6.0, 2.0]
    assert points["mase_scale"].tolist() == [2.0, 2.0, 2.0]

    scores = monitoring.summarise(join.points).iloc[0]
    assert scores["points"] == 3
    assert scores["mae"] == pytest.approx(1.0)  # errors 1, -2, 0
    assert scores["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert scores["bias"] == pytest.approx(-1 / 3)
    assert scores["mase"] == pytest.approx(0.5)
    assert scores["smape"] == pytest.approx((200 / 9 + 200 * 2 / 16 + 0) / 3)
    assert scores["snaive_mae"] == pytest.approx((2 + 3 + 5) / 3)
    assert scores["coverage"] == pytest.approx(1 / 3)  # only 7 lies in [6.5, 8]
    assert scores["nominal_coverage"] == pytest.approx(0.8)


def test_coverage_reads_the_widest_calibrated_interval_before_quantiles():
    frame = forecast_file(quantiles=True).assign(
        forecast_lo_80=[3.0, 8.0, 6.0], forecast_hi_80=[5.0, 10.0, 8.0],  # actuals 4, 9, 7: all inside
        forecast_lo_50=[4.5, 8.5, 6.5], forecast_hi_50=[4.6, 8.6, 6.6])  # none inside
    scores = monitoring.summarise(scored(frame, actuals()).points).iloc[0]
    assert scores["coverage"] == pytest.approx(1.0) and scores["nominal_coverage"] == pytest.approx(0.8)


def test_partial_actuals_score_only_the_steps_that_arrived_and_absent_series_are_listed():
    join = scored(forecast_file(series=("a", "b")), actuals(rows=6))  # 04:00 and 05:00 arrived, 06:00 not yet
    assert join.points["step"].tolist() == [1, 2]
    assert join.pending == 1
    assert join.absent_series == ["b"]


def test_the_scale_uses_only_the_history_before_the_origin():
    """A wild value after the origin changes the actuals, never the seasonal-naive forecast or MASE's scale."""
    later = actuals(value_of=lambda i: 1000.0 if i == 6 else VALUES[i])
    points = scored(forecast_file(), later).points.sort_values("step")
    assert points["snaive"].tolist() == [2.0, 6.0, 2.0]
    assert points["mase_scale"].tolist() == [2.0, 2.0, 2.0]
    assert points["actual"].tolist() == [4.0, 9.0, 1000.0]


def test_duplicate_files_count_once_and_the_newest_wins():
    old = monitoring.point_forecasts(forecast_file(forecast=(0.0, 0.0, 0.0)), "demo-v1").assign(
        created_at=pd.Timestamp("2024-01-01 04:00"))
    new = monitoring.point_forecasts(forecast_file(), "demo-v1").assign(created_at=pd.Timestamp("2024-01-01 05:00"))
    unique, dropped = monitoring.deduplicate(pd.concat([new, old], ignore_index=True))
    assert dropped == 3
    assert unique.sort_values("step")["forecast"].tolist() == [5.0, 7.0, 7.0]


def test_the_record_grows_without_duplicates_and_late_actuals_update_it():
    first = scored(forecast_file(), actuals(rows=6)).points  # steps 1, 2
    record, added, updated = monitoring.merge_record(None, first)
    assert (len(record), added, updated) == (2, 2, 0)

    corrected = actuals(value_of=lambda i: 4.5 if i == 4 else VALUES[i])  # step 1's actual corrected, step 3 arrived
    record, added, updated = monitoring.merge_record(record, scored(forecast_file(), corrected).points)
    assert (len(record), added, updated) == (3, 1, 1)
    assert record.sort_values("step")["actual"].tolist() == [4.5, 9.0, 7.0]

    again, added, updated = monitoring.merge_record(record, scored(forecast_file(), corrected).points)
    assert (len(again), added, updated) == (3, 0, 0)
    assert again.duplicated(monitoring.KEYS).sum() == 0


def points_of(model: str, origins: list[str], errors: list[float], snaive_errors: list[float]) -> pd.DataFrame:
    """One point per origin with the given absolute errors (actual 10)."""
    return pd.DataFrame({
        "model": model, "forecast_origin": pd.to_datetime(origins), "series_id": "a", "target": "load", "step": 1,
        "forecast": [10.0 + e for e in errors], "actual": 10.0, "snaive": [10.0 + e for e in snaive_errors],
        "mase_scale": 1.0, "lower": np.nan, "upper": np.nan, "nominal_coverage": np.nan,
    })


def test_decay_over_the_window_against_the_validation_error_and_seasonal_naive():
    days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    points = points_of("m", days, errors=[9.0, 1.0, 1.2, 1.4], snaive_errors=[9.0, 2.0, 2.0, 2.0])
    # the window of 3 leaves out the bad first origin: MAE 1.2 <= 1.25 * 1.0, and seasonal naive (2.0) is worse
    calm = monitoring.judge_decay(points, "m", expected_mae=1.0, window=3, ratio=1.25)
    assert not calm.decay and calm.mae == pytest.approx(1.2)
    assert len(calm.origins) == 3 and calm.origins[0] == pd.Timestamp("2024-01-02")
    # the same MAE against a smaller validation error decays
    tight = monitoring.judge_decay(points, "m", expected_mae=0.9, window=3, ratio=1.25)
    assert tight.decay and "exceeds 1.25 x validation MAE 0.9" in tight.text
    # validation error unknown: only the seasonal-naive rule, which fires when naive is better on the same points
    beaten = points_of("m", days, errors=[1.0] * 4, snaive_errors=[0.5] * 4)
    verdict = monitoring.judge_decay(beaten, "m", expected_mae=None, window=7, ratio=1.25)
    assert verdict.decay and "seasonal naive (0.5) beats the model (1)" in verdict.text
    assert "validation MAE unknown" in verdict.text
    assert not monitoring.judge_decay(points, "other", 1.0, 3, 1.25).decay  # nothing scored: nothing to judge


# -- the job: real files, a real embedded store --------------------------------------------------------------


def commit(folder: Path, frame: pd.DataFrame, version: str = "1", fmt: str = "csv", label: str = "demo-v1",
           created_at: str = "2024-01-01T04:00:00+00:00") -> outputs.OutputPaths:
    paths = outputs.output_paths(folder, label, ORIGIN, fmt)
    manifest = {"created_at": created_at, "model": {"uri": "models:/demo@champion", "name": "demo",
                                                    "version": version, "model_id": None, "source_run_id": None},
                "forecast_origin": ORIGIN.isoformat()}
    outputs.write_output(frame.assign(model_version=version), paths, manifest)
    return paths


@pytest.fixture
def job(tmp_path):
    from forecaster.config import Config

    out = tmp_path / "out"
    history = tmp_path / "actuals.csv"
    config = Config().with_overrides({
        "data.timestamp": "timestamp", "data.series_id": "series_id", "data.target": "load",
        "data.path": str(history), "model.season_length": 2, "predict.output": str(out),
        "tracking.state_dir": str(tmp_path / "state"), "tracking.experiment": "mon", "monitor.window": 3,
    })
    return config, out, history


def test_the_job_scores_committed_files_once_and_logs_each_pass(job):
    import mlflow

    from forecaster_pipelines import monitor

    config, out, history = job
    actuals(rows=6).to_csv(history, index=False)
    commit(out, forecast_file(series=("a", "b")))
    # the same model's forecasts for the same origin under another name (a copy, an older naming): counted once
    commit(out, forecast_file(series=("a", "b")), fmt="parquet", label="demo-v1-copy",
           created_at="2024-01-01T04:30:00+00:00")
    outputs.write_frame(forecast_file(model="x"), out / "forecast_demo-v9_20240101T030000.csv", "csv")  # no manifest

    first = monitor.run(config)
    summary = first.summary()
    assert (summary["points"], summary["added"], summary["pending"], summary["duplicates"]) == (2, 2, 1, 6)
    assert summary["absent_series"] == ["b"] and summary["model_versions"] == ["demo-v1"]
    assert summary["mae"] == pytest.approx(1.5)  # steps 1 and 2: errors 1 and 2
    text = monitor.format_result(first)
    assert "without a manifest" in text and "absent from the actuals: b" in text and "scored in part" in text
    assert "no longer in the registry" in text  # demo version 1 was never registered here
    assert "validation MAE unknown" in summary["verdict"]

    actuals().to_csv(history, index=False)  # the last step arrives
    second = monitor.run(config)
    assert (second.summary()["points"], second.added) == (3, 1)
    third = monitor.run(config)  # nothing new: nothing added, nothing duplicated
    assert (len(third.record), third.added, third.updated) == (3, 0, 0)
    assert len(pd.read_parquet(third.record_path)) == 3

    client = mlflow.MlflowClient()
    run = client.get_run(third.run_id)
    assert run.data.tags["forecaster.decay"] == "false"
    assert run.data.metrics["mae"] == pytest.approx(1.0)
    history_of = client.get_metric_history(third.run_id, "origin/demo-v1/mae")
    assert [(m.step, m.value) for m in history_of] == [(int(ORIGIN.timestamp()), pytest.approx(1.0))]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "mon-monitoring"
    artifacts = {a.path for a in client.list_artifacts(third.run_id, "plots")}
    assert artifacts == {"plots/error_over_time.png"}
    assert json.loads(json.dumps(second.summary(), default=str))["decay"] is False


def test_the_job_flags_decay_when_seasonal_naive_wins(job):
    from forecaster_pipelines import monitor

    config, out, history = job
    actuals().to_csv(history, index=False)
    commit(out, forecast_file(forecast=(20.0, 20.0, 20.0), quantiles=False))
    result = monitor.run(config)
    assert result.decay and "seasonal naive" in result.verdict.text
    assert result.summary()["coverage"] is None  # point forecasts: no interval to cover


def test_a_missing_forecasts_folder_is_a_user_error(job):
    from forecaster.errors import ConfigError
    from forecaster_pipelines import monitor

    config, out, history = job
    with pytest.raises(ConfigError, match="forecasts folder not found"):
        monitor.run(config)


def test_retrain_on_decay_runs_compare_only_when_the_monitor_flags_decay(job, monkeypatch):
    from forecaster_pipelines import compare, monitor, predict, schedule

    config, out, history = job
    out.mkdir()
    config = config.with_overrides({"schedule.retrain": "on_decay", "predict.model": "models:/demo@champion"})
    calls: list[str] = []
    verdicts = iter([False, True])

    class Judged:
        def __init__(self, decay):
            self.decay, self.verdict = decay, monitoring.DecayVerdict("demo-v1", decay, [], 1.0, 1.0, None, 1.25)

    monkeypatch.setattr(monitor, "run", lambda cfg: calls.append("monitor") or Judged(next(verdicts)))
    monkeypatch.setattr(monitor, "format_result", lambda result: "")
    monkeypatch.setattr(compare, "run", lambda cfg: calls.append("compare") or type("C", (), {"decision": "kept"}))
    written = SimpleNamespace(status=predict.WRITTEN, paths=SimpleNamespace(forecast="x"))
    monkeypatch.setattr(predict, "run", lambda cfg: calls.append("predict") or written)
    monkeypatch.setattr(predict, "format_result", lambda result: "")
    assert schedule.run_cycle(config).decay is False
    assert schedule.run_cycle(config).decay is True
    assert calls == ["monitor", "predict", "monitor", "compare", "predict"]


# -- the production loop from the command line, against a real tracking server ----------------------------------

def simulated_panel(days: int, shift_day: int, seed: int = 7) -> pd.DataFrame:
    """Three hourly series: a level, a daily cycle and noise; from `shift_day` on every level is 25 higher."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=24 * days, freq="h")
    hours = np.arange(len(stamps))
    frames = []
    for index in range(3):
        level = 50.0 + 5 * index + 25.0 * (hours >= 24 * shift_day)
        load = level + 10 * np.sin(2 * np.pi * (hours % 24) / 24 + index) + rng.normal(0, 1, len(stamps))
        frames.append(pd.DataFrame({"timestamp": stamps, "series_id": f"site_{index}", "load": load.round(3)}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_level_shift_is_flagged_and_retrain_on_decay_moves_the_alias(mlflow_server, tmp_path, repo_root):
    """Train on two weeks, then forecast and monitor day by day; the levels jump on day 16. The monitor exits 0
    before, 3 once the shifted day's actuals arrive; `schedule --once` with retrain on_decay then retrains, and
    once enough shifted data has arrived the alias moves to a model that beats the decayed one on it."""
    from mlflow import MlflowClient

    from forecaster.config import Config, dump_config

    panel, data = simulated_panel(days=28, shift_day=16), tmp_path / "load.csv"
    config = Config().with_overrides({
        "data.path": str(data), "data.series_id": "series_id", "data.target": "load",
        "window.lookback": 72, "window.horizon": 24, "split.val_size": 48, "split.test_size": 48,
        "tracking.uri": mlflow_server, "tracking.experiment": "loop", "tracking.state_dir": str(tmp_path / "state"),
        "registry.name": "loop", "compare.models": ["naive", "seasonal_naive", "linear"], "compare.metric": "mae",
        "predict.output": str(tmp_path / "out"), "predict.data": str(data), "predict.model": "models:/loop@champion",
        "train.progress": False, "train.threads": 1, "schedule.retrain": "on_decay",
    })
    config_file = tmp_path / "loop.yaml"
    config_file.write_text(dump_config(config))

    def forecaster(*args: str, expect: int = 0) -> str:
        done = run_cli(*args, config_file, cwd=repo_root, timeout=300)
        assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
        return done.stdout

    def arrive_until(day: int) -> None:  # the actuals up to the start of `day` have arrived
        panel[panel["timestamp"] < pd.Timestamp("2024-01-01") + pd.Timedelta(days=day)].to_csv(data, index=False)

    def monitored(expect: int) -> dict:
        return json.loads(forecaster("monitor", "--json", expect=expect).strip().splitlines()[-1])

    arrive_until(14)
    forecaster("compare")
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    first = client.get_model_version_by_alias("loop", "champion")
    forecaster("predict")
    for day in (15, 16):
        arrive_until(day)
        calm = monitored(expect=0)
        assert calm["decay"] is False, calm["verdict"]
        assert calm["expected_mae"][f"loop-v{first.version}"] is not None  # the validation MAE was found
        forecaster("predict")
    assert calm["origins"] == 2 and calm["model_versions"] == [f"loop-v{first.version}"]

    arrive_until(17)  # day 16, the first shifted day, has arrived
    shifted = monitored(expect=3)
    assert shifted["decay"] is True and shifted["origins"] == 3 and shifted["points"] == 3 * 3 * 24
    assert shifted["window"]["mae"] > 1.25 * shifted["expected_mae"][f"loop-v{first.version}"]
    forecaster("schedule", "--once")  # monitor flags decay again, so compare runs, then predict

    arrive_until(28)  # eleven shifted days
    forecaster("schedule", "--once")
    champion = client.get_model_version_by_alias("loop", "champion")
    assert int(champion.version) > int(first.version)
    tags = champion.tags
    assert float(tags["forecaster.challenge.challenger_score"]) < float(tags["forecaster.challenge.champion_score"])

    runs = client.search_runs([client.get_experiment_by_name("loop-monitoring").experiment_id])
    assert len(runs) == 5  # one per pass: three monitor commands and two scheduled cycles
    assert sorted(run.data.tags["forecaster.decay"] for run in runs) == ["false"] * 2 + ["true"] * 3
    newest = max(runs, key=lambda run: run.info.start_time)
    steps = [m.step for m in client.get_metric_history(newest.info.run_id, f"origin/loop-v{first.version}/mae")]
    assert len(steps) >= 3 and steps == sorted(steps)
    history = [json.loads(line) for line in (tmp_path / "state" / "schedule-history.jsonl").read_text().splitlines()]
    assert [record["decay"] for record in history] == [True, True]
    assert "retrain:" in history[0]["detail"]


def test_rmsse_and_wape_are_monitored_from_the_registry():
    scores = monitoring.summarise(scored(forecast_file(), actuals()).points).iloc[0]
    # squared seasonal-naive errors up to the origin (row 3): (2 - 1)^2 and (6 - 3)^2, mean 5; errors 1, -2, 0
    assert scores["rmsse"] == pytest.approx(math.sqrt((1 + 4 + 0) / 5 / 3))
    assert scores["wape"] == pytest.approx(100 * (1 + 2 + 0) / (4 + 9 + 7))
    assert {"rmsse", "wape"} <= set(monitoring.SUMMARY_COLUMNS)
