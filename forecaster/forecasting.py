"""Inference: how every forecast is made, whoever asks for it (evaluation, the pyfunc model, batch predict, Spark).

Two levels, one path:

- `predictor.scaled_forecasts(predictor, batches)`: batches of windows -> scaled forecasts `[B, H, T, Q]`. A
  `Predictor` (`bundle.predictor`) is the only thing that calls a trained network or baseline; the evaluation's
  `forecast_windows` and `forecast` below both go through it.
- `forecast(bundle, history)`: a history frame in the training file's own layout -> the forecast frame. It
  validates the history with the training data config, scales it (series the model never saw get statistics
  from their own history), takes the last `lookback` rows of every series, forecasts all series in batches
  straight through the network (no Trainer, no GPU) and lays the result out one row per series, target and step,
  with `forecast_lo_<level>` / `forecast_hi_<level>` from the bundle's calibration (`forecaster.calibration`).
  `outputs.output_columns(bundle)` is that frame's column list (the Spark engine's schema is built from it).

`with_metadata` adds the columns that say which model made each row, from where and when; the pandas and Spark
engines both call it.

Two settings say how a network computes, never what: `precision` (`predict.precision`) and the batch size;
`forecaster.inference` chooses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecaster.errors import DataError, ForecasterError
from forecaster.inference import PrecisionChoice, bundle_precision, inference_batch_size
from forecaster.outputs import interval_column, quantile_column
from forecaster.predictor import Predictor, scaled_forecasts

if TYPE_CHECKING:
    from forecaster.bundle import ModelBundle
    from forecaster.data.panel import Panel



@dataclass
class Forecast:
    """frame: one row per series, target and step; skipped: series id -> reason; origins: last observed time."""

    frame: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    origins: dict[str, pd.Timestamp] = field(default_factory=dict)
    precision: PrecisionChoice | None = None  # what the network computed in, and why
    batch_size: int = 0  # windows per forward pass


def forecast(
    bundle: ModelBundle, history: pd.DataFrame, *, skip_bad_series: bool = False, batch_size: int | None = None,
    source: str = "<history>", precision: str = "auto", tolerance: float = 0.01, memory_mb: float = 1024,
) -> Forecast:
    """Forecast `horizon` steps after the last row of every series in `history` (`source` names it in errors).

    Without `skip_bad_series` any bad series is an error; with it, bad and too short series are left out and
    reported in `Forecast.skipped`. `precision` ('auto', '32' or 'bf16') and `tolerance`: `choose_precision`;
    `batch_size` None: the largest batch that fits `memory_mb` (`inference_batch_size`).

    A model with `data.future_covariates` reads their values over the horizon from the rows after each series'
    last observed target (`forecaster.data.future`); with a `scenario` column there, each scenario is forecast
    and the frame gains a `scenario` column.
    """
    from forecaster.data.future import split_future_rows
    from forecaster.data.io import with_key_columns, with_series_key
    from forecaster.data.validate import check_columns

    data = bundle.config.data
    check_columns(history, data, source)
    history = with_series_key(history, data, source)
    ahead = None
    if data.future_covariates:
        history, ahead = split_future_rows(history, data, source)
    if skip_bad_series and data.series_id:
        panel, skipped = _panel_skipping_bad(bundle, history, source)
    else:
        panel, skipped = _panel(bundle, history, source), {}
    skipped.update(_dropped(panel))
    panel, short = _drop_short(panel, bundle.lookback, source, raise_error=not skip_bad_series)
    skipped.update(short)
    if panel.n_series == 0:
        raise DataError(f"{source}: no series left to forecast; skipped: {skipped}")

    batch_size = batch_size or inference_batch_size(bundle, memory_mb)
    settings = {"batch_size": batch_size, "precision": precision, "tolerance": tolerance}
    if ahead is None:
        frame, choice = _forecast_panel(bundle, panel, None, **settings)
    else:
        frame, choice = _forecast_futures(bundle, panel, ahead, skipped, skip_bad_series, source, settings)
    forecast_ids = set(frame["series_id"])
    kept = [i for i, sid in enumerate(panel.series_ids) if sid in forecast_ids]
    last = panel.clock.aware(np.array([panel.series_timestamps(i)[-1] for i in kept]))  # with the input's zone
    origins = {panel.series_ids[i]: stamp for i, stamp in zip(kept, last, strict=True)}
    frame["timestamp"] = panel.clock.aware(frame["timestamp"].to_numpy())  # with the input's zone, if it had one
    frame = with_key_columns(frame, data)  # a composite key's columns follow the joined id, as in the history
    return Forecast(frame=frame, skipped=skipped, origins=origins, precision=choice, batch_size=batch_size)


def _forecast_panel(bundle: ModelBundle, panel: Panel, future: np.ndarray | None, batch_size: int, precision: str,
                    tolerance: float) -> tuple[pd.DataFrame, PrecisionChoice]:
    """The frame of forecasts after every series of `panel`; `future` [S, H, Cf]: the future covariates over the
    horizon, in original units (None for a model without them)."""
    windows, stamps, scaler = _last_windows(bundle, panel, future)
    exact = bundle.predictor  # float32
    choice = bundle_precision(bundle, exact, windows, precision, tolerance)
    predictor = replace(exact, precision=choice.precision)
    batches = (windows.__getitems__(range(start, min(start + batch_size, len(windows))))
               for start in range(0, len(windows), batch_size))
    series = scaler.series_index(panel.series_ids)  # the training series first, then unseen ones
    scaled = np.concatenate([pred for _, pred in scaled_forecasts(predictor, batches, series)])  # [S, H, T, Q]
    original = scaler.inverse_targets(scaled, series)  # [S, H, T, Q]
    bands = {}
    if bundle.calibration is not None:  # scaled margins times each series' own scale
        bands = {level: (scaler.inverse_targets(lo, series), scaler.inverse_targets(hi, series))
                 for level, (lo, hi) in bundle.calibration.bounds(scaled, predictor.point_index).items()}
    return _frame(panel, stamps, original, predictor, bands), choice


def _forecast_futures(bundle: ModelBundle, panel: Panel, ahead: pd.DataFrame, skipped: dict[str, str],
                      skip_bad_series: bool, source: str, settings: dict) -> tuple[pd.DataFrame, PrecisionChoice]:
    """One forecast per scenario of the future rows `ahead` (one without a scenario column). A series without
    every future value is an error, or with `skip_bad_series` left out of that scenario and reported."""
    from forecaster.data.future import SCENARIO, future_values, missing_future_message, scenarios

    data, frames, choice = bundle.config.data, [], None
    last = np.array([panel.series_timestamps(i)[-1] for i in range(panel.n_series)])  # [S]
    for name in scenarios(ahead):
        rows = ahead if name is None else ahead[ahead[SCENARIO].astype(str) == name]
        values, missing = future_values(rows, data, panel.series_ids, last, panel.freq, bundle.horizon, source,
                                        panel.clock)
        label = "" if name is None else f" (scenario '{name}')"
        if missing and not skip_bad_series:
            raise DataError(missing_future_message({sid: why + label for sid, why in missing.items()}, data,
                                                   bundle.horizon, source))
        skipped.update({f"{sid}{label}": why for sid, why in missing.items()})
        keep = np.array([sid not in missing for sid in panel.series_ids])
        if not keep.any():
            continue
        frame, choice = _forecast_panel(bundle, panel.select(np.flatnonzero(keep)), values[keep], **settings)
        frames.append(frame if name is None else frame.assign(**{SCENARIO: name}))
    if not frames:
        raise DataError(f"{source}: no series left to forecast; skipped: {skipped}")
    return pd.concat(frames, ignore_index=True), choice


def with_metadata(forecast: Forecast, *, model_uri: str, model_version: str | None, source_run_id: str | None,
                  created_at: pd.Timestamp) -> pd.DataFrame:
    """The forecast's columns, then `METADATA_COLUMNS`: which model made each row, from where, when."""
    frame = forecast.frame.copy()
    frame["model_uri"] = model_uri
    frame["model_version"] = model_version
    frame["source_run_id"] = source_run_id
    origins = {series_id: pd.Timestamp(stamp) for series_id, stamp in forecast.origins.items()}
    frame["forecast_origin"] = frame["series_id"].map(origins)
    frame["created_at"] = created_at
    return frame


