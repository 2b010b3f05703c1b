"""Configs: typed defaults, YAML overrides, --set overrides, and errors that name the key and the file."""

from pathlib import Path

import pytest

from forecaster.config import load_config, parse_overrides
from forecaster.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_fits_its_data(path):
    """Each shipped config loads, and on its own data file (read from the repository root, as the README's
    commands do) every split has windows: a window or split edited past the data would fail here."""
    from forecaster.data.panel import load_panel
    from forecaster.data.splits import compute_borders, count_windows

    config = load_config(path)
    data = REPO / config.data.path
    if not data.is_file():
        pytest.skip(f"{data} is absent (shared data, see ../shared/data/README.md)")
    panel = load_panel(config.data.model_copy(update={"path": str(data)}))
    borders = compute_borders(panel, config.split, config.window.lookback, config.window.horizon)
    for split in ("train", "val", "test"):
        lo, hi = borders.target_range(split)
        assert count_windows(lo, hi, config.window.lookback, config.window.horizon)[1].sum() > 0, split


def test_etth1_configs_use_the_standard_borders():
    for name in ("etth1-ot.yaml", "etth1-multi.yaml"):
        split = load_config(Path(CONFIGS[0]).parent / name).split
        assert (split.train_end, split.val_end, split.test_end) == (8640, 11520, 14400)


def test_unknown_key_names_the_key_the_file_and_a_suggestion(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("window:\n  lookbak: 24\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and "window.lookbak" in message and "window.lookback" in message


def test_ill_typed_value_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  max_epochs: many\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'train.max_epochs'"):
        load_config(path)


def test_overrides_are_typed_and_validated():
    config = load_config(None, ["model.cell=gru", "train.lr=0.01", "data.target=[a, b]", "data.series_id=null"])
    assert config.model.cell == "gru" and config.train.lr == 0.01
    assert config.data.targets == ["a", "b"] and config.data.series_id is None
    with pytest.raises(ConfigError, match="model.cel'.*model.cell"):
        load_config(None, ["model.cel=gru"])
    with pytest.raises(ConfigError, match="model.cell"):
        load_config(None, ["model.cell=transformer"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["model.cell"])


def test_missing_file_and_non_mapping_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_fractions_must_leave_training_rows():
    with pytest.raises(ConfigError, match="val_fraction"):
        load_config(None, ["split.val_fraction=0.5", "split.test_fraction=0.5"])


def test_unquoted_yaml_dates_are_accepted_as_border_timestamps(tmp_path):
    path = tmp_path / "dates.yaml"
    path.write_text("split:\n  train_end: 2017-06-01\n  val_end: 2017-10-01 00:00:00\n")
    split = load_config(path).split
    assert split.train_end == "2017-06-01" and split.val_end.startswith("2017-10-01")


def test_compare_refuses_multi_process_strategies():
    from forecaster_pipelines import compare

    with pytest.raises(ConfigError, match="forecaster train"):
        compare.run(load_config(None, ["train.strategy=ddp", "train.devices=2"]))
