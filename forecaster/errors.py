"""Exceptions a user can cause. The CLI prints their message, never a traceback, and exits non-zero."""


class ForecasterError(Exception):
    """Base class: something the user can fix. The message says what is wrong, where, and what to do."""


class ConfigError(ForecasterError):
    """A config file or override is wrong: unknown key, ill-typed value, missing file."""


class DataError(ForecasterError):
    """An input data file is wrong: missing column, bad timestamps, non-numeric values, gaps..."""


class TrainingError(ForecasterError):
    """Training cannot go on: the loss became NaN or infinite, a checkpoint is missing..."""


class ModelError(ForecasterError):
    """A saved model cannot be found, loaded or applied to the given data."""
