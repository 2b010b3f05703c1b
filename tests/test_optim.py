"""The optimiser and learning-rate schedule registries (`forecaster.training.optim`), and the inference
precisions the config accepts."""

from typing import get_args

import pytest
import torch

from forecaster.config import LrSchedule, Optimizer, TrainConfig
from forecaster.training.optim import OPTIMIZERS, SCHEDULES, OptimizerType, configure, register_optimizer


def test_the_config_accepts_exactly_the_registered_names():
    assert list(get_args(Optimizer)) == list(OPTIMIZERS)
    assert list(get_args(LrSchedule)) == list(SCHEDULES)
    assert TrainConfig().optimizer in OPTIMIZERS and TrainConfig().lr_schedule in SCHEDULES


def test_each_schedule_is_built_as_lightning_reads_it():
    weight = torch.nn.Parameter(torch.zeros(3))
    plateau = configure([weight], optimizer="adamw", lr=0.01, weight_decay=0.1, schedule="plateau", max_epochs=5,
                        monitor="val/loss")
    assert isinstance(plateau["optimizer"], torch.optim.AdamW)
    assert plateau["optimizer"].defaults["lr"] == 0.01 and plateau["optimizer"].defaults["weight_decay"] == 0.1
    assert isinstance(plateau["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert plateau["lr_scheduler"]["monitor"] == "val/loss"
    cosine = configure([weight], optimizer="sgd", lr=0.1, weight_decay=0.0, schedule="cosine", max_epochs=4,
                       monitor="val/loss")
    assert isinstance(cosine["optimizer"], torch.optim.SGD) and cosine["lr_scheduler"]["scheduler"].T_max == 4
    constant = configure([weight], optimizer="adamw", lr=0.01, weight_decay=0.0, schedule="none", max_epochs=4,
                         monitor="val/loss")
    assert isinstance(constant, torch.optim.AdamW)


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="optimizer 'adamw' is registered twice"):
        register_optimizer(OptimizerType("adamw", "again", OPTIMIZERS["adamw"].make))


@pytest.mark.trains
@pytest.mark.parametrize("schedule", ["cosine", "none"])
def test_a_training_follows_its_schedule(tmp_path, schedule):
    import numpy as np
    from helpers import series_csv, shrink_config

    from forecaster.training.fit import fit_network
    from forecaster_pipelines.train import prepare_data

    path = series_csv(tmp_path / "sine.csv", np.sin(np.arange(600) * 2 * np.pi / 24))
    config = shrink_config(None, tmp_path / "state", **{
        "data.path": str(path), "data.target": "value", "window.lookback": 24, "window.horizon": 6,
        "train.max_epochs": 3, "train.patience": 0, "train.lr": 0.01, "train.lr_schedule": schedule})
    last_lr = fit_network(config, prepare_data(config), tmp_path / "ckpt").training.trainer_metrics["train/lr"]
    # logged at the last epoch's end, after its scheduler step: cosine has annealed all T_max = 3 epochs, to zero
    expected = 0.01 * (1 + np.cos(np.pi * 3 / 3)) / 2 if schedule == "cosine" else 0.01
    assert last_lr == pytest.approx(expected, abs=1e-9)


def test_the_config_accepts_exactly_the_inference_precisions():
    from forecaster.config import InferencePrecision
    from forecaster.inference import PRECISIONS

    assert list(get_args(InferencePrecision)) == list(PRECISIONS)
