"""Statistical model types from statsforecast (AutoETS, AutoTheta, MSTL, AutoARIMA) behind the baseline interface.

How they are trained and how they forecast a window, so that they are scored on the same windows as the networks:

- **Fit** (`fit_histories`): one automatic model per series and target variable, chosen by statsforecast on that
  series' training rows (the last 1,000, 500 for ARIMA, scaled as the networks see them): ETS's components and
  smoothing parameters, Theta's variant and its alpha and theta, MSTL's trend model, ARIMA's orders and coefficients.
  What is kept is a small JSON document per series and target: no pickles, and nothing of statsforecast's own
  objects.
- **Forecast** (`predict`): each window is forecast from its own `lookback` rows, as a network does, with the
  parameters learned for its series: the states (ETS's level, trend and season, Theta's smoothed level, ARIMA's
  Kalman state, MSTL's decomposition) are computed from the window's rows, so a window that starts at another
  hour of the day than the training rows gets its own seasonal phase. A series the model never saw (batch
  prediction on new ids) is fitted on its window. A fit or a forecast that statsforecast refuses (a series too
  short or constant) falls back to seasonal naive for that series, and the count is logged.

Intervals come from the same validation-residual calibration as every other model (`forecaster.calibration`).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, ClassVar, Self

import numpy as np
import torch

from forecaster.errors import ConfigError, ModelError
from forecaster.models.baselines import Baseline, BaselineSettings, _repeat_last_season

log = logging.getLogger(__name__)

FIT_ROWS = 1000  # training rows per series a statistical model is fitted on: statsforecast's cost grows with them
Params = dict[str, Any] | None  # one series and target's fitted parameters; None: seasonal naive


def _statsforecast():
    try:
        import statsforecast  # noqa: F401
    except ImportError as exc:
        raise ConfigError("the statistical model types (ets, theta, mstl, arima) need statsforecast; install it with "
                          "pip install 'statsforecast>=2.0.3,<2.1' (forecaster's own install does)") from exc


class StatisticalForecaster(Baseline):
    """A local statistical model per series and target, fitted on training rows, forecasting each window."""

    name: ClassVar[str]
    fit_rows: ClassVar[int] = FIT_ROWS

    def __init__(self, season_length: int, seasonalities: list[int] | None = None, n_targets: int | None = None,
                 lookback: int | None = None, horizon: int | None = None):
        super().__init__(n_targets, lookback, horizon)
        self.season_length = season_length
        self.seasonalities = list(seasonalities or [season_length])
        self.fitted_: list[list[Params]] | None = None  # [S][T]

    @classmethod
    def from_settings(cls, settings: BaselineSettings, **shape: int | None) -> Self:
        return cls(settings.season_length or 1, settings.seasonalities, **shape)

    @property
    def n_params(self) -> int:
        if self.fitted_ is None:
            return 0
        return sum(_count(params) for row in self.fitted_ for params in row)

    # -- fitting -------------------------------------------------------------------------------------------

    def fit(self, batches) -> Self:
        raise ModelError(f"{self.name}: a statistical model is fitted on whole training series; use fit_data")

    def fit_data(self, datamodule) -> Self:
        """Fit on each series' training rows of a set-up data module."""
        return self.fit_histories(datamodule.training_targets())

    def fit_histories(self, histories: list[np.ndarray]) -> Self:
        """histories: per series, its training rows of the target columns, scaled: [n_i, T] each."""
        _statsforecast()
        if not histories:
            raise ModelError(f"{self.name}: no training series to fit on")
        self.n_targets = self.n_targets or histories[0].shape[1]
        failed = 0
        fitted = []
        for history in histories:
            row = []
            for target in range(self.n_targets):
                params = self._safe(self._fit_one, _clean(history[-self.fit_rows:, target]))
                failed += params is None
                row.append(params)
            fitted.append(row)
        if failed:
            log.info("%s: %d of %d series could not be fitted (too short or constant); they forecast seasonal naive",
                     self.name, failed, len(histories) * self.n_targets)
        self.fitted_ = fitted
        return self

    def _fit_one(self, y: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def _forecast_one(self, y: np.ndarray, params: dict[str, Any], horizon: int) -> np.ndarray:
        raise NotImplementedError

    # -- forecasting ---------------------------------------------------------------------------------------

    def predict(self, x_past: torch.Tensor, x_future: torch.Tensor, series: np.ndarray | None = None) -> torch.Tensor:
        """x_past [B, L, F] -> [B, H, T]; `series` [B]: each window's series index in the training data (an index
        past the fitted ones, or None, fits each such window on its own rows)."""
        if self.fitted_ is None or self.n_targets is None:
            raise ModelError(f"{self.name}: call fit_histories before predict")
        _statsforecast()
        targets = torch.as_tensor(x_past)[..., : self.n_targets].detach().cpu().numpy().astype(np.float64)
        batch, horizon = targets.shape[0], x_future.shape[1]
        series = np.full(batch, -1) if series is None else np.asarray(series, dtype=np.int64)
        out = np.full((batch, horizon, self.n_targets), np.nan)  # [B, H, T]
        for index in np.unique(series):
            rows = np.flatnonzero(series == index)
            for t in range(self.n_targets):
                windows = np.stack([_clean(targets[b, :, t]) for b in rows])  # [b, L]
                if 0 <= index < len(self.fitted_):
                    params = self.fitted_[index][t]
                    if params is not None and (forecast := self._safe(self._forecast_windows, windows, params,
                                                                      horizon)) is not None:
                        out[rows, :, t] = forecast
                    continue
                for row, y in zip(rows, windows, strict=True):  # a series it never saw: fitted on its window
                    params = self._safe(self._fit_one, y)
                    if params is not None and (forecast := self._safe(self._forecast_one, y, params,
                                                                      horizon)) is not None:
                        out[row, :, t] = forecast
        failed = ~np.isfinite(out).all(axis=1)  # [B, T]
        season = self.season_length if self.season_length <= targets.shape[1] else 1
        fallback = _repeat_last_season(torch.as_tensor(targets), season, horizon).numpy()  # [B, H, T]
        out = np.where(failed[:, None, :], fallback, out)
        if failed.any():
            log.info("%s: %d of %d windows forecast seasonal naive (statsforecast could not fit or forecast them)",
                     self.name, int(failed.sum()), failed.size)
        return torch.as_tensor(out, dtype=torch.float32)

    def _forecast_windows(self, windows: np.ndarray, params: dict[str, Any], horizon: int) -> np.ndarray:
        """[b, L] windows of one series and target -> [b, H]; a window that fails is NaN."""
        out = np.full((len(windows), horizon), np.nan)
        for row, y in enumerate(windows):
            forecast = self._safe(self._forecast_one, y, params, horizon)
            if forecast is not None:
                out[row] = forecast
        return out

    def _safe(self, function, *args):
        """statsforecast's answer, or None where it refuses the series (too short, constant, no convergence)."""
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return function(*args)
        except Exception as exc:  # noqa: BLE001 - statsforecast raises plain Exception for unfit series
            log.debug("%s: %s failed: %s", self.name, getattr(function, "__name__", function), exc)
            return None

    # -- JSON state ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "season_length": self.season_length, "seasonalities": self.seasonalities,
                "fitted": self.fitted_}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        state = dict(state)
        fitted = state.pop("fitted", None)
        model = super().from_dict(state)
        model.fitted_ = fitted
        return model


