"""`train.threads: auto` on the machine as it is: never more threads than the cores the process may use (its CPU
affinity, checked in a real process pinned to one core), and each of N processes that start together gets its
share."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from forecaster.config import Config
from forecaster.runtime import allowed_cores, busy_cores, choose_threads

PINNED = """
import os
os.sched_setaffinity(0, {{{first}}})
import torch
from forecaster.runtime import choose_threads, set_threads
print(choose_threads()[0], set_threads("auto"), torch.get_num_threads())
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_auto_never_picks_more_threads_than_the_process_may_use():
    first = min(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-c", PINNED.format(first=first)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "1"]  # pinned to one core: one thread, whatever the machine has
    cpus, allowed = allowed_cores()
    assert cpus == set(os.sched_getaffinity(0)) and 1 <= allowed <= len(cpus)
    threads, why = choose_threads()
    assert 1 <= threads <= allowed and f"{allowed} core(s) allowed" in why


def test_processes_started_together_share_the_free_cores():
    _, allowed = allowed_cores()
    for jobs in (1, 2, 3):
        assert 1 <= choose_threads(share=jobs)[0] <= max(1, allowed // jobs)
    assert 0.0 <= busy_cores(allowed_cores()[0], 0.05) <= allowed + 0.01


def test_auto_is_the_default_and_a_number_or_null_still_choose_by_hand():
    assert Config().train.threads == "auto"
    assert Config().with_overrides({"train.threads": 2}).train.threads == 2
    assert Config().with_overrides({"train.threads": None}).train.threads is None

