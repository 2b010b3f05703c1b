"""Known-future covariates at forecast time: a model trained with `data.future_covariates` forecasts from rows after
each series' last target (the one-table convention) or from a `--future` file, per scenario, and refuses a history
whose future is incomplete, naming the series and the timestamps."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import REPO_ROOT, shrink_config

from forecaster.bundle import ModelBundle
from forecaster.config import dump_config
from forecaster.errors import DataError
from forecaster.evaluation import forecast_windows
from forecaster_pipelines import train

pytestmark = pytest.mark.trains  # a small network trained once per module, then compared

H = 12


def load_file(path, series=("north", "south"), rows=400):
    """Hourly load driven by a known-in-advance temperature forecast (`temp_fc`), plus a daily cycle."""
    rng = np.random.default_rng(3)
    frames = []
    for k, name in enumerate(series):
        stamps = pd.date_range("2024-01-01", periods=rows, freq="h")
        temp = rng.normal(0.0, 1.0, rows)
        load = 50 + 10 * k + 5 * temp + 3 * np.sin(2 * np.pi * np.arange(rows) / 24) + rng.normal(0, 0.1, rows)
        frames.append(pd.DataFrame({"site": name, "time": stamps.strftime("%Y-%m-%d %H:%M:%S"),
                                    "load": load.round(4), "temp_fc": temp.round(4)}))
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("future")
    frame = load_file(folder / "load.csv")
    config = shrink_config(None, folder / "state", **{
        "data.path": str(folder / "load.csv"), "data.timestamp": "time", "data.series_id": "site",
        "data.target": "load", "data.future_covariates": ["temp_fc"], "window.lookback": 48, "window.horizon": H,
        "split.val_size": 48, "split.test_size": 48, "model.cell": "gru", "model.hidden_size": 16,
        "train.max_epochs": 20, "train.lr": 0.01, "train.limit_train_batches": None, "tracking.experiment": "future"})
    result = train.run(config)
    return config, frame, ModelBundle.load(result.model_dir), result


def with_future_rows(frame: pd.DataFrame, origin: int) -> pd.DataFrame:
    """Each series' rows before `origin` with their targets, then its next H rows with the target emptied."""
    parts = []
    for _, rows in frame.groupby("site", sort=False):
        past, ahead = rows.iloc[:origin], rows.iloc[origin:origin + H].assign(load=np.nan)
        parts += [past, ahead]
    return pd.concat(parts, ignore_index=True)


def test_the_one_table_forecast_is_the_window_the_model_was_scored_on(trained):
    """The last test window of each series, forecast from a history frame whose future rows carry only the
    temperature forecast, equals what evaluation computed for that window from the training data itself."""
    config, frame, bundle, _ = trained
    datamodule = train.prepare_data(config)
    scored = forecast_windows(bundle.predictor, datamodule.test_dataloader())
    rows = len(frame) // 2
    result = bundle.predict(with_future_rows(frame, rows - H), precision="32")  # evaluation computes in fp32
    for index, site in enumerate(datamodule.panel.series_ids):
        last = np.flatnonzero((scored.series == index)
                              & (scored.origin == datamodule.panel.offsets[index] + rows - H))
        expected = datamodule.scaler.inverse_targets(scored.pred[last], np.array([index]))[0, :, 0]  # [H]
        got = result.frame[result.frame["series_id"] == site].sort_values("step")["forecast"].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert result.frame["timestamp"].min() == pd.Timestamp(frame["time"].iloc[rows - H])


def test_the_forecast_follows_the_future_values_it_is_given(trained):
    _, frame, bundle, _ = trained
    history = with_future_rows(frame, 300)
    warmer = history.copy()
    ahead = warmer["load"].isna()
    warmer.loc[ahead, "temp_fc"] += 2.0  # 2 degrees warmer over the horizon: about +10 load if the model learned 5x
    base, warm = bundle.predict(history).frame, bundle.predict(warmer).frame
    shift = (warm["forecast"] - base["forecast"]).mean()
    assert shift > 2.0, shift


def test_scenarios_give_one_forecast_each_equal_to_that_future_alone(trained):
    _, frame, bundle, _ = trained
    history = with_future_rows(frame, 300)
    past, ahead = history[history["load"].notna()], history[history["load"].isna()]
    hot = ahead.assign(temp_fc=ahead["temp_fc"] + 1.5, scenario="hot")
    both = pd.concat([past, ahead.assign(scenario="base"), hot], ignore_index=True)
    result = bundle.predict(both).frame
    assert list(pd.unique(result["scenario"])) == ["base", "hot"]
    alone = bundle.predict(pd.concat([past, hot.drop(columns="scenario")], ignore_index=True)).frame
    np.testing.assert_allclose(result[result["scenario"] == "hot"]["forecast"].to_numpy(),
                               alone["forecast"].to_numpy(), rtol=1e-6)


def test_a_missing_future_step_names_the_series_and_the_timestamp(trained):
    _, frame, bundle, _ = trained
    history = with_future_rows(frame, 300)
    gap = history.index[(history["site"] == "south") & history["load"].isna()][4]
    lacking = history.drop(index=gap)
    with pytest.raises(DataError, match=r"series 'south': no future values of temp_fc for 2024-01-13 16:00:00.*"
                                        r"--future FILE"):
        bundle.predict(lacking)
    partial = bundle.predict(lacking, skip_bad_series=True)
    assert set(partial.frame["series_id"]) == {"north"} and "south" in partial.skipped
    with pytest.raises(DataError, match="series 'north'"):
        bundle.predict(history[history["load"].notna()])  # no future rows at all


