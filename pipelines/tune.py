"""The tune job: an Optuna search (TPE, median pruning after each epoch) over cell, strategy, lookback, size and
training settings, scored on the validation split, tracked in MLflow; its output is a config.

The study lives in an Optuna RDB storage beside the MLflow store (`<tracking.state_dir>/tune/<study>.db`), so a
second `tune` on the same config continues it: finished trials (complete or pruned) count toward `tune.trials`.
With `tune.jobs` > 1, worker processes run trials against that storage; only this process writes to MLflow (one
parent run, a nested run per finished trial, logged as trials finish), so the embedded SQLite store has one
writer. The test split is never read: the best trial is written as a YAML config for `train` and `compare`, and
`--then-compare` hands it to `compare.run`, whose rules decide what is registered.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forecaster.config import BASELINES, Config, build_config
from forecaster.errors import ConfigError, ForecasterError, TrainingError
from forecaster.tracking import redact, setup_tracking, state_dir, tracking_uri
from . import tune_tracking as tracking
from .init import yaml_entry
from .train import model_name

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how often the parent logs the trials its workers finished
FINISHED = tracking.FINISHED


@dataclass
class TuneResult:
    study: str
    storage: str
    metric: str
    best_value: float
    best_params: dict[str, Any]
    best_trial: int
    trials: int  # finished trials in the study: complete plus pruned
    completed: int
    pruned: int
    failed: int
    config_path: str
    run_id: str
    compare: Any = None  # compare.CompareResult with --then-compare
    ran_now: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "metric": f"val_{self.metric}", "best_params": self.best_params,
                "best_trial": self.best_trial, "trials": self.trials, "completed": self.completed,
                "pruned": self.pruned, "failed": self.failed, "config_path": self.config_path,
                "run_id": self.run_id, "study": self.study, "storage": redact(self.storage),
                "compare": self.compare.summary() if self.compare is not None else None}


def storage_url(config: Config) -> str:
    if config.tune.storage:
        return config.tune.storage
    folder = state_dir(config.tracking) / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / study_name(config)}.db"


def study_name(config: Config) -> str:
    return config.tune.study or config.tracking.experiment


def open_study(config: Config, url: str, seed: int):
    """The study (created on first use); SQLite waits up to 60 s for another writer instead of failing."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    tune = config.tune
    pruner = optuna.pruners.MedianPruner(n_startup_trials=tune.prune_startup_trials,
                                         n_warmup_steps=tune.prune_warmup_epochs) \
        if tune.prune else optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, tune.trials // 4)))
    return optuna.create_study(storage=storage, study_name=study_name(config), direction="minimize",
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def _space_and_panel(config: Config):
    """The raw panel (each trial builds its own windows from it) and the search space: `tune.space`, or the
    default derived from the frequency and the training windows of `config`'s own window."""
    from forecaster import search
    from forecaster.data.datamodule import ForecastDataModule
    from forecaster.data.panel import load_panel

    panel = load_panel(config.data)
    base = ForecastDataModule(config, panel)
    base.setup()
    if len(base.val_dataset) == 0:
        raise ConfigError("tune scores every trial on the validation split, which has no window here; give it rows "
                          "(split.val_size, split.val_fraction or split.val_end)")
    space = dict(config.tune.space) or search.default_space(
        config, panel.freq, int(base.borders.train_end.min()), len(base.train_dataset) * base.n_targets)
    search.check_space(config, space)
    return panel, space


def objective(config: Config, panel, space, deadline: float | None = None):
    """Optuna's objective: sample a config, train it with pruning, return its validation `tune.metric`; a trial
    still training at `deadline` stops there, failed."""
    from forecaster import search
    from forecaster.data.datamodule import ForecastDataModule
    from forecaster.evaluation import forecast_windows, score
    from forecaster.training.fit import fit_network

    monitor = "val/mae" if config.tune.metric == "mae" else "val/mse"

    def run_trial(trial) -> float:
        params = search.sample(trial, space, config)
        trial_config = search.apply(config, params)
        trial.set_user_attr("config", trial_config.flat())
        datamodule = ForecastDataModule(trial_config, panel)
        datamodule.setup()
        pruning = search.PruneOnValidation(trial, monitor, deadline)
        with tempfile.TemporaryDirectory(prefix="forecaster-tune-") as folder:
            model = fit_network(trial_config, datamodule, Path(folder), extra_callbacks=[pruning],
                                label=f"trial {trial.number}")
        metrics = score(forecast_windows(model.predictor, datamodule.val_dataloader()), datamodule)
        trial.set_user_attr("validation", metrics)
        record = model.training
        trial.set_user_attr("fit", {"epochs_run": record.epochs_run, "best_epoch": record.best_epoch,
                                    "train_seconds": record.train_seconds, "params": record.n_params})
        value = metrics[config.tune.metric]
        if not math.isfinite(value):
            raise TrainingError(f"trial {trial.number}: validation {config.tune.metric} is {value}")
        return value

    return run_trial


def run(config: Config, config_path: str | Path | None = None, output: str | Path | None = None,
        then_compare: bool = False) -> TuneResult:
    """`forecaster tune`: run the trials `tune.trials` still lacks, write the best as a config (default
    `<config stem>-tuned.yaml` beside `config_path`, else `tuned.yaml` here), optionally compare it."""
    import mlflow

    if config.train.strategy.startswith(("ddp", "fsdp", "deepspeed")) or config.train.num_nodes > 1:
        raise ConfigError(f"tune trains its trials in one process each; train.strategy={config.train.strategy} is "
                          f"for `forecaster train`. Tune with tune.jobs for parallel trials instead.")
    output = Path(output) if output is not None else _default_output(config_path)
    experiment_id = setup_tracking(config.tracking)
    panel, space = _space_and_panel(config)
    url = storage_url(config)
    study = open_study(config, url, config.tune.seed)
    _fail_interrupted(study)
    done = _count(study, FINISHED)
    study = open_study(config, url, config.tune.seed + len(study.trials))  # a resumed sampler draws anew
    if not study.trials:
        from forecaster import search

        study.enqueue_trial(search.starting_point(space, config))
    remaining = max(config.tune.trials - done, 0)
    client = mlflow.MlflowClient(tracking_uri(config.tracking))
    parent_id = tracking.parent_run(client, study, experiment_id, config, space, url)
    logged = tracking.logged_trials(client, experiment_id, parent_id)
    log.info("study %s (%s): %d finished trial(s), %d to run", study.study_name, url, done, remaining)
    started = time.perf_counter()
    quiet = not logging.getLogger().isEnabledFor(logging.DEBUG)  # --verbose keeps the libraries' lines, tracebacks
    if quiet:
        from forecaster import search

        search.trial_errors_in_one_line()
    if remaining:
        timeout = config.tune.timeout * 60 if config.tune.timeout else None
        deadline = time.time() + timeout if timeout else None
        try:
            if config.tune.jobs == 1:
                study.optimize(objective(config, panel, space, deadline), n_trials=remaining, timeout=timeout,
                               catch=(ForecasterError,), callbacks=[
                                   lambda s, _: tracking.log_trials(client, s, config, experiment_id, parent_id, logged)])
            else:
                _run_workers(config, space, url, remaining, deadline, config.tune.seed + len(study.trials), quiet,
                             lambda: tracking.log_trials(client, study, config, experiment_id, parent_id, logged))
        except BaseException:
            tracking.log_trials(client, study, config, experiment_id, parent_id, logged)
            client.set_terminated(parent_id, status="KILLED")  # a rerun reopens it and continues the study
            raise
    tracking.log_trials(client, study, config, experiment_id, parent_id, logged)
    result = _finish(client, study, config, parent_id, output, url, config_path)
    result.ran_now = _count(study, FINISHED) - done
    log.info("tune: %d trial(s) in %.0f s", result.ran_now, time.perf_counter() - started)
    if then_compare:
        from forecaster.config import load_config

        from . import compare

        result.compare = compare.run(load_config(output))
        client.set_tag(parent_id, "forecaster.compare_run", result.compare.parent_run_id)
    return result


def _default_output(config_path: str | Path | None) -> Path:
    if config_path is None:
        return Path("tuned.yaml")
    path = Path(config_path)
    return path.with_name(f"{path.stem}-tuned.yaml")


def _count(study, states: tuple[str, ...]) -> int:
    return sum(trial.state.name in states for trial in study.get_trials(deepcopy=False))


def _fail_interrupted(study) -> None:
    """Trials left RUNNING by an interrupted `tune` never finish: mark them failed, so they count toward
    nothing. (One `tune` per study at a time: its own workers are the only other writers.)"""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        log.info("trial %d was interrupted; marked failed", trial.number)


def _run_workers(config: Config, space, url: str, trials: int, deadline: float | None, seed: int, quiet: bool,
                 poll) -> None:
    """`tune.jobs` spawned processes share the trials; each trains with its share of the free cores
    (`train.threads: auto`, or null) unless `train.threads` gives a number. This process logs what they finish,
    every `POLL_SECONDS`."""
    from forecaster.runtime import choose_threads

    jobs = min(config.tune.jobs, trials)
    threads = config.train.threads
    if not isinstance(threads, int):
        threads, why = choose_threads(share=jobs)
        log.info("tune workers: %d thread(s) each (%s)", threads, why)
    worker_config = config.with_overrides({"train.threads": threads, "train.progress": False}).to_dict()
    plain_space = {name: values if isinstance(values, list) else values.model_dump() for name, values in space.items()}
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_work, name=f"tune-worker-{index}", daemon=True, args=(
        worker_config, plain_space, url, trials // jobs + (index < trials % jobs), deadline, seed + 1000 * index, quiet,
        index == 0)) for index in range(jobs)]
    for worker in workers:
        worker.start()
    try:
        while any(worker.is_alive() for worker in workers):
            poll()
            time.sleep(POLL_SECONDS)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    broken = [worker.name for worker in workers if worker.exitcode]
    if broken:
        raise TrainingError(f"tune worker(s) {', '.join(broken)} stopped with an error (see the log above); the "
                            f"trials they finished are kept: run tune again to continue")


