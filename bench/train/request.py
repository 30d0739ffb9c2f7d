"""What a scheduler sends to a worker (a :class:`TrialRequest`) and what a running trial reports back (events).

A request carries the resolved workload itself rather than a file name, so that studies and sweeps can run
derived workloads (another data or time budget) through the same path, and a worker on another machine needs
no copy of the ``workloads/`` folder.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bench.spec.base import StrictModel
from bench.spec.workload import WorkloadSpec


class TrialRequest(StrictModel):
    workload: WorkloadSpec
    workload_dir: str = Field(description="Folder that relative paths in the workload are resolved against.")
    submission_dir: str
    seed: int = Field(ge=0)
    overrides: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters replacing the manifest's.")
    run_id: str
    device: str | None = Field(None, description="torch device; None picks cuda:0 when available, else cpu.")
    cache_dir: str | None = Field(None, description="Data cache; None uses $BENCH_CACHE or the user cache dir.")
    tuning: dict[str, Any] | None = Field(None, description="The sweep this trial belongs to, recorded in the result.")
    downstream: bool = Field(True, description="Run the workload's downstream tasks after training.")
    offline: bool = Field(False, description="Never contact the Hugging Face Hub (downstream datasets must be cached).")
    model_path: str | None = Field(
        None, description="Save the returned model here (a torch.export program) after evaluation; None saves none."
    )


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
