"""Series ids as users' files hold them, hostile ones included (numbers with leading zeros, path parts, 300 bytes,
a newline), through `forecaster train` and `forecaster predict` as real processes: both succeed, every id comes
back exactly as written, and every file lands inside the folders it belongs in."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, shrink_config

from forecaster.config import dump_config

pytestmark = pytest.mark.slow  # two CLI processes that import torch and MLflow

# Training plots the first four series in sorted order: "../../escape", the two 300-byte ids, and "007".
IDS = ["007", "7", "1e3", "../../escape", "0" * 300, "0" * 299 + "1", "north\nsouth", 'quote"d, comma']


def forecaster(*args: str) -> dict:
    process = run_cli(*args, "--json")
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_hostile_ids_survive_train_and_predict_from_the_command_line(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    stamps = pd.date_range("2024-01-01", periods=120, freq="h")
    rng = np.random.default_rng(0)
    frame = pd.concat([pd.DataFrame({"timestamp": stamps, "site": site,
                                     "load": 10 * i + np.sin(np.arange(120) / 4) + rng.normal(0, 0.1, 120)})
                       for i, site in enumerate(IDS)], ignore_index=True)
    frame.to_csv(work / "load.csv", index=False)  # the csv module quotes the newline, quote and comma
    config = shrink_config(None, work / "state", **{
        "data.path": str(work / "load.csv"), "data.series_id": "site", "data.target": "load",
        "window.lookback": 24, "window.horizon": 6, "predict.output": str(work / "out")})
    (work / "load.yaml").write_text(dump_config(config))

    trained = forecaster("train", str(work / "load.yaml"))
    done = forecaster("predict", str(work / "load.yaml"), "--model", trained["model_uri"], "--data",
                      str(work / "load.csv"))

    out = pd.read_csv(done["output"], dtype={"series_id": str}, keep_default_na=False)
    assert sorted(set(out["series_id"])) == sorted(IDS)  # 007 and 7 stay two series; nothing is rewritten
    assert (out.groupby("series_id").size() == 6).all()
    escaped = [path for path in tmp_path.rglob("*") if work not in path.parents and path != work]
    assert escaped == []  # "../../escape" named no file outside the working folder
    plots = list((work / "state").rglob("plots/forecast_*.png"))
    assert len(plots) == 4 and len({path.name for path in plots}) == 4  # the two 300-byte ids: two names
    assert all(len(path.name) < 100 and path.parent.name == "plots" for path in plots)
