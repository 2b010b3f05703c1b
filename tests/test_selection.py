"""Honest selection: ranking on validation, the test split reported apart, champion against challenger on rows
neither model trained on, refit on every row, and no trained model lost to an error after training.

Every outcome is forced by the data: the baselines are deterministic, and each series is built so that the
model meant to win does so by a wide margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import shrink_config

from forecaster.mlflow_model.resolve import resolve_model
from forecaster.tracking import tracking_uri
from forecaster_pipelines import compare, train

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def write_series(path: Path, values: np.ndarray, start: str = "2024-01-01") -> Path:
    frame = pd.DataFrame({"timestamp": pd.date_range(start, periods=len(values), freq="h").astype(str),
                          "value": values})
    frame.to_csv(path, index=False)
    return path


def config_for(path: Path, state: Path, **overrides):
    return shrink_config(None, state, **{
        "data.path": str(path), "data.target": "value", "window.lookback": 48, "window.horizon": 24,
        "split.val_size": 96, "split.test_size": 96, "tracking.experiment": "selection",
        "registry.name": "selection", "train.max_epochs": 3, "train.lr": 0.01, "model.num_layers": 1,
        "model.dropout": 0.0, "train.patience": 0, "train.limit_train_batches": None,
        # These tests pin the rules between single candidates; a combination of them (tests/test_ensemble.py)
        # would be one more row on every board.
        "compare.ensemble": False, **overrides,
    })


def walk_then_daily_cycle(rows: int = 600, test_rows: int = 96) -> np.ndarray:
    """A random walk (repeating the last value wins) whose last `test_rows` turn into a strong daily cycle
    (repeating yesterday wins): validation and test disagree on the best model by construction."""
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(0.0, 1.0, rows))
    t = np.arange(test_rows)
    walk[-test_rows:] = walk[-test_rows - 1] + 40.0 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, test_rows)
    return walk


def slow_cycle(rows: int) -> np.ndarray:
    """A 50-hour cycle: a linear autoregression follows it closely, repeating the last value lags it a little,
    and repeating the value of 24 hours ago (nearly half a cycle) is far off."""
    t = np.arange(rows)
    return 10.0 * np.sin(2 * np.pi * t / 50) + np.random.default_rng(1).normal(0, 0.05, rows)


def register_champion(config, kind: str) -> str:
    """Train `kind` on `config` and put it under the alias, as an earlier compare would have."""
    result = train.run(config, kind=kind)
    version = str(mlflow.register_model(result.model_uri, config.registry.name).version)
    mlflow.MlflowClient().set_registered_model_alias(config.registry.name, config.registry.alias, version)
    return version


def champion_version(config) -> str:
    client = mlflow.MlflowClient(tracking_uri(config.tracking), registry_uri=tracking_uri(config.tracking))
    return str(client.get_model_version_by_alias(config.registry.name, config.registry.alias).version)


def test_compare_ranks_on_validation_and_reports_test_apart(tmp_path):
    config = config_for(write_series(tmp_path / "shift.csv", walk_then_daily_cycle()), tmp_path / "state",
                        **{"compare.models": ["seasonal_naive", "naive"]})
    result = compare.run(config)
    board = result.leaderboard.set_index("model")
    # The data makes the two splits disagree: naive is best on validation, seasonal naive on test.
    assert board.loc["naive", "val_mse"] < board.loc["seasonal_naive", "val_mse"]
    assert board.loc["seasonal_naive", "test_mse"] < board.loc["naive", "test_mse"]
    assert result.metric == "val_mse" and result.winner == "naive"
    assert list(result.leaderboard["model"]) == ["naive", "seasonal_naive"]
    assert {"test_mse", "test_mae", "val_mse", "val_mae"} <= set(result.leaderboard.columns)
    # The winner beat seasonal naive on validation and no champion existed: the alias moves to it.
    assert result.alias_moved and champion_version(config) == result.registered_version
    version = mlflow.MlflowClient().get_model_version(config.registry.name, result.registered_version)
    assert version.tags["forecaster.model"] == "naive"
    assert "ranked by val_mse" in compare.format_result(result)


def test_champion_stays_when_it_beats_the_challenger_on_new_rows(tmp_path):
    values = slow_cycle(900)
    early = write_series(tmp_path / "early.csv", values[:600])
    full = write_series(tmp_path / "full.csv", values)
    state = tmp_path / "state"
    kept = register_champion(config_for(early, state), "linear")
    config = config_for(full, state, **{"compare.models": ["naive", "seasonal_naive"]})
    result = compare.run(config)
    assert result.winner == "naive"
    outcome = result.challenge
    assert outcome.compared and outcome.champion_score < outcome.challenger_score
    # Only rows after both training ranges were scored: the champion trained up to row 600 - 192 of the early file.
    assert pd.Timestamp(outcome.first_target) > pd.Timestamp("2024-01-01") + pd.Timedelta(hours=600 - 192 - 1)
    assert not result.alias_moved and result.registered_version is None
    assert champion_version(config) == kept and "the champion stays" in result.decision
    parent = mlflow.MlflowClient().get_run(result.parent_run_id)
    assert parent.data.tags["forecaster.challenge.champion_version"] == kept


def test_alias_moves_when_the_challenger_beats_the_champion_on_new_rows(tmp_path):
    values = slow_cycle(900)
    state = tmp_path / "state"
    replaced = register_champion(config_for(write_series(tmp_path / "early.csv", values[:600]), state),
                                 "seasonal_naive")
    config = config_for(write_series(tmp_path / "full.csv", values), state,
                        **{"compare.models": ["naive", "seasonal_naive"]})
    result = compare.run(config)
    outcome = result.challenge
    assert outcome.compared and outcome.challenger_score < outcome.champion_score
    assert result.alias_moved and champion_version(config) == result.registered_version != replaced
    version = mlflow.MlflowClient().get_model_version(config.registry.name, result.registered_version)
    assert version.tags["forecaster.challenge.champion_version"] == replaced
    assert float(version.tags["forecaster.challenge.challenger_score"]) < float(
        version.tags["forecaster.challenge.champion_score"])


def test_the_champion_challenge_runs_no_code_stored_in_the_registry(tmp_path):
    """The champion's stored pyfunc code is changed in the artifact store (as anyone with write access could):
    compare must score the champion from its JSON and weights without importing that code."""
    values = slow_cycle(900)
    state = tmp_path / "state"
    register_champion(config_for(write_series(tmp_path / "early.csv", values[:600]), state), "naive")
    marker = tmp_path / "stored-code-ran"
    stored = list(state.rglob("pyfunc_model.py"))
    assert stored, "the registered model keeps its code in the store"
    for path in stored:
        path.write_text(f"open({str(marker)!r}, 'w').close()\n" + path.read_text())
    config = config_for(write_series(tmp_path / "full.csv", values), state,
                        **{"compare.models": ["naive", "seasonal_naive"]})
    result = compare.run(config)
    assert result.challenge.compared
    assert not marker.exists()


def test_a_margin_keeps_a_champion_that_is_only_slightly_worse(tmp_path):
    values = slow_cycle(900)
    state = tmp_path / "state"
    kept = register_champion(config_for(write_series(tmp_path / "early.csv", values[:600]), state), "naive")
    config = config_for(write_series(tmp_path / "full.csv", values), state,
                        **{"compare.models": ["naive", "seasonal_naive"], "compare.min_improvement": 0.05})
    result = compare.run(config)
    # The same kind of model: equal scores, so no 5 % improvement.
    assert result.challenge.challenger_score == pytest.approx(result.challenge.champion_score)
    assert not result.alias_moved and champion_version(config) == kept


def test_refit_registers_a_model_that_saw_every_row_and_links_the_runs(tmp_path):
    values = slow_cycle(700)
    config = config_for(write_series(tmp_path / "cycle.csv", values), tmp_path / "state",
                        **{"compare.models": ["gru", "seasonal_naive"]})
    result = compare.run(config)
    assert result.winner == "gru" and result.alias_moved
    selection = next(r for r in result.results if r.name == "gru")
    assert result.refit.epochs_run == selection.best_epoch + 1
    client = mlflow.MlflowClient()
    assert client.get_run(selection.run_id).data.tags["forecaster.refit_run"] == result.refit.run_id
    assert client.get_run(result.refit.run_id).data.tags["forecaster.refit_of"] == selection.run_id
    deployed = resolve_model(f"models:/{config.registry.name}@{config.registry.alias}").bundle
    assert deployed.trained_range["rows"] == 700 and selection.trained_range["rows"] == 700 - 192
    assert pd.Timestamp(deployed.trained_range["last"]) == pd.Timestamp("2024-01-01") + pd.Timedelta(hours=699)
    (statistics,) = deployed.scaler_state["series"].values()  # the scaler's statistics come from all 700 rows
    assert statistics["mean"][0] == pytest.approx(values.astype(np.float32).mean(), abs=1e-4)
    version = client.get_model_version(config.registry.name, result.registered_version)
    assert version.tags["forecaster.trained_until"] == deployed.trained_range["last"]
    assert version.tags["refit_run"] == result.refit.run_id


def test_unchanged_data_keeps_the_champion_unless_promotion_is_forced(tmp_path):
    config = config_for(write_series(tmp_path / "cycle.csv", slow_cycle(600)), tmp_path / "state",
                        **{"compare.models": ["naive", "seasonal_naive"]})
    first = compare.run(config)
    second = compare.run(config)  # the refit champion trained on every row: nothing is newer
    assert not second.alias_moved and not second.challenge.compared
    assert "has not moved on" in second.decision and champion_version(config) == first.registered_version
    forced = compare.run(config.with_overrides({"compare.promote": "always"}))
    assert forced.alias_moved and champion_version(config) == forced.registered_version != first.registered_version


def test_compare_without_validation_rows_is_refused_before_training(tmp_path):
    config = config_for(write_series(tmp_path / "cycle.csv", slow_cycle(400)), tmp_path / "state",
                        **{"split.val_size": 0, "compare.models": ["naive", "seasonal_naive"]})
    with pytest.raises(Exception, match="validation split, which has no window"):
        compare.run(config)
    assert not (tmp_path / "state" / "checkpoints").exists()


def test_evaluation_error_after_training_keeps_the_saved_model(tmp_path, monkeypatch):
    import forecaster.evaluation
    from forecaster.bundle import ModelBundle
    from forecaster.errors import ModelError

    config = config_for(write_series(tmp_path / "cycle.csv", slow_cycle(400)), tmp_path / "state")

    def broken(*args, **kwargs):
        raise ValueError("scoring broke")

    monkeypatch.setattr(forecaster.evaluation, "score_windows", broken)  # every metric is scored through it
    with pytest.raises(ModelError, match="scoring broke") as error:
        train.run(config, kind="linear")
    folder = str(error.value).split("The trained model is saved in ")[1].split(";")[0]
    assert ModelBundle.load(folder).kind == "linear"


@pytest.mark.parametrize("empty_test", ["split.test_fraction=0", "split.test_size=0"])
def test_train_with_an_empty_test_split_from_the_cli(tmp_path, empty_test):
    data = write_series(tmp_path / "cycle.csv", slow_cycle(400))
    extra = [] if empty_test.startswith("split.test_fraction") else ["--set", "split.val_size=48"]
    result = subprocess.run(
        [sys.executable, "-m", "forecaster_pipelines", "train", str(REPO / "configs" / "demo-gru.yaml"), "--json",
         "--set", f"data.path={data}", "--set", "data.series_id=null", "--set", "data.target=value", "--set", "data.covariates=[]",
         "--set", f"tracking.state_dir={tmp_path / 'state'}", "--set", "train.max_epochs=1",
         "--set", "train.limit_train_batches=2", "--set", "train.progress=false", "--set", "window.lookback=48",
         "--set", "window.horizon=12", "--set", empty_test, *extra],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert "mse" not in summary and summary["val_mse"] > 0 and summary["model_uri"].startswith("models:/")
    assert "no test metrics" in result.stdout


def test_two_compares_at_once_on_one_registry_name_never_both_promote(tmp_path):
    """Two `forecaster compare` processes start together on a new store: both create (or find) the experiment,
    both may find no champion, but the second to promote judges again against the first's winner, so exactly one
    moves the alias and it ends on that one."""
    from forecaster.config import dump_config

    config = config_for(write_series(tmp_path / "cycle.csv", slow_cycle(700)), tmp_path / "state",
                        **{"compare.models": ["naive", "seasonal_naive", "linear"]})
    path = tmp_path / "compare.yaml"
    path.write_text(dump_config(config))
    command = [sys.executable, "-m", "forecaster_pipelines", "compare", str(path), "--json"]
    processes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    moved = [outcome for outcome in outcomes if outcome["alias_moved"]]
    assert len(moved) == 1, [outcome["decision"] for outcome in outcomes]
    assert champion_version(config) == moved[0]["registered_version"]