# -- the history as a panel ------------------------------------------------------------------------------


def _panel(bundle: ModelBundle, history: pd.DataFrame, source: str) -> Panel:
    """The history as a panel, at the frequency the model was trained at: history at another frequency is an
    error, not a grid the missing-value policy would silently fill."""
    from forecaster.data.panel import build_panel

    panel = build_panel(history, bundle.config.data.model_copy(update={"freq": None}), source=source)
    if _normalised(panel.freq) != _normalised(bundle.freq):
        raise DataError(
            f"{source}: the history's frequency is '{panel.freq}' but the model was trained on '{bundle.freq}' "
            f"data. Resample the history to '{bundle.freq}', or train a model on '{panel.freq}' data."
        )
    return panel


def _panel_skipping_bad(bundle: ModelBundle, history: pd.DataFrame, source: str) -> tuple[Panel, dict[str, str]]:
    """Validate series one at a time, keeping the good ones; the reason for each bad one is reported."""
    good, skipped = [], {}
    for series_id, group in history.groupby(bundle.config.data.id_column, sort=False):
        try:
            _panel(bundle, group, source)
        except ForecasterError as exc:
            skipped[str(series_id)] = str(exc)
            continue
        good.append(group)
    if not good:
        raise DataError(f"{source}: every series in the history is bad: {skipped}")
    return _panel(bundle, pd.concat(good), source), skipped


