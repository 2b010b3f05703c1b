"""`PanelScaler`: standardisation per series and per variable, fitted on training rows only.

Follows scikit-learn's estimator contract: `__init__` stores nothing learned, `fit` returns `self`, learned
state ends in `_`. Statistics are StandardScaler's (mean, population standard deviation; a constant variable
gets scale 1). Series unseen in `fit` are an error in `transform` until `add_series` fits them explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from forecaster.data.panel import Panel
from forecaster.errors import DataError, ModelError

_ZERO_SCALE = 10 * np.finfo(np.float64).eps
_CHUNK_ROWS = 4_000_000  # rows a fit gathers at once: 32 MB of float64 a column


class PanelScaler:
    """Per-series, per-variable standard scaler for a `Panel`.

    Learned state: `series_ids_` (S), `columns_` (V names), `n_targets_`, `mean_` and `scale_` float64 [S, V].
    """

    def fit(self, panel: Panel, train_end: np.ndarray | None = None) -> PanelScaler:
        """Fit on the first `train_end[i]` rows of each series `i` (all rows when None)."""
        self.series_ids_: list[str] = []
        self.columns_ = panel.columns
        self.n_targets_ = len(panel.targets)
        self.mean_ = np.empty((0, len(self.columns_)))
        self.scale_ = np.empty((0, len(self.columns_)))
        return self._fit_series(panel, range(panel.n_series), train_end)

    def add_series(self, panel: Panel, train_end: np.ndarray | None = None) -> PanelScaler:
        """Fit the series of `panel` this scaler has not seen (on their first `train_end[i]` rows, or all rows);
        series it knows keep their statistics. Used at prediction time for new series."""
        self._check_columns(panel)
        known = set(self.series_ids_)
        return self._fit_series(panel, [i for i, sid in enumerate(panel.series_ids) if sid not in known], train_end)

    def transform(self, panel: Panel) -> Panel:
        """The panel with values standardised: (x - mean) / scale per series and column."""
        return panel.with_values(self._apply(panel, lambda block, mean, scale: (block - mean) / scale))

    def inverse_transform(self, panel: Panel) -> Panel:
        """The panel with standardised values mapped back to original units."""
        return panel.with_values(self._apply(panel, lambda block, mean, scale: block * scale + mean))

    def inverse_targets(self, y: np.ndarray, series: np.ndarray) -> np.ndarray:
        """Scaled targets back to original units, float64.

        `y` is [B, H, T] (or [B, H, T, Q] for quantiles); `series` [B] indexes `series_ids_` (the datamodule's
        panel order when the scaler was fitted on it; use `series_index` otherwise).
        """
        y = np.asarray(y, dtype=np.float64)
        series = np.asarray(series, dtype=np.int64)
        mean = self.mean_[series, : self.n_targets_][:, None, :]  # [B, 1, T]
        scale = self.scale_[series, : self.n_targets_][:, None, :]
        if y.ndim == 4:  # [B, H, T, Q]: the same statistics for every quantile
            mean, scale = mean[..., None], scale[..., None]
        return y * scale + mean

    def scale_columns(self, x: np.ndarray, series: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """`x` [S, H, k] of the named columns in original units, standardised with series `series` [S]'s
        statistics (indexes of `series_ids_`), float32."""
        where = [self.columns_.index(name) for name in columns]
        mean = self.mean_[np.asarray(series, dtype=np.int64)][:, where][:, None, :]  # [S, 1, k]
        scale = self.scale_[np.asarray(series, dtype=np.int64)][:, where][:, None, :]
        return ((np.asarray(x, dtype=np.float64) - mean) / scale).astype(np.float32)

    def series_index(self, series_ids: Sequence[str]) -> np.ndarray:
        """[len(series_ids)] int64 rows of `mean_`/`scale_`; an unseen id is a `DataError`."""
        position = {sid: i for i, sid in enumerate(self.series_ids_)}
        unseen = [sid for sid in series_ids if sid not in position]
        if unseen:
            listed = ", ".join(f"'{sid}'" for sid in unseen[:5])
            raise DataError(
                f"series {listed} were not seen when the scaler was fitted. Fit them on their own history with "
                f"PanelScaler.add_series(panel), or leave them out."
            )
        return np.array([position[sid] for sid in series_ids], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state, statistics keyed by series id."""
        return {
            "columns": list(self.columns_),
            "n_targets": self.n_targets_,
            "series": {
                sid: {"mean": self.mean_[i].tolist(), "scale": self.scale_[i].tolist()}
                for i, sid in enumerate(self.series_ids_)
            },
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PanelScaler:
        """The scaler `to_dict` described."""
        scaler = cls()
        try:
            scaler.columns_ = list(state["columns"])
            scaler.n_targets_ = int(state["n_targets"])
            scaler.series_ids_ = list(state["series"])
            width = len(scaler.columns_)
            stats = state["series"].values()
            scaler.mean_ = np.array([entry["mean"] for entry in stats], dtype=np.float64).reshape(-1, width)
            scaler.scale_ = np.array([entry["scale"] for entry in stats], dtype=np.float64).reshape(-1, width)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"scaler state is malformed ({exc!r}); the saved model is damaged.") from None
        return scaler

    def _fit_series(self, panel: Panel, indices: Sequence[int], train_end: np.ndarray | None) -> PanelScaler:
        """Fit the series `indices` (on their first `train_end[i]` rows, or all), all at once: a loop per series
        costs more than the arithmetic on a panel of many short series. Chunks of about `_CHUNK_ROWS` rows bound
        the float64 copy."""
        indices = np.asarray(list(indices), dtype=np.int64)
        if not len(indices):
            return self
        lengths = panel.lengths
        ends = lengths[indices] if train_end is None else np.asarray(train_end, dtype=np.int64)[indices]
        if (ends <= 0).any():
            first = panel.series_ids[indices[np.argmax(ends <= 0)]]
            raise DataError(f"series '{first}' has no training rows to fit the scaler on.")
        means, scales = [], []
        chunk_of = np.cumsum(ends) // _CHUNK_ROWS  # [k]: which chunk each series falls in
        for chunk in np.unique(chunk_of):
            picked = chunk_of == chunk
            starts, counts = panel.offsets[indices[picked]], ends[picked]  # [c]
            first_row = np.cumsum(counts) - counts  # [c] where each series starts in the gathered rows
            rows = np.repeat(starts - first_row, counts) + np.arange(counts.sum())  # [r] panel rows, in order
            values = panel.values[rows].astype(np.float64)  # [r, V]
            mean = np.add.reduceat(values, first_row, axis=0) / counts[:, None]  # [c, V]
            centred = values - np.repeat(mean, counts, axis=0)
            scale = np.sqrt(np.add.reduceat(centred * centred, first_row, axis=0) / counts[:, None])
            means.append(mean)
            scales.append(np.where(scale < _ZERO_SCALE, 1.0, scale))
        self.series_ids_ = [*self.series_ids_, *(panel.series_ids[i] for i in indices)]
        self.mean_ = np.vstack([self.mean_, *means])
        self.scale_ = np.vstack([self.scale_, *scales])
        return self

    def _apply(self, panel: Panel, operation) -> np.ndarray:
        """[N, V] float32: `operation(block, mean, scale)` with each row's series statistics, all rows at once."""
        self._check_columns(panel)
        rows = self.series_index(panel.series_ids)
        lengths = panel.lengths
        mean = np.repeat(self.mean_[rows].astype(np.float32), lengths, axis=0)  # [N, V]
        scale = np.repeat(self.scale_[rows].astype(np.float32), lengths, axis=0)
        return operation(panel.values, mean, scale).astype(np.float32, copy=False)  # float32: no float64 copy

    def _check_columns(self, panel: Panel) -> None:
        if panel.columns != self.columns_ or len(panel.targets) != self.n_targets_:
            raise DataError(
                f"the scaler was fitted on columns {self.columns_} ({self.n_targets_} targets) but the data has "
                f"{panel.columns} ({len(panel.targets)} targets). Use the same "
                f"data.target, data.covariates and data.future_covariates as in training."
            )
