"""Ensembles: the combination of the members' forecasts, chosen on validation, saved as the members' own bundles,
and registered, refit, forecast and served like any other model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from forecaster.bundle import ModelBundle
from forecaster.config import build_config
from forecaster.errors import ConfigError, ModelError
from forecaster.models.catalog import make_baseline
from forecaster.models.ensemble import Ensemble, choose_ensemble, combine_forecasts

pytestmark = pytest.mark.trains  # small comparisons

LOOKBACK = HORIZON = 6
DIMS = {"n_targets": 2, "n_past_features": 3, "n_future_features": 0}


def hand_batch():
    """Two windows of two targets and a covariate; target 0 counts up, target 1 counts down."""
    steps = torch.arange(6.0)
    x_past = torch.stack([steps, 15 - steps, torch.full((6,), -99.0)], dim=-1)  # [L, 3]
    x_past = torch.stack([x_past, x_past * 2 + 100])  # [B=2, L, 3]
    y = torch.randn(2, HORIZON, 2, generator=torch.Generator().manual_seed(0))
    return {"x_past": x_past, "x_future": torch.zeros(2, HORIZON, 0), "y": y}


def baseline_bundle(name: str) -> ModelBundle:
    config = build_config({"window": {"lookback": LOOKBACK, "horizon": HORIZON}})
    baseline = make_baseline(name, season_length=4, n_targets=2, lookback=LOOKBACK, horizon=HORIZON)
    batch = hand_batch()
    baseline.fit([batch, {**batch, "y": batch["y"] + 1}])
    return ModelBundle(config=config, kind=name, scaler_state={}, dims=DIMS, baseline=baseline)


def member_forecasts(names):
    batch = hand_batch()
    return np.stack([baseline_bundle(name).baseline.predict(batch["x_past"], batch["x_future"]).numpy()
                     for name in names])  # [M, B, H, T]


@pytest.mark.parametrize("combine", ["median", "mean"])
def test_an_ensemble_forecasts_the_combination_of_its_members(combine):
    names = ["naive", "seasonal_naive", "linear"]
    ensemble = Ensemble([baseline_bundle(name) for name in names], names, combine)
    batch = hand_batch()
    pred = ensemble.predict(batch["x_past"], batch["x_future"]).numpy()
    members = member_forecasts(names)
    expected = np.median(members, axis=0) if combine == "median" else members.mean(axis=0)
    np.testing.assert_allclose(pred, expected, rtol=1e-6)
    assert not np.allclose(pred, members[0]) and not np.allclose(pred, members[2])  # the members do differ


def test_an_ensemble_of_identical_members_forecasts_as_the_member():
    member = baseline_bundle("linear")
    batch = hand_batch()
    alone = member.baseline.predict(batch["x_past"], batch["x_future"])
    for combine in ("median", "mean"):
        ensemble = Ensemble([member, member, member], ["a", "b", "c"], combine)
        torch.testing.assert_close(ensemble.predict(batch["x_past"], batch["x_future"]), alone)


def test_an_ensemble_bundle_is_its_members_bundles_and_reloads_to_the_same_forecasts(tmp_path):
    names = ["naive", "linear"]
    ensemble = Ensemble([baseline_bundle(name) for name in names], names, "mean")
    bundle = ModelBundle(config=build_config({"window": {"lookback": LOOKBACK, "horizon": HORIZON}}),
                         kind="ensemble", scaler_state={}, dims=DIMS, baseline=ensemble)
    bundle.save(tmp_path / "model")
    document = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert document["baseline"] == {"name": "ensemble", "n_targets": 2, "lookback": LOOKBACK, "horizon": HORIZON,
                                    "combine": "mean", "members": names}
    assert [json.loads((tmp_path / "model" / "members" / f"0{i}" / "bundle.json").read_text())["kind"]
            for i in range(2)] == names
    loaded = ModelBundle.load(tmp_path / "model")
    batch = hand_batch()
    torch.testing.assert_close(loaded.baseline.predict(batch["x_past"], batch["x_future"]),
                               ensemble.predict(batch["x_past"], batch["x_future"]))
    assert loaded.baseline.n_params == ensemble.n_params > 0


def test_members_that_read_other_windows_or_an_unknown_combination_are_refused():
    other = baseline_bundle("naive")
    other.config = other.config.with_overrides({"window.lookback": 12})
    with pytest.raises(ModelError, match="different windows"):
        Ensemble([baseline_bundle("naive"), other], ["a", "b"])
    with pytest.raises(ModelError, match="unknown combination 'mode'"):
        Ensemble([baseline_bundle("naive")], ["a"], "mode")


def test_the_choice_keeps_the_size_and_combination_that_score_best_on_validation():
    actual = np.zeros((50, 4, 1))
    rng = np.random.default_rng(0)
    a, b = 1.0 + 0.1 * rng.standard_normal(actual.shape), -1.0 + 0.1 * rng.standard_normal(actual.shape)
    far = 5.0 + 0.1 * rng.standard_normal(actual.shape)  # a poor third: the mean of three is pulled towards it

    def mse(pred):
        return float(np.mean((pred - actual) ** 2))

    choice = choose_ensemble([("a", a), ("b", b), ("far", far)], mse, max_size=4)
    assert choice.members == ("a", "b") and choice.combine == "mean"
    assert choice.score == pytest.approx(mse((a + b) / 2))
    assert [(size, combine) for size, combine, _ in choice.tried] == [(2, "mean"), (3, "median"), (3, "mean")]
    assert choose_ensemble([("a", a)], mse, max_size=4) is None
    np.testing.assert_array_equal(combine_forecasts(np.stack([a, b, far]), "median"), a)


def test_a_candidate_named_ensemble_is_refused(shrink, tmp_path):
    from forecaster_pipelines.compare import resolve_models

    config = shrink("demo.yaml", tmp_path, **{"compare.models": ["naive", {"name": "ensemble", "cell": "gru"}]})
    with pytest.raises(ConfigError, match="'ensemble' is the name of the combination"):
        resolve_models(config)


@pytest.mark.slow
def test_a_winning_ensemble_is_refit_registered_and_forecasts_its_members_combination(shrink, demo_csv, tmp_path):
    import mlflow

    from forecaster.forecasting import forecast
    from forecaster.mlflow_model.resolve import resolve_model
    from forecaster_pipelines import compare

    config = shrink("demo.yaml", tmp_path / "state", **{
        "compare.models": ["seasonal_naive", "linear", "theta", "mstl"], "registry.name": "ens"})
    result = compare.run(config)

    board = result.leaderboard.set_index("model")
    assert "ensemble" in board.index and result.winner == "ensemble"  # on the demo data the combination wins
    assert board.loc["ensemble", "val_mse"] < board.drop(index="ensemble")["val_mse"].min()
    assert result.registered_version == "1" and result.refit is not None

    deployed = resolve_model("models:/ens@champion").bundle
    assert deployed.kind == "ensemble" and deployed.calibration is not None
    members = deployed.baseline.members
    assert len(members) >= 2 and set(deployed.baseline.names) <= {"seasonal_naive", "linear", "theta", "mstl"}
    last = str(pd.read_csv(demo_csv, parse_dates=["timestamp"])["timestamp"].max())
    assert all(member.trained_range["last"] == last for member in members)  # the members were refit on every row

    history = pd.read_csv(demo_csv)
    combined = forecast(deployed, history).frame
    alone = np.stack([forecast(member, history).frame["forecast"].to_numpy() for member in members])
    np.testing.assert_allclose(combined["forecast"], combine_forecasts(alone, deployed.baseline.combine), rtol=1e-5)
    assert (combined["forecast_lo_80"] < combined["forecast"]).all()

    served = mlflow.pyfunc.load_model(result.refit.model_uri).predict(history)
    np.testing.assert_allclose(served["forecast"], combined["forecast"], rtol=1e-6)
    tags = mlflow.get_run(result.refit.run_id).data.tags
    assert tags["forecaster.refit_of"] == next(r.run_id for r in result.results if r.name == "ensemble")


@pytest.mark.slow
def test_the_best_network_on_several_seeds_is_one_more_candidate_and_refits_seed_by_seed(shrink, demo_csv, tmp_path,
                                                                                          monkeypatch):
    import mlflow

    from forecaster.forecasting import forecast
    from forecaster.mlflow_model.resolve import resolve_model
    from forecaster_pipelines import compare

    leaderboard = compare._leaderboard

    def seeds_first(*args):  # whatever the scores, deploy the seed ensemble: its refit is what this test reads
        table, backtest = leaderboard(*args)
        order = [table.index[table["model"] == "gru-seeds"][0], *table.index[table["model"] != "gru-seeds"]]
        return table.loc[order].reset_index(drop=True), backtest

    monkeypatch.setattr(compare, "_leaderboard", seeds_first)
    config = shrink("demo.yaml", tmp_path / "state", **{
        "compare.models": ["gru", "seasonal_naive"], "compare.ensemble": False, "train.seeds": [42, 7],
        "registry.name": "seeds", "compare.promote": "always"})
    result = compare.run(config)

    assert set(result.leaderboard["model"]) == {"gru", "gru-seeds", "seasonal_naive"}  # no row per seed
    seeds = next(r for r in result.results if r.name == "gru-seeds")
    record = mlflow.artifacts.load_dict(f"runs:/{seeds.run_id}/ensemble.json")
    assert record == {"members": ["gru", "gru-seed7"], "combine": "median", "seeds": [42, 7]}
    assert result.winner == "gru-seeds" and result.refit is not None
    deployed = resolve_model("models:/seeds@champion").bundle
    assert deployed.baseline.names == ["gru", "gru-seed7"]
    first, second = (member.network.state_dict() for member in deployed.baseline.members)
    assert any(not torch.equal(first[key], second[key]) for key in first)  # two seeds, two networks
    history = pd.read_csv(demo_csv)
    alone = np.stack([forecast(m, history, precision="32").frame["forecast"].to_numpy()  # members compute in
                      for m in deployed.baseline.members])  # float32 inside an ensemble
    np.testing.assert_allclose(forecast(deployed, history).frame["forecast"], alone.mean(axis=0), rtol=1e-5)
    refits = [run for run in mlflow.search_runs(experiment_names=[config.tracking.experiment], output_format="list")
              if run.data.tags.get("forecaster.role") == "refit"]
    assert sorted(run.info.run_name for run in refits) == ["ensemble-refit", "gru-refit", "gru-seed7-refit"]
