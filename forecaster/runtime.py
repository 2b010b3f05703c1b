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
