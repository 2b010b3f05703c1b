"""The trained model: one object, from the training that makes it (`training.fit.fit_*` return a `ModelBundle`)
to the files it is kept in and the forecasts it makes.

It carries the network or baseline, the scaler's statistics, the data's widths (`dims`), the interval
calibration, what it was trained on, and, while it is in memory after a training, how that training went
(`training`). It says which of its outputs is the point forecast and which are quantiles, and hands out the
`Predictor` that calls it (`forecaster.predictor`).

On disk, without pickles: `bundle.json` (config, scaler, schema, baseline state, trained range, interval
calibration) and `weights.pt` (the network's state dict, loaded with `weights_only=True`). A bundle saved before
intervals existed has no `calibration`: it loads, and forecasts without interval columns.

`forecaster.forecasting` makes its forecasts from a history frame (`bundle.predict`); `history_frame` gives that
input: rows of a panel in the training file's own layout.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from forecaster.config import BASELINES, Config, build_config
from forecaster.errors import ModelError
from forecaster.predictor import Predictor, output_point_index, output_quantiles

if TYPE_CHECKING:
    from forecaster.calibration import Calibration
    from forecaster.forecasting import Forecast

FORMAT_VERSION = 1


@dataclass
class TrainingRecord:
    """How a training went: kept in memory with the model it made, logged with its run, not saved in the bundle."""

    n_params: int
    train_seconds: float
    best_epoch: int | None = None
    best_val_loss: float | None = None
    epochs_run: int = 0
    trainer_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelBundle:
    config: Config
    kind: str  # "network", a baseline name (statistical models included) or "ensemble"
    scaler_state: dict[str, Any]
    dims: dict[str, int]  # n_targets, n_past_features, n_future_features
    network: torch.nn.Module | None = None
    baseline: Any = None
    freq: str = ""
    trained_range: dict[str, Any] | None = None  # rows the model learned from: see `trained_range`
    calibration: Calibration | None = None  # prediction intervals; None: no interval columns
    # A few scaled input windows of its own data (x_past, x_future) for the precision check at load; None in
    # bundles saved before it, and for baselines.
    examples: dict[str, torch.Tensor] | None = None
    precision_choices: dict = field(default_factory=dict, repr=False, compare=False)  # inference.bundle_precision
    training: TrainingRecord | None = field(default=None, repr=False, compare=False)  # None when loaded from files

    @property
    def lookback(self) -> int:
        return self.config.window.lookback

    @property
    def horizon(self) -> int:
        return self.config.window.horizon

    @property
    def quantiles(self) -> list[float] | None:
        """The quantiles its forecasts come in; None for point forecasts."""
        return output_quantiles(self.config.model, self.network is not None)

    @property
    def point_index(self) -> int:
        """Which of its outputs is the point forecast: the median of a quantile network, else the only one."""
        return output_point_index(self.config.model, self.network is not None)

    @property
    def predictor(self) -> Predictor:
        """The call that forecasts with it: scaled windows in, `[B, H, T, Q]` out, in float32."""
        return Predictor(self.config.model, network=self.network, baseline=self.baseline)

    @classmethod
    def trained(cls, config: Config, datamodule, kind: str, *, network: torch.nn.Module | None = None,
                baseline: Any = None, training: TrainingRecord | None = None) -> ModelBundle:
        """The model a training made from `datamodule` (set up): a network (`kind` "network") or a baseline,
        with the scaler, widths and trained range of that data."""
        return cls(
            config=config,
            kind=kind,
            scaler_state=datamodule.scaler.to_dict(),
            dims=datamodule.dims,
            network=network,
            baseline=baseline,
            freq=datamodule.panel.freq,
            trained_range=trained_range(datamodule.panel, datamodule.borders.train_end),
            examples=example_windows(datamodule) if network is not None else None,
            training=training,
        )

    def save(self, path: str | Path) -> None:
        """Write the bundle to the folder `path` whole or not at all: it is written beside, then renamed into place
        (`outputs.replace_folder`), so a process killed while saving leaves the previous bundle, if any."""
        from forecaster.outputs import replace_folder

        folder = Path(path)
        staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            self._write(staging)
            replace_folder(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _write(self, folder: Path) -> None:
        document = {
            "format_version": FORMAT_VERSION, "kind": self.kind, "config": _model_config(self.config),
            "scaler": self.scaler_state, "dims": self.dims, "freq": self.freq,
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
            "trained_range": self.trained_range,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
        }
        (folder / "bundle.json").write_text(json.dumps(document, indent=1))
        for index, member in enumerate(getattr(self.baseline, "members", ())):  # an ensemble's own bundles
            member.save(folder / "members" / f"{index:02d}")
        if self.network is not None:
            torch.save(self.network.state_dict(), folder / "weights.pt")
        if self.examples is not None:
            torch.save(self.examples, folder / "examples.pt")

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
        if document.get("calibration") is not None:
            from forecaster.calibration import Calibration

            bundle.calibration = Calibration.from_dict(document["calibration"])
        if bundle.kind == "ensemble":
            from forecaster.models.ensemble import Ensemble

            state = document["baseline"]
            members = [cls.load(folder / "members" / f"{index:02d}") for index in range(len(state["members"]))]
            bundle.baseline = Ensemble.from_dict(state, members)
        elif bundle.kind in BASELINES:
            from forecaster.models.catalog import baseline_from_dict

            bundle.baseline = baseline_from_dict(document["baseline"])
        else:
            from forecaster.models.network import network_from_dims

            bundle.network = network_from_dims(config, bundle.dims)
            state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
            bundle.network.load_state_dict(state)
            bundle.network.eval()
            if (folder / "examples.pt").is_file():
                bundle.examples = torch.load(folder / "examples.pt", map_location="cpu", weights_only=True)
        return bundle

    def example_history(self, datamodule, n_series: int = 2) -> pd.DataFrame:
        """The last `lookback` rows of a few training series, in the training file's layout: an input example
        (for a model with future covariates, the horizon's rows follow with their targets empty)."""
        panel = datamodule.panel
        ahead = self.horizon if self.config.data.future_covariates else 0
        ends = {index: int(panel.lengths[index]) - ahead for index in range(min(n_series, panel.n_series))}
        return history_frame(panel, self.config.data, ends, self.lookback, ahead)

    def predict(self, history: pd.DataFrame, skip_bad_series: bool = False, source: str = "<history>",
                **inference: Any) -> Forecast:
        """`forecaster.forecasting.forecast(self, history, ...)`, for callers that hold a bundle; `inference`:
        its batch_size, memory_mb, precision and tolerance."""
        from forecaster.forecasting import forecast

        return forecast(self, history, skip_bad_series=skip_bad_series, source=source, **inference)


def example_windows(datamodule, count: int | None = None) -> dict[str, torch.Tensor]:
    """`count` windows spread evenly over the validation split (the training split when there is none), scaled
    as the network reads them: the model's own examples for the precision check."""
    from forecaster.inference import EXAMPLE_WINDOWS

    dataset = datamodule.val_dataset if len(datamodule.val_dataset) else datamodule.train_dataset
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(count or EXAMPLE_WINDOWS, len(dataset))).astype(int))
    batch = dataset.__getitems__(picks)
    return {"x_past": batch["x_past"].clone(), "x_future": batch["x_future"].clone()}


