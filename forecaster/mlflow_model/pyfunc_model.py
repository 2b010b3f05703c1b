"""The MLflow pyfunc model, logged "from code": MLflow stores this file, not a pickled object.

The model's only artifact is a forecaster bundle folder (weights as a state dict, scaler and config as JSON),
so it loads with `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false` and survives upgrades of forecaster's classes.
`predict(history)` takes a frame in the training file's own layout and returns the forecast frame.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class ForecasterModel(PythonModel):
    def load_context(self, context):
        from forecaster.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    # A DataFrame hint tells MLflow the input is a frame; the signature (logged explicitly) does the validating.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from forecaster.forecasting import forecast

        return forecast(self.bundle, model_input).frame


mlflow.models.set_model(ForecasterModel())
