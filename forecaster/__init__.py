"""forecaster: recurrent time-series forecasters (RNN, LSTM, GRU) trained with Lightning, tracked in MLflow.

Importing this package is cheap: torch, Lightning and MLflow are imported by the modules that need them.
"""

__version__ = "0.1.0"
