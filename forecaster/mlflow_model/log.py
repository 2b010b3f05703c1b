"""Log a bundle as an MLflow pyfunc model (models-from-code) into the active run."""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path

import pandas as pd

import forecaster

RUNTIME_PACKAGES = ("torch", "numpy", "pandas", "pyyaml", "pydantic", "pyarrow", "statsforecast")


def pip_requirements() -> list[str]:
    """Pinned to what is installed, without local labels such as `+cpu` that an index cannot resolve."""
    requirements = []
    for package in ("mlflow", *RUNTIME_PACKAGES):
        version = metadata.version(package).split("+")[0]
        requirements.append(f"{package}=={version}")
    return requirements


def signature_frames(example: pd.DataFrame, forecast: pd.DataFrame):
    """Signature from float64 frames (a float32 signature would refuse ordinary float64 input), timestamps as
    text: that is how they arrive from a CSV file or a JSON request."""
    from mlflow.models import infer_signature

    inputs = example.copy()
    for column in inputs.columns:
        if pd.api.types.is_float_dtype(inputs[column]) or pd.api.types.is_integer_dtype(inputs[column]):
            inputs[column] = inputs[column].astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(inputs[column]):
            inputs[column] = inputs[column].astype(str)
    outputs = forecast.copy()
    for column in outputs.columns:
        if pd.api.types.is_datetime64_any_dtype(outputs[column]):
            outputs[column] = outputs[column].astype(str)
    return infer_signature(inputs, outputs)


def log_bundle(bundle, example: pd.DataFrame, name: str = "model") -> str:
    """Log `bundle` (a `ModelBundle`) as a pyfunc model into the active run; return its model URI
    (`models:/m-...`). `example` is a history frame in the training layout; its forecast fixes the signature."""
    import mlflow

    from forecaster.forecasting import forecast as forecast_history

    forecast = forecast_history(bundle, example).frame
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = Path(tmp) / "bundle"
        bundle.save(bundle_dir)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"bundle": str(bundle_dir)},
            code_paths=[str(Path(forecaster.__file__).parent)],
            signature=signature_frames(example, forecast),
            pip_requirements=pip_requirements(),
        )
    return info.model_uri
