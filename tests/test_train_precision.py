"""`train.precision: auto`: bfloat16 autocast only for the LSTM whose whole recurrence is one oneDNN call (direct
strategy), on a CPU that computes bfloat16 natively, float32 everywhere else; the saved model records what it
trained in."""

import logging
import math

import pytest
import torch

import forecaster.inference
from forecaster.config import Config
from forecaster.training.fit import fit_network
from forecaster.training.precision import BF16_MODELS, training_precision
from forecaster_pipelines.train import prepare_data

from test_ridge_start import panel_config


def config_with(**values):
    return Config().with_overrides({"train.accelerator": "cpu", **values})


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU with native bfloat16 (the rule's input), whatever this machine has."""
    monkeypatch.setattr(forecaster.inference, "native_bf16", lambda: True)


def test_a_precision_given_goes_to_the_trainer_unchanged(bf16_cpu):
    for value in ("32-true", "bf16-mixed", "16-mixed", "64-true"):
        assert training_precision(config_with(**{"train.precision": value}))[0] == value


def test_auto_trains_the_fused_lstm_in_bf16_on_a_cpu_with_native_bf16(bf16_cpu):
    assert ("lstm", "direct") in BF16_MODELS
    for cell, strategy in sorted(BF16_MODELS):
        precision, why = training_precision(config_with(**{"train.precision": "auto", "model.cell": cell,
                                                           "model.strategy": strategy}))
        assert precision == "bf16-mixed", why


@pytest.mark.parametrize("values, reason", [
    ({"model.cell": "gru"}, "gru with the direct strategy"),
    ({"model.cell": "peephole_lstm"}, "peephole_lstm with"),
    ({"model.strategy": "segment"}, "lstm with the segment strategy"),
    ({"model.strategy": "seq2seq"}, "lstm with the seq2seq strategy"),
    ({"train.devices": 2, "train.strategy": "ddp"}, "distributed"),
    ({"train.num_nodes": 2}, "distributed"),
    ({"train.accelerator": "gpu"}, "off the CPU"),
])
def test_auto_keeps_float32_where_bf16_was_not_measured_faster(bf16_cpu, values, reason):
    precision, why = training_precision(config_with(**{"train.precision": "auto", "model.cell": "lstm",
                                                       "model.strategy": "direct", **values}))
    assert (precision, reason in why) == ("32-true", True), why


def test_auto_keeps_float32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(forecaster.inference, "native_bf16", lambda: False)
    precision, why = training_precision(config_with(**{"train.precision": "auto", "model.cell": "lstm",
                                                       "model.strategy": "direct"}))
    assert precision == "32-true" and "no native bfloat16" in why


@pytest.mark.trains
def test_a_training_records_the_precision_auto_chose_and_keeps_float32_weights(tmp_path, caplog):
    config = panel_config(tmp_path, **{"train.precision": "auto", "train.accelerator": "cpu", "train.max_epochs": 1,
                                       "model.skip_start": "zero", "model.cell": "lstm", "model.strategy": "direct"})
    expected = "bf16-mixed" if forecaster.inference.native_bf16() else "32-true"
    with caplog.at_level(logging.INFO, logger="forecaster.training.fit"):
        bundle = fit_network(config, prepare_data(config), tmp_path / "ckpt")
    assert bundle.config.train.precision == expected
    assert f"training in {expected} (auto:" in caplog.text
    assert {p.dtype for p in bundle.network.parameters()} == {torch.float32}
    assert math.isfinite(bundle.training.best_val_loss)
