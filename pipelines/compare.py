"""The compare job: several model types on identical data and splits, side by side in MLflow.

One parent run holds a nested child run per model (the baselines included, as the floor), then one for the best
candidates combined (`compare.ensemble`) and one for the best network over `train.seeds`. Models are ranked on
the validation split (or, with `compare.backtest_folds`, on rolling-origin folds that end before the test split);
the test split is scored once per model and only reported. The winner replaces the model under the alias only
when it beats seasonal naive on the ranking metric and the current champion on the newest rows neither trained
on (`pipelines/champion.py`); it is then refit on every row (`compare.refit`) and that model is registered.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from forecaster.config import BASELINES, Config
from forecaster.errors import ConfigError
from forecaster.tracking import redact, setup_tracking, tracked_run
from . import compare_jobs
from .budget import Budget
from .champion import judge, promotion_lock, recheck, register
from .compare_resume import DIGEST_TAG, config_digest, interrupted_compare, reuse
from .train import TrainResult, prepare_data, train_in_run

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"  # the leaderboard row of the best candidates combined (compare.ensemble)


@dataclass
class CompareResult:
    parent_run_id: str
    metric: str  # the leaderboard column that ranked: val_<metric> or backtest_<metric>
    leaderboard: Any  # pandas DataFrame, best first
    results: list[TrainResult]
    winner: str
    registered_version: str | None
    alias_moved: bool
    decision: str
    backtest: Any = None
    challenge: Any = None  # champion.Challenge, when a champion was challenged
    refit: TrainResult | None = None
    skipped: list[str] = field(default_factory=list)  # candidates compare.time_budget left no time for

    def summary(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.parent_run_id, "metric": self.metric, "winner": self.winner,
            "registered_version": self.registered_version, "alias_moved": self.alias_moved,
            "decision": self.decision, "leaderboard": self.leaderboard.to_dict(orient="records"),
            "challenge": vars(self.challenge) if self.challenge is not None else None,
            "refit_run_id": self.refit.run_id if self.refit is not None else None,
            "skipped": self.skipped,
        }


def resolve_models(config: Config) -> list[tuple[str, str, Config]]:
    """`compare.models` entries -> (name, kind, config). A string names a cell or a baseline; a mapping gives
    `name` plus any `model.*` keys, e.g. {name: lstm-s2s, cell: lstm, strategy: seq2seq, attention: true}."""
    resolved = []
    for entry in config.compare.models:
        if isinstance(entry, str):
            if entry in BASELINES:
                resolved.append((entry, entry, config))
                continue
            spec: dict[str, Any] = {"name": entry, "cell": entry}
        else:
            spec = dict(entry)
        name = str(spec.pop("name", None) or "-".join(str(v) for v in spec.values()))
        try:
            variant = config.with_overrides({f"model.{key}": value for key, value in spec.items()})
        except ConfigError as exc:
            raise ConfigError(f"compare.models entry {entry!r}: {exc}") from None
        resolved.append((name, "network", variant))
    names = [name for name, _, _ in resolved]
    if ENSEMBLE in names:
        raise ConfigError(f"compare.models: '{ENSEMBLE}' is the name of the combination compare builds itself "
                          f"(compare.ensemble); give that entry another `name`")
    if len(set(names)) != len(names):
        raise ConfigError(f"compare.models: names must be unique, got {names}; give each mapping a distinct `name`")
    return resolved


def run(config: Config, resume: bool = False) -> CompareResult:
    import mlflow

    from forecaster import plots

    if config.train.strategy.startswith(("ddp", "fsdp", "deepspeed")) or config.train.num_nodes > 1:
        raise ConfigError(f"compare trains each model in one process; train.strategy="
                          f"{config.train.strategy} is for `forecaster train`. Train the chosen model with DDP.")
    setup_tracking(config.tracking)
    datamodule = prepare_data(config)
    if len(datamodule.val_dataset) == 0:
        raise ConfigError("compare ranks the models on the validation split, which has no window here; give it "
                          "rows (split.val_size, split.val_fraction or split.val_end) before training anything")
    models = resolve_models(config)
    parent_id, finished = None, {}
    if resume:
        parent_id, finished = interrupted_compare(config, mlflow.get_experiment_by_name(
            config.tracking.experiment).experiment_id)
    with tracked_run(run_id=parent_id, run_name=None if parent_id else "compare") as parent, ExitStack() as stack:
        mlflow.set_tags({"forecaster.job": "compare", DIGEST_TAG: config_digest(config)})
        mlflow.log_params({key: redact(value) for key, value in config.flat().items()
                           if key.startswith(("data.", "window.", "split.", "compare."))
                           and not isinstance(value, list | dict)})
        budget = Budget(config.compare.time_budget, models)
        ordered = budget.order(models)
        networks = [(name, variant) for name, kind, variant in ordered if kind == "network" and name not in finished]
        workers = stack.enter_context(compare_jobs.start(config, networks, parent.info.run_id))  # to the refit
        results = _train_candidates(config, ordered, finished, budget, datamodule, workers)
        models = [(name, kind, budget.capped.get(name, variant)) for name, kind, variant in models
                  if name not in budget.skipped]  # the refit of a capped network is capped alike
        pool = {r.name: (r, *next((v, k) for n, k, v in models if n == r.name)) for r in results}
        combined = []
        if config.compare.ensemble and (ensemble := _ensemble(config, datamodule, results)) is not None:
            combined.append((ensemble, config))
        if len(config.train.seeds or []) > 1 and (seeded := _seeds(config, datamodule, results, models, budget,
                                                                    pool)) is not None:
            combined.append(seeded)
        for result, variant in combined:
            results.append(result)
            models.append((result.name, "ensemble", variant))

        table, backtest = _leaderboard(config, results, models, datamodule)
        metric = _ranking_column(config)
        mlflow.log_table(table, "leaderboard.json")
        mlflow.log_text(table.to_csv(index=False), "leaderboard.csv")
        fig = plots.leaderboard(table, metric)
        mlflow.log_figure(fig, "plots/leaderboard.png")
        plots.close(fig)

        winner = table.iloc[0]
        selected = next(r for r in results if r.name == winner["model"])
        variant, kind = next((v, k) for n, k, v in models if n == selected.name)
        verdict = judge(config, table, selected, datamodule, metric)
        version, refit = None, None
        if verdict.promote:
            cost = sum(r.train_seconds for r in results if r.kind == "network") if kind == "ensemble" \
                else selected.train_seconds  # refitting an ensemble refits its networks
            refit = _refit(config, variant, kind, datamodule, selected, pool, workers) \
                if config.compare.refit and budget.allows_refit(cost) else None
            with promotion_lock(config):
                verdict = recheck(config, verdict, table, selected, datamodule, metric)
                if verdict.promote:
                    version = register(config, selected, refit, verdict, metric, float(winner[metric]))
        mlflow.set_tags({"forecaster.winner": winner["model"], "forecaster.decision": verdict.text[:5000],
                         **{f"forecaster.challenge.{k}": v for k, v in verdict.challenge_tags().items()}})
        mlflow.log_metric(f"winner/{metric}", float(winner[metric]))
    return CompareResult(
        parent_run_id=parent.info.run_id, metric=metric, leaderboard=table, results=results,
        winner=str(winner["model"]), registered_version=version, alias_moved=version is not None,
        decision=verdict.text, backtest=backtest, challenge=verdict.challenge, refit=refit, skipped=budget.skipped,
    )


def _train_candidates(config: Config, ordered, finished, budget: Budget, datamodule,
                      workers: compare_jobs.Workers) -> list[TrainResult]:
    """Each candidate trained (or taken from `workers`, or kept from an interrupted comparison) and logged in its
    nested run, in `ordered` order; those the workers train come last, so the rest trains here meanwhile."""
    trained = {}  # position in `ordered` -> its result
    for index, (name, kind, variant) in sorted(enumerate(ordered, start=1), key=lambda item: item[1][0] in workers):
        if (variant := budget.admit(name, kind, variant)) is None:
            continue
        if name in finished:
            log.info("[%d/%d] %s: finished before the comparison stopped; kept", index, len(ordered), name)
            trained[index] = reuse(finished[name], name, kind, variant, datamodule)
            continue
        log.info("[%d/%d] %s%s", index, len(ordered), name, " (trained by a worker)" if name in workers else "")
        with workers.nested_run(name) as model:
            result = train_in_run(variant, datamodule, kind=kind, checkpoint_name=name, model=model)
        result.name = name
        trained[index] = result
        log.info("  validation %s = %.4f (%.1f s)", config.compare.metric,
                 result.val_metrics[config.compare.metric], result.train_seconds)
    return [trained[index] for index in sorted(trained)]


def _ranking_column(config: Config) -> str:
    prefix = "backtest" if config.compare.backtest_folds > 0 else "val"
    return f"{prefix}_{config.compare.metric}"


def _leaderboard(config: Config, results: list[TrainResult], models, datamodule):
    """One row per model: validation and test metrics (test for reporting only), backtest means when asked
    for, sorted by the ranking column (`_ranking_column`)."""
    import pandas as pd

    table = pd.DataFrame([{
        "model": r.name, **{f"val_{k}": v for k, v in r.val_metrics.items()},
        **{f"test_{k}": v for k, v in r.metrics.items()},
        "params": r.n_params, "train_seconds": round(r.train_seconds, 2), "run_id": r.run_id,
    } for r in results])
    backtest = None
    if config.compare.backtest_folds > 0:
        from .backtest import backtest_models

        backtest = backtest_models(config, models, datamodule)
        table = table.merge(backtest.summary, on="model", how="left")
    table = table.sort_values(_ranking_column(config), na_position="last").reset_index(drop=True)
    return table, backtest


def _ensemble(config: Config, datamodule, results: list[TrainResult]) -> TrainResult | None:
    """The best candidates on validation combined (`forecaster.models.ensemble`): the 2, 3, ...
    `compare.ensemble_max_size` best by `compare.metric`, each by median and by mean, scored on the validation
    windows; the best combination is built from the members' saved models and trained, logged and scored as one
    more candidate, in its own nested run. Not built when ranking on backtest folds, whose scores it has none of."""
    import dataclasses

    import numpy as np

    from forecaster.bundle import ModelBundle
    from forecaster.evaluation import score
    from forecaster.models.ensemble import Ensemble, choose_ensemble

    if config.compare.backtest_folds > 0:
        log.info("ensemble: not built when compare ranks on backtest folds (its members are chosen on validation)")
        return None
    metric = config.compare.metric
    ranked = sorted((r for r in results
                     if r.val_forecasts is not None and np.isfinite(r.val_metrics.get(metric, np.nan))),
                    key=lambda r: r.val_metrics[metric])
    if len(ranked) < 2:
        return None
    reference = ranked[0].val_forecasts  # every candidate forecast the same validation windows, in the same order

    def validation_score(pred):
        combined = dataclasses.replace(reference, pred=pred, outputs=pred[..., None], point_index=0)
        return score(combined, datamodule)[metric]

    choice = choose_ensemble([(r.name, r.val_forecasts.pred) for r in ranked], validation_score,
                             config.compare.ensemble_max_size)
    if choice is None:
        return None
    log.info("[ensemble] %s of %s (validation %s %.4f; the best single model, %s, %.4f)", choice.combine,
             ", ".join(choice.members), metric, choice.score, ranked[0].name, ranked[0].val_metrics[metric])
    by_name = {r.name: r for r in ranked}
    members = [by_name[name] for name in choice.members]
    ensemble = Ensemble([ModelBundle.load(r.model_dir) for r in members], list(choice.members), choice.combine)
    return _train_ensemble(config, datamodule, ensemble, members, ENSEMBLE, {
        "members": list(choice.members), "combine": choice.combine, "validation_metric": metric,
        "tried": [{"size": size, "combine": combine, f"val_{metric}": value} for size, combine, value in choice.tried]})


def _train_ensemble(config: Config, datamodule, ensemble, members: list[TrainResult], name: str,
                    record: dict[str, Any], tags: dict[str, str] | None = None) -> TrainResult:
    """Save, log and score a built ensemble in a nested run `name`, as `train_in_run` does any model."""
    import mlflow

    from forecaster.bundle import ModelBundle, TrainingRecord

    training = TrainingRecord(n_params=ensemble.n_params, train_seconds=sum(member.train_seconds for member in members))
    model = ModelBundle.trained(config, datamodule, "ensemble", baseline=ensemble, training=training)
    with tracked_run(run_name=name, nested=True):
        mlflow.set_tags({"forecaster.member_runs": ",".join(member.run_id for member in members), **(tags or {})})
        mlflow.log_dict(record, "ensemble.json")
        result = train_in_run(config, datamodule, kind="ensemble", checkpoint_name=name, model=model)
    result.name = name
    return result


def _seeds(config: Config, datamodule, results: list[TrainResult], models, budget, pool):
    """The best network on validation, trained again on every other seed of `train.seeds` (nested runs
    `NAME-seedS`, no leaderboard rows of their own) and combined with it by the median, as the candidate
    `NAME-seeds`; every seed's model goes into `pool` for a refit. None without a network."""
    import mlflow

    from forecaster.bundle import ModelBundle
    from forecaster.models.ensemble import Ensemble

    metric = config.compare.metric
    networks = [r for r in results if r.kind == "network"]
    if not networks:
        return None
    best = min(networks, key=lambda r: r.val_metrics[metric])
    variant = pool[best.name][1]
    members = [best]
    for seed in (seed for seed in dict.fromkeys(config.train.seeds) if seed != variant.train.seed):
        name = f"{best.name}-seed{seed}"
        if (seeded := budget.admit(name, "network", variant.with_overrides({"train.seed": seed}))) is None:
            continue
        log.info("[seeds] %s", name)
        with tracked_run(run_name=name, nested=True):
            mlflow.set_tags({"forecaster.role": "seed", "forecaster.seed_of": best.run_id})
            member = train_in_run(seeded, datamodule, kind="network", checkpoint_name=name)
        member.name = name
        members.append(member)
        pool[name] = (member, seeded, "network")
    if len(members) < 2:
        return None
    ensemble = Ensemble([ModelBundle.load(r.model_dir) for r in members], [r.name for r in members], "median")
    name = f"{best.name}-seeds"
    result = _train_ensemble(config, datamodule, ensemble, members, name, {
        "members": ensemble.names, "combine": "median", "seeds": [pool[r.name][1].train.seed for r in members]})
    log.info("[seeds] %s: validation %s %.4f (%s alone %.4f)", name, metric, result.val_metrics[metric], best.name,
             best.val_metrics[metric])
    return result, config


