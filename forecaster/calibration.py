"""Prediction intervals: calibrated on validation windows, stored as JSON in the bundle, applied to every forecast.

Everything here works on the scaled axis, where each series is already divided by its own training-rows standard
deviation (`PanelScaler`). A margin learned there is multiplied back by each series' scale when the forecast is
returned to original units, so one noisy series does not widen every other series' band.

- Point networks and baselines (`method: conformal`): split conformal prediction per horizon step and target. The
  margin for level `a` at step h is the ceil((n + 1) a) / n empirical quantile of |y - forecast| over the n
  validation windows; the band is forecast -/+ margin.
- Quantile networks (`method: cqr`, `predict.calibrate: true`): conformalised quantile regression (Romano et al.,
  2019). The network's quantile pair closest to the level gives the band; its margin is the same conformal
  quantile of max(lo - y, y - hi), so a band that is too narrow widens and one that is too wide shrinks.
- Quantile networks with `predict.calibrate: false`, or without validation rows (`method: quantile`): the network's
  own quantile pair for each level, unadjusted; levels without a matching pair are left out.

The 95 % band is always fitted as well (MSIS, the M4 interval score, is defined on it); only `levels` are written
as `forecast_lo_<level>` / `forecast_hi_<level>` columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCORED_LEVEL = 95  # MSIS's alpha = 0.05


@dataclass
class Calibration:
    """levels: the levels a forecast carries; margins: level -> [H, T] on the scaled axis, for every fitted level
    (`levels` and 95); pairs: level -> (lower, upper) indices into the network's Q outputs (cqr, quantile)."""

    method: str  # conformal, cqr or quantile
    levels: list[int]
    margins: dict[int, np.ndarray]
    pairs: dict[int, tuple[int, int]] = field(default_factory=dict)
    fitted_on: str = "validation"  # or where it came from: "selection run <id>"
    windows: int = 0

    def bounds(self, outputs: np.ndarray, point_index: int,
               levels: list[int] | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """outputs: [..., H, T, Q] on the scaled axis -> level -> (lower, upper), each [..., H, T].

        Bounds hold the point forecast (lower <= forecast <= upper) and nest: a higher level is never narrower.
        """
        point = outputs[..., point_index]
        wanted = set(self.levels if levels is None else levels)
        result, lower, upper = {}, None, None
        for level in sorted(self.margins):
            margin = self.margins[level]  # [H, T]
            if self.method == "conformal":
                lo, hi = point - margin, point + margin
            else:
                low_index, high_index = self.pairs[level]
                lo, hi = outputs[..., low_index] - margin, outputs[..., high_index] + margin
            lo, hi = np.minimum(lo, point), np.maximum(hi, point)
            if lower is not None:
                lo, hi = np.minimum(lo, lower), np.maximum(hi, upper)
            lower, upper = lo, hi
            if level in wanted:
                result[level] = (lo, hi)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "levels": self.levels, "fitted_on": self.fitted_on, "windows": self.windows,
                "margins": {str(level): margin.tolist() for level, margin in self.margins.items()},
                "pairs": {str(level): list(pair) for level, pair in self.pairs.items()}}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Calibration:
        return cls(method=document["method"], levels=[int(level) for level in document["levels"]],
                   margins={int(level): np.asarray(margin, dtype=np.float64)
                            for level, margin in document["margins"].items()},
                   pairs={int(level): (int(pair[0]), int(pair[1])) for level, pair in document["pairs"].items()},
                   fitted_on=document.get("fitted_on", "validation"), windows=int(document.get("windows", 0)))


def fit_calibration(outputs: np.ndarray | None, actual: np.ndarray | None, quantiles: list[float] | None,
                    point_index: int, levels: list[int], calibrate: bool = True) -> Calibration | None:
    """Fit on validation windows: outputs [N, H, T, Q] and actual [N, H, T], scaled. `quantiles`: what the Q outputs
    are (None for one point output); `point_index`: which output is the point forecast. None when nothing can be
    fitted: a point model without validation windows."""
    fitted_levels = sorted(set(levels) | {SCORED_LEVEL})
    has_windows = outputs is not None and len(outputs) > 0
    pairs = {level: pair for level in fitted_levels
             if quantiles is not None and (pair := _closest_pair(quantiles, level)) is not None}
    if not pairs:  # a point model, or quantiles without a symmetric pair: conformal around the point forecast
        if not has_windows:
            return None
        residual = np.abs(actual - outputs[..., point_index])  # [N, H, T]
        margins = {level: conformal_quantile(residual, level) for level in fitted_levels}
        return Calibration("conformal", sorted(set(levels)), margins, windows=len(outputs))
    if not (calibrate and has_windows):
        exact = {level: pair for level, pair in pairs.items()
                 if abs(quantiles[pair[1]] - quantiles[pair[0]] - level / 100) < 1e-6}
        horizon, n_targets = (outputs.shape[1:3] if has_windows else (1, 1))
        return Calibration("quantile", sorted(set(levels) & set(exact)),
                           {level: np.zeros((horizon, n_targets)) for level in exact}, pairs=exact,
                           fitted_on="the network's own quantiles (not calibrated)",
                           windows=len(outputs) if has_windows else 0)
    margins = {}
    for level, (low, high) in pairs.items():
        score = np.maximum(outputs[..., low] - actual, actual - outputs[..., high])  # [N, H, T]
        margins[level] = conformal_quantile(score, level)
    return Calibration("cqr", sorted(set(levels) & set(pairs)), margins, pairs=pairs, windows=len(outputs))


def conformal_quantile(scores: np.ndarray, level: int) -> np.ndarray:
    """[N, H, T] -> [H, T]: the ceil((n + 1) a) / n empirical quantile per step and target (the split-conformal
    guarantee: a new window's score falls below it with probability at least a)."""
    n = len(scores)
    rank = min(int(np.ceil((n + 1) * level / 100)), n)  # 1-based; past n the largest score is the best we have
    return np.sort(scores, axis=0)[rank - 1].astype(np.float64)


def _closest_pair(quantiles: list[float], level: int) -> tuple[int, int] | None:
    """Indices of the symmetric quantile pair (q, 1 - q) whose coverage 1 - 2q is closest to `level`."""
    pairs = [(i, j) for i, low in enumerate(quantiles) for j, high in enumerate(quantiles)
             if low < 0.5 and abs(low + high - 1.0) < 1e-6]
    if not pairs:
        return None
    return min(pairs, key=lambda pair: abs(quantiles[pair[1]] - quantiles[pair[0]] - level / 100))
