"""The scheduler's mechanics with a stand-in cycle: crontab meaning, no overlap, the lock, graceful stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from forecaster import outputs
from forecaster.config import Config, ScheduleConfig
from forecaster.errors import ConfigError, ForecasterError, Interrupted
from forecaster_pipelines import schedule
from forecaster_pipelines.schedule import CycleReport

THURSDAY = datetime(2026, 11, 26, 10, 7, tzinfo=ZoneInfo("UTC"))


def make_config(tmp_path: Path, cron: str = "* * * * * *") -> Config:
    return Config().with_overrides({"tracking.state_dir": str(tmp_path / "state"), "schedule.cron": cron,
                                    "predict.output": str(tmp_path / "out")})


def history(config: Config) -> list[dict]:
    lines = (Path(config.tracking.state_dir) / schedule.HISTORY_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("cron, first_fire", [
    ("0 9 * * 1", "Mon 2026-11-30 09:00:00"),  # crontab: 1 is Monday (APScheduler 3 alone would say Tuesday)
    ("0 9 * * 0", "Sun 2026-11-29 09:00:00"),
    ("0 9 * * 7", "Sun 2026-11-29 09:00:00"),
    ("0 9 * * mon-fri", "Fri 2026-11-27 09:00:00"),
    ("*/20 * * * *", "Thu 2026-11-26 10:20:00"),
    ("30 2 1 jan *", "Fri 2027-01-01 02:30:00"),
    ("* * * * * */10", "Thu 2026-11-26 10:07:10"),  # a sixth field gives seconds, as in croniter
])
def test_cron_expressions_keep_their_crontab_meaning(cron, first_fire):
    trigger = schedule.cron_trigger(ScheduleConfig(cron=cron))
    fire = trigger.get_next_fire_time(None, THURSDAY.replace(second=1))
    assert fire.strftime("%a %Y-%m-%d %H:%M:%S") == first_fire


def test_cron_follows_the_configured_time_zone():
    trigger = schedule.cron_trigger(ScheduleConfig(cron="0 9 * * *", timezone="Europe/Paris"))
    fire = trigger.get_next_fire_time(None, THURSDAY)
    assert fire.astimezone(ZoneInfo("UTC")).hour == 8  # 09:00 in Paris in November is 08:00 UTC


@pytest.mark.parametrize("key, value, expected", [
    ("cron", "0 * * *", "expected 5 fields"),
    ("cron", "61 * * * *", "out of range"),
    ("cron", "0 9 1 * 1", "either-or"),
    ("timezone", "Mars/Olympus", "unknown time zone"),
])
def test_bad_schedule_settings_name_the_key(tmp_path, key, value, expected):
    config = make_config(tmp_path).with_overrides({f"schedule.{key}": value})
    with pytest.raises(ConfigError, match=f"schedule.{key}") as error:
        schedule.run(config, cycle=lambda _: CycleReport("written"))
    assert expected in str(error.value)


def test_fast_schedule_writes_outputs_without_overlapping_runs(tmp_path):
    """Every second, with cycles that take longer than that: ticks that fall during a cycle are skipped, never
    run beside it. A SIGTERM during the second cycle lets that cycle finish its output, then the scheduler stops,
    saying it was interrupted (the CLI exits 143, never 0)."""
    config = make_config(tmp_path, cron="* * * * * *")
    spans: list[tuple[float, float]] = []
    active = threading.Semaphore(1)

    def slow_cycle(cfg: Config) -> CycleReport:
        assert active.acquire(blocking=False), "two cycles ran at once"
        start = time.monotonic()
        if len(spans) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # stop while this cycle runs
        time.sleep(1.3)
        path = Path(cfg.predict.output) / f"forecast_{len(spans) + 1}.csv"
        outputs.write_frame(pd.DataFrame({"step": [1, 2], "forecast": [1.0, 2.0]}), path, "csv")
        spans.append((start, time.monotonic()))
        active.release()
        return CycleReport("written", output=str(path))

    with pytest.raises(Interrupted) as stopped:
        schedule.run(config, cycle=slow_cycle)
    assert stopped.value.exit_code == 143 and "2 finished cycle(s)" in stopped.value.kept[0]

    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0]
    assert sorted(p.name for p in Path(config.predict.output).iterdir()) == ["forecast_1.csv", "forecast_2.csv"]
    records = history(config)
    assert [(r["cycle"], r["status"]) for r in records] == [(1, "written"), (2, "written")]
    assert records[1]["output"].endswith("forecast_2.csv")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_failing_cycle_is_logged_and_the_scheduler_goes_on(tmp_path):
    config = make_config(tmp_path, cron="* * * * * *")
    calls: list[int] = []

    def flaky_cycle(cfg: Config) -> CycleReport:
        calls.append(1)
        if len(calls) == 1:
            raise ForecasterError("data/new.csv: series site_b has 3 rows, the model needs 72")
        os.kill(os.getpid(), signal.SIGINT)
        return CycleReport("skipped-existing", output="outputs/x.csv")

    with pytest.raises(Interrupted) as stopped:
        schedule.run(config, cycle=flaky_cycle)
    assert stopped.value.exit_code == 130
    records = history(config)
    assert [r["status"] for r in records] == ["failed", "skipped-existing"]
    assert "site_b has 3 rows" in records[0]["error"]


def test_once_runs_one_cycle_and_reports_its_failure(tmp_path):
    config = make_config(tmp_path, cron="0 3 * * *")
    assert schedule.run(config, once=True, cycle=lambda _: CycleReport("written", output="a.csv")) == 0

    def broken(_: Config) -> CycleReport:
        raise ForecasterError("model models:/demo@champion: 'demo' is not a registered model")

    with pytest.raises(ForecasterError, match="not a registered model"):
        schedule.run(config, once=True, cycle=broken)
    assert [r["status"] for r in history(config)] == ["written", "failed"]
    assert not (Path(config.tracking.state_dir) / schedule.OWNER_FILE).exists()  # released after a failure too


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from forecaster_pipelines.schedule import schedule_lock
    with schedule_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_scheduler_is_refused_by_the_lock_until_the_first_dies(tmp_path):
    config = make_config(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, config.tracking.state_dir], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "locked"
        ran: list[int] = []
        with pytest.raises(ForecasterError) as refused:
            schedule.run(config, once=True, cycle=lambda _: ran.append(1) or CycleReport("written"))
        assert not ran
        message = str(refused.value)
        assert str(Path(config.tracking.state_dir) / schedule.LOCK_FILE) in message
        assert f"process {holder.pid}" in message
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, as in a crash
        holder.wait()
    assert schedule.run(config, once=True, cycle=lambda _: CycleReport("written")) == 0


STUCK_WRITING = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from forecaster.config import Config
    from forecaster.outputs import atomic_write
    from forecaster_pipelines import schedule
    from forecaster_pipelines.schedule import CycleReport

    def stuck_cycle(config):
        def write(handle):
            handle.write(b"series_id,step,forecast\\nsite_a,1,")
            handle.flush()
            print("writing", flush=True)
            time.sleep(60)

        atomic_write(Path(sys.argv[2]), write)
        return CycleReport("written")

    config = Config().with_overrides({"tracking.state_dir": sys.argv[1], "schedule.cron": "* * * * * *"})
    sys.exit(schedule.run(config, cycle=stuck_cycle))
""")


