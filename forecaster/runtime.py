"""Process start-up tuning for CPU training and inference: allocator thresholds and thread count.

glibc's malloc returns large blocks (above M_MMAP_THRESHOLD, 128 KiB at start) to the kernel on every free and
trims the heap above M_TRIM_THRESHOLD. A recurrent network's step allocates and frees the same few-MiB
activations thousands of times per epoch, so with the defaults each one is a fresh mmap + page faults.
Raising both thresholds keeps those blocks in the heap (measured: benchmarks/speed.py).

Call `tune_allocator()` once, early, in the process that trains or predicts, before the first large tensor: the
CLI does, and so does `fit_network` for library callers.
Nothing here runs at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import warnings

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc silently ignores an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit), yet returns success.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds (bytes); True when applied, False elsewhere (musl, macOS,
    Windows) or when the user already set MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ themselves."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        applied = (libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
                   and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1)
    except (OSError, AttributeError):
        return False
    if not applied:
        log.debug("mallopt refused the thresholds %d / %d", mmap_threshold, trim_threshold)
    return applied


def tune_threads(threads: int | None) -> None:
    """`train.threads`: torch's intra-op threads for this process; None leaves torch's choice (its default, or
    OMP_NUM_THREADS). On a busy small machine, one thread is often several times faster than two."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


NOISY_LIBRARIES = ("mlflow", "alembic", "pytorch_lightning", "lightning", "lightning_fabric", "urllib3", "matplotlib")


class QuietLibraries(logging.Filter):
    """Below WARNING, only forecaster's own records pass. A handler filter, because Lightning resets its loggers'
    levels when it is imported, which may come after logging is configured."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(NOISY_LIBRARIES)


def quiet_libraries() -> None:
    """Keep the libraries' INFO lines (Lightning's accelerator report and tips, MLflow's migrations) off every
    handler of the root logger, and their deprecation warnings off the terminal: the CLI's process and each `tune`
    worker process call this (unless `--verbose`)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, QuietLibraries) for existing in handler.filters):
            handler.addFilter(QuietLibraries())
    warnings.filterwarnings("ignore", module="(mlflow|pytorch_lightning|lightning_fabric|lightning)")
    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow's own handler: no start-up INFO lines
