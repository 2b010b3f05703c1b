"""`train.max_minutes` stops a training after the epoch that passes it; `compare.time_budget` trains the cheap
candidates first, caps each network at its share of what is left, and skips what it has no time for."""

from __future__ import annotations

import pytest

from forecaster_pipelines import compare, train
from forecaster_pipelines.budget import Budget

pytestmark = pytest.mark.trains  # small trainings and comparisons


def test_a_training_stops_after_the_epoch_that_passes_its_minutes(shrink, tmp_path):
    config = shrink("demo-gru.yaml", tmp_path, **{"train.max_epochs": 3, "train.max_minutes": 1e-5,
                                                   "train.patience": 0})
    result = train.run(config)
    assert result.epochs_run == 1 and result.best_epoch == 0 and result.val_metrics  # scored on validation, kept
    uncapped = train.run(config.with_overrides({"train.max_minutes": None, "tracking.experiment": "uncapped"}))
    assert uncapped.epochs_run == 3


def test_the_budget_orders_cheap_first_and_gives_each_network_its_share(shrink, tmp_path):
    config = shrink("demo.yaml", tmp_path)
    models = compare.resolve_models(config.with_overrides({"compare.models": ["gru", "lstm", "ets", "naive"]}))
    budget = Budget(1.0, models)  # one minute: 48 s after the fifth kept for the ensemble, refit and registry
    ordered = budget.order(models)
    assert [name for name, _, _ in ordered] == ["naive", "ets", "gru", "lstm"]
    assert budget.admit("naive", "naive", config) is config
    first = budget.admit("gru", "network", ordered[2][2]).train.max_minutes
    assert 0.38 < first <= 0.4  # half of 48 s: two networks share it
    budget.started -= 30  # the first network took 30 s
    second = budget.admit("lstm", "network", ordered[3][2]).train.max_minutes
    assert 0.25 < second <= 0.3  # what is left of the 48 s: 18 s
    budget.started -= 60
    assert budget.admit("ets", "ets", config) is None and budget.skipped == ["ets"]
    assert Budget(None, models).order(models) == models  # no budget: compare.models order, nothing capped


def test_a_spent_budget_keeps_the_baselines_and_reports_the_rest_as_skipped(shrink, tmp_path):
    config = shrink("demo.yaml", tmp_path / "state", **{
        "compare.models": ["gru", "ets", "naive", "seasonal_naive"], "compare.time_budget": 0.001,
        "compare.refit": False})
    result = compare.run(config)
    assert result.skipped == ["ets", "gru"]  # 0.06 s: spent by the time the baselines are logged
    assert set(result.leaderboard["model"]) == {"naive", "seasonal_naive", "ensemble"}
    assert "skipped, compare.time_budget spent: ets, gru" in compare.format_result(result)
    assert result.summary()["skipped"] == ["ets", "gru"]


def test_a_refit_that_would_pass_the_budget_is_skipped_and_said():
    budget = Budget(1.0, [])
    budget.started -= 50  # 50 of the 60 seconds are spent
    assert budget.allows_refit(5.0)
    assert not budget.allows_refit(20.0)
    assert Budget(None, []).allows_refit(1e9)  # no budget: always refit
