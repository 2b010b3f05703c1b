"""The schedule job: one long-running process that runs a forecast cycle on a cron timetable.

A cycle is an optional retrain (`schedule.retrain`: the compare job, which moves the alias only when the new
winner improves on the floor; with `on_decay`, the monitor job runs first and the compare job only when it flags
decay) followed by a batch forecast from `predict.model`, by default `models:/<registry.name>@<registry.alias>`. `run(config, once=True)` runs one cycle and returns, for people who
schedule with cron, systemd timers or Airflow.

Choices, and why:
- APScheduler 3 (the stable line) with an in-memory job store. The one job comes from the config, so there is
  nothing to persist; a persistent store would pickle job state and replay runs missed while the process was
  down, but one forecast from the latest data supersedes all of them, and the next tick makes it.
- coalesce, max_instances=1 and `schedule.misfire_grace_s`: late ticks collapse into one run, a tick that falls
  while a cycle runs is skipped, and a run a little late still happens (APScheduler's default grace, 1 s, drops
  it silently).
- The crontab keeps crontab's meaning: croniter checks it and expands the weekdays, which reach APScheduler by
  name, because APScheduler 3 numbers them from Monday = 0 and crontab from Sunday = 0.
- A file lock in the state directory (`schedule.lock`): one scheduler or `--once` cycle at a time, across
  processes. The operating system drops it when the holder dies, so a crash leaves no stale lock.
- SIGINT or SIGTERM: no new cycles; the current one finishes (its outputs are written atomically), exit 0. A
  second signal abandons it at once, which leaves at most a hidden temporary file, never a partial output.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forecaster.config import Config, ScheduleConfig
from forecaster.errors import ConfigError, ForecasterError, Interrupted
from forecaster.tracking import state_dir

log = logging.getLogger(__name__)

LOCK_FILE = "schedule.lock"
OWNER_FILE = "schedule.owner.json"
HISTORY_FILE = "schedule-history.jsonl"
JOB_ID = "forecast-cycle"
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) is Sunday


@dataclass
class CycleReport:
    """What one cycle did, as logged and appended to the history file."""

    status: str  # predict's status ("written", "skipped-existing")
    output: str | None = None
    detail: str = ""
    decay: bool | None = None  # the monitor's verdict, with schedule.retrain: on_decay


Cycle = Callable[[Config], CycleReport]


def run_cycle(config: Config) -> CycleReport:
    """Retrain and compare when `schedule.retrain` is true, or when it is `on_decay` and the monitor job flags
    decay; then forecast with the model under the alias."""
    from . import compare, predict

    detail, decay = "", None
    retrain = config.schedule.retrain is True
    if config.schedule.retrain == "on_decay":
        decay, detail = _monitor(config)
        retrain = decay
    if retrain:
        comparison = compare.run(config)
        detail = f"{detail}; retrain: {comparison.decision}" if detail else comparison.decision
        log.info("retrain: %s", comparison.decision)
    model = config.predict.model or f"models:/{config.registry.name}@{config.registry.alias}"
    data = config.predict.data or config.data.path  # by default the file training reads, kept up to date
    result = predict.run(config.with_overrides({"predict.model": model, "predict.data": data}))
    log.info("%s", predict.format_result(result))
    return CycleReport(status=result.status, output=str(result.paths.forecast), detail=detail, decay=decay)


def _monitor(config: Config) -> tuple[bool, str]:
    """The monitor job on `predict.output`: (decay, verdict). Before the first forecast there is nothing to score."""
    from . import monitor

    if not Path(config.predict.output).is_dir():
        return False, f"monitor: no forecasts yet in {config.predict.output}"
    result = monitor.run(config)
    log.info("%s", monitor.format_result(result))
    return result.decay, f"monitor: {result.verdict.text if result.verdict else 'nothing forecast yet'}"


def run(config: Config, once: bool = False, cycle: Cycle = run_cycle) -> int:
    """`forecaster schedule`: run `cycle` on `schedule.cron` until SIGINT or SIGTERM, which raise `Interrupted`
    once the running cycle has finished (the CLI exits 130 or 143).

    With `once`, run one cycle now and return 0; its errors propagate, so the caller exits non-zero. A signal
    during it lets the cycle finish, except a training in progress, which stops at the end of its batch (its
    epoch checkpoints are kept); the cycle is then recorded as `interrupted`.
    """
    trigger = cron_trigger(config.schedule)
    folder = state_dir(config.tracking)
    with schedule_lock(folder):
        runner = _CycleRunner(config, cycle, folder / HISTORY_FILE)
        if once:
            with _graceful_signals(on_first=lambda: log.info("finishing the current cycle, then exiting")) as got:
                runner(raise_errors=True)
            _raise_if_signalled(got, f"cycle {runner.count} finished and was recorded")
            return 0
        return _run_scheduler(config, trigger, runner)


def _raise_if_signalled(received: list[int], kept: str) -> None:
    if received:
        interrupted = Interrupted(received[0])
        interrupted.kept.append(kept)
        raise interrupted


def cron_trigger(schedule: ScheduleConfig):
    """A CronTrigger with crontab's meaning for `schedule.cron` (5 fields; a 6th gives seconds, as in croniter)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from apscheduler.triggers.cron import CronTrigger
    from croniter import croniter

    expression = schedule.cron
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ConfigError(f"schedule.cron {expression!r}: expected 5 fields (minute hour day month weekday), "
                          f"or 6 with seconds last; for example '0 * * * *' (hourly) or '*/15 * * * *'.")
    try:
        zone = ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"schedule.timezone {schedule.timezone!r}: unknown time zone; use an IANA name such "
                          f"as UTC or Europe/Paris.") from None
    try:
        expanded, _ = croniter.expand(expression)
    except ValueError as exc:
        raise ConfigError(f"schedule.cron {expression!r}: {exc}") from None
    if fields[2] != "*" and fields[4] != "*":
        raise ConfigError(f"schedule.cron {expression!r} restricts both the day of month and the weekday, which "
                          f"crontab reads as either-or; split it into two schedules or restrict only one.")
    minute, hour, day, _, _, *second = fields
    try:
        return CronTrigger(second=second[0] if second else "0", minute=minute, hour=hour, day=day,
                           month=_listed(expanded[3]), day_of_week=_weekdays(expanded[4]), timezone=zone)
    except ValueError as exc:
        raise ConfigError(f"schedule.cron {expression!r}: {exc}") from None