def _refit(config: Config, variant: Config, kind: str, datamodule, selected: TrainResult, pool,
           workers: compare_jobs.Workers) -> TrainResult:
    """Train the winning configuration again on every row of every series, for the epochs early stopping kept
    (so each epoch, on more data, takes proportionally more steps), in a child run linked to the selection run.
    An ensemble refits each member so (`pool`: name -> (result, config, kind) of every trained model; its networks
    side by side when the comparison has `workers`), and combines the refit members as the selection ensemble
    combined its own."""
    from forecaster.bundle import ModelBundle
    from forecaster.models.ensemble import Ensemble

    everything = datamodule.for_every_row()
    if kind != "ensemble":
        return _refit_one(_refit_config(variant, selected), kind, everything, selected, workers)
    chosen = ModelBundle.load(selected.model_dir).baseline
    members = {name: (_refit_config(pool[name][1], pool[name][0]), pool[name][2], pool[name][0])
               for name in chosen.names}  # name -> (its config for the refit, kind, selection result)
    if workers.pool is not None:
        for name, (member, member_kind, _) in members.items():
            if member_kind == "network":
                workers.submit(f"{name}-refit", member, everything=True)
    order = sorted(chosen.names, key=lambda name: f"{name}-refit" in workers)  # the rest here, meanwhile
    refits = [_refit_one(members[name][0], members[name][1], everything, members[name][2], workers) for name in order]
    refits.sort(key=lambda refit: chosen.names.index(refit.name))
    ensemble = Ensemble([ModelBundle.load(r.model_dir) for r in refits], chosen.names, chosen.combine)
    refit = _train_ensemble(config, everything, ensemble, refits, f"{ENSEMBLE}-refit",
                            {"members": chosen.names, "combine": chosen.combine, "refit_of": selected.run_id},
                            tags={"forecaster.refit_of": selected.run_id, "forecaster.role": "refit"})
    refit.name = selected.name
    _link_refit(selected, refit)
    return refit


