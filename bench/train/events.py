"""What a running trial reports while it runs: :class:`TrialEvent`, for live displays and logs.

The training context emits them (throttled); the scheduler forwards them to the driver. Never needed to build the
result, so a lost event costs nothing but a stale progress line.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.spec.base import StrictModel


class TrialEvent(StrictModel):
    """Progress of a running trial, for live displays; never needed to build the result."""

    run_id: str
    kind: Literal["phase", "train", "eval"]
    phase: str | None = Field(None, description="For kind=phase: data, setup, train, eval, downstream, save, done.")
    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    time_left: float | None = None
    loss: float | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None
