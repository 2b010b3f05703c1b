"""Champion against challenger: does the comparison's winner beat the model under the alias on rows that neither
has trained on? And the decision that follows: `judge` it, then, holding `promotion_lock`, `recheck` that the alias
has not moved meanwhile and `register` the winner under it.

The rows: forecast origins whose whole horizon lies after the champion's recorded training range (the last
training timestamp of each series, else its last one overall) and at or after the end of the rows the winner's
selection model trained on (its training split; a refit comes only after this decision). Per series, the origins
are the non-overlapping horizons that end at its last row, newest first, at most `MAX_ORIGINS`. Both models
forecast them from the history before each origin (loaded from their JSON and weights, as `predict` loads a model:
no code stored in the registry runs), and both are scored with the comparison's metric; `mse` and `mae`
standardise each series with the mean and deviation of its rows before its first origin, as the scaler of a model
trained up to there would.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecaster.config import Config
from forecaster.tracking import state_dir

if TYPE_CHECKING:
    from .train import TrainResult

log = logging.getLogger(__name__)

MAX_ORIGINS = 12  # per series: enough windows for a stable mean, few enough forecasts for a quick decision


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
    from forecaster.mlflow_model.resolve import resolve_model

    metric = config.compare.metric
    outcome = Challenge(metric=metric, champion_version=str(version.version))
    # Loaded as `predict` loads a model: its JSON and weights only. The pyfunc model would import the code stored
    # with it in the registry, which anyone with write access to the store could have changed.
    champion_bundle = resolve_model(f"models:/{version.name}/{version.version}").bundle
    challenger_bundle = resolve_model(challenger_uri).bundle
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
        forecasts = [_forecast(bundle, datamodule, origins, lookback, horizon)
                     for bundle in (champion_bundle, challenger_bundle)]
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


def _champion_last_timestamps(bundle, version, series_ids: list[str]) -> list[pd.Timestamp] | None:
    """The champion's last training timestamp per series (its overall last for a series it did not see), from
    the range its bundle records, else from the version's `forecaster.trained_until` tag."""
    recorded = bundle.trained_range or {}
    overall = recorded.get("last") or version.tags.get("forecaster.trained_until")
    if overall is None:
        return None
    by_series = recorded.get("last_by_series") or {}
    return [pd.Timestamp(by_series.get(series_id, overall)) for series_id in series_ids]


def _forecast(bundle, datamodule, origins: list[dict[int, int]], lookback: int, horizon: int) -> list[np.ndarray]:
    """Per cut: the bundle's forecasts [n, horizon, T] in original units, series in the cut's order."""
    from forecaster.bundle import history_frame

    panel, data = datamodule.panel, datamodule.config.data
    outputs = []
    for cut in origins:
        ahead = horizon if bundle.config.data.future_covariates else 0  # its known future, targets empty
        frame = bundle.predict(history_frame(panel, data, cut, lookback, ahead)).frame
        table = frame.pivot(index=["series_id", "step"], columns="target", values="forecast")
        wanted = pd.MultiIndex.from_product([[panel.series_ids[i] for i in cut], range(1, horizon + 1)],
                                            names=["series_id", "step"])
        values = table.reindex(wanted)[panel.targets].to_numpy(dtype=np.float64)
        outputs.append(values.reshape(len(cut), horizon, len(panel.targets)))
    return outputs


def _score(datamodule, origins: list[dict[int, int]], horizon: int, forecasts: list[list[np.ndarray]],
           metric: str) -> tuple[float, float]:
    """(champion, challenger) on `metric`; the actuals and scales come from the panel."""
    from forecaster.metrics import Windows, naive_scale, score_windows

    panel, n_targets = datamodule.panel, datamodule.n_targets
    first_origin = {i: min(cut[i] for cut in origins if i in cut) for cut in origins for i in cut}
    stats: dict[int, Any] = {}
    for index, origin in first_origin.items():
        history = panel.series_values(index)[:origin, :n_targets].astype(np.float64)  # [origin, T]
        std = history.std(axis=0)
        season = datamodule.season_length
        stats[index] = (history.mean(axis=0), np.where(std > 0, std, 1.0), naive_scale(history, season),
                        naive_scale(history, season, power=2))
    windows = [(index, origin) for cut in origins for index, origin in cut.items()]  # N, in forecast order
    actual = np.stack([panel.series_values(index)[origin : origin + horizon, :n_targets]
                       for index, origin in windows]).astype(np.float64)  # [N, H, T]
    mean, std, scale, scale_sq = (np.stack([stats[index][k] for index, _ in windows]) for k in range(4))  # [N, T]
    mean, std = mean[:, None, :], std[:, None, :]  # [N, 1, T]
    scores = []
    for per_cut in forecasts:
        pred = np.concatenate(per_cut)  # [N, H, T]
        metrics = score_windows(Windows((pred - mean) / std, (actual - mean) / std, pred, actual, scale, scale_sq))
        scores.append(float(metrics[metric]))
    return scores[0], scores[1]


# -- the decision: promote the winner or keep the champion, and move the alias ------------------------------


@dataclass
class Promotion:
    promote: bool
    text: str
    challenge: Any = None  # champion.Challenge
    champion: str | None = None  # the version under the alias when the verdict was made; None if there was none

    def challenge_tags(self) -> dict[str, str]:
        return self.challenge.tags() if self.challenge is not None else {}


