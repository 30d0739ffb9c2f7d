"""Time-to-target: the training time at which the validation metric first reaches the workload's target.

Evaluations are discrete, so the crossing is interpolated linearly in (training seconds, metric) between the last
evaluation that missed the target and the first that reached it. The harness evaluates once before training
(at 0 s), so a crossing always has a predecessor. This is the same method as MLPerf's "time to quality", with
interpolation instead of rounding up to the next evaluation, which would reward evaluating more often.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.results.schema import EvalPoint
from bench.spec.workload import TargetSpec


def metric_value(point: EvalPoint, target: TargetSpec) -> float:
    return point.val_loss if target.metric == "val_loss" else point.val_bpb


def time_to_target(curve: Sequence[EvalPoint], target: TargetSpec) -> float | None:
    """Interpolated training seconds at which ``target`` is first reached, or None if it never is."""
    previous: EvalPoint | None = None
    for point in curve:
        value = metric_value(point, target)
        if target.reached(value):
            if previous is None:
                return point.train_seconds
            before = metric_value(previous, target)
            if before == value:
                return point.train_seconds
            fraction = (before - target.value) / (before - value)
            return previous.train_seconds + fraction * (point.train_seconds - previous.train_seconds)
        previous = point
    return None
