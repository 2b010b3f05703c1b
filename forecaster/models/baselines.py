"""Baselines: the forecasts a network has to beat, behind one small interface.

    fit(batches) -> self              iterate training batches ({x_past, x_future, y, ...})
    predict(x_past [B, L, F_past], x_future [B, H, F_future]) -> [B, H, T]
    to_dict() -> JSON-able state      baseline_from_dict(state) -> the same baseline, no pickles

They read only the target columns of `x_past` (the first T), on the scaled axis the networks see, and treat each
target variable alone. `n_targets`, `lookback` and `horizon` are given up front or taken from the first training
batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import torch

from forecaster.errors import ConfigError, ModelError

Batch = dict[str, Any]


@dataclass(frozen=True)
class BaselineSettings:
    """What a baseline may read from the config: the season (seasonal_naive, the statistical models), the ridge
    penalty (linear) and every seasonal period of the data (mstl)."""

    season_length: int | None = None
    alpha: float = 1.0
    seasonalities: list[int] | None = None


class Baseline:
    """The shared plumbing: data shape, prediction on the target columns, JSON state."""

    name: ClassVar[str]

    def __init__(self, n_targets: int | None = None, lookback: int | None = None, horizon: int | None = None):
        self.n_targets, self.lookback, self.horizon = n_targets, lookback, horizon

    @classmethod
    def from_settings(cls, settings: BaselineSettings, **shape: int | None) -> Self:
        """The baseline `make_baseline` builds from the settings it may read; `shape`: n_targets, lookback,
        horizon. Overridden by the baselines that read a setting."""
        return cls(**shape)

    @property
    def n_params(self) -> int:
        return 0

    def fit(self, batches: Iterable[Batch]) -> Self:
        """Nothing to learn: the first batch only fixes the data's shape."""
        for batch in batches:
            self._adopt_shape(batch)
            return self
        raise ModelError(f"{self.name}: no training batches to fit on; check the split and window sizes")

    def fit_data(self, datamodule) -> Self:
        """Fit on a set-up data module: window baselines read its training batches."""
        return self.fit(datamodule.train_dataloader())

    def predict(self, x_past: torch.Tensor, x_future: torch.Tensor, series=None) -> torch.Tensor:
        """`series` [B]: each window's series index in the training data, for models fitted per series."""
        if self.n_targets is None:
            raise ModelError(f"{self.name}: call fit(batches) before predict, or give n_targets")
        targets = torch.as_tensor(x_past)[..., : self.n_targets]  # [B, L, T]
        return self._predict(targets, horizon=x_future.shape[1])

    def _predict(self, targets: torch.Tensor, horizon: int) -> torch.Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n_targets": self.n_targets, "lookback": self.lookback, "horizon": self.horizon}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        return cls(**{key: value for key, value in state.items() if key != "name"})

    def _adopt_shape(self, batch: Batch) -> None:
        y_shape, past_shape = batch["y"].shape, batch["x_past"].shape
        seen = {"n_targets": y_shape[-1], "lookback": past_shape[1], "horizon": y_shape[1]}
        for key, value in seen.items():
            if getattr(self, key) is None:
                setattr(self, key, int(value))
            elif getattr(self, key) != value:
                raise ModelError(f"{self.name}: built for {key}={getattr(self, key)}, but a training batch has {value}")


def _repeat_last_season(targets: torch.Tensor, season_length: int, horizon: int) -> torch.Tensor:
    """targets [B, L, T] -> [B, H, T]: step h repeats the lookback's step L - m + (h mod m)."""
    lookback = targets.size(1)
    steps = lookback - season_length + torch.arange(horizon, device=targets.device) % season_length  # [H]
    return targets[:, steps]


class NaiveForecaster(Baseline):
    """Every horizon step repeats the last observed value of each target."""

    name = "naive"

    def _predict(self, targets: torch.Tensor, horizon: int) -> torch.Tensor:
        return _repeat_last_season(targets, 1, horizon)


class SeasonalNaiveForecaster(Baseline):
    """Repeat the last season: y_{L+h} = x_{L-m+(h mod m)}, for any horizon (longer than m included)."""

    name = "seasonal_naive"

    def __init__(self, season_length: int, n_targets: int | None = None, lookback: int | None = None,
                 horizon: int | None = None):
        super().__init__(n_targets, lookback, horizon)
        self.season_length = season_length
        if lookback is not None:
            self._check_season(lookback)

    @classmethod
    def from_settings(cls, settings: BaselineSettings, **shape: int | None) -> Self:
        if settings.season_length is None:
            raise ConfigError("seasonal_naive needs a season length: set model.season_length (e.g. 24 for hourly "
                              "data with a daily cycle)")
        return cls(settings.season_length, **shape)

    def fit(self, batches: Iterable[Batch]) -> Self:
        super().fit(batches)
        self._check_season(self.lookback)
        return self

    def _predict(self, targets: torch.Tensor, horizon: int) -> torch.Tensor:
        self._check_season(targets.size(1))
        return _repeat_last_season(targets, self.season_length, horizon)

    def _check_season(self, lookback: int) -> None:
        if self.season_length > lookback:
            raise ConfigError(
                f"model.season_length {self.season_length} is longer than the lookback {lookback}: a seasonal-naive "
                "forecast repeats the last season, so the lookback must hold one. Raise window.lookback or lower "
                "model.season_length."
            )

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "season_length": self.season_length}


