"""forecaster models in MLflow: logged as pyfunc models from code, stored without pickles (`log`, `pyfunc_model`),
and found again by URI, alias or folder (`resolve`)."""
