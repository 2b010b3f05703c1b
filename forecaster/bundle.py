"""A trained model as files, without pickles: `bundle.json` (config, scaler, schema, baseline state) and
`weights.pt` (the network's state dict, loaded with `weights_only=True`).

A bundle predicts from a history frame in the training file's own layout: it validates the frame with the
training data config, takes the last `lookback` rows of every series, and forecasts all series in batches
straight through the network (no Trainer, no GPU needed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from forecaster.config import BASELINES, Config, build_config
from forecaster.errors import DataError, ForecasterError, ModelError

FORMAT_VERSION = 1


@dataclass
class BundleForecast:
    """frame: one row per series, target and step; skipped: series id -> reason; origins: last observed time."""

    frame: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    origins: dict[str, pd.Timestamp] = field(default_factory=dict)


@dataclass
class ModelBundle:
    config: Config
    kind: str  # "network" or a baseline name
    scaler_state: dict[str, Any]
    dims: dict[str, int]  # n_targets, n_past_features, n_future_features
    network: torch.nn.Module | None = None
    baseline: Any = None
    freq: str = ""
    trained_range: dict[str, Any] | None = None  # rows the model learned from: see `trained_range`

    @property
    def lookback(self) -> int:
        return self.config.window.lookback

    @property
    def horizon(self) -> int:
        return self.config.window.horizon

    @property
    def quantiles(self) -> list[float] | None:
        if self.kind == "network" and self.config.model.loss == "quantile":
            return list(self.config.model.quantiles)
        return None

    @classmethod
    def from_fitted(cls, config: Config, datamodule, fitted) -> ModelBundle:
        from forecaster.training.fit import data_dims

        return cls(
            config=config,
            kind=fitted.kind,
            scaler_state=datamodule.scaler.to_dict(),
            dims=data_dims(datamodule),
            network=fitted.network,
            baseline=fitted.baseline,
            freq=datamodule.panel.freq,
            trained_range=trained_range(datamodule.panel, datamodule.borders.train_end),
        )

    def save(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        document = {
            "format_version": FORMAT_VERSION, "kind": self.kind, "config": self.config.to_dict(),
            "scaler": self.scaler_state, "dims": self.dims, "freq": self.freq,
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
            "trained_range": self.trained_range,
        }
        (folder / "bundle.json").write_text(json.dumps(document, indent=1))
        if self.network is not None:
            torch.save(self.network.state_dict(), folder / "weights.pt")

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        folder = Path(path)
        try:
            document = json.loads((folder / "bundle.json").read_text())
        except FileNotFoundError:
            raise ModelError(f"{folder}: no bundle.json; this is not a forecaster model folder") from None
        if document.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{folder}: bundle format {document.get('format_version')} is not supported "
                             f"(this forecaster reads format {FORMAT_VERSION})")
        config = build_config(document["config"], source=str(folder / "bundle.json"))
        bundle = cls(config=config, kind=document["kind"], scaler_state=document["scaler"], dims=document["dims"],
                     freq=document["freq"], trained_range=document.get("trained_range"))
        if bundle.kind in BASELINES:
            from forecaster.models.baselines import baseline_from_dict

            bundle.baseline = baseline_from_dict(document["baseline"])
        else:
            from forecaster.training.fit import network_from_dims

            bundle.network = network_from_dims(config, bundle.dims)
            state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
            bundle.network.load_state_dict(state)
            bundle.network.eval()
        return bundle

    def example_history(self, datamodule, n_series: int = 2) -> pd.DataFrame:
        """The last `lookback` rows of a few training series, in the training file's layout: an input example."""
        panel = datamodule.panel
        ends = {index: int(panel.lengths[index]) for index in range(min(n_series, panel.n_series))}
        return history_frame(panel, self.config.data, ends, self.lookback)

    # -- prediction ---------------------------------------------------------------------------------

    def predict(
        self, history: pd.DataFrame, skip_bad_series: bool = False, batch_size: int = 1024, source: str = "<history>",
    ) -> BundleForecast:
        """Forecast `horizon` steps after the last row of every series in `history` (`source` names it in errors)."""
        from forecaster.data.validate import check_columns

        if self.config.data.future_covariates:
            raise ModelError("this model uses data.future_covariates, whose future values batch prediction "
                             "cannot read from a history frame yet; retrain without them")
        check_columns(history, self.config.data, source)
        if skip_bad_series and self.config.data.series_id:
            panel, skipped = self._panel_skipping_bad(history, source)
        else:
            panel, skipped = self._panel(history, source), {}
        skipped.update(_dropped(panel))
        panel, short = _drop_short(panel, self.lookback, source, raise_error=not skip_bad_series)
        skipped.update(short)
        if panel.n_series == 0:
            raise DataError(f"{source}: no series left to forecast; skipped: {skipped}")
        inputs = self._inputs(panel)
        scaled = self._forecast(inputs, batch_size)  # [S, H, T, Q]
        original = inputs["scaler"].inverse_targets(scaled, inputs["scaler_rows"])  # [S, H, T, Q]
        frame = self._frame(panel, inputs["future"], original)
        origins = {sid: pd.Timestamp(panel.series_timestamps(i)[-1]) for i, sid in enumerate(panel.series_ids)}
        return BundleForecast(frame=frame, skipped=skipped, origins=origins)

    def _panel(self, history: pd.DataFrame, source: str):
        """The history as a panel, at the frequency the model was trained at: history at another frequency is an
        error, not a grid the missing-value policy would silently fill."""
        from forecaster.data.panel import build_panel

        panel = build_panel(history, self.config.data.model_copy(update={"freq": None}), source=source)
        if _normalised(panel.freq) != _normalised(self.freq):
            raise DataError(
                f"{source}: the history's frequency is '{panel.freq}' but the model was trained on '{self.freq}' "
                f"data. Resample the history to '{self.freq}', or train a model on '{panel.freq}' data."
            )
        return panel

    def _panel_skipping_bad(self, history: pd.DataFrame, source: str):
        """Validate series one at a time, keeping the good ones; the reason for each bad one is reported."""
        good, skipped = [], {}
        for series_id, group in history.groupby(self.config.data.series_id, sort=False):
            try:
                self._panel(group, source)
            except ForecasterError as exc:
                skipped[str(series_id)] = str(exc)
                continue
            good.append(group)
        if not good:
            raise DataError(f"{source}: every series in the history is bad: {skipped}")
        return self._panel(pd.concat(good), source), skipped

    def _inputs(self, panel) -> dict[str, Any]:
        """The last `lookback` rows of every series, scaled, followed by `horizon` future rows, as one batch."""
        from forecaster.data.features import future_grid
        from forecaster.data.panel import Panel
        from forecaster.data.scaling import PanelScaler
        from forecaster.data.windows import WindowDataset

        scaler = PanelScaler.from_dict(self.scaler_state).add_series(panel)  # unseen series: fit on their history
        scaled = scaler.transform(panel)
        lookback, horizon = self.lookback, self.horizon
        n_series, width = panel.n_series, panel.values.shape[1]
        ends = panel.offsets[1:]  # [S]
        past_rows = ends[:, None] - lookback + np.arange(lookback)  # [S, L]
        future = future_grid(panel.timestamps[ends - 1], panel.freq, horizon)  # [S, H]
        values = np.full((n_series, lookback + horizon, width), np.nan, dtype=np.float32)  # [S, L + H, V]
        values[:, :lookback] = scaled.values[past_rows]
        stamps = np.concatenate([panel.timestamps[past_rows], future], axis=1)  # [S, L + H]
        window_panel = Panel(
            series_ids=panel.series_ids, offsets=np.arange(n_series + 1, dtype=np.int64) * (lookback + horizon),
            timestamps=stamps.reshape(-1), values=values.reshape(-1, width), targets=panel.targets,
            covariates=panel.covariates, future_covariates=panel.future_covariates, freq=panel.freq,
        )
        windows = WindowDataset(window_panel, np.full(n_series, lookback), np.full(n_series, lookback + horizon),
                                lookback, horizon, calendar=self.config.data.calendar)
        return {"windows": windows, "future": future, "scaler": scaler,
                "scaler_rows": scaler.series_index(panel.series_ids)}

    def _forecast(self, inputs: dict[str, Any], batch_size: int) -> np.ndarray:
        """[S, H, T, Q] scaled forecasts, in batches of `batch_size` series."""
        from forecaster.models.losses import point_forecast

        windows = inputs["windows"]
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(windows), batch_size):
                batch = windows.__getitems__(range(start, min(start + batch_size, len(windows))))
                if self.network is not None:
                    pred = self.network(batch["x_past"], batch["x_future"])  # [B, H, T, Q]
                    if self.quantiles is None:
                        pred = point_forecast(pred, self.config.model.loss, self.config.model.quantiles)[..., None]
                else:
                    pred = self.baseline.predict(batch["x_past"], batch["x_future"])[..., None]  # [B, H, T, 1]
                outputs.append(pred.float().numpy())
        return np.concatenate(outputs)

    def _frame(self, panel, future: np.ndarray, forecast: np.ndarray) -> pd.DataFrame:
        """Long frame: one row per series, target and step. forecast: [S, H, T, Q] original units."""
        n_series, horizon, n_targets, _ = forecast.shape
        series = np.repeat(np.array(panel.series_ids, dtype=object), horizon * n_targets)
        stamps = np.repeat(future, n_targets, axis=1).reshape(-1)  # [S * H * T]
        steps = np.tile(np.repeat(np.arange(1, horizon + 1), n_targets), n_series)
        targets = np.tile(np.array(panel.targets, dtype=object), n_series * horizon)
        frame = pd.DataFrame({"series_id": series, "target": targets, "timestamp": stamps, "step": steps})
        if self.quantiles is None:
            frame["forecast"] = forecast[..., 0].reshape(-1)
        else:
            quantiles = self.quantiles
            median = int(np.argmin([abs(q - 0.5) for q in quantiles]))
            frame["forecast"] = forecast[..., median].reshape(-1)
            for index, q in enumerate(quantiles):
                frame[f"forecast_q{round(q * 100):02d}"] = forecast[..., index].reshape(-1)
        return frame