def _refit_config(variant: Config, selected: TrainResult) -> Config:
    """`variant` for the epochs early stopping kept when `selected` trained (none when it kept its ridge start,
    epoch -1), started as `selected` started: `model.skip_start: auto` chooses on validation rows, which a refit
    does not have."""
    epochs = selected.best_epoch + 1 if selected.best_epoch is not None else variant.train.max_epochs
    overrides: dict[str, Any] = {"train.max_epochs": epochs}
    if variant.model.skip_start == "auto" and getattr(selected, "model_dir", None):
        from forecaster.bundle import ModelBundle

        overrides["model.skip_start"] = ModelBundle.load(selected.model_dir).config.model.skip_start
    return variant.with_overrides(overrides)


def _refit_one(variant: Config, kind: str, everything, selected: TrainResult,
               workers: compare_jobs.Workers) -> TrainResult:
    name = f"{selected.name}-refit"
    log.info("refit: %s on every row (%d rows)%s%s", selected.name, int(everything.panel.lengths.sum()),
             f", {variant.train.max_epochs} epoch(s)" if kind == "network" else "",
             " (trained by a worker)" if name in workers else "")
    with workers.nested_run(name, tags={"forecaster.refit_of": selected.run_id, "forecaster.role": "refit"}) as model:
        refit = train_in_run(variant, everything, kind=kind, checkpoint_name=name, model=model)
    refit.name = selected.name
    _link_refit(selected, refit)
    return refit


