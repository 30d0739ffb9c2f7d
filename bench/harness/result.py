"""The one place a :class:`RunResult` is made: from a trial's plan, its status and what was measured.

The worker finishes the result of every trial that returns; the scheduler finishes one for a trial that returned
none (killed, overrun, interrupted) from what it knows. Both start from the plan's identity fields, so a result
says the same thing about what produced it whoever wrote it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bench.harness.plan import PlannedTrial
from bench.spec.result import RunResult, Timing, TrialStatus


def finish_result(
    plan: PlannedTrial,
    status: TrialStatus,
    reason: str | None,
    *,
    started_at: datetime,
    timing: Timing,
    device: str,
    world_size: int,
    **measured: Any,
) -> RunResult:
    """The result of ``plan``: its identity, ``status`` with its ``reason``, and the ``measured`` fields."""
    return RunResult(
        **plan.base,
        status=status,
        reason=reason,
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
        timing=timing,
        device=device,
        world_size=world_size,
        **measured,
    )


def planned_device(plan: PlannedTrial, gpus: float) -> str:
    """The device a trial was to train on, as the driver knows it (the worker reports the one it used)."""
    return plan.request.device or ("cuda:0" if gpus else "cpu")