@contextmanager
def schedule_lock(folder: Path) -> Iterator[Path]:
    """Hold `folder/schedule.lock` for the block, or refuse at once with who holds it."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE)
    owner = folder / OWNER_FILE
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ForecasterError(
            f"another scheduler is running: {folder / LOCK_FILE} is locked{_describe_owner(owner)}. Only one "
            f"scheduler (or `schedule --once`) may run per state directory (tracking.state_dir); stop that one "
            f"first, or wait for its cycle to end."
        ) from None
    try:
        owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}))
        yield folder / LOCK_FILE
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _describe_owner(owner: Path) -> str:
    try:
        facts = json.loads(owner.read_text())
        return f" by process {facts['pid']} on {facts['host']} since {facts['since']}"
    except (OSError, ValueError, KeyError):
        return ""


class _CycleRunner:
    """Runs one cycle, logs its start and end, and appends a line to the history file."""

    def __init__(self, config: Config, cycle: Cycle, history: Path) -> None:
        self.config, self.cycle, self.history = config, cycle, history
        self.count = 0
        self.busy = False

    def __call__(self, raise_errors: bool = False) -> None:
        self.busy = True
        self.count += 1
        record: dict[str, Any] = {"cycle": self.count, "pid": os.getpid(), "started": _now()}
        start = time.perf_counter()
        log.info("cycle %d started", self.count)
        try:
            report = self.cycle(self.config)
            record.update(asdict(report))
            log.info("cycle %d finished in %.1f s: %s %s", self.count, time.perf_counter() - start,
                     report.status, report.output or "")
        except Interrupted as exc:
            record.update(status="interrupted", error=str(exc))
            log.warning("cycle %d interrupted after %.1f s by %s", self.count, time.perf_counter() - start,
                        exc.signal_name)
            exc.kept.append(f"cycle {self.count} recorded as interrupted in {self.history}")
            raise
        except Exception as exc:
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            log.error("cycle %d failed after %.1f s: %s", self.count, time.perf_counter() - start, exc,
                      exc_info=not isinstance(exc, ForecasterError))
            if raise_errors:
                raise
        finally:
            record.update(finished=_now(), seconds=round(time.perf_counter() - start, 3))
            with self.history.open("a") as handle:
                handle.write(json.dumps(record, default=str) + "\n")
            self.busy = False

    def record_abandoned(self, signum: int) -> None:
        """The line a cycle abandoned by a second signal leaves in the history (the process exits right after)."""
        if self.busy:
            record = {"cycle": self.count, "pid": os.getpid(), "status": "interrupted", "finished": _now(),
                      "error": f"abandoned on a second {signal.Signals(signum).name}"}
            with self.history.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def _run_scheduler(config: Config, trigger, runner: _CycleRunner) -> int:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler

    executor = ThreadPoolExecutor(max_workers=1)
    scheduler = BlockingScheduler(executors={"default": executor}, timezone=trigger.timezone)
    scheduler.add_job(runner, trigger, id=JOB_ID, name="forecast cycle", coalesce=True, max_instances=1,
                      misfire_grace_time=config.schedule.misfire_grace_s)

    def stop() -> None:
        log.info("stopping: no new cycles%s", "; the current cycle finishes first (signal again to abandon it)"
                 if runner.busy else "")
        scheduler.shutdown(wait=False)

    log.info("scheduler started: cron '%s' (%s); next cycle at %s", config.schedule.cron, config.schedule.timezone,
             trigger.get_next_fire_time(None, datetime.now(trigger.timezone)))
    with _graceful_signals(on_first=stop, on_second=runner.record_abandoned) as received:
        scheduler.start()  # returns once stop() has shut the scheduler down
        executor.shutdown(wait=True)  # the cycle running or just submitted finishes, under the lock
    log.info("scheduler stopped after %d cycle(s)", runner.count)
    _raise_if_signalled(received, f"{runner.count} finished cycle(s) in {runner.history}")
    return 0


@contextmanager
def _graceful_signals(on_first: Callable[[], None], on_second: Callable[[int], None] | None = None
                      ) -> Iterator[list[int]]:
    """SIGINT/SIGTERM: the first calls `on_first`; the second calls `on_second` and exits at once (code 128 +
    signal). Yields the signals received, for the caller to act on when the block ends.

    Only the main thread may set signal handlers; called from another (an Airflow task), it leaves them alone.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: Any) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) > 1:
            log.warning("%s again: abandoning the current cycle; no partial output is left", name)
            if on_second is not None:
                on_second(signum)
            os._exit(128 + signum)
        log.info("%s received", name)
        on_first()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _listed(values: list[Any]) -> str:
    """croniter's expansion of a field -> APScheduler's field text: '*' or '1,4,7,10'."""
    return "*" if values == ["*"] else ",".join(str(value) for value in values)


def _weekdays(values: list[Any]) -> str:
    """croniter's weekdays (crontab numbers, Sunday = 0) -> APScheduler's by name: 'mon,tue'."""
    return "*" if values == ["*"] else ",".join(WEEKDAYS[int(value) % 7] for value in values)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