def _dropped(panel: Panel) -> dict[str, str]:
    """Series the missing-value policy dropped (`data.missing: drop_series`)."""
    return {report.series_id: "dropped by data.missing=drop_series" for report in panel.reports if report.dropped}


def _normalised(freq: str) -> str:
    from pandas.tseries.frequencies import to_offset

    return to_offset(freq).freqstr


def _drop_short(panel: Panel, lookback: int, source: str, raise_error: bool) -> tuple[Panel, dict[str, str]]:
    """Series with fewer than `lookback` rows cannot be forecast; raise, or leave them out and report them."""
    short = np.flatnonzero(panel.lengths < lookback)
    if not len(short):
        return panel, {}
    reasons = {panel.series_ids[i]: f"{panel.lengths[i]} rows, the model needs the last {lookback}" for i in short}
    if raise_error:
        listed = ", ".join(f"'{sid}' ({reason})" for sid, reason in list(reasons.items())[:5])
        raise DataError(f"{source}: series {listed} have too little history to forecast. Give each series at "
                        f"least {lookback} rows, or pass --skip-bad-series to forecast the others.")
    return panel.select(np.flatnonzero(panel.lengths >= lookback)), reasons


# -- windows in, frame out ------------------------------------------------------------------------------


def _last_windows(bundle: ModelBundle, panel: Panel, future: np.ndarray | None = None):
    """One window per series: its last `lookback` rows, scaled, then `horizon` future rows (targets and past
    covariates unknown; the future covariates `future` [S, H, Cf] in original units, when the model reads them).
    Returns the `WindowDataset` (S windows), the future timestamps [S, H] and the scaler (unseen series added)."""
    from forecaster.data.features import future_grid
    from forecaster.data.panel import Panel
    from forecaster.data.scaling import PanelScaler
    from forecaster.data.windows import WindowDataset

    scaler = PanelScaler.from_dict(bundle.scaler_state).add_series(panel)  # unseen series: fit on their history
    scaled = scaler.transform(panel)
    lookback, horizon = bundle.lookback, bundle.horizon
    n_series, width = panel.n_series, panel.values.shape[1]
    ends = panel.offsets[1:]  # [S]
    past_rows = ends[:, None] - lookback + np.arange(lookback)  # [S, L]
    ahead = future_grid(panel.timestamps[ends - 1], panel.freq, horizon)  # [S, H]
    values = np.full((n_series, lookback + horizon, width), np.nan, dtype=np.float32)  # [S, L + H, V]
    values[:, :lookback] = scaled.values[past_rows]
    if future is not None:  # the last Cf columns: targets, past covariates, then the future covariates
        series = scaler.series_index(panel.series_ids)
        values[:, lookback:, width - future.shape[2]:] = scaler.scale_columns(future, series, panel.future_covariates)
    stamps = np.concatenate([panel.timestamps[past_rows], ahead], axis=1)  # [S, L + H]
    window_panel = Panel(
        series_ids=panel.series_ids, offsets=np.arange(n_series + 1, dtype=np.int64) * (lookback + horizon),
        timestamps=stamps.reshape(-1), values=values.reshape(-1, width), targets=panel.targets,
        covariates=panel.covariates, future_covariates=panel.future_covariates, freq=panel.freq, clock=panel.clock,
    )
    windows = WindowDataset(window_panel, np.full(n_series, lookback), np.full(n_series, lookback + horizon),
                            lookback, horizon, calendar=bundle.config.data.calendar)
    return windows, ahead, scaler


def _frame(panel: Panel, future: np.ndarray, forecast: np.ndarray, predictor: Predictor,
           bands: dict[int, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Long frame: one row per series, target and step. forecast: [S, H, T, Q]; bands: level -> (lower, upper),
    each [S, H, T]; all in original units."""
    n_series, horizon, n_targets, _ = forecast.shape
    series = np.repeat(np.array(panel.series_ids, dtype=object), horizon * n_targets)
    stamps = np.repeat(future, n_targets, axis=1).reshape(-1)  # [S * H * T]
    steps = np.tile(np.repeat(np.arange(1, horizon + 1), n_targets), n_series)
    targets = np.tile(np.array(panel.targets, dtype=object), n_series * horizon)
    frame = pd.DataFrame({"series_id": series, "target": targets, "timestamp": stamps, "step": steps})
    frame["forecast"] = forecast[..., predictor.point_index].reshape(-1)
    for index, quantile in enumerate(predictor.quantiles or []):
        frame[quantile_column(quantile)] = forecast[..., index].reshape(-1)
    for level, (lower, upper) in bands.items():
        frame[interval_column(level, "lo")] = lower.reshape(-1)
        frame[interval_column(level, "hi")] = upper.reshape(-1)
    return frame
