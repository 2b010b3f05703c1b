"""A real MLflow store with a trained, registered model, for the predict and schedule tests.

`train_and_register` trains through `forecaster_pipelines.train.run` on the demo data (a baseline by default: well under a
second of fitting), registers the model and points the alias at it, as `forecaster compare` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import shrink_config

from forecaster.config import Config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CSV = REPO_ROOT / "data" / "demo.csv"
NAME, ALIAS = "demo", "champion"


@dataclass
class Store:
    config: Config  # tracking in the store's state dir; predict.model = the alias; predict.data = the demo file
    model_uri: str  # the LoggedModel, models:/m-...
    run_id: str
    version: str


def demo_config(state_dir: Path, overrides: dict[str, Any] | None = None) -> Config:
    return shrink_config("demo-lstm.yaml", state_dir, **{
        "tracking.experiment": "test", "registry.name": NAME, "registry.alias": ALIAS, "train.max_epochs": 1,
        "train.limit_train_batches": 2, "model.hidden_size": 32, "predict.model": f"models:/{NAME}@{ALIAS}",
        "predict.data": str(DEMO_CSV), **(overrides or {}),
    })


def train_and_register(state_dir: Path, kind: str = "naive", overrides: dict[str, Any] | None = None) -> Store:
    import mlflow

    from forecaster_pipelines import train

    config = demo_config(state_dir, overrides)
    result = train.run(config, kind=kind)
    version = str(mlflow.register_model(result.model_uri, NAME).version)
    mlflow.MlflowClient().set_registered_model_alias(NAME, ALIAS, version)
    return Store(config=config, model_uri=result.model_uri, run_id=result.run_id, version=version)
