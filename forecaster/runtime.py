"""Process start-up tuning for CPU training and inference: allocator thresholds and thread count.

`train.threads: auto` (the default) picks torch's thread count for the machine as it is: the cores this process may
use (its CPU affinity, capped by a cgroup CPU quota) less the cores other work keeps busy, measured from
/proc/stat over a fifth of a second. On two cores beside one busy neighbour that is one thread, which runs an epoch
several times faster than two threads fighting the neighbour for a core.

OpenMP's passive waiting (`OMP_WAIT_POLICY=PASSIVE`, idle threads sleep instead of spinning) is not set: on the
init-sized GRU it made two threads 1.8x slower on a quiet machine (benchmarks/results/contention-wait-policy.md).

glibc's malloc returns large blocks (above M_MMAP_THRESHOLD, 128 KiB at start) to the kernel on every free and
trims the heap above M_TRIM_THRESHOLD. A recurrent network's step allocates and frees the same few-MiB
activations thousands of times per epoch, so with the defaults each one is a fresh mmap + page faults.
Raising both thresholds keeps those blocks in the heap (measured: benchmarks/speed.py).

Call `set_allocator()` once, early, in the process that trains or predicts, before the first large tensor: the
CLI does, and so does `fit_network` for library callers.
Nothing here runs at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import platform
import time
import warnings

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc silently ignores an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit), yet returns success.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def set_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
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


def set_threads(threads: int | str | None, level: int = logging.INFO) -> int | None:
    """`train.threads`: torch's intra-op threads for this process: a number, `auto` (`choose_threads`, logged at
    `level`), or None for torch's own choice (its default, or OMP_NUM_THREADS). Returns the count set (None: left
    to torch)."""
    if threads is None:
        return None
    import torch

    if threads == "auto":
        threads, why = choose_threads()
        log.log(level, "threads: %d (train.threads=auto: %s)", threads, why)
    torch.set_num_threads(int(threads))
    return int(threads)


def trains_on_cpu(accelerator: str) -> bool:
    """Whether Lightning trains on the CPU for `train.accelerator`: `cpu`, or `auto` on a machine with no GPU that
    `auto` would pick (CUDA, or Apple's MPS)."""
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    import torch

    mps = getattr(torch.backends, "mps", None)
    return not (torch.cuda.is_available() or (mps is not None and mps.is_available()))


def choose_threads(share: int = 1, sample_s: float = 0.2) -> tuple[int, str]:
    """(threads, why): the cores this process may use less those other work keeps busy, rounded, divided by
    `share` (processes that start together, as `tune --jobs` workers do); at least 1, never more than allowed."""
    cpus, allowed = allowed_cores()
    busy = busy_cores(cpus, sample_s)
    free = max(allowed - busy, 1.0)
    threads = max(1, min(allowed, round(free)) // share)
    return threads, (f"{allowed} core(s) allowed, {busy:.1f} busy with other work"
                     + (f", shared by {share} processes" if share > 1 else ""))


def allowed_cores() -> tuple[set[int], int]:
    """(the CPUs this process may run on, how many it may use at once): its affinity, capped by a cgroup v2
    CPU quota (`cpu.max`) where one is set."""
    try:
        cpus = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = set(range(os.cpu_count() or 1))
    allowed = len(cpus)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            allowed = min(allowed, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus, allowed


def busy_cores(cpus: set[int], sample_s: float = 0.2) -> float:
    """How many of `cpus` were busy over `sample_s` seconds (summed busy fractions from /proc/stat), this process
    asleep meanwhile; 0.0 where /proc/stat cannot be read."""
    before = _cpu_times(cpus)
    time.sleep(sample_s)
    after = _cpu_times(cpus)
    busy = 0.0
    for cpu, (idle, total) in after.items():
        if cpu in before and total > before[cpu][1]:
            busy += 1.0 - (idle - before[cpu][0]) / (total - before[cpu][1])
    return busy


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """{cpu: (idle + iowait jiffies, total jiffies)} of `cpus`."""
    times = {}
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                    values = [int(field) for field in fields[:8]]  # user nice system idle iowait irq softirq steal
                    times[int(name[3:])] = (values[3] + values[4], sum(values))
    except (OSError, ValueError):
        return {}
    return times


NOISY_LIBRARIES = ("mlflow", "alembic", "pytorch_lightning", "lightning", "lightning_fabric", "urllib3", "matplotlib")


class QuietLibraries(logging.Filter):
    """Below WARNING, only forecaster's own records pass. A handler filter, because Lightning resets its loggers'
    levels when it is imported, which may come after logging is configured."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(NOISY_LIBRARIES)


def worker_logging(quiet: bool) -> None:
    """A spawned worker process's log: INFO lines to stderr that name the process, and `quiet_libraries` when
    `quiet` (its parent's choice: not under `--verbose`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s", datefmt="%H:%M:%S")
    if quiet:
        quiet_libraries()


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
