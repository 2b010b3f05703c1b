"""Every model type that is not a network, by name: the baselines (`models.baselines.BASELINE_CLASSES`), then
the statistical models (`models.statistical.STATISTICAL_CLASSES`). `make_baseline` builds one, `baseline_from_dict`
loads one saved as JSON.

A new one is a `Baseline` subclass with a `name` in one of the two dicts, and its name in `config.BASELINES`
(which loads without torch; `tests/test_baselines.py` keeps them equal).
"""

from __future__ import annotations

from typing import Any

from forecaster.errors import ConfigError, ModelError
from forecaster.models.baselines import BASELINE_CLASSES, Baseline, BaselineSettings
from forecaster.models.statistical import STATISTICAL_CLASSES


def baseline_classes() -> dict[str, type[Baseline]]:
    """The registry of every model type that is not a network, by name: the baselines, then the statistical
    models."""
    return {**BASELINE_CLASSES, **STATISTICAL_CLASSES}


def make_baseline(name: str, *, season_length: int | None = None, alpha: float = 1.0, n_targets: int | None = None,
                  lookback: int | None = None, horizon: int | None = None,
                  seasonalities: list[int] | None = None) -> Baseline:
    """A baseline by name; `season_length` is read by seasonal_naive and the statistical models, `alpha` (ridge
    penalty) by linear, `seasonalities` (every seasonal period of the data) by mstl."""
    classes = baseline_classes()
    if name not in classes:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {', '.join(classes)}")
    settings = BaselineSettings(season_length, alpha, seasonalities)
    return classes[name].from_settings(settings, n_targets=n_targets, lookback=lookback, horizon=horizon)


def baseline_from_dict(state: dict[str, Any]) -> Baseline:
    """Inverse of `Baseline.to_dict`."""
    classes = baseline_classes()
    if state.get("name") not in classes:
        raise ModelError(f"saved baseline state names {state.get('name')!r}, not one of {', '.join(classes)}")
    return classes[state["name"]].from_dict(state)
