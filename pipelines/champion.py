"""Champion against challenger: does the comparison's winner beat the model under the alias on rows that neither
has trained on?

The rows: forecast origins whose whole horizon lies after the champion's recorded training range (the last
training timestamp of each series, else its last one overall) and at or after the end of the rows the winner's
selection model trained on (its training split; a refit comes only after this decision). Per series, the origins
are the non-overlapping horizons that end at its last row, newest first, at most `MAX_ORIGINS`. Both models
forecast them through their MLflow pyfunc from the history before each origin, and both are scored with the
comparison's metric; `mse` and `mae` standardise each series with the mean and deviation of its rows before its
first origin, as the scaler of a model trained up to there would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import Config

log = logging.getLogger(__name__)

MAX_ORIGINS = 12  # per series: enough windows for a stable mean, few enough pyfunc calls for a quick decision


@dataclass
class Challenge:
    """The outcome of one champion-against-challenger comparison; `problem` says why none could be made."""

    metric: str
    champion_version: str
    champion_score: float | None = None
    challenger_score: float | None = None
    origins: int = 0  # forecast windows scored, all series together
    series: int = 0
    first_target: str | None = None  # the oldest and newest timestamp the scored windows forecast
    last_target: str | None = None
    problem: str | None = None

    @property
    def compared(self) -> bool:
        return self.champion_score is not None

    def rows(self) -> str:
        return (f"{self.origins} windows of {self.series} series, targets {self.first_target} to {self.last_target}"
                if self.compared else "no rows")

    def tags(self) -> dict[str, str]:
        tags = {"champion_version": self.champion_version, "rows": self.rows(), "metric": self.metric}
        if self.compared:
            tags |= {"champion_score": f"{self.champion_score:.6g}", "challenger_score": f"{self.challenger_score:.6g}"}
        return tags


def current_champion(name: str, alias: str):
    """The model version under `name@alias`, or None when the alias does not exist yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def challenge(config: Config, datamodule, challenger_uri: str, version) -> Challenge:
    """Score the champion (`version`, a registered ModelVersion) and the challenger (its selection model,
    `challenger_uri`) on the newest rows neither trained on."""
    import mlflow

    metric = config.compare.metric
    outcome = Challenge(metric=metric, champion_version=str(version.version))
    champion = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    challenger = mlflow.pyfunc.load_model(challenger_uri)
    champion_bundle, challenger_bundle = _bundle(champion), _bundle(challenger)
    champion_last = _champion_last_timestamps(champion_bundle, version, datamodule.panel.series_ids)
    if champion_last is None:
        outcome.problem = (f"version {version.version} records no training range (a model registered before "
                           f"forecaster recorded one)")
        return outcome
    lookback = max(champion_bundle.lookback, challenger_bundle.lookback)
    horizon = min(champion_bundle.horizon, challenger_bundle.horizon)
    origins = eligible_origins(datamodule.panel, datamodule.borders.train_end, champion_last, lookback, horizon)
    if not origins:
        outcome.problem = (f"no forecast window of {horizon} steps lies after both the champion's training range "
                           f"(up to {max(champion_last).isoformat()}) and the winner's training rows: the data has "
                           f"not moved on since the champion was trained")
        return outcome
    try:
        forecasts = [_forecast(model, datamodule, origins, lookback, horizon) for model in (champion, challenger)]
    except Exception as exc:  # a champion trained on other columns or another frequency cannot forecast these
        outcome.problem = f"the models could not forecast the newest rows ({type(exc).__name__}: {exc})"
        return outcome
    scores = _score(datamodule, origins, horizon, forecasts, metric)
    outcome.champion_score, outcome.challenger_score = scores
    panel = datamodule.panel
    targets = [panel.timestamps[panel.offsets[i] + r] for cut in origins for i, r in cut.items()]
    last = [panel.timestamps[panel.offsets[i] + r + horizon - 1] for cut in origins for i, r in cut.items()]
    outcome.origins = len(targets)
    outcome.series = len({i for cut in origins for i in cut})
    outcome.first_target, outcome.last_target = str(pd.Timestamp(min(targets))), str(pd.Timestamp(max(last)))
    return outcome