@pytest.mark.slow  # a CLI process
def test_predict_with_a_future_file_equals_the_one_table_forecast(trained, tmp_path):
    config, frame, bundle, result = trained
    history = with_future_rows(frame, 300)
    past, ahead = history[history["load"].notna()], history[history["load"].isna()]
    past.to_csv(tmp_path / "history.csv", index=False)
    ahead.drop(columns="load").to_csv(tmp_path / "future.csv", index=False)
    config_file = tmp_path / "predict.yaml"
    config_file.write_text(dump_config(config))
    done = subprocess.run([sys.executable, "-m", "forecaster_pipelines", "predict", str(config_file), "--model",
                           result.model_dir, "--data", str(tmp_path / "history.csv"), "--future",
                           str(tmp_path / "future.csv"), "--output", str(tmp_path / "out"), "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    written = pd.read_csv(summary["output"])
    np.testing.assert_allclose(written["forecast"].to_numpy(), bundle.predict(history).frame["forecast"].to_numpy(),
                               rtol=1e-5)
    manifest = json.loads((tmp_path / "out").glob("*.manifest.json").__next__().read_text())
    assert manifest["future"]["path"].endswith("future.csv")


def test_a_scenario_file_is_forecast_per_scenario_and_monitor_reads_the_base_one(trained, tmp_path):
    from forecaster_pipelines import predict
    from forecaster_pipelines.monitor import committed_points

    config, frame, _, result = trained
    history = with_future_rows(frame, 300)
    past, ahead = history[history["load"].notna()], history[history["load"].isna()].drop(columns="load")
    past.to_csv(tmp_path / "history.csv", index=False)
    pd.concat([ahead.assign(scenario="base"), ahead.assign(scenario="hot", temp_fc=ahead["temp_fc"] + 2)]
              ).to_csv(tmp_path / "future.csv", index=False)
    done = predict.run(config.with_overrides({
        "predict.model": result.model_dir, "predict.data": str(tmp_path / "history.csv"),
        "predict.future": str(tmp_path / "future.csv"), "predict.output": str(tmp_path / "out")}))
    assert done.manifest["scenarios"] == ["base", "hot"]
    written = pd.read_csv(done.paths.forecast)
    assert written.groupby("scenario").size().to_dict() == {"base": 2 * H, "hot": 2 * H}
    points, files, notes = committed_points(tmp_path / "out")
    assert files == 1 and len(points) == 2 * H
    assert any("scored its scenario 'base' of 2" in note for note in notes)
    base = written[written["scenario"] == "base"].sort_values(["series_id", "step"])["forecast"].to_numpy()
    np.testing.assert_allclose(points.sort_values(["series_id", "step"])["forecast"].to_numpy(), base)


def test_the_epf_day_ahead_file_pair_forecasts_each_market_from_its_known_future(tmp_path):
    """The real thing: prices of four markets trained with their day-ahead load and generation forecasts as
    known-future inputs, then forecast for the 24 hours the data's second file holds those inputs for."""
    from helpers import SHARED_DATA

    from forecaster.data.future import append_future

    history_file, future_file = (SHARED_DATA / "EPF" / f"electricity-short-{kind}-ex-vars.csv"
                                 for kind in ("with", "future"))
    if not history_file.is_file() or not future_file.is_file():
        pytest.skip(f"real data not available: {history_file.parent} (see ../shared/data/README.md)")
    days = [f"day_{day}" for day in range(7)]
    config = shrink_config(None, tmp_path / "state", **{
        "data.path": str(history_file), "data.timestamp": "ds", "data.series_id": "unique_id", "data.target": "y",
        "data.future_covariates": ["Exogenous1", "Exogenous2", *days], "window.lookback": 168,
        "window.horizon": 24, "split.val_size": 168, "split.test_size": 168, "model.cell": "gru",
        "tracking.experiment": "epf"})
    bundle = ModelBundle.load(train.run(config).model_dir)
    history, future = pd.read_csv(history_file), pd.read_csv(future_file)
    result = bundle.predict(append_future(history, future, config.data, str(future_file)))
    assert sorted(result.frame["series_id"].unique()) == ["BE", "DE", "FR", "NP"]
    assert np.isfinite(result.frame["forecast"]).all()
    first = result.frame[result.frame["step"] == 1].set_index("series_id")["timestamp"]
    expected = future.groupby("unique_id")["ds"].min().map(pd.Timestamp)
    assert (first.sort_index() == expected.sort_index()).all()


def test_the_pyfunc_model_reads_the_known_future_from_the_same_frame(trained):
    """What `mlflow models serve` and `mlflow.pyfunc.load_model` users send: one frame, the future rows after each
    series' last target."""
    import mlflow

    from forecaster.tracking import setup_tracking

    config, frame, bundle, result = trained
    setup_tracking(config.tracking)
    history = with_future_rows(frame, 300)
    served = mlflow.pyfunc.load_model(result.model_uri).predict(history)
    np.testing.assert_allclose(served["forecast"].to_numpy(), bundle.predict(history).frame["forecast"].to_numpy(),
                               rtol=1e-6)
