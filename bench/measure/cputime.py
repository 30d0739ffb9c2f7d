"""CPU time: what a CPU class's training clock counts (see :mod:`bench.harness.clock`)."""

from __future__ import annotations

import os
import time


def process_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's threads and of its reaped child processes."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system