def eligible_origins(panel, train_end: np.ndarray, champion_last: list[pd.Timestamp], lookback: int,
                     horizon: int) -> list[dict[int, int]]:
    """Newest first: cut k maps series index -> origin row (first forecast row, from the series start) of that
    series' k-th newest window. A window qualifies when its origin is at or after `train_end`, after
    `lookback` rows of history, and its first target is later than the champion's last training timestamp."""
    cuts: list[dict[int, int]] = []
    for index in range(panel.n_series):
        stamps = panel.series_timestamps(index)
        after_champion = int(np.searchsorted(stamps, np.datetime64(champion_last[index], "ns"), side="right"))
        lowest = max(int(train_end[index]), lookback, after_champion)
        origin = int(panel.lengths[index]) - horizon
        for k in range(MAX_ORIGINS):
            if origin < lowest:
                break
            if k == len(cuts):
                cuts.append({})
            cuts[k][index] = origin
            origin -= horizon
    return cuts


def _bundle(model):
    """The forecaster bundle inside a loaded pyfunc model."""
    return model.unwrap_python_model().bundle


def _champion_last_timestamps(bundle, version, series_ids: list[str]) -> list[pd.Timestamp] | None:
    """The champion's last training timestamp per series (its overall last for a series it did not see), from
    the range its bundle records, else from the version's `forecaster.trained_until` tag."""
    recorded = bundle.trained_range or {}
    overall = recorded.get("last") or version.tags.get("forecaster.trained_until")
    if overall is None:
        return None
    by_series = recorded.get("last_by_series") or {}
    return [pd.Timestamp(by_series.get(series_id, overall)) for series_id in series_ids]


def _forecast(model, datamodule, origins: list[dict[int, int]], lookback: int, horizon: int) -> list[np.ndarray]:
    """Per cut: the model's forecasts [n, horizon, T] in original units, series in the cut's order."""
    from forecaster.bundle import history_frame

    panel, data = datamodule.panel, datamodule.config.data
    outputs = []
    for cut in origins:
        frame = model.predict(history_frame(panel, data, cut, lookback))
        table = frame.pivot(index=["series_id", "step"], columns="target", values="forecast")
        wanted = pd.MultiIndex.from_product([[panel.series_ids[i] for i in cut], range(1, horizon + 1)],
                                            names=["series_id", "step"])
        values = table.reindex(wanted)[panel.targets].to_numpy(dtype=np.float64)
        outputs.append(values.reshape(len(cut), horizon, len(panel.targets)))
    return outputs


def _score(datamodule, origins: list[dict[int, int]], horizon: int, forecasts: list[list[np.ndarray]],
           metric: str) -> tuple[float, float]:
    """(champion, challenger) on `metric`; the actuals and scales come from the panel."""
    from forecaster.metrics import evaluate, naive_scale

    panel, n_targets = datamodule.panel, datamodule.n_targets
    first_origin = {i: min(cut[i] for cut in origins if i in cut) for cut in origins for i in cut}
    stats: dict[int, Any] = {}
    for index, origin in first_origin.items():
        history = panel.series_values(index)[:origin, :n_targets].astype(np.float64)  # [origin, T]
        std = history.std(axis=0)
        stats[index] = (history.mean(axis=0), np.where(std > 0, std, 1.0),
                        naive_scale(history, datamodule.season_length))
    windows = [(index, origin) for cut in origins for index, origin in cut.items()]  # N, in forecast order
    actual = np.stack([panel.series_values(index)[origin : origin + horizon, :n_targets]
                       for index, origin in windows]).astype(np.float64)  # [N, H, T]
    mean, std, scale = (np.stack([stats[index][k] for index, _ in windows]) for k in range(3))  # each [N, T]
    mean, std = mean[:, None, :], std[:, None, :]  # [N, 1, T]
    scores = []
    for per_cut in forecasts:
        pred = np.concatenate(per_cut)  # [N, H, T]
        metrics = evaluate((pred - mean) / std, (actual - mean) / std, pred, actual, scale)
        scores.append(float(metrics[metric]))
    return scores[0], scores[1]
