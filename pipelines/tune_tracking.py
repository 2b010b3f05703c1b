"""The tune job's MLflow record: one parent run per study (reopened when a study continues), a nested run per
finished trial with its params, validation scores, per-epoch validation error and state, and the plots."""

from __future__ import annotations

import logging
import math
import time

import yaml

from forecaster.config import Config
from forecaster.tracking import redact

log = logging.getLogger(__name__)

FINISHED = ("COMPLETE", "PRUNED")


def parent_run(client, study, experiment_id: str, config: Config, space, url: str) -> str:
    """The study's MLflow parent run: the one an earlier `tune` of this study opened, else a new one."""
    from mlflow.exceptions import MlflowException

    run_id = study.user_attrs.get("mlflow_run_id")
    if run_id:
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            return run_id
        except MlflowException:
            log.info("the study's MLflow run %s is gone; opening a new one", run_id)
    run = client.create_run(experiment_id, run_name=f"tune-{study.study_name}",
                            tags={"forecaster.job": "tune", "forecaster.tune.study": study.study_name,
                                  "forecaster.tune.storage": redact(url)})
    run_id = run.info.run_id
    client.log_dict(run_id, {name: values if isinstance(values, list) else values.model_dump()
                             for name, values in space.items()}, "tune/space.json")
    from mlflow.entities import Param

    params = {key: value for key, value in config.flat().items()
              if key.startswith(("data.", "window.", "split.", "tune.")) and not key.startswith("tune.space")
              and not isinstance(value, list | dict)}
    client.log_batch(run_id, params=[Param(key, str(value)) for key, value in params.items()])
    study.set_user_attr("mlflow_run_id", run_id)
    return run_id


def logged_trials(client, experiment_id: str, parent_id: str) -> set[int]:
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10_000)
    return {int(run.data.tags["forecaster.tune.trial"]) for run in runs if "forecaster.tune.trial" in run.data.tags}


def log_trials(client, study, config: Config, experiment_id: str, parent_id: str, logged: set[int]) -> None:
    """A nested run for every finished trial not logged yet: its params, validation scores, epochs, state."""
    from mlflow.entities import Metric, Param

    from forecaster import search

    trials = study.get_trials(deepcopy=False)  # one storage read a poll
    for trial in trials:
        if trial.number in logged or trial.state.name not in (*FINISHED, "FAIL"):
            continue
        started = int(trial.datetime_start.timestamp() * 1000) if trial.datetime_start else None
        run = client.create_run(experiment_id, start_time=started, run_name=f"trial-{trial.number:03d}", tags={
            "mlflow.parentRunId": parent_id, "forecaster.tune.trial": str(trial.number),
            "forecaster.tune.state": trial.state.name.lower(), "forecaster.job": "tune-trial"})
        params = [Param(search.dotted(name), str(value)) for name, value in trial.params.items()]
        now = int(time.time() * 1000)
        metrics = [Metric(f"validation/{key}", float(value), now, 0)
                   for key, value in trial.user_attrs.get("validation", {}).items() if math.isfinite(value)]
        metrics += [Metric(key, float(value), now, 0) for key, value in trial.user_attrs.get("fit", {}).items()
                    if value is not None]
        monitor = "val_mae" if config.tune.metric == "mae" else "val_mse"
        metrics += [Metric(f"epoch/{monitor}", float(value), now, int(step))
                    for step, value in trial.intermediate_values.items() if math.isfinite(value)]
        if "pruned_at_epoch" in trial.user_attrs:
            metrics.append(Metric("pruned_at_epoch", float(trial.user_attrs["pruned_at_epoch"]), now, 0))
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        if "config" in trial.user_attrs:
            from forecaster.config import unflatten

            text = yaml.safe_dump(unflatten(trial.user_attrs["config"]), sort_keys=False)
            client.log_text(run.info.run_id, redact(text), "config.yaml")
        ended = int(trial.datetime_complete.timestamp() * 1000) if trial.datetime_complete else None
        client.set_terminated(run.info.run_id, status="FAILED" if trial.state.name == "FAIL" else "FINISHED",
                              end_time=ended)
        logged.add(trial.number)
        log.info("%s", trial_line(trials, trial, monitor))


def trial_line(trials, trial, monitor: str) -> str:
    """One log line per finished trial, e.g. `trial 12 complete: val_mse 0.1134 (best: 0.1102, trial 7)`; the best
    among `trials`, the study's trials."""
    if trial.state.name == "FAIL":
        return f"trial {trial.number} failed"
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    best = min(complete, key=lambda t: t.value, default=None)
    so_far = f" (best: {best.value:.4f}, trial {best.number})" if best else ""
    if trial.state.name == "PRUNED":  # pruned_at_epoch counts from 0, the epoch lines from 1
        epoch = trial.user_attrs.get("pruned_at_epoch")
        return f"trial {trial.number} pruned after epoch {'?' if epoch is None else epoch + 1}{so_far}"
    return f"trial {trial.number} complete: {monitor} {trial.value:.4f}{so_far}"


def log_plots(client, study, parent_id: str) -> None:
    """The optimisation history, and parameter importances once two trials completed with varied values."""
    import numpy as np

    from forecaster import plots

    plt = plots.plt
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    numbers, values = [t.number for t in finished], [t.value for t in finished]
    ax.scatter(numbers, values, color="tab:blue", s=14, label="complete trial")
    ax.plot(numbers, np.minimum.accumulate(values), color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation score")
    ax.set_title(f"{study.study_name}: optimisation history (lower is better)")
    ax.legend()
    fig.tight_layout()
    client.log_figure(parent_id, fig, "plots/optimisation_history.png")
    plots.close(fig)
    if len(finished) < 2:
        return
    import optuna

    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        log.info("parameter importances skipped: %s", exc)
        return
    if not importances:
        return
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(importances) + 1.5))
    ax.barh(list(importances), list(importances.values()), color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("importance (fANOVA, share of the score's variance)")
    ax.set_title(f"{study.study_name}: parameter importances")
    fig.tight_layout()
    client.log_figure(parent_id, fig, "plots/param_importances.png")
    plots.close(fig)