def history_frame(panel, data, ends: dict[int, int], rows: int) -> pd.DataFrame:
    """The `rows` rows before `ends[i]` (rows from the start of series i) of each series in `ends`, as a frame
    in the training file's layout (`data`: the DataConfig), values as float64 and timestamps as text, the way a
    CSV file or a JSON request brings them."""
    frames = []
    for index, end in ends.items():
        start = panel.offsets[index]
        block = slice(start + max(end - rows, 0), start + end)
        frame = pd.DataFrame(panel.values[block].astype(np.float64), columns=panel.columns)
        frame.insert(0, data.timestamp, pd.to_datetime(panel.timestamps[block]).astype(str))
        if data.series_id:
            frame.insert(1, data.series_id, panel.series_ids[index])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def trained_range(panel, train_end: np.ndarray) -> dict[str, Any]:
    """What a model trained on: the first and last training timestamp overall, the last one of each series, and
    the number of rows. `train_end`: [S] rows from each series' start."""
    last = {sid: str(pd.Timestamp(panel.series_timestamps(i)[int(train_end[i]) - 1]))
            for i, sid in enumerate(panel.series_ids)}
    return {"first": str(pd.Timestamp(panel.timestamps.min())), "last": max(last.values(), key=pd.Timestamp),
            "last_by_series": last, "rows": int(np.sum(train_end))}


