"""Benchmark: are the prediction intervals honest? Test coverage of the 80 % and 95 % bands, their width, the
pinball loss and MSIS (M4's mean scaled interval score, alpha = 0.05), for each model under the same protocol.

Every model is fitted on the training rows, its intervals calibrated on the validation windows only
(`forecaster.calibration.fit_calibration`, as `forecaster train` does), and then scored once on the test split.
Target: coverage within 3 points of nominal on test.

- `ett`: ETTh1 OT, lookback 96, the standard borders (benchmarks/ett.py), configs/etth1-ot.yaml's network, every
  test window (stride 1). MSIS is scaled by the training rows' seasonal-naive MAE (season 24).
- `m4`: M4 Weekly, one global model, horizon 13, benchmarks/m4.py's NETWORK and protocol (validation: the last 13
  training weeks). MSIS as M4 computes it: scaled per series by the naive (m = 1) MAE of the whole training row.

    python benchmarks/intervals.py ett --horizons 24 96 --models seasonal_naive naive gru-segment --threads 1
    python benchmarks/intervals.py m4 --models seasonal_naive naive gru-segment --threads 1
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Stopwatch, fit_and_forecast, set_threads, shared_data, write_results  # noqa: E402

LEVELS = [80, 95]
COLUMNS = ["data", "horizon", "model", "coverage_80", "coverage_95", "width_80", "width_95", "pinball", "msis",
           "mse", "target_met", "windows", "wall_s"]


def interval_row(model: str, config, datamodule, msis_scale=None) -> dict:
    """Fit, calibrate on validation, score on test. `msis_scale(forecasts) -> [N, T]` replaces the MSIS scale."""
    from forecaster.calibration import fit_calibration
    from forecaster.evaluation import score
    from forecaster.metrics import msis

    with Stopwatch() as wall:
        fitted, forecasts, _ = fit_and_forecast(model, config, datamodule)
    predictor, val, test = fitted.predictor, forecasts["val"], forecasts["test"]
    calibration = fit_calibration(val.outputs, val.actual, predictor.quantiles, predictor.point_index, LEVELS)
    metrics = score(test, datamodule, calibration)
    if msis_scale is not None:
        inverse = datamodule.scaler.inverse_targets
        lower, upper = (inverse(bound, test.series) for bound in test.bands(calibration, [95])[95])
        metrics["msis"] = msis(lower, upper, inverse(test.actual, test.series), msis_scale(test))
    met = all(abs(metrics[f"coverage_{level}"] - level / 100) <= 0.03 for level in LEVELS)
    return {"model": model, **{key: round(metrics[key], 4) for key in COLUMNS if key in metrics},
            "target_met": "yes" if met else "no", "windows": len(test.pred), "wall_s": round(wall.seconds, 1)}


def ett_rows(horizons: list[int], models: list[str], overrides: dict) -> list[dict]:
    from forecaster.config import load_config
    from pipelines.train import prepare_data

    data = shared_data("ETT-small/ETTh1.csv")
    rows = []
    for horizon in horizons:
        config = load_config(ROOT / "configs" / "etth1-ot.yaml", overrides={
            "data.path": str(data), "train.progress": False, "window.horizon": horizon, **overrides})
        datamodule = prepare_data(config)
        for model in models:
            rows.append({"data": "ETTh1 OT", "horizon": horizon, **interval_row(model, config, datamodule)})
            print(rows[-1], flush=True)
    return rows


def m4_rows(models: list[str], overrides: dict) -> list[dict]:
    from m4 import HORIZON, load_weekly, weekly_config, weekly_panel

    from forecaster.data.datamodule import ForecastDataModule
    from forecaster.metrics import naive_scale

    ids, train, actual = load_weekly()
    config = weekly_config(52, overrides)
    panel, borders = weekly_panel(ids, train, actual)
    datamodule = ForecastDataModule(config, panel, borders)
    datamodule.setup()
    whole_row = np.stack([naive_scale(row[:, None], 1) for row in train])  # [S, 1]: M4's scale, m = 1
    rows = []
    for model in models:
        row = interval_row(model, config, datamodule, msis_scale=lambda test: whole_row[test.series])
        rows.append({"data": "M4 Weekly", "horizon": HORIZON, **row})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=["ett", "m4"])
    parser.add_argument("--horizons", type=int, nargs="+", default=[24, 96], help="ett only")
    parser.add_argument("--models", nargs="+", default=["seasonal_naive", "naive", "gru-segment"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--name", default=None, help="results file name (default intervals-DATA)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    threads = set_threads(args.threads)
    from forecaster.config import parse_overrides
    from forecaster.runtime import set_allocator

    set_allocator()
    overrides = parse_overrides(args.set)
    rows = ett_rows(args.horizons, args.models, overrides) if args.data == "ett" else m4_rows(args.models, overrides)
    command = "python benchmarks/intervals.py " + " ".join(sys.argv[1:])
    notes = ("Intervals calibrated on the validation windows only (split conformal per step on residuals scaled by "
             "each series' training std; CQR for quantile networks); target: test coverage within 3 points of "
             "nominal. Widths in original units; pinball on the standardised scale.")
    print(write_results(args.name or f"intervals-{args.data}", rows, COLUMNS, command,
                        {"overrides": overrides, "threads": threads, "levels": LEVELS}, notes))


if __name__ == "__main__":
    main()