class ETSForecaster(StatisticalForecaster):
    """AutoETS: the components (error, trend, damping, season) and smoothing parameters (alpha, beta, gamma, phi)
    are chosen per series on its training rows; a window's initial states come from its own first seasons."""

    name = "ets"

    def _fit_one(self, y: np.ndarray) -> dict[str, Any]:
        from statsforecast.models import AutoETS

        # Forecasting windows of standardised rows, which cross zero: additive components only.
        model = AutoETS(season_length=self._season(len(y)), model="AZZ").fit(y).model_
        alpha, beta, gamma, phi = (None if math.isnan(value) else float(value) for value in model["par"][:4])
        return {"components": str(model["components"]), "m": int(model["m"]), "alpha": alpha, "beta": beta,
                "gamma": gamma, "phi": phi}

    def _forecast_one(self, y: np.ndarray, params: dict[str, Any], horizon: int) -> np.ndarray:
        return self._forecast_windows(y[None], params, horizon)[0]

    def _forecast_windows(self, windows: np.ndarray, params: dict[str, Any], horizon: int) -> np.ndarray:
        components, m = params["components"], params["m"]
        if components[2] != "N" and windows.shape[1] < 2 * m:
            components, m = components[:2] + "N" + components[3:], 1  # too short a window to place its seasons
        return additive_ets_forecast(windows, m, components, params, horizon)

    def _season(self, n_rows: int) -> int:
        """statsforecast's ETS takes seasons up to 24 and needs two of them in the rows; else non-seasonal."""
        m = self.season_length
        return m if 1 < m <= 24 and n_rows >= 2 * m and (self.lookback is None or self.lookback >= 2 * m) else 1