def history_frame(panel, data, ends: dict[int, int], rows: int, ahead: int = 0) -> pd.DataFrame:
    """The `rows` rows before `ends[i]` (rows from the start of series i) of each series in `ends`, as a frame
    in the training file's layout (`data`: the DataConfig), values as float64 and timestamps as text, the way a
    CSV file or a JSON request brings them; then `ahead` rows after `ends[i]` with the targets empty (the known
    future a model with future covariates reads)."""
    from forecaster.data.io import key_parts

    frames = []
    for index, end in ends.items():
        start = panel.offsets[index]
        block = slice(start + max(end - rows, 0), start + end + ahead)
        frame = pd.DataFrame(panel.values[block].astype(np.float64), columns=panel.columns)
        frame.loc[frame.index[len(frame) - ahead:], panel.targets] = np.nan
        frame.insert(0, data.timestamp, pd.to_datetime(panel.timestamps[block]).astype(str))
        parts = key_parts(panel.series_ids[index], data) if data.key_columns else []  # the id, or its parts
        for position, (name, part) in enumerate(zip(data.key_columns, parts, strict=True), start=1):
            frame.insert(position, name, part)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def trained_range(panel, train_end: np.ndarray) -> dict[str, Any]:
    """What a model trained on: the first and last training timestamp overall, the last one of each series, and
    the number of rows. `train_end`: [S] rows from each series' start."""
    last = {sid: str(pd.Timestamp(panel.series_timestamps(i)[int(train_end[i]) - 1]))
            for i, sid in enumerate(panel.series_ids)}
    return {"first": str(pd.Timestamp(panel.timestamps.min())), "last": max(last.values(), key=pd.Timestamp),
            "last_by_series": last, "rows": int(np.sum(train_end))}


def _model_config(config: Config) -> dict[str, Any]:
    """The config a bundle keeps: everything but where it was tracked and tuned (`tracking`, `tune.storage`),
    which may hold credentials and says nothing about the model."""
    document = config.to_dict()
    document.pop("tracking", None)
    document.get("tune", {}).pop("storage", None)
    return document
