"""When the harness evaluates during training: densely at first, then every ``eval.every`` of training time.

Time-to-target is interpolated between evaluations, so it cannot see inside an interval: with only the regular
cadence, a target reached in the first interval (5 minutes on the GPU workloads) is interpolated from the origin
evaluation at 0 s. ``eval.early`` evaluations at ``every / 2**k`` (k = early, ..., 1) come before the first
regular one: with ``early: 2`` and ``every: 5m``, at 75 s and 150 s, then 5, 10, 15 ... minutes. Every evaluation
is off the clock. The schedule is a pure function of the clock's reading, so a resumed trial, whose context saved
its next evaluation time, continues it exactly.
"""

from __future__ import annotations

import math


def next_evaluation(elapsed: float, every: float, early: int) -> float:
    """The first scheduled evaluation strictly after ``elapsed`` seconds of training (one that is overdue by more
    than an interval is skipped: training that ran past two scheduled times is evaluated once)."""
    for k in range(early, 0, -1):
        at = every / 2**k
        if at > elapsed:
            return at
    return (math.floor(elapsed / every) + 1) * every
