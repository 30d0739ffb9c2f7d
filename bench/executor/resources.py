"""What a trial asks Ray for, derived from the workload's hardware class, and whether the cluster can ever give it.

``cpu-N`` classes get exactly N cores (and N torch threads), so a CPU benchmark measures what it names. A GPU class
``KxGPU`` gets K workers with one GPU each, plus a few cores per GPU for data loading; Ray then packs trials onto
the machine: several CPU trials up to the core count, one trial per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError
from bench.harness.plan import TrialRequest

CPUS_PER_GPU = 4
"""Cores per GPU worker (the training process plus data loading), fewer when the cluster has less to share."""

NO_GPU_ENV = {"CUDA_VISIBLE_DEVICES": ""}
"""Environment of a trial that trains on the CPU: no GPU is visible to it. Ray 2.60 no longer hides GPUs from tasks
that ask for none (ray-project/ray#54868), and a recipe of a CPU class that reached one would get compute its
CPU-time clock does not count."""


@dataclass(frozen=True)
class TrialResources:
    workers: int = 1  # processes of the trial: 1, or the GPU count of a multi-GPU (DDP) trial
    cpus: int = 1  # per worker; also its torch thread count
    gpus: int = 0  # per worker: 0 or 1

    def describe(self) -> str:
        each = f"{self.cpus} CPU{'s' * (self.cpus != 1)}" + (f" + {self.gpus} GPU" if self.gpus else "")
        return each if self.workers == 1 else f"{self.workers} workers x ({each})"


def trial_resources(request: TrialRequest, nodes: list[dict[str, Any]]) -> TrialResources:
    """Resources for ``request`` on a cluster whose live nodes have the given Ray resource totals.

    A GPU workload run with ``device='cpu'`` (a debugging run) keeps its worker count but asks for no GPU.
    """
    budget = request.workload.budget
    if budget.gpus == 0:
        return TrialResources(cpus=budget.cpus)
    use_gpu = not trains_on_cpu(request)
    total_cpus = sum(int(node.get("CPU", 0)) for node in nodes)
    total_gpus = sum(int(node.get("GPU", 0)) for node in nodes)
    largest = max((int(node.get("CPU", 0)) for node in nodes), default=1)
    sharing = total_gpus if use_gpu else budget.gpus  # processes that split the cores: one per GPU, or the workers
    share = total_cpus // sharing if sharing else CPUS_PER_GPU
    return TrialResources(workers=budget.gpus, cpus=max(1, min(CPUS_PER_GPU, share, largest)), gpus=int(use_gpu))


def trains_on_cpu(request: TrialRequest) -> bool:
    """Whether the trial trains on the CPU: a CPU class, or a GPU class run with ``device='cpu'`` (debugging)."""
    return request.workload.budget.gpus == 0 or (request.device or "").startswith("cpu")


def check_device(request: TrialRequest) -> None:
    """Raise a :class:`BenchError` for a requested device the trial's worker can never have, before any trial
    starts: a GPU for a CPU class, or a GPU other than the worker's own (Ray gives each worker its GPU, which the
    worker sees as ``cuda:0``; Ray Train's ranks get theirs)."""
    requested, budget = request.device, request.workload.budget
    if requested is None or requested.startswith("cpu"):
        return
    where = f"--device {requested}: workload {request.workload.name!r} has hardware class {budget.hardware!r}"
    if budget.gpus == 0:
        raise BenchError(f"{where}, which trains on the CPU (its clock counts CPU time); leave --device out")
    if requested not in ("cuda", "cuda:0"):
        raise BenchError(
            f"{where}; each trial's worker sees only the GPU Ray gives it, as cuda:0, so only --device cuda (the "
            f"default) or cpu can be run. To choose a machine's GPUs, start Ray with CUDA_VISIBLE_DEVICES set"
        )


def check_fits(request: TrialRequest, resources: TrialResources, nodes: list[dict[str, Any]]) -> None:
    """Raise a :class:`BenchError` when no placement exists, instead of letting Ray queue the trial forever, or
    when the requested device cannot be given (:func:`check_device`)."""
    check_device(request)
    slots = 0
    custom = dict(request.resources) if resources.workers == 1 else {}
    for node in nodes:
        cpus, gpus = int(node.get("CPU", 0)), int(node.get("GPU", 0))
        per_node = cpus // resources.cpus
        if resources.gpus:
            per_node = min(per_node, gpus // resources.gpus)
        for name, amount in custom.items():
            per_node = min(per_node, int(node.get(name, 0) // amount) if amount > 0 else per_node)
        slots += per_node
    if slots >= resources.workers:
        return
    if custom:
        raise BenchError(
            f"workload {request.workload.name!r}: no node of the Ray cluster has {resources.describe()} together "
            f"with the resources {custom} the run asks for (start a node with `ray start --resources '...'`)"
        )
    have = ", ".join(f"{int(n.get('CPU', 0))} CPUs + {int(n.get('GPU', 0))} GPUs" for n in nodes) or "no live nodes"
    hint = " (to try it without a GPU, run on device 'cpu')" if resources.gpus else ""
    raise BenchError(
        f"workload {request.workload.name!r}: hardware class {request.workload.budget.hardware!r} needs "
        f"{resources.describe()}, but the Ray cluster has {have}{hint}"
    )