def _link_refit(selected: TrainResult, refit: TrainResult) -> None:
    import mlflow

    mlflow.MlflowClient().set_tag(selected.run_id, "forecaster.refit_run", refit.run_id)


def format_result(result: CompareResult) -> str:
    board = result.leaderboard
    shown, ranked = ("mse", "mae", "mae_original", "smape", "mase"), result.metric.split("_", 1)[1]
    metric_names = shown if ranked in shown else (*shown, ranked)  # the ranking metric is always shown
    columns = ["model", *[f"val_{m}" for m in metric_names], *[c for c in board.columns if c.startswith("backtest_")],
               *[f"test_{m}" for m in metric_names],
               *[c for c in board.columns if c.startswith(("test_coverage_", "test_width_"))], "test_msis",
               "params", "train_seconds"]
    table = board[[c for c in columns if c in board.columns]].to_string(
        index=False, float_format=lambda v: f"{v:.4f}")
    ranked = "rolling-origin folds before the test split" if result.metric.startswith("backtest_") else \
        "the validation split"
    lines = [f"leaderboard (ranked by {result.metric}, on {ranked}; test_* columns are reported, never ranked):",
             table, ""]
    if result.challenge is not None and result.challenge.compared:
        outcome = result.challenge
        lines.append(f"champion against challenger ({outcome.rows()}): "
                     + (f"champion {outcome.champion_score:.4f}, challenger {outcome.challenger_score:.4f}"
                        if outcome.compared else outcome.problem))
    if result.refit is not None:
        epochs = f", {result.refit.epochs_run} epoch(s)" if result.refit.kind == "network" else ""
        lines.append(f"refit on every row{epochs}: run {result.refit.run_id}")
    if result.skipped:
        lines.append(f"skipped, compare.time_budget spent: {', '.join(result.skipped)}")
    lines += [result.decision, f"parent run {result.parent_run_id}"]
    return "\n".join(lines)