class LinearLagForecaster(Baseline):
    """A ridge regression from a target's L lags to its H next values, one model shared by every target variable.

    Inputs are the raw (scaled) lags with an intercept, not lags relative to the last value (NLinear): every
    series is already standardised, and a relative model could not express a stationary process, whose forecast
    reverts to the mean rather than to the last value. Fitted with scikit-learn on every training window and
    variable; saved as its coefficients, and predicting with a matmul.
    """

    name = "linear"

    def __init__(self, alpha: float = 1.0, n_targets: int | None = None, lookback: int | None = None,
                 horizon: int | None = None):
        super().__init__(n_targets, lookback, horizon)
        self.alpha = alpha
        self.coef_: np.ndarray | None = None  # [H, L]
        self.intercept_: np.ndarray | None = None  # [H]

    @classmethod
    def from_settings(cls, settings: BaselineSettings, **shape: int | None) -> Self:
        return cls(settings.alpha, **shape)

    @property
    def n_params(self) -> int:
        return 0 if self.coef_ is None else self.coef_.size + self.intercept_.size

    def fit(self, batches: Iterable[Batch]) -> Self:
        from sklearn.linear_model import Ridge

        lags, futures = [], []
        for batch in batches:
            self._adopt_shape(batch)
            past = _float64(batch["x_past"])[..., : self.n_targets]  # [B, L, T]
            lags.append(past.transpose(0, 2, 1).reshape(-1, self.lookback))  # [B, L, T] -> [B*T, L]
            futures.append(_float64(batch["y"]).transpose(0, 2, 1).reshape(-1, self.horizon))  # [B*T, H]
        if not lags:
            raise ModelError(f"{self.name}: no training batches to fit on; check the split and window sizes")
        model = Ridge(alpha=self.alpha).fit(np.concatenate(lags), np.concatenate(futures))  # [N*T, L] -> [N*T, H]
        # C order, as `from_dict` rebuilds it: the matmul then takes the same path and a reload predicts bit for bit.
        self.coef_ = np.ascontiguousarray(model.coef_.reshape(self.horizon, self.lookback))
        self.intercept_ = np.atleast_1d(model.intercept_)
        return self

    def _predict(self, targets: torch.Tensor, horizon: int) -> torch.Tensor:
        if self.coef_ is None:
            raise ModelError(f"{self.name}: call fit(batches) before predict")
        batch, lookback, n_targets = targets.shape
        if (lookback, horizon) != (self.lookback, self.horizon):
            raise ModelError(f"{self.name}: fitted for lookback {self.lookback} and horizon {self.horizon}, "
                             f"asked for {lookback} and {horizon}")
        coef = torch.as_tensor(self.coef_, dtype=targets.dtype, device=targets.device)  # [H, L]
        intercept = torch.as_tensor(self.intercept_, dtype=targets.dtype, device=targets.device)  # [H]
        lags = targets.transpose(1, 2).reshape(batch * n_targets, lookback)  # [B, L, T] -> [B*T, L]
        future = torch.addmm(intercept, lags, coef.t())  # [B*T, H]
        return future.view(batch, n_targets, horizon).transpose(1, 2)  # [B*T, H] -> [B, H, T]

    def to_dict(self) -> dict[str, Any]:
        fitted = None if self.coef_ is None else {"coef": self.coef_.tolist(), "intercept": self.intercept_.tolist()}
        return {**super().to_dict(), "alpha": self.alpha, "fitted": fitted}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        state = dict(state)
        fitted = state.pop("fitted")
        baseline = super().from_dict(state)
        if fitted is not None:
            baseline.coef_ = np.asarray(fitted["coef"], dtype=np.float64)
            baseline.intercept_ = np.asarray(fitted["intercept"], dtype=np.float64)
        return baseline


def _float64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return torch.as_tensor(x).detach().cpu().numpy().astype(np.float64)


BASELINE_CLASSES: dict[str, type[Baseline]] = {
    baseline.name: baseline for baseline in (NaiveForecaster, SeasonalNaiveForecaster, LinearLagForecaster)
}
