"""forecaster models as MLflow pyfunc models, stored without pickles."""