def _dropped(panel) -> dict[str, str]:
    """Series the missing-value policy dropped (`data.missing: drop_series`)."""
    return {report.series_id: "dropped by data.missing=drop_series" for report in panel.reports if report.dropped}


def _normalised(freq: str) -> str:
    from pandas.tseries.frequencies import to_offset

    return to_offset(freq).freqstr


def _drop_short(panel, lookback: int, source: str, raise_error: bool):
    """Series with fewer than `lookback` rows cannot be forecast; raise, or leave them out and report them."""
    short = np.flatnonzero(panel.lengths < lookback)
    if not len(short):
        return panel, {}
    reasons = {panel.series_ids[i]: f"{panel.lengths[i]} rows, the model needs the last {lookback}" for i in short}
    if raise_error:
        listed = ", ".join(f"'{sid}' ({reason})" for sid, reason in list(reasons.items())[:5])
        raise DataError(f"{source}: series {listed} have too little history to forecast. Give each series at "
                        f"least {lookback} rows, or pass --skip-bad-series to forecast the others.")
    keep = np.flatnonzero(panel.lengths >= lookback)
    return _subset(panel, keep), reasons


def _subset(panel, keep: np.ndarray):
    from forecaster.data.panel import Panel

    rows = np.concatenate([np.arange(panel.offsets[i], panel.offsets[i + 1]) for i in keep])
    lengths = panel.lengths[keep]
    return Panel(
        series_ids=[panel.series_ids[i] for i in keep], offsets=np.concatenate([[0], np.cumsum(lengths)]),
        timestamps=panel.timestamps[rows], values=panel.values[rows], targets=panel.targets,
        covariates=panel.covariates, future_covariates=panel.future_covariates, freq=panel.freq,
        source=panel.source,
    )
