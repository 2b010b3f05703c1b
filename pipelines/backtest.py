"""Rolling-origin backtest for selection: refit every model on each fold and score it on that fold's scored range.

Every fold ends before the test split, which stays for reporting only. The last fold scores the validation
rows, having trained on the training rows less their last `val rows` (its early-stopping rows); fold k moves
those borders back by `(folds - 1 - k) * step` rows (`step` defaults to the validation length), so no fold sees
rows after its own scored range, and each fold's scaler is fitted on that fold's training rows only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from forecaster.config import Config
from forecaster.data.splits import rolling_origin_folds

log = logging.getLogger(__name__)


@dataclass
class BacktestResult:
    folds: pd.DataFrame  # one row per (model, fold): the fold's test metrics
    summary: pd.DataFrame  # one row per model: `backtest_<metric>` means over folds


def backtest_models(config: Config, models: list[tuple[str, str, Config]], datamodule) -> BacktestResult:
    import mlflow

    from forecaster.evaluation import forecast_windows, score
    from forecaster.tracking import state_dir
    from forecaster.training.fit import fit_model

    borders = rolling_origin_folds(
        datamodule.borders.before_test(), datamodule.panel, config.compare.backtest_folds, config.compare.backtest_step,
        config.window.lookback, config.window.horizon,
    )
    rows = []
    for fold_index, fold_borders in enumerate(borders, start=1):
        fold = datamodule.for_borders(fold_borders)
        for name, kind, variant in models:
            log.info("backtest fold %d/%d: %s", fold_index, len(borders), name)
            checkpoints = state_dir(config.tracking) / "checkpoints" / "backtest" / name / str(fold_index)
            model = fit_model(variant, fold, kind, checkpoints, label=f"{name} fold {fold_index}")
            metrics = score(forecast_windows(model.predictor, fold.test_dataloader()), fold)
            rows.append({"model": name, "fold": fold_index, **metrics})
    folds = pd.DataFrame(rows)
    summary = folds.drop(columns="fold").groupby("model", sort=False).mean().add_prefix("backtest_").reset_index()
    mlflow.log_table(folds, "backtest_folds.json")
    return BacktestResult(folds=folds, summary=summary)
