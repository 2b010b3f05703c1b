"""Deprecated: `forecaster.serving` was split by what it holds. Models in MLflow are `forecaster.mlflow_model`
(`log`, `pyfunc_model`, `resolve`); the Spark engine is `forecaster.spark`. This alias goes in a later release."""

import warnings

warnings.warn("forecaster.serving is deprecated: use forecaster.spark and forecaster.mlflow_model",
              DeprecationWarning, stacklevel=2)
