"""Multi-GPU trials: one process per GPU through Ray Train, each running the same ``run_trial``.

Ray Train starts the workers and initialises ``torch.distributed`` (NCCL on GPUs, gloo on CPU) before calling
:func:`_rank_main`; ``run_trial`` reads rank and world size from there, so a recipe is written once for 1 and N
GPUs. Rank 0 alone reports progress and evaluates, and its result is the trial's result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
from ray.actor import ActorHandle
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from bench.data.shards import cache_root
from bench.executor.events import poster
from bench.executor.resources import TrialResources
from bench.executor.worker import execute, output_to
from bench.harness.plan import PlannedTrial
from bench.results.schema import RunResult


def rank_log_path(log_path: Path, rank: int) -> Path:
    """``<run_id>.log`` holds the launcher's output; rank ``r`` writes ``<run_id>.rank<r>.log`` beside it."""
    return log_path.with_name(f"{log_path.stem}.rank{rank}{log_path.suffix}")


def run_distributed(plan: PlannedTrial, events: ActorHandle, resources: TrialResources) -> RunResult:
    """Run ``plan`` on ``resources.workers`` processes and return rank 0's result.

    Called inside the trial's Ray task, which only waits: cancelling that task also ends the worker group, since
    Ray stops the actors a task created when the task dies. A worker that dies fails the whole trial
    (``max_failures=0``): restarting it would restart the budget clock.
    """
    use_gpu = resources.gpus > 0
    per_worker = {"CPU": resources.cpus, **({"GPU": resources.gpus} if use_gpu else {})}
    with output_to(plan.files.log, append=plan.attempt > 0):
        trainer = TorchTrainer(
            _rank_main,
            train_loop_config={"plan": plan, "events": events, "threads": resources.cpus},
            scaling_config=ScalingConfig(
                num_workers=resources.workers, use_gpu=use_gpu, resources_per_worker=per_worker
            ),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(
                name=plan.run_id,
                storage_path=str(cache_root().resolve() / "ray-train"),
                failure_config=FailureConfig(max_failures=0),
            ),
        )
        return trainer.fit().return_value


def _rank_main(config: dict[str, Any]) -> RunResult:
    rank = ray.train.get_context().get_world_rank()
    plan: PlannedTrial = config["plan"]
    request = plan.request.model_copy(update={"device": str(ray.train.torch.get_device())})
    plan = dataclasses.replace(plan, request=request)
    forward = poster(config["events"]) if rank == 0 else None
    return execute(plan, forward, config["threads"], rank_log_path(plan.files.log, rank))