class ThetaForecaster(StatisticalForecaster):
    """AutoTheta: the variant (standard, optimised, dynamic), its alpha and theta, and whether the series is
    seasonal (statsforecast's autocorrelation test at the seasonal lag) are chosen per series on its training
    rows. A window of a seasonal series is deseasonalised by an additive classical decomposition of its own
    rows (the test itself is too weak on a lookback of a few seasons), smoothed with the fixed alpha and theta
    from a level fitted to it, and its last season is added back to the forecast."""

    name = "theta"

    def _fit_one(self, y: np.ndarray) -> dict[str, Any]:
        from statsforecast.models import AutoTheta

        model = AutoTheta(season_length=self.season_length).fit(y).model_
        return {"model": str(model["modeltype"]), "m": self.season_length, "seasonal": bool(model.get("decompose")),
                "alpha": float(model["par"]["alpha"]), "theta": float(model["par"]["theta"])}

    def _forecast_one(self, y: np.ndarray, params: dict[str, Any], horizon: int) -> np.ndarray:
        from statsforecast.theta import auto_theta, forecast_theta
        from statsmodels.tsa.seasonal import seasonal_decompose

        m, future_season = params["m"], 0.0
        if params["seasonal"] and len(y) >= 2 * m:
            season = seasonal_decompose(y, model="additive", period=m).seasonal  # [L]
            y = y - season
            future_season = season[len(y) - m + np.arange(horizon) % m]  # [H]
        model = auto_theta(y, 1, model=params["model"], alpha=params["alpha"], theta=params["theta"])
        return forecast_theta(model, horizon)["mean"] + future_season


class MSTLForecaster(StatisticalForecaster):
    """MSTL: every seasonality the lookback holds twice is decomposed out of the window (daily and weekly for
    hourly data with a lookback of two weeks); the rest, trend plus remainder, is forecast by a non-seasonal ETS
    whose parameters were chosen on the series' training rows; the seasons repeat their last cycle."""

    name = "mstl"

    def _periods(self, n_rows: int) -> list[int]:
        return [m for m in self.seasonalities if 1 < m and 2 * m <= n_rows]

    def _fit_one(self, y: np.ndarray) -> dict[str, Any]:
        from statsforecast.models import MSTL, AutoETS

        periods = self._periods(min(len(y), self.lookback or len(y)))
        if not periods:
            raise ValueError("no seasonality fits twice in the lookback")
        model = MSTL(season_length=periods, trend_forecaster=AutoETS(model="ZZN")).fit(y)
        trend = model.trend_forecaster.model_
        alpha, beta, _, phi = (None if math.isnan(value) else float(value) for value in trend["par"][:4])
        return {"periods": periods, "components": str(trend["components"]), "alpha": alpha, "beta": beta,
                "phi": phi}

    def _forecast_one(self, y: np.ndarray, params: dict[str, Any], horizon: int) -> np.ndarray:
        from statsforecast.models import _predict_mstl_seas
        from statsforecast.mstl import mstl

        periods = [m for m in params["periods"] if 2 * m <= len(y)]
        if not periods:
            raise ValueError("no seasonality fits twice in the window")
        decomposition = mstl(x=y, period=periods if len(periods) > 1 else periods[0])
        adjusted = decomposition[["trend", "remainder"]].sum(axis=1).to_numpy()
        trend = additive_ets_forecast(adjusted[None], 1, params["components"], params, horizon)[0]
        seasons = _predict_mstl_seas(decomposition, h=horizon, season_length=periods if len(periods) > 1
                                     else periods[0])
        return trend + seasons


class ARIMAForecaster(StatisticalForecaster):
    """AutoARIMA: orders (p, d, q)(P, D, Q) and coefficients chosen per series on its last 500 training rows
    (stepwise, no drift); a window runs the fixed-coefficient model's Kalman filter over its own rows. Slow to
    fit: tens of seconds to minutes per hourly series, so `init` leaves it out of `compare.models`."""

    name = "arima"
    fit_rows = 500

    def _fit_one(self, y: np.ndarray) -> dict[str, Any]:
        from statsforecast.models import AutoARIMA

        m = self.season_length if self.lookback is None or self.lookback >= 2 * self.season_length else 1
        model = AutoARIMA(season_length=m, allowdrift=False).fit(y).model_
        return {"arma": [int(v) for v in model["arma"]], "coef": {k: float(v) for k, v in model["coef"].items()}}

    def _forecast_one(self, y: np.ndarray, params: dict[str, Any], horizon: int) -> np.ndarray:
        from statsforecast.arima import Arima, forecast_arima

        p, q, P, Q, m, d, D = params["arma"]
        coef = params["coef"]
        seasonal = {"order": (P, D, Q), "period": m} if m > 1 else {"order": (0, 0, 0), "period": 1}
        model = Arima(x=y, order=(p, d, q), seasonal=seasonal, include_mean="intercept" in coef,
                      fixed=np.asarray(list(coef.values()), dtype=np.float64) if coef else None, method="CSS-ML")
        return forecast_arima(model, horizon)["mean"]


