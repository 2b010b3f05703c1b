"""An ensemble: the median or the mean of several trained models' point forecasts, as one model.

Its members are whole trained models (`ModelBundle`s: networks, baselines, statistical models) trained on the same
data module, so they read the same windows on the same scaled axis; the combination on that axis equals the
combination in original units (each series' scaling is affine and increasing). It sits behind the baseline
interface, so evaluation, batch prediction, pyfunc, Spark, calibration and the champion challenge treat it as they
treat any model. On disk it is the members' own bundles in `members/NN/` beside the ensemble's `bundle.json`
(`forecaster.bundle`): no pickles.

`combine_forecasts` is the one place the combination is computed; `choose_ensemble` picks how many of the best
models to combine, and how, on the validation windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import torch

from forecaster.errors import ModelError
from forecaster.models.baselines import Baseline

if TYPE_CHECKING:
    from forecaster.bundle import ModelBundle

COMBINERS = ("median", "mean")


def combine_forecasts(points: np.ndarray, combine: str) -> np.ndarray:
    """points [M, ...] (one point forecast per member) -> [...]; the median of an even count is the mean of the
    two middle values."""
    if combine == "median":
        return np.median(points, axis=0)
    if combine == "mean":
        return np.mean(points, axis=0)
    raise ModelError(f"ensemble: unknown combination {combine!r}; choose one of {', '.join(COMBINERS)}")


class Ensemble(Baseline):
    """The `combine` of `members`' point forecasts; `names` say which candidate each member was."""

    name = "ensemble"

    def __init__(self, members: list[ModelBundle], names: list[str], combine: str = "median"):
        if not members or len(members) != len(names):
            raise ModelError("ensemble: give one name per member, and at least one member")
        shapes = {(m.lookback, m.horizon, tuple(sorted(m.dims.items()))) for m in members}
        if len(shapes) > 1:
            raise ModelError(f"ensemble: members {names} read different windows ({sorted(shapes)}); an ensemble "
                             f"combines models trained on the same data and windows")
        combine_forecasts(np.zeros((1, 1)), combine)  # an unknown combination is refused here, not at forecast time
        super().__init__(n_targets=members[0].dims["n_targets"], lookback=members[0].lookback,
                         horizon=members[0].horizon)
        self.members, self.names, self.combine = members, list(names), combine

    @property
    def n_params(self) -> int:
        return sum(_n_params(member) for member in self.members)

    def fit(self, batches) -> Self:
        raise ModelError("ensemble: its members are trained models; build it from them, there is nothing to fit")

    def fit_data(self, datamodule) -> Self:
        return self.fit(None)

    def predict(self, x_past: torch.Tensor, x_future: torch.Tensor, series=None) -> torch.Tensor:
        """[B, L, F], [B, H, F_future] -> [B, H, T]: each member's point forecast, combined."""
        points = []
        for member in self.members:
            points.append(member.predictor(x_past, x_future, series)[..., member.point_index].float().cpu().numpy())
        return torch.as_tensor(combine_forecasts(np.stack(points), self.combine), dtype=torch.float32)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "combine": self.combine, "members": self.names}

    @classmethod
    def from_dict(cls, state: dict[str, Any], members: list[ModelBundle] | None = None) -> Self:
        if members is None:
            raise ModelError("ensemble: load it with its member bundles (forecaster.bundle.ModelBundle.load)")
        return cls(members, state["members"], state["combine"])


def _n_params(bundle: ModelBundle) -> int:
    if bundle.network is not None:
        return sum(p.numel() for p in bundle.network.parameters())
    return bundle.baseline.n_params


@dataclass(frozen=True)
class EnsembleChoice:
    """The best combination on validation: its members (best first), how they combine, and its score."""

    members: tuple[str, ...]
    combine: str
    score: float
    tried: tuple[tuple[int, str, float], ...]  # (size, combine, validation score) of every candidate


def choose_ensemble(ranked: list[tuple[str, np.ndarray]], score, max_size: int) -> EnsembleChoice | None:
    """`ranked`: (name, validation point forecasts [N, H, T]) of the candidates, best first; `score(pred) ->
    float` scores a combination on the same windows, lower is better. Tries the best 2, 3, ... `max_size` under
    each combination and keeps the lowest score; None with fewer than two candidates."""
    tried = []
    for size in range(2, min(max_size, len(ranked)) + 1):
        points = np.stack([pred for _, pred in ranked[:size]])  # [k, N, H, T]
        for combine in COMBINERS:
            if size == 2 and combine == "median":
                continue  # the median of two is their mean
            tried.append((size, combine, float(score(combine_forecasts(points, combine)))))
    if not tried:
        return None
    size, combine, best = min(tried, key=lambda row: row[2])
    return EnsembleChoice(tuple(name for name, _ in ranked[:size]), combine, best, tuple(tried))