def test_a_second_signal_abandons_the_cycle_without_a_partial_output(tmp_path):
    output = tmp_path / "out" / "forecast.csv"
    scheduler = subprocess.Popen([sys.executable, "-c", STUCK_WRITING, str(tmp_path / "state"), str(output)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).parents[1])
    try:
        assert scheduler.stdout.readline().strip() == "writing"
        scheduler.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            scheduler.wait(timeout=1)  # the first signal waits for the cycle
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        scheduler.kill()
        scheduler.wait()
    assert not output.exists()
    assert [p.name.startswith(".forecast.csv.tmp-") for p in output.parent.iterdir()] == [True]
    assert schedule.run(make_config(tmp_path), once=True, cycle=lambda _: CycleReport("written")) == 0  # the lock went with it


# -- with the real cycle: a registered model, the demo file, real files and processes ----------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from helpers import train_and_register

    return train_and_register(tmp_path_factory.mktemp("store"), kind="naive")


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow  # CLI processes that import torch and MLflow
def test_the_schedule_command_forecasts_refuses_a_second_scheduler_and_stops_on_sigterm(store, tmp_path):
    from forecaster.config import dump_config
    from helpers import REPO_ROOT

    config = store.config.with_overrides({"schedule.cron": "* * * * * */2", "predict.output": str(tmp_path / "out")})
    config_file = tmp_path / "schedule.yaml"
    config_file.write_text(dump_config(config))
    command = [sys.executable, "-m", "forecaster_pipelines", "schedule", str(config_file)]
    scheduler = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        history_file = Path(config.tracking.state_dir) / schedule.HISTORY_FILE
        wait_for(lambda: history_file.is_file() and len(history_file.read_text().splitlines()) >= 2)

        second = subprocess.run([*command, "--once"], cwd=REPO_ROOT, capture_output=True, text=True)
        assert second.returncode == 2
        assert "another scheduler is running" in second.stderr and f"process {scheduler.pid}" in second.stderr

        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(timeout=60) == 143
    finally:
        scheduler.kill()
        log = scheduler.stderr.read()
    assert "interrupted by SIGTERM: kept" in log
    statuses = [record["status"] for record in history(config)]
    assert statuses[:2] == ["written", "skipped-existing"], log  # same model and origin: idempotent
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [f"forecast_demo-v{store.version}_20240330T230000.{ext}" for ext in ("csv", "manifest.json")]
    assert "cycle 1 started" in log and "stopping: no new cycles" in log


def test_a_retraining_cycle_forecasts_with_the_model_the_alias_points_to_afterwards(store, tmp_path):
    import mlflow

    config = store.config.with_overrides({"schedule.retrain": True, "compare.models": ["naive", "seasonal_naive"],
                                          "predict.output": str(tmp_path / "out")})
    assert schedule.run(config, once=True) == 0

    [record] = [r for r in history(config) if r["output"] and str(tmp_path) in r["output"]]
    champion = mlflow.MlflowClient().get_model_version_by_alias("demo", "champion").version
    manifest = json.loads(Path(record["output"]).with_suffix(".manifest.json").read_text())
    assert manifest["model"]["version"] == str(champion)
    assert ("moved @champion" in record["detail"]) == (str(champion) != store.version)


def test_a_cycle_without_predict_data_forecasts_the_training_file(store, tmp_path):
    config = store.config.with_overrides({"predict.data": None, "predict.output": str(tmp_path / "out")})
    report = schedule.run_cycle(config)
    assert report.status == "written"
    manifest = json.loads(Path(report.output).with_suffix(".manifest.json").read_text())
    assert manifest["input"]["path"] == str(Path(config.data.path).resolve())
