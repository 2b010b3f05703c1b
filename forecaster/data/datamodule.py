"""`ForecastDataModule`: panel -> borders -> scaler fitted on training rows -> train/val/test `WindowDataset`s."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from forecaster.config import Config
from forecaster.data.frequency import season_length
from forecaster.data.panel import Panel, load_panel, without_look_ahead
from forecaster.data.scaling import PanelScaler
from forecaster.data.splits import Borders, compute_borders
from forecaster.data.windows import ShuffledWindows, WindowDataset, collate


EVAL_BATCH_SIZE = 1024  # benchmarks/speed.py: 1.16x the prediction rate of batch 64 on a 2-core CPU


class ForecastDataModule(pl.LightningDataModule):
    """Data for one training run. `panel` defaults to `config.data.path`; `borders` default to `config.split`.

    After `setup()`: `panel`, `borders`, `scaler` (fitted on the training rows of each series), `n_targets`,
    `n_past_features` (width of `x_past`), `n_future_features` (width of `x_future`), `season_length` and
    `train_dataset` / `val_dataset` / `test_dataset`.
    """

    def __init__(self, config: Config, panel: Panel | None = None, borders: Borders | None = None) -> None:
        super().__init__()
        self.config = config
        self.panel = panel
        self.borders = borders
        self.scaler: PanelScaler | None = None
        self.n_targets: int | None = None
        self.n_past_features: int | None = None
        self.n_future_features: int | None = None
        self.season_length: int | None = None
        self.train_dataset: WindowDataset | None = None
        self.val_dataset: WindowDataset | None = None
        self.test_dataset: WindowDataset | None = None
        self._evaluation = None  # `evaluation_data()`, made once

    def setup(self, stage: str | None = None) -> None:
        """Build everything once; later calls (Lightning makes one per stage) change nothing."""
        if self.train_dataset is not None:
            return
        config = self.config
        panel = self.panel if self.panel is not None else load_panel(config.data)
        borders = self.borders
        if borders is None:
            borders = compute_borders(panel, config.split, config.window.lookback, config.window.horizon)
        panel = without_look_ahead(panel, (borders.train_end, borders.val_end, borders.test_end))
        scaler = PanelScaler().fit(panel, borders.train_end)
        scaled = scaler.transform(panel)
        datasets = {
            split: WindowDataset.from_borders(scaled, borders, split, config.window, config.data.calendar)
            for split in ("train", "val", "test")
        }
        self.panel, self.borders, self.scaler = panel, borders, scaler
        self.n_targets = len(panel.targets)
        self.n_past_features = datasets["train"].n_past_features
        self.n_future_features = datasets["train"].n_future_features
        self.season_length = config.model.season_length or season_length(panel.freq)
        self.train_dataset, self.val_dataset, self.test_dataset = datasets["train"], datasets["val"], datasets["test"]

    def evaluation_data(self):
        """What evaluation reads of this data (`forecaster.evaluation.EvaluationData`), made once."""
        from forecaster.evaluation import EvaluationData

        self.setup()
        if self._evaluation is None:
            self._evaluation = EvaluationData(
                panel=self.panel, train_end=self.borders.train_end, scaler=self.scaler,
                season_length=self.season_length, windows={"val": self.val_dataloader, "test": self.test_dataloader})
        return self._evaluation

    @property
    def dims(self) -> dict[str, int]:
        """The data's widths, which a network is built for (`models.network.network_from_dims`)."""
        return {"n_targets": self.n_targets, "n_past_features": self.n_past_features,
                "n_future_features": self.n_future_features}

    def training_targets(self) -> list:
        """Per series, its training rows of the target columns on the scaled axis: [n_i, T] float32 each."""
        self.setup()
        scaled = self.scaler.transform(self.panel)
        return [scaled.values[start : start + int(end), : self.n_targets]
                for start, end in zip(self.panel.offsets[:-1], self.borders.train_end, strict=True)]

    def for_borders(self, borders: Borders) -> ForecastDataModule:
        """A set-up data module on the same panel with other borders (a rolling-origin fold); its scaler is
        fitted on that fold's training rows, so no later row leaks into it."""
        self.setup()
        fold = ForecastDataModule(self.config, self.panel, borders)
        fold.setup()
        return fold

    def for_every_row(self) -> ForecastDataModule:
        """A set-up data module whose training split is every row of every series (no validation, no test): what
        a refit trains on."""
        lengths = self.panel.lengths
        return self.for_borders(Borders(lengths, lengths, lengths))

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Batches of `split` ('train', 'val' or 'test'): `config.train.batch_size` for training, at least
        `EVAL_BATCH_SIZE` windows for evaluation (no gradients to hold; fewer, larger forward passes)."""
        self.setup()
        dataset = {"train": self.train_dataset, "val": self.val_dataset, "test": self.test_dataset}[split]
        workers = self.config.train.num_workers
        batch_size = self.config.train.batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size if split == "train" else max(batch_size, EVAL_BATCH_SIZE),
            sampler=ShuffledWindows(dataset) if shuffle else None,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=collate,
        )

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """Batches are flat dicts of tensors, already on the CPU when training there: Lightning's generic walk
        over the collection would cost a share of a small network's step for nothing."""
        if device.type == "cpu":
            return batch
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")