STATISTICAL_CLASSES: dict[str, type[StatisticalForecaster]] = {
    model.name: model for model in (ETSForecaster, ThetaForecaster, MSTLForecaster, ARIMAForecaster)
}


def additive_ets_forecast(windows: np.ndarray, m: int, components: str, params: dict[str, Any],
                          horizon: int) -> np.ndarray:
    """[b, L] windows -> [b, H]: the additive ETS model `components` (statsforecast's letters: error, trend,
    season, damped; error, trend and season additive or none) with the fixed smoothing parameters of `params`,
    started from the initial states that fit each window best.

    With additive errors and fixed parameters every state is an affine function of the initial states x0
    (level, trend, m seasonal states), so the one-step errors are e = A x0 + c and the least-squares x0, the
    maximum-likelihood start under Gaussian errors, is one `lstsq` per window. statsforecast's own `forward`
    restarts from the training series' first states instead, whose level and seasonal phase belong to another
    time than the window's. Equations (Hyndman et al., Forecasting with Exponential Smoothing, ch. 2):
        yhat_t = l + phi b + s_m,   e_t = y_t - yhat_t
        l' = l + phi b + alpha e,   b' = phi b + beta e,   s' = [s_m + gamma e, s_1, ..., s_{m-1}]
    """
    if components[0] != "A" or "M" in components[1:3]:
        raise ValueError(f"ETS {components}: only additive components forecast from a window")
    trended, seasonal = components[1] != "N", components[2] != "N"
    alpha = params["alpha"]
    beta = params.get("beta") or 0.0 if trended else 0.0
    gamma = params.get("gamma") or 0.0 if seasonal else 0.0
    phi = params.get("phi") or 1.0 if trended else 0.0
    n_windows, length = windows.shape
    first = 1 + trended  # where the seasonal states start: [l, (b), s_1, ..., s_m], s_1 the newest
    k = first + (m if seasonal else 0)

    def one_step(x):  # x [b, k, ...] -> yhat [b, ...]
        return x[:, 0] + (phi * x[:, 1] if trended else 0.0) + (x[:, k - 1] if seasonal else 0.0)

    def evolve(x):  # x [b, k, ...] -> F x: the transition without the error's gain
        out = np.empty_like(x)
        out[:, 0] = x[:, 0] + (phi * x[:, 1] if trended else 0.0)
        if trended:
            out[:, 1] = phi * x[:, 1]
        if seasonal:
            out[:, first] = x[:, k - 1]  # the new s_1 is the old s_m; the rest move down
            out[:, first + 1 :] = x[:, first : k - 1]
        return out

    gain = np.array([alpha, *([beta] if trended else []), *([gamma] + [0.0] * (m - 1) if seasonal else [])])  # [k]
    # Affine states: x_t = S_t @ [x0, 1], S [b, k, k + 1]; errors e_t = E_t @ [x0, 1].
    states = np.broadcast_to(np.eye(k, k + 1), (n_windows, k, k + 1)).copy()
    errors = np.empty((n_windows, length, k + 1))
    for t in range(length):
        error = -one_step(states)  # [b, k + 1]
        error[:, k] += windows[:, t]
        errors[:, t] = error
        states = evolve(states) + gain[None, :, None] * error[:, None, :]
    x0 = np.stack([np.linalg.lstsq(errors[i, :, :k], -errors[i, :, k], rcond=None)[0]
                   for i in range(n_windows)])  # [b, k]
    last = np.einsum("bjc,bc->bj", states, np.concatenate([x0, np.ones((n_windows, 1))], axis=1))  # [b, k]
    forecast = np.empty((n_windows, horizon))
    for h in range(horizon):
        forecast[:, h] = one_step(last)
        last = evolve(last)  # no errors ahead
    return forecast


def _clean(y: np.ndarray) -> np.ndarray:
    """A float64 copy with missing values carried forward (statsforecast takes no NaN)."""
    y = np.array(y, dtype=np.float64)
    missing = ~np.isfinite(y)
    if missing.any():
        index = np.where(~missing, np.arange(len(y)), 0)
        np.maximum.accumulate(index, out=index)
        y = y[index]
        y[~np.isfinite(y)] = 0.0  # leading missing values: the series mean on the scaled axis
    return y


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def _count(params: Params) -> int:
    if params is None:
        return 0
    if "coef" in params:
        return len(params["coef"])
    return sum(params.get(key) is not None for key in ("alpha", "beta", "gamma", "phi", "theta"))