def _work(config_tree: dict, space: dict, url: str, trials: int, deadline: float | None, seed: int,
          quiet: bool, first: bool) -> None:
    """One worker process: its share of the trials against the shared storage, no MLflow. `quiet` (the parent's
    choice: not under `--verbose`) keeps the libraries' INFO lines and forecaster's own tracebacks out of its log.
    Only the `first` worker takes enqueued trials (the starting point): the others begin once none waits."""
    from forecaster.config import SearchRange
    from forecaster.runtime import set_threads, worker_logging

    worker_logging(quiet)
    if quiet:
        from forecaster.search import trial_errors_in_one_line

        trial_errors_in_one_line()
    config = build_config(config_tree, "<tune worker>")
    set_threads(config.train.threads)
    space = {name: values if isinstance(values, list) else SearchRange(**values) for name, values in space.items()}
    from forecaster.data.panel import load_panel

    panel = load_panel(config.data)
    study = open_study(config, url, seed)
    if not first:
        _await_enqueued(study, deadline)
    timeout = max(deadline - time.time(), 0.0) if deadline else None
    study.optimize(objective(config, panel, space, deadline), n_trials=trials, timeout=timeout,
                   catch=(ForecasterError,))


def _await_enqueued(study, deadline: float | None, patience: float = 120.0) -> None:
    """Wait until no trial of `study` is WAITING (enqueued, not yet taken). On SQLite two processes can take the
    same enqueued trial, since it has no row locks (optuna's `_pop_waiting_trial_id` checks, then updates); the
    second to finish it then fails. The first worker takes them; the others wait here, `patience` seconds at most."""
    from optuna.trial import TrialState

    limit = time.time() + patience
    if deadline is not None:
        limit = min(limit, deadline)
    while time.time() < limit and study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        time.sleep(0.2)


