"""`compare.jobs`: a comparison's networks trained in worker processes, while the parent alone writes to MLflow.

The parent opens each network's nested run, then hands its training to a pool of spawned processes, each with its
share of the free cores as torch threads. A worker builds the data module once, from the comparison's own config,
fits the network into that run's checkpoint folder, saves the model there and keeps its epochs' metrics in a file
beside it; it opens no MLflow store. The parent takes the candidates in `compare.models` order, as a serial
comparison does: it fits the baselines and statistical models itself while the workers train, and for a network
waits for its worker, logs the kept epochs into the run, loads the saved model and evaluates and logs it exactly as
`compare.jobs: 1` does (`train_in_run` with the model fitted). Same seed and threads: the same leaderboard.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from forecaster.config import Config

from .train import UNLOGGED_METRICS, checkpoint_dir

log = logging.getLogger(__name__)


def plan(config: Config, networks: int) -> tuple[int, int | None, str]:
    """(worker processes, torch threads each, why) for `networks` trainings; (1, None, why) means one after another
    in this process. `compare.jobs: auto` takes one worker per free core (`runtime.choose_threads`), on the CPU
    only, and none without a second network to train beside the first."""
    from forecaster.runtime import choose_threads, trains_on_cpu

    if config.compare.time_budget is not None:
        return 1, None, "compare.time_budget shares its time out one candidate after another"
    if networks < 2:
        return 1, None, f"{networks} network(s) to train"
    if config.compare.jobs == 1:
        return 1, None, "compare.jobs=1"
    if config.compare.jobs != "auto" and isinstance(config.train.threads, int):  # both given: nothing to measure
        jobs = min(config.compare.jobs, networks)
        return jobs, config.train.threads, (f"compare.jobs={config.compare.jobs}: {jobs} worker processes, "
                                            f"{config.train.threads} thread(s) each (train.threads)")
    if config.compare.jobs == "auto" and not trains_on_cpu(config.train.accelerator):
        return 1, None, "compare.jobs: auto trains side by side on the CPU only"
    free, why = choose_threads()
    jobs = min(free if config.compare.jobs == "auto" else config.compare.jobs, networks)
    if jobs < 2:
        return 1, None, f"compare.jobs={config.compare.jobs}: {why}"
    threads = config.train.threads if isinstance(config.train.threads, int) else max(free // jobs, 1)
    return jobs, threads, f"{why}; {jobs} worker processes, {threads} thread(s) each"


class Workers:
    """The worker pool of one comparison, as a context manager: `submit` a network's training into its nested run,
    `take` the model it fitted. On the way out, workers still training are stopped and the runs whose models were
    never taken end KILLED (a `compare --resume` trains them again)."""

    def __init__(self, jobs: int = 1, threads: int | None = None, parent_run_id: str = "", base: Config | None = None):
        self.threads = threads
        self.pending: dict[str, tuple[Future, str, Path]] = {}  # name -> (its training, run id, folder)
        self.pool = None
        if jobs < 2:
            return  # one after another, in this process: nothing is ever submitted
        import mlflow

        self.parent_run_id = parent_run_id
        self.client = mlflow.MlflowClient()
        self.experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
        quiet = not logging.getLogger().isEnabledFor(logging.DEBUG)  # --verbose keeps the libraries' lines
        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                                        initargs=(self._worker_config(base).to_dict(), threads, quiet))

    def _worker_config(self, config: Config) -> Config:
        return config.with_overrides({"train.threads": self.threads, "train.progress": False})

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        from forecaster.errors import Interrupted

        if isinstance(error, Interrupted) and self.pending:
            error.kept.append(f"every finished candidate's run and model; --resume trains again what was still "
                              f"training in workers ({', '.join(self.pending)})")
        self.close()

    def __contains__(self, name: str) -> bool:
        return name in self.pending

    def submit(self, name: str, variant: Config, everything: bool = False) -> None:
        """Open the nested run of network `name` (RUNNING) and queue its training: on the training split, or with
        `everything` on every row (a refit)."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        run = self.client.create_run(self.experiment_id, run_name=name, tags={MLFLOW_PARENT_RUN_ID: self.parent_run_id})
        folder = checkpoint_dir(variant, name) / run.info.run_id
        future = self.pool.submit(_fit, self._worker_config(variant).to_dict(), str(folder), name, run.info.run_id,
                                  everything)
        self.pending[name] = (future, run.info.run_id, folder)

    @contextmanager
    def nested_run(self, name: str, tags: dict[str, str] | None = None) -> Iterator:
        """The nested run of candidate `name` (the one `submit` opened, when a worker trains it) with `tags` set,
        and in it the model its worker trained (`take`), or None: train it here."""
        import mlflow

        from forecaster.tracking import tracked_run

        where = {"run_id": self.pending[name][1]} if name in self.pending else {"run_name": name}
        with tracked_run(**where, nested=True):
            mlflow.set_tags(tags or {})
            yield self.take(name) if name in self.pending else None

    def take(self, name: str):
        """The model (`ModelBundle`) worker-trained for `name` (waiting for it), its epochs logged into its run; a
        worker's error is raised here, a worker that died is named."""
        from concurrent.futures.process import BrokenProcessPool

        from forecaster.bundle import ModelBundle, TrainingRecord
        from forecaster.errors import TrainingError
        from forecaster.training.callbacks import log_kept_epochs

        future, run_id, folder = self.pending[name]  # pending until its result is in: a signal may come first
        try:
            stats = future.result()
        except Exception as exc:
            del self.pending[name]  # its run ends FAILED with the error
            if not isinstance(exc, BrokenProcessPool):
                raise
            raise TrainingError(f"{name}: its compare worker process stopped (killed, out of memory, or failed to "
                                f"start: see the log above); what it wrote is in {folder}. Run `forecaster compare "
                                f"--resume` to train it again (with compare.jobs lower if memory ran out)") from None
        del self.pending[name]
        log_kept_epochs(self.client, run_id, folder / UNLOGGED_METRICS)
        model = ModelBundle.load(folder / "model")
        model.training = TrainingRecord(**stats)
        return model

    def close(self) -> None:
        if self.pool is None:
            return
        if self.pending:  # an error or a signal stopped the comparison: stop the trainings it no longer waits for
            for future, _, _ in self.pending.values():
                future.cancel()
            for process in list((self.pool._processes or {}).values()):  # no public way to stop a running task
                if process.is_alive():
                    process.kill()  # not SIGTERM: Lightning catches it mid-fit, and the worker would wait on
        self.pool.shutdown(wait=True, cancel_futures=True)
        for _, run_id, _ in self.pending.values():
            try:
                self.client.set_terminated(run_id, status="KILLED")
            except Exception as exc:  # a store that went away must not hide the error that brought us here
                log.warning("could not mark run %s KILLED: %s", run_id, exc)
        self.pending.clear()


