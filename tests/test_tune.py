"""`forecaster tune`: the search space, pruning, a study that resumes, parallel workers, and a tuned config that
`train` and `compare` accept, all without reading the test split."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from forecaster import search
from forecaster.config import Config, SearchRange, build_config, load_config
from forecaster.errors import ConfigError

pytestmark = pytest.mark.trains  # small studies

SPACE = {"cell": ["gru", "rnn"], "hidden_size": [8, 16], "lr": {"low": 1e-3, "high": 1e-2, "log": True}}


@pytest.fixture
def sine_csv(tmp_path):
    """600 hourly rows of a daily sine with noise: one series, small enough for a trial in a second."""
    n = 600
    values = 10 + np.sin(np.arange(n) * 2 * np.pi / 24) + 0.1 * np.random.default_rng(0).standard_normal(n)
    path = tmp_path / "sine.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="h"), "value": values}).to_csv(
        path, index=False)
    return path


@pytest.fixture
def tiny(shrink, sine_csv, tmp_path):
    """`tiny(**overrides)`: a shrunk config on the sine file with a three-key space and two trials."""
    def make(**overrides) -> Config:
        return shrink(None, tmp_path / "state", **{
            "data.path": str(sine_csv), "window.lookback": 24, "window.horizon": 12, "train.max_epochs": 1,
            "train.limit_train_batches": 2, "tune.space": SPACE, "tune.trials": 2, **overrides})
    return make


@pytest.fixture
def no_test_split(monkeypatch):
    """Fail the test if anything asks for a batch of the test split."""
    from forecaster.data.datamodule import ForecastDataModule

    original = ForecastDataModule.dataloader

    def guarded(self, split, shuffle=False):
        assert split != "test", "tune read the test split"
        return original(self, split, shuffle)

    monkeypatch.setattr(ForecastDataModule, "dataloader", guarded)


def test_space_keys_are_checked_by_name(tmp_path):
    with pytest.raises(ConfigError, match="hiden_size.*Did you mean 'hidden_size'"):
        build_config({"tune": {"space": {"hiden_size": [32]}}}, "x.yaml")
    with pytest.raises(ConfigError, match="low.*below high"):
        build_config({"tune": {"space": {"lr": {"low": 0.1, "high": 0.01}}}})
    config = build_config({"tune": {"space": {"train.weight_decay": [0.0, 0.01], "cell": ["gru"]}}})
    with pytest.raises(ConfigError, match="tune.space.cell: the value 'transformer'"):
        search.check_space(config, {"cell": ["gru", "transformer"]})


def test_one_key_of_the_space_can_be_set_from_the_command_line(tmp_path):
    from forecaster.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text("data:\n  path: data/demo.csv\ntune:\n  space:\n    cell: [gru]\n    lr: {low: 0.001, high: 0.01}\n")
    config = load_config(path, ["tune.space.cell=[gru, lstm]", "tune.space.hidden_size=[16, 32]"])
    assert config.tune.space["cell"] == ["gru", "lstm"] and config.tune.space["hidden_size"] == [16, 32]
    assert config.tune.space["lr"].high == 0.01  # the keys not set stay
    with pytest.raises(ConfigError, match="hiden_size.*Did you mean 'hidden_size'"):
        load_config(path, ["tune.space.hiden_size=[16]"])
    with pytest.raises(ConfigError, match="unknown key 'tune.spaces.cell'"):
        load_config(path, ["tune.spaces.cell=[gru]"])


def test_default_space_follows_the_season_and_the_data_size():
    hourly = search.default_space(Config(), "h", shortest_train_rows=8640, train_windows=8521)
    assert hourly["lookback"] == [24, 48, 96, 168, 336]  # whole days, up to two weeks
    assert hourly["hidden_size"] == [32, 64, 128]
    small = search.default_space(Config(), "h", shortest_train_rows=200, train_windows=150)
    assert small["lookback"] == [24, 48, 96]  # up to (200 - 24) // 2 rows, plus the config's own 96
    assert small["hidden_size"] == [16, 32, 64]
    daily = search.default_space(Config().with_overrides({"window.lookback": 56}), "D", 2000, 5000)
    assert daily["lookback"][:3] == [7, 14, 28] and 56 in daily["lookback"]


def test_sampling_draws_segment_length_only_for_segments():
    config = Config()
    space = {"strategy": ["direct", "segment"], "segment_length": [12, 24], "hidden_size": SearchRange(low=8, high=64)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        params = search.sample(trial, space, config)
        assert ("segment_length" in params) == (params["strategy"] == "segment")
        assert isinstance(params["hidden_size"], int) and 8 <= params["hidden_size"] <= 64
        assert search.apply(config, params).model.strategy == params["strategy"]
        study.tell(trial, 0.0)


def test_starting_point_is_the_configs_own_values_inside_the_space():
    config = Config().with_overrides({"model.cell": "gru", "train.lr": 0.5})
    point = search.starting_point({"cell": ["gru", "rnn"], "lr": SearchRange(low=1e-4, high=1e-2, log=True),
                                   "segment_length": [12]}, config)
    assert point == {"cell": "gru"}  # lr 0.5 lies outside the range; segment_length is inactive for direct


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_diverged_epoch_is_pruned_whatever_the_pruner(value):
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = search.PruneOnValidation(trial, "val/mse")
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=2, callback_metrics={"val/mse": torch.tensor(value)})
    with pytest.raises(optuna.TrialPruned):
        callback.on_validation_end(trainer, None)
    assert callback.pruned_at == 2 and math.isinf(trial.storage.get_trial(trial._trial_id).intermediate_values[2])


def test_a_finite_epoch_is_reported_and_kept_when_the_pruner_agrees():
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = search.PruneOnValidation(trial, "val/mse")
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, callback_metrics={"val/mse": torch.tensor(0.5)})
    callback.on_validation_end(trainer, None)
    assert callback.pruned_at is None
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {0: 0.5}


@pytest.mark.slow
def test_tiny_tune_writes_a_config_that_trains_and_never_reads_the_test_split(tiny, tmp_path, no_test_split):
    from forecaster_pipelines import tune

    result = tune.run(tiny(), output=tmp_path / "tuned.yaml")
    assert (result.trials, result.completed, result.pruned) == (2, 2, 0)
    assert result.best_value == pytest.approx(min(t.value for t in _study(tiny()).trials))
    tuned = load_config(result.config_path)  # as `train` and `compare` will read it
    for name, value in result.best_params.items():
        assert tuned.flat()[search.dotted(name)] == value
    assert tuned.compare.models[0] == {"name": f"{tuned.model.cell}-tuned", "cell": tuned.model.cell}
    assert "seasonal_naive" in tuned.compare.models and "# tuned" in (tmp_path / "tuned.yaml").read_text()

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(run.data.tags["forecaster.tune.trial"] for run in children) == ["0", "1"]
    assert all("validation/mse" in run.data.metrics and "model.cell" in run.data.params for run in children)
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/optimisation_history.png" in artifacts


@pytest.mark.slow
def test_the_tuned_config_trains_and_compare_accepts_it(tiny, tmp_path):
    from forecaster_pipelines import train, tune

    result = tune.run(tiny(**{"tune.trials": 1}), output=tmp_path / "tuned.yaml", then_compare=True)
    assert result.compare is not None and result.compare.winner
    assert f"{load_config(result.config_path).model.cell}-tuned" in set(result.compare.leaderboard["model"])
    trained = train.run(load_config(result.config_path))
    assert trained.val_metrics["mse"] > 0


@pytest.mark.slow
def test_an_interrupted_study_resumes_and_counts_its_finished_trials(tiny, tmp_path):
    from forecaster_pipelines import tune

    first = tune.run(tiny(**{"tune.trials": 1}), output=tmp_path / "tuned.yaml")
    assert first.trials == 1
    _study(tiny()).ask()  # a trial an interrupted run left RUNNING
    second = tune.run(tiny(**{"tune.trials": 2}), output=tmp_path / "tuned.yaml")
    states = [t.state.name for t in _study(tiny()).trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1 and "RUNNING" not in states
    assert second.trials == 2 and second.ran_now == 1 and second.run_id == first.run_id
    again = tune.run(tiny(**{"tune.trials": 2}), output=tmp_path / "tuned.yaml")
    assert again.ran_now == 0 and len(_study(tiny()).trials) == 3


@pytest.mark.slow
def test_hopeless_trials_are_pruned_after_their_first_epoch(tiny, tmp_path, monkeypatch, caplog):
    """The pruner says 'prune' to every trial but the first: each of those stops after one of its three epochs."""
    from forecaster_pipelines import tune

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number > 0)
    caplog.set_level(logging.INFO, logger="forecaster_pipelines.tune_tracking")
    result = tune.run(tiny(**{"tune.trials": 3, "train.max_epochs": 3, "train.patience": 0}),
                      output=tmp_path / "tuned.yaml")
    trials = _study(tiny()).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert [len(t.intermediate_values) for t in trials] == [3, 1, 1]
    assert (result.completed, result.pruned, result.best_trial) == (1, 2, 0)
    best = f"(best: {trials[0].value:.4f}, trial 0)"
    assert [r.getMessage() for r in caplog.records if r.name.endswith("tune_tracking")] == [
        f"trial 0 complete: val_mse {trials[0].value:.4f} {best}",
        f"trial 1 pruned after epoch 1 {best}", f"trial 2 pruned after epoch 1 {best}"]


@pytest.mark.slow
def test_two_worker_processes_share_one_study(tiny, tmp_path, capfd):
    from forecaster_pipelines import tune

    result = tune.run(tiny(**{"tune.trials": 3, "tune.jobs": 2}), output=tmp_path / "tuned.yaml")
    assert result.trials == 3 and len(_study(tiny()).trials) == 3
    workers_log = capfd.readouterr().err
    assert "trial 0" in workers_log  # each epoch's line, from the worker processes
    assert "GPU available" not in workers_log and "litlogger" not in workers_log  # Lightning's start-up lines
    assert "LeafSpec" not in workers_log  # nor its deprecation warnings

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == 3  # logged by the parent process, the only writer of the MLflow store


def test_only_the_first_worker_takes_the_enqueued_starting_point(tmp_path):
    """SQLite has no row locks: two workers could both take the enqueued trial, and the second to finish it fails
    ("Cannot tell a COMPLETE trial"). The others wait until it is taken, and no longer than their patience."""
    import threading
    import time

    from forecaster_pipelines import tune

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    study.enqueue_trial({"x": 1.0})
    other = optuna.load_study(study_name="s", storage=url)
    taken = threading.Timer(0.6, other.ask)  # the first worker takes it
    started = time.monotonic()
    taken.start()
    tune._await_enqueued(study, deadline=None, patience=30)
    waited = time.monotonic() - started
    taken.join()
    assert 0.5 < waited < 20
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]
    study.enqueue_trial({"x": 2.0})  # never taken: the wait ends at the patience, or the tune deadline
    started = time.monotonic()
    tune._await_enqueued(study, deadline=time.time() + 0.3, patience=30)
    assert time.monotonic() - started < 10


def _study(config: Config):
    from forecaster_pipelines import tune

    return optuna.load_study(study_name=tune.study_name(config), storage=tune.storage_url(config))


def test_a_trial_still_training_at_the_deadline_stops_failed():
    from forecaster.errors import TrainingError

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    callback = search.PruneOnValidation(study.ask(), "val/mse", deadline=0.0)  # long past
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=1, callback_metrics={"val/mse": torch.tensor(0.5)})
    with pytest.raises(TrainingError, match="tune.timeout"):
        callback.on_validation_end(trainer, None)


def test_a_trial_stopped_by_a_forecaster_error_is_logged_in_one_line(caplog):
    """Optuna logs a caught trial error with its traceback: for forecaster's own errors, the message is enough."""
    from forecaster.errors import TrainingError

    search.trial_errors_in_one_line()
    search.trial_errors_in_one_line()  # idempotent: the tune process and each worker call it
    study = optuna.create_study()
    caplog.set_level(logging.WARNING, logger="optuna")
    optuna.logging.enable_propagation()
    try:
        def stopped(trial):
            raise TrainingError(f"trial {trial.number} stopped after epoch 1: tune.timeout has passed")

        def broken(trial):
            raise ValueError("a bug")

        study.optimize(stopped, n_trials=1, catch=(TrainingError,))
        study.optimize(broken, n_trials=1, catch=(ValueError,))
    finally:
        optuna.logging.disable_propagation()
    one_line = {r.getMessage().split(" failed")[0]: r.exc_info is None for r in caplog.records
                if "failed with parameters" in r.getMessage()}
    assert one_line == {"Trial 0": True, "Trial 1": False}  # a bug keeps its traceback
    assert any("tune.timeout has passed" in r.getMessage() for r in caplog.records)