def judge(config: Config, table, selected: TrainResult, datamodule, metric: str) -> Promotion:
    """Whether the winner replaces the champion: it must beat seasonal naive on `metric`, then the current
    champion on the newest rows neither trained on, by `compare.min_improvement` (relative)."""
    winner = table.iloc[0]
    if not config.compare.register_winner:
        return Promotion(False, "registration disabled (compare.register_winner: false)")
    floor = table.loc[table["model"] == "seasonal_naive", metric]
    if floor.empty:
        return Promotion(False, "not registered: seasonal_naive is not in compare.models, so there is no floor to beat")
    floor_value, value = float(floor.iloc[0]), float(winner[metric])
    if not value < floor_value:
        return Promotion(False, f"not registered: the best model, {winner['model']} ({metric} {value:.4f}), does not "
                              f"beat seasonal_naive ({floor_value:.4f}); the alias stays where it was")
    beats_floor = f"{winner['model']} ({metric} {value:.4f}) beats seasonal_naive ({floor_value:.4f})"
    name, alias = config.registry.name, config.registry.alias
    always = config.compare.promote == "always"
    version = current_champion(name, alias)
    if version is None:
        return Promotion(True, f"{beats_floor}; {name}@{alias} does not exist yet")
    outcome = challenge(config, datamodule, selected.model_uri, version)
    champion = str(version.version)
    if not outcome.compared:
        if always:
            return Promotion(True, f"{beats_floor}; champion version {version.version} not compared ({outcome.problem}); "
                                 f"promoted because compare.promote is 'always'", outcome, champion)
        return Promotion(False, f"{beats_floor}, but the champion (version {version.version}) stays: {outcome.problem}. "
                              f"Pass --promote (compare.promote: always) to replace it anyway", outcome, champion)
    needed = outcome.champion_score * (1.0 - config.compare.min_improvement)
    versus = (f"on the newest rows ({outcome.rows()}), {metric.split('_', 1)[1]} {outcome.challenger_score:.4f} "
              f"against the champion's (version {version.version}) {outcome.champion_score:.4f}")
    if outcome.challenger_score < needed:
        return Promotion(True, f"{beats_floor}, and beats the champion {versus}", outcome, champion)
    if always:
        return Promotion(True, f"{beats_floor}; it does not beat the champion {versus}, but compare.promote is "
                             f"'always'", outcome, champion)
    margin = f" by the margin compare.min_improvement={config.compare.min_improvement}" \
        if config.compare.min_improvement else ""
    return Promotion(False, f"{beats_floor}, but does not beat the champion{margin} {versus}; the champion stays",
                   outcome, champion)


@contextmanager
def promotion_lock(config: Config) -> Iterator[None]:
    """Held from the last look at the alias until it has moved, by every compare on this machine that promotes
    into `registry.name`: two of them cannot both read the old champion and both move the alias."""
    from filelock import FileLock

    folder = state_dir(config.tracking) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(f"{config.registry.name}@{config.registry.alias}".encode()).hexdigest()[:16]
    with FileLock(folder / f"promote-{digest}.lock"):
        yield


def recheck(config: Config, verdict: Promotion, table, selected: TrainResult, datamodule, metric: str) -> Promotion:
    """The verdict again if the alias moved since it was made (another compare promoted its winner meanwhile):
    the winner must then beat the new champion too. Call it holding `promotion_lock`."""
    now = current_champion(config.registry.name, config.registry.alias)
    if (str(now.version) if now is not None else None) == verdict.champion:
        return verdict
    log.info("@%s moved to version %s while this compare ran: challenging that champion", config.registry.alias,
             now.version if now is not None else None)
    again = judge(config, table, selected, datamodule, metric)
    again.text = f"{again.text} (judged again: @{config.registry.alias} moved while this compare ran)"
    return again


def register(config: Config, selected: TrainResult, refit: TrainResult | None, verdict: Promotion, metric: str,
              value: float) -> str:
    """Register the refit model (else the selection model), record where it came from, and move the alias."""
    import mlflow

    deployed = refit or selected
    name, alias = config.registry.name, config.registry.alias
    version = str(mlflow.register_model(deployed.model_uri, name).version)
    trained = deployed.trained_range or {}
    tags = {"forecaster.model": selected.name, metric.replace("_", ".", 1): f"{value:.6f}",
            "source_run": selected.run_id, "forecaster.decision": verdict.text[:5000],
            "forecaster.refit": str(refit is not None).lower(),
            "forecaster.trained_from": trained.get("first", ""), "forecaster.trained_until": trained.get("last", ""),
            "forecaster.trained_rows": str(trained.get("rows", "")),
            **{f"forecaster.challenge.{k}": v for k, v in verdict.challenge_tags().items()}}
    if refit is not None:
        tags["refit_run"] = refit.run_id
    client = mlflow.MlflowClient()
    for key, tag in tags.items():
        client.set_model_version_tag(name, version, key, tag)
    client.set_registered_model_alias(name, alias, version)
    verdict.text = f"{verdict.text}: registered as {name} version {version}" + \
        (" (refit on every row)" if refit is not None else "") + f" and moved @{alias} to it"
    return version
