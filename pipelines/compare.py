"""The compare job: several model types on identical data and splits, side by side in MLflow.

One parent run holds a nested child run per model (the baselines included, as the floor). The leaderboard is
printed, logged as a table and a plot, and the winner is registered; the alias (`champion`) moves to it only
when it beats the seasonal-naive baseline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from forecaster.config import BASELINES, Config
from forecaster.errors import ConfigError
from forecaster.tracking import setup_tracking
from pipelines.train import TrainResult, prepare_data, train_in_run

log = logging.getLogger(__name__)


@dataclass
class CompareResult:
    parent_run_id: str
    metric: str
    leaderboard: Any  # pandas DataFrame, best first
    results: list[TrainResult]
    winner: str
    registered_version: str | None
    alias_moved: bool
    decision: str
    backtest: Any = None

    def summary(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.parent_run_id, "metric": self.metric, "winner": self.winner,
            "registered_version": self.registered_version, "alias_moved": self.alias_moved,
            "decision": self.decision, "leaderboard": self.leaderboard.to_dict(orient="records"),
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
    if len(set(names)) != len(names):
        raise ConfigError(f"compare.models: names must be unique, got {names}; give each mapping a distinct `name`")
    return resolved


def run(config: Config) -> CompareResult:
    import mlflow
    import pandas as pd

    from forecaster import plots

    if config.train.strategy.startswith(("ddp", "fsdp", "deepspeed")) or config.train.num_nodes > 1:
        raise ConfigError(f"compare trains its models one after another in one process; train.strategy="
                          f"{config.train.strategy} is for `forecaster train`. Train the chosen model with DDP.")
    setup_tracking(config.tracking)
    datamodule = prepare_data(config)
    models = resolve_models(config)
    metric = config.compare.metric
    with mlflow.start_run(run_name="compare") as parent:
        mlflow.set_tag("forecaster.job", "compare")
        mlflow.log_params({key: value for key, value in config.flat().items()
                           if key.startswith(("data.", "window.", "split.", "compare."))
                           and not isinstance(value, list | dict)})
        results: list[TrainResult] = []
        for index, (name, kind, variant) in enumerate(models, start=1):
            log.info("[%d/%d] %s", index, len(models), name)
            with mlflow.start_run(run_name=name, nested=True):
                result = train_in_run(variant, datamodule, kind=kind)
            result.name = name
            results.append(result)
            log.info("  test %s = %.4f (%.1f s)", metric, result.metrics[metric], result.train_seconds)

        table = pd.DataFrame([{"model": r.name, **r.metrics, "params": r.n_params,
                               "train_seconds": round(r.train_seconds, 2), "run_id": r.run_id} for r in results])
        backtest = None
        if config.compare.backtest_folds > 0:
            from pipelines.backtest import backtest_models

            backtest = backtest_models(config, models, datamodule)
            table = table.merge(backtest.summary, on="model", how="left")
            metric = f"backtest_{metric}"
        table = table.sort_values(metric, na_position="last").reset_index(drop=True)
        mlflow.log_table(table, "leaderboard.json")
        mlflow.log_text(table.to_csv(index=False), "leaderboard.csv")
        fig = plots.leaderboard(table, metric)
        mlflow.log_figure(fig, "plots/leaderboard.png")
        plots.close(fig)

        winner = table.iloc[0]
        version, moved, decision = _register_winner(config, table, results, metric)
        mlflow.set_tags({"forecaster.winner": winner["model"], "forecaster.decision": decision})
        mlflow.log_metric(f"winner/{metric}", float(winner[metric]))
    return CompareResult(
        parent_run_id=parent.info.run_id, metric=metric, leaderboard=table, results=results,
        winner=str(winner["model"]), registered_version=version, alias_moved=moved, decision=decision,
        backtest=backtest,
    )


def _register_winner(config: Config, table, results: list[TrainResult], metric: str) -> tuple[str | None, bool, str]:
    """Register the winner's model; move the alias only when it beats seasonal naive on `metric`."""
    import mlflow

    winner = table.iloc[0]
    floor = table.loc[table["model"] == "seasonal_naive", metric]
    if not config.compare.register_winner:
        return None, False, "registration disabled (compare.register_winner: false)"
    result = next(r for r in results if r.name == winner["model"])
    if floor.empty:
        return None, False, "not registered: seasonal_naive is not in compare.models, so there is no floor to beat"
    floor_value = float(floor.iloc[0])
    if not float(winner[metric]) < floor_value:
        return None, False, (f"not registered: the best model, {winner['model']} ({metric} {winner[metric]:.4f}), "
                             f"does not beat seasonal_naive ({floor_value:.4f}); the alias stays where it was")
    name, alias = config.registry.name, config.registry.alias
    version = mlflow.register_model(result.model_uri, name).version
    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, version, "forecaster.model", result.name)
    client.set_model_version_tag(name, version, f"test.{metric}", f"{winner[metric]:.6f}")
    client.set_model_version_tag(name, version, "source_run", result.run_id)
    client.set_registered_model_alias(name, alias, version)
    return str(version), True, (f"registered {winner['model']} as {name} version {version} and moved @{alias} to it: "
                                f"{metric} {winner[metric]:.4f} beats seasonal_naive's {floor_value:.4f}")


def format_result(result: CompareResult) -> str:
    columns = [c for c in ("model", "mse", "mae", "mae_original", "smape", "mase", "params", "train_seconds")
               if c in result.leaderboard.columns]
    extra = [c for c in result.leaderboard.columns if c.startswith("backtest_")]
    table = result.leaderboard[columns + extra].to_string(index=False, float_format=lambda v: f"{v:.4f}")
    return "\n".join([f"leaderboard (test, sorted by {result.metric}):", table, "", result.decision,
                      f"parent run {result.parent_run_id}"])
