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


class Interrupted(BaseException):
    """SIGTERM or SIGINT asked the command to stop. Raised where the process is when the signal arrives (as
    KeyboardInterrupt is, and for the same reason a BaseException: `except Exception` must not swallow it); each
    layer it passes adds what it kept to `kept`, and the CLI prints that and exits 128 + the signal's number."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.kept: list[str] = []
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