def _finish(client, study, config: Config, parent_id: str, output: Path, url: str,
            config_path: str | Path | None) -> TuneResult:
    """Plots, the trials table and the best config on the parent run; the best config written to `output`."""
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not completed:
        client.set_terminated(parent_id, status="FAILED")
        raise TrainingError(f"tune: no trial of study {study.study_name} completed (pruned or failed: see the log "
                            f"and the MLflow run {parent_id}); widen tune.space or raise tune.trials")
    best = study.best_trial
    from forecaster import search

    tuned = search.apply(config, best.params)
    text = render_tuned(config, tuned, best, study, parent_id, config_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    client.log_text(parent_id, redact(text), "tuned.yaml")
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    client.log_text(parent_id, table.to_csv(index=False), "tune/trials.csv")
    tracking.log_plots(client, study, parent_id)
    client.log_metric(parent_id, f"best/val_{config.tune.metric}", best.value)
    client.log_metric(parent_id, "trials_completed", len(completed))
    client.log_metric(parent_id, "trials_pruned", _count(study, ("PRUNED",)))
    client.set_tag(parent_id, "forecaster.tune.best_trial", str(best.number))
    client.set_tag(parent_id, "forecaster.tune.config", str(output))
    client.set_terminated(parent_id)
    return TuneResult(
        study=study.study_name, storage=url, metric=config.tune.metric, best_value=float(best.value),
        best_params=dict(best.params), best_trial=best.number, trials=_count(study, FINISHED),
        completed=len(completed), pruned=_count(study, ("PRUNED",)), failed=_count(study, ("FAIL",)),
        config_path=str(output), run_id=parent_id,
    )


def render_tuned(config: Config, tuned: Config, best, study, run_id: str, config_path) -> str:
    """The tuned config as commented YAML: every value that differs from the defaults (the `tune` section
    aside), the tuned ones marked, and `compare.models` set to the tuned network beside the baselines."""
    from forecaster import search

    default = Config().to_dict()
    tree = tuned.to_dict()
    tuned_keys = {search.dotted(name) for name in best.params}
    name = f"{model_name(tuned)}-tuned"
    baselines = [m for m in config.compare.models if isinstance(m, str) and m in BASELINES]
    models = [{"name": name, "cell": tuned.model.cell}, *baselines,
              *([] if "seasonal_naive" in baselines else ["seasonal_naive"])]
    lines = [
        f"# Written by `forecaster tune{f' {config_path}' if config_path else ''}`: trial {best.number} of study "
        f"'{study.study_name}', the lowest validation {config.tune.metric} ({best.value:.4f}) of "
        f"{_count(study, ('COMPLETE',))} complete and {_count(study, ('PRUNED',))} pruned trial(s).",
        f"# MLflow run {run_id}. The test split was not read; `forecaster compare` on this file reports it.",
    ]
    for section, values in tree.items():
        if section == "tune":
            continue
        entries = []
        for key, value in values.items():
            dotted_key = f"{section}.{key}"
            if dotted_key == "compare.models":
                entries.append(yaml_entry(key, models, "the tuned network beside the baselines (the floor)"))
            elif dotted_key in tuned_keys:
                entries.append(yaml_entry(key, value, "tuned"))
            elif value != default[section][key]:
                entries.append(yaml_entry(key, value, ""))
        if entries:
            lines += [f"{section}:", *entries]
    return "\n".join(lines) + "\n"


def format_result(result: TuneResult) -> str:
    params = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in result.best_params.items())
    lines = [f"study {result.study}: {result.trials} finished trial(s) ({result.completed} complete, "
             f"{result.pruned} pruned{f', {result.failed} failed' if result.failed else ''}); "
             f"{result.ran_now} ran now",
             f"best: trial {result.best_trial}, validation {result.metric} {result.best_value:.4f}",
             f"  {params}",
             f"wrote {result.config_path} (train or compare it; the test split was not read)",
             f"  run {result.run_id}"]
    if result.compare is not None:
        from . import compare

        lines += ["", compare.format_result(result.compare)]
    return "\n".join(lines)
