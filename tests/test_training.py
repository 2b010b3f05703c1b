"""Training through Lightning: learning, clipping and the gradient story, best weights, NaN stops, resume."""

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from helpers import series_csv, shrink_config

from forecaster.errors import TrainingError
from forecaster.evaluation import forecast_windows, score
from forecaster.training.fit import fit_baseline, fit_network
from forecaster_pipelines.train import prepare_data

pytestmark = pytest.mark.trains  # every test fits a small network or baseline


def sine_csv(path, rows=1200, noise=0.1, seed=0):
    """One hourly series: a daily sine wave with noise, the classic case a recurrent net must learn."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    return series_csv(path, np.sin(2 * np.pi * t / 24) + noise * rng.standard_normal(rows))


def sine_config(tmp_path, **overrides):
    path = sine_csv(tmp_path / "sine.csv")
    return shrink_config(None, tmp_path / "state", **{
        "data.path": str(path), "data.target": "value", "window.lookback": 48, "window.horizon": 12,
        "model.hidden_size": 16, "model.num_layers": 1, "model.dropout": 0.0, "train.max_epochs": 4,
        "train.batch_size": 32, "train.lr": 0.01, "train.patience": 0, "train.limit_train_batches": None,
        **overrides,
    })


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "peephole_lstm"])
def test_each_cell_beats_the_naive_baseline_on_a_noisy_sine(tmp_path, cell):
    config = sine_config(tmp_path, **{"model.cell": cell})
    datamodule = prepare_data(config)
    fitted = fit_network(config, datamodule, tmp_path / "ckpt")
    naive = fit_baseline("naive", config, datamodule)
    network_mse = score(forecast_windows(fitted.predictor, datamodule.test_dataloader()), datamodule)["mse"]
    naive_mse = score(forecast_windows(naive.predictor, datamodule.test_dataloader()), datamodule)["mse"]
    assert network_mse < 0.5 * naive_mse, (cell, network_mse, naive_mse)


def exploding_config(tmp_path, clip):
    """Plain SGD at a learning rate far past stability on targets with a huge range: without clipping each
    step overshoots further, the gradient norm grows geometrically and the loss overflows."""
    rows = 600
    t = np.arange(rows)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
                          "value": 1e3 * np.sin(2 * np.pi * t / 24)})
    frame.to_csv(tmp_path / "wild.csv", index=False)
    return shrink_config(None, tmp_path / "state", **{
        "data.path": str(tmp_path / "wild.csv"), "data.target": "value", "window.lookback": 24,
        "window.horizon": 6, "model.cell": "rnn", "model.hidden_size": 16, "model.num_layers": 1,
        "model.dropout": 0.0, "model.revin": False, "train.optimizer": "sgd", "train.lr": 5.0,
        "train.max_epochs": 3, "train.batch_size": 16, "train.patience": 0, "train.limit_train_batches": None,
        "train.gradient_clip_val": clip,
    })


def test_unstable_setup_diverges_without_clipping_with_a_clear_message(tmp_path):
    config = exploding_config(tmp_path, clip=None)
    datamodule = prepare_data(config)
    datamodule.scaler.scale_[:] = 1e-3  # undo standardisation: targets in the thousands, as in a raw file
    with pytest.raises(TrainingError, match=r"loss became .* at epoch \d+.*train.lr"):
        fit_network(config, datamodule, tmp_path / "ckpt")


def test_the_same_setup_stays_finite_with_clipping_and_reports_clipped_steps(tmp_path):
    config = exploding_config(tmp_path, clip=1.0)
    datamodule = prepare_data(config)
    datamodule.scaler.scale_[:] = 1e-3
    fitted = fit_network(config, datamodule, tmp_path / "ckpt")
    metrics = fitted.training.trainer_metrics
    assert np.isfinite(metrics["train/loss"])
    assert metrics["train/clipped_share"] > 0.5  # nearly every step needed clipping
    assert metrics["train/grad_norm"] > 1.0  # measured before clipping, not after
    assert all(torch.isfinite(p).all() for p in fitted.network.parameters())


def test_gradient_norm_and_learning_rate_are_logged_every_epoch(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 2})
    fitted = fit_network(config, prepare_data(config), tmp_path / "ckpt")
    for key in ("train/grad_norm", "train/grad_norm_max", "train/clipped_share", "train/lr", "val/loss", "val/mae"):
        assert key in fitted.training.trainer_metrics, key
    assert 0.0 <= fitted.training.trainer_metrics["train/clipped_share"] <= 1.0


def test_the_epoch_training_loss_is_the_window_weighted_mean_of_its_steps(tmp_path):
    """train/loss is added up in the module rather than logged each step: the epoch figure must still be the mean
    over every window the epoch trained on, the last, smaller batch weighted by its size."""

    class Steps(pl.Callback):
        def __init__(self):
            self.losses, self.sizes = [], []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.losses.append(float(outputs["loss"]))
            self.sizes.append(int(batch["y"].shape[0]))

    config = sine_config(tmp_path, **{"train.max_epochs": 1, "train.batch_size": 100})
    steps = Steps()
    fitted = fit_network(config, prepare_data(config), tmp_path / "ckpt", extra_callbacks=[steps])
    assert len(set(steps.sizes)) == 2  # a full batch size and a shorter last batch
    expected = np.average(steps.losses, weights=steps.sizes)
    assert fitted.training.trainer_metrics["train/loss"] == pytest.approx(expected, rel=1e-6)
    assert fitted.training.trainer_metrics["train/loss"] != pytest.approx(np.mean(steps.losses), rel=1e-6)


def test_best_weights_are_restored_after_training(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 5, "train.lr": 0.05})
    datamodule = prepare_data(config)
    fitted = fit_network(config, datamodule, tmp_path / "ckpt")
    val = score(forecast_windows(fitted.predictor, datamodule.val_dataloader()), datamodule)["mse"]
    # The best epoch's validation loss (MSE here) is what the restored weights score, not the last epoch's.
    assert val == pytest.approx(fitted.training.best_val_loss, rel=1e-4)


def test_training_is_reproducible_with_a_seed(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 1})
    first = fit_network(config, prepare_data(config), tmp_path / "a")
    second = fit_network(config, prepare_data(config), tmp_path / "b")
    for p, q in zip(first.network.parameters(), second.network.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 1})
    fit_network(config, prepare_data(config), tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    longer = config.with_overrides({"train.max_epochs": 3})
    resumed = fit_network(longer, prepare_data(longer), tmp_path / "ckpt", resume=True)
    assert resumed.training.epochs_run == 3
    with pytest.raises(TrainingError, match="no checkpoint"):
        fit_network(longer, prepare_data(longer), tmp_path / "elsewhere", resume=True)


class ScriptedValidation:
    """A one-weight Lightning module whose validation loss per epoch is given: it forces each outcome."""

    @staticmethod
    def build(losses):

        class Module(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.zeros(1))

            def training_step(self, batch, batch_idx):
                return ((self.weight - 1.0) ** 2).sum()  # every step moves the weight: epochs differ

            def validation_step(self, batch, batch_idx):
                self.log("val/loss", float(losses[self.current_epoch]))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

            def train_dataloader(self):
                return torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=2)

            def val_dataloader(self):
                return torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=2)

        return Module()


def scripted_fit(losses, epochs, folder, resume=False):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from forecaster.training.callbacks import BestWeights

    module, best = ScriptedValidation.build(losses), BestWeights()
    weights = []

    class Record(pl.Callback):
        def on_validation_end(self, trainer, pl_module):
            weights.append(pl_module.weight.detach().item())

    trainer = pl.Trainer(max_epochs=epochs, callbacks=[best, Record(), ModelCheckpoint(dirpath=folder, save_last=True,
                         save_top_k=0)], logger=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, ckpt_path=str(folder / "last.ckpt") if resume else None, weights_only=False)
    return module.weight.detach().item(), best, weights


@pytest.mark.parametrize(("later_loss", "best_epoch"), [(5.0, 1), (0.5, 3)])
def test_resume_keeps_the_best_weights_whether_or_not_a_later_epoch_improves(tmp_path, later_loss, best_epoch):
    losses = [3.0, 1.0, 2.0, later_loss]
    _, _, before = scripted_fit(losses, 3, tmp_path)
    final, best, after = scripted_fit(losses, 4, tmp_path, resume=True)
    assert best.best_epoch == best_epoch
    assert final == pytest.approx((before + after)[best_epoch])  # the weights of that epoch, not the last one's


def test_resume_after_the_last_epoch_restores_the_best_weights_from_disk(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 2})
    first = fit_network(config, prepare_data(config), tmp_path / "ckpt")
    again = fit_network(config, prepare_data(config), tmp_path / "ckpt", resume=True)  # no epoch left to run
    assert again.training.best_epoch == first.training.best_epoch
    for p, q in zip(first.network.parameters(), again.network.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_with_other_config_values_is_refused_naming_the_keys(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 1})
    fit_network(config, prepare_data(config), tmp_path / "ckpt")
    changed = config.with_overrides({"model.hidden_size": 32, "train.lr": 0.5, "train.max_epochs": 3})
    with pytest.raises(TrainingError, match="model.hidden_size") as error:
        fit_network(changed, prepare_data(changed), tmp_path / "ckpt", resume=True)
    assert "train.lr" in str(error.value) and "train.max_epochs" not in str(error.value).split("(only")[0]


def test_a_checkpoint_from_before_a_config_key_existed_resumes_while_the_key_keeps_its_default(tmp_path):
    """A release that adds a key (`model.skip_start`) must not strand a training its predecessor checkpointed: the
    missing key counts as its default. A missing key set to anything else is still a difference."""
    config = sine_config(tmp_path, **{"train.max_epochs": 1})
    fit_network(config, prepare_data(config), tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    state = next(value for key, value in checkpoint["callbacks"].items() if key.startswith("EpochCheckpoint"))
    del state["identity"]["config"]["model.skip_start"]  # as an older release wrote it
    torch.save(checkpoint, path)
    longer = config.with_overrides({"train.max_epochs": 2})
    resumed = fit_network(longer, prepare_data(longer), tmp_path / "ckpt", resume=True)
    assert resumed.training.epochs_run == 2
    ridge = longer.with_overrides({"model.linear_skip": True, "model.skip_start": "ridge"})
    with pytest.raises(TrainingError, match=r"model.skip_start \('zero' -> 'ridge'\)"):
        fit_network(ridge, prepare_data(ridge), tmp_path / "ckpt", resume=True)


def test_training_without_validation_rows_keeps_the_last_epoch(tmp_path):
    from forecaster.data.splits import Borders

    config = sine_config(tmp_path, **{"train.max_epochs": 2})
    datamodule = prepare_data(config)
    lengths = datamodule.panel.lengths
    everything = datamodule.for_borders(Borders(lengths, lengths, lengths))
    fitted = fit_network(config, everything, tmp_path / "ckpt")
    record = fitted.training
    assert record.epochs_run == 2 and record.best_epoch is None and record.best_val_loss is None


def test_a_checkpoint_that_does_not_say_which_training_wrote_it_is_not_resumed(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 1})
    scripted_fit([1.0], 1, tmp_path / "ckpt")  # Lightning's own checkpoint, as an earlier forecaster wrote them
    with pytest.raises(TrainingError, match="earlier forecaster"):
        fit_network(config, prepare_data(config), tmp_path / "ckpt", resume=True)


def test_a_truncated_checkpoint_is_refused_with_what_to_do(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 1})
    fit_network(config, prepare_data(config), tmp_path / "ckpt")
    last = tmp_path / "ckpt" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(TrainingError, match="cannot be read.*train anew"):
        fit_network(config, prepare_data(config), tmp_path / "ckpt", resume=True)


def test_an_interrupted_epoch_loses_only_itself_and_the_resume_equals_an_uninterrupted_training(tmp_path):
    """Stopped by an exception in the middle of epoch 3 (as a signal would), the checkpoint holds epoch 2; the
    resumed training draws the same shuffles and dropout masks and ends with the same weights."""
    config = sine_config(tmp_path, **{"model.dropout": 0.2, "model.num_layers": 2, "train.max_epochs": 4})

    class Stop(Exception):
        pass

    class StopInEpochThree(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 2:
                raise Stop

    whole = fit_network(config, prepare_data(config), tmp_path / "whole")
    with pytest.raises(Stop):
        fit_network(config, prepare_data(config), tmp_path / "cut", extra_callbacks=[StopInEpochThree()])
    checkpoint = torch.load(tmp_path / "cut" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1  # epochs 0 and 1 finished; epoch 2 was lost
    resumed = fit_network(config, prepare_data(config), tmp_path / "cut", resume=True)
    assert (resumed.training.epochs_run, resumed.training.best_epoch) == (whole.training.epochs_run,
                                                                      whole.training.best_epoch)
    for p, q in zip(whole.network.parameters(), resumed.network.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_new_training_never_continues_an_older_checkpoint_left_in_its_folder(tmp_path):
    config = sine_config(tmp_path, **{"train.max_epochs": 1})
    fit_network(config, prepare_data(config), tmp_path / "ckpt")
    other = config.with_overrides({"train.lr": 0.002})

    class Stop(Exception):
        pass

    class StopAtOnce(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            raise Stop

    with pytest.raises(Stop):
        fit_network(other, prepare_data(other), tmp_path / "ckpt", extra_callbacks=[StopAtOnce()])
    with pytest.raises(TrainingError, match="no checkpoint"):
        fit_network(other, prepare_data(other), tmp_path / "ckpt", resume=True)

def test_only_the_newest_training_folders_of_a_model_are_kept(tmp_path):
    import os

    from forecaster_pipelines.train import prune_trainings

    folders = [tmp_path / f"{index:032x}" for index in range(7)]
    for age, folder in enumerate(folders):  # folders[0] is the oldest
        (folder / "model").mkdir(parents=True)
        os.utime(folder, (1_000_000 + age, 1_000_000 + age))
    (tmp_path / "rank-1").mkdir()  # not a training of its own: left alone
    current = tmp_path / f"{99:032x}"
    prune_trainings(tmp_path, keep=3, current=current)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([folders[5].name, folders[6].name, "rank-1"])


def test_training_returns_the_trained_model_whole(tmp_path):
    """One trained-model type: what `fit_*` return is the `ModelBundle` that is saved and forecast with, with how
    its training went; saved and loaded, it forecasts the same windows the same."""
    from forecaster.bundle import ModelBundle

    config = sine_config(tmp_path, **{"train.max_epochs": 2, "model.loss": "quantile",
                                      "model.quantiles": [0.1, 0.5, 0.9]})
    datamodule = prepare_data(config)
    network, naive = fit_network(config, datamodule, tmp_path / "ckpt"), fit_baseline("naive", config, datamodule)
    assert isinstance(network, ModelBundle) and isinstance(naive, ModelBundle)
    assert network.kind == "network" and naive.kind == "naive"
    assert network.training.epochs_run == 2 and network.training.n_params == sum(
        p.numel() for p in network.network.parameters())
    assert naive.training.n_params == 0 and naive.training.best_epoch is None
    assert network.quantiles == [0.1, 0.5, 0.9] and network.point_index == 1  # the median is the point forecast
    assert naive.quantiles is None and naive.point_index == 0
    assert network.dims == datamodule.dims and network.scaler_state == datamodule.scaler.to_dict()
    for model in (network, naive):
        model.save(tmp_path / model.kind)
        loaded = ModelBundle.load(tmp_path / model.kind)
        assert loaded.training is None  # how the training went is logged with its run, not kept in the files
        before = forecast_windows(model.predictor, datamodule.test_dataloader())
        after = forecast_windows(loaded.predictor, datamodule.test_dataloader())
        np.testing.assert_array_equal(before.outputs, after.outputs)
        np.testing.assert_array_equal(before.pred, before.outputs[..., model.point_index])