def start(config: Config, networks: list[tuple[str, Config]], parent_run_id: str) -> Workers:
    """The workers of a comparison whose `networks` ((name, config) in `compare.models` order) are to be trained,
    those already queued; without a plan for parallel work (`plan`), an empty `Workers` (all trained here)."""
    jobs, threads, why = plan(config, len(networks))
    if jobs < 2:
        log.debug("compare: candidates one after another (%s)", why)
        return Workers()
    log.info("compare: %d networks in parallel (%s)", len(networks), why)
    workers = Workers(jobs, threads, parent_run_id, config)
    try:
        for name, variant in networks:
            workers.submit(name, variant)
    except BaseException:
        workers.close()
        raise
    return workers


_DATA = {}  # in a worker: the comparison's data module, built once


def _start(tree: dict, threads: int, quiet: bool) -> None:
    """A worker's start: its log lines name it, torch gets its threads, it ends with the parent (Linux), and it
    builds the data module every candidate shares, as the parent did."""
    from forecaster.config import build_config
    from forecaster.runtime import set_threads, worker_logging

    from .train import prepare_data

    worker_logging(quiet)
    _end_with_parent()
    set_threads(threads, level=logging.DEBUG)
    _DATA["module"] = prepare_data(build_config(tree, "<compare worker>"))


def _end_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (a `kill -9` of compare): no orphan trains on. SIGKILL,
    since a worker that outlived its training would wait for its next task forever; its checkpoint is safe (written
    whole, then renamed) and `compare --resume` trains the network again."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass


def _fit(tree: dict, folder: str, label: str, run_id: str, everything: bool) -> dict:
    """Train one network into `folder` (checkpoints, `model/`, the epochs' metrics) and return how it went."""
    from forecaster.config import build_config
    from forecaster.training.callbacks import EpochMlflowLogger
    from forecaster.training.fit import fit_network

    config = build_config(tree, f"<compare worker: {label}>")
    datamodule = _DATA["module"]
    if everything:
        if "everything" not in _DATA:
            _DATA["everything"] = datamodule.for_every_row()
        datamodule = _DATA["everything"]
    path = Path(folder)
    model = fit_network(config, datamodule, path, logger=EpochMlflowLogger(None, run_id, path / UNLOGGED_METRICS),
                        label=label, run_id=run_id)
    model.save(path / "model")
    return model.training.to_dict()
