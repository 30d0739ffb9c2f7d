"""Running trials in this process, one after another, without Ray: for debugging, and for a machine that has no Ray
(a lone GPU box).

The contract is :func:`bench.executor.ray_runner.run_trials`'s: each result is written as its trial ends, progress
lines go to the console, Ctrl-C or SIGTERM records the running trial as interrupted and raises
:class:`~bench.executor.outcome.RunInterrupted`, and results that could not be written raise
:class:`~bench.executor.outcome.ResultsNotSaved` once every trial has ended. Each trial still runs under the whole
harness (its recipe in a box of its own, timed and limited from outside; watchdog, fresh compile caches, meter) and
its output goes to its log.

What a Ray worker gives a trial and this cannot:

- a process of its own for the harness's side: its imports, CUDA context and global state stay for the next trial of
  the run (its compiled frames and cached device memory are dropped between trials; the recipe's box is new each
  trial);
- an environment set before torch loads: a CPU-class trial here keeps the process's OpenMP wait policy (Ray's
  workers set ``OMP_WAIT_POLICY=PASSIVE``), and GPUs stay visible to it (its device is still the CPU);
- limits enforced on the harness itself (the scheduler's hard limit, ``--data-timeout``): a box past its limits is
  killed, but a trial stuck in the harness's own code, or a process killed for lack of memory, ends the whole run;
- retries after a worker died, and multi-GPU trials (Ray Train), which are refused here before anything runs.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.console import Console

from bench.errors import BenchError
from bench.executor.ledger import Ledger
from bench.executor.outcome import ResultsNotSaved, RunInterrupted
from bench.executor.progress import ProgressBoard
from bench.executor.resources import CPUS_PER_GPU, check_device, trains_on_cpu
from bench.executor.worker import execute
from bench.harness.plan import PlannedTrial
from bench.interrupt import terminate_as_interrupt
from bench.results.schema import RunResult, Timing, TrialStatus
from bench.train.events import TrialEvent

START_PHASE = "start"
"""The first event of each trial, as a Ray worker sends it: the trial is running."""

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run_trials(
    plans: Sequence[PlannedTrial], results_dir: Path, progress: bool = True, *, console: Console | None = None,
) -> list[RunResult]:
    """Run ``plans`` here, in order, writing each result under ``results_dir`` as it finishes; the results in order.

    Raises :class:`BenchError` before anything runs for a trial this process cannot give its hardware (several GPUs,
    a GPU it does not have, more cores than the machine has), :class:`RunInterrupted` on Ctrl-C or SIGTERM and
    :class:`ResultsNotSaved` after the run when a result could not be written. Progress is one line per state change
    and a progress line every few seconds on ``console`` (stderr by default; ``progress=False``: state changes
    only), never a live table: the trial's own output goes to its log meanwhile."""
    for plan in plans:
        check_here(plan)
    results_dir = Path(results_dir).resolve()
    console = console or Console(stderr=True)
    rows = [(plan.run_id, plan.submission.name, plan.request.seed) for plan in plans]
    with ProgressBoard(rows, console, live=False, every_s=None if progress else 0) as board, \
            _console_beside_logs(console), terminate_as_interrupt() as received:
        ledger = Ledger(results_dir, board, console)
        for plan in plans:
            started_at = datetime.now(timezone.utc)
            try:
                result = _run_one(plan, board.event)
            except KeyboardInterrupt as interrupt:  # stopped in the harness's own code, outside the recipe
                reason = "stopped by the user (Ctrl-C or SIGTERM) before the trial returned its result"
                ledger.record(plan, _interrupted(plan, reason, started_at))
                raise RunInterrupted(ledger.results(list(plans)), received.interrupt(interrupt)) from None
            ledger.record(plan, result)
            if result.status is TrialStatus.interrupted:  # the harness caught the interrupt inside the recipe
                raise RunInterrupted(ledger.results(list(plans)), received.interrupt(KeyboardInterrupt()))
    results = ledger.results(list(plans))
    if ledger.unsaved:
        raise ResultsNotSaved(results, ledger.unsaved)
    return results


def check_here(plan: PlannedTrial) -> None:
    """Raise a :class:`BenchError` for a trial this process can never run as its hardware class says."""
    request, budget = plan.request, plan.workload.budget
    check_device(request)
    where = f"workload {plan.workload.name!r}: hardware class {budget.hardware!r}"
    if budget.gpus > 1:
        raise BenchError(f"{where} trains each trial on {budget.gpus} GPUs (one process each, through Ray Train); "
                         "the local executor runs one process: use --executor ray")
    if trains_on_cpu(request):
        cores = os.cpu_count() or 1
        if budget.gpus == 0 and budget.cpus > cores:
            raise BenchError(f"{where} needs {budget.cpus} CPU cores, but this machine has {cores}")
        return
    if not torch.cuda.is_available():
        raise BenchError(f"{where} trains on a GPU, but torch sees none here (torch {torch.__version__}); to try "
                         "it without one, run on device 'cpu' (--device cpu)")


def threads_for(plan: PlannedTrial) -> int:
    """torch threads of a trial, as Ray would give it cores: a CPU class's N, else a few per GPU."""
    budget, cores = plan.workload.budget, os.cpu_count() or 1
    return budget.cpus if budget.gpus == 0 else max(1, min(CPUS_PER_GPU, cores))


def _run_one(plan: PlannedTrial, on_event: Callable[[TrialEvent], None]) -> RunResult:
    """One trial through the worker's own path, with the Hub kept offline when the run says so; what the trial
    left in the process that would change the next one (compiled frames, cached device memory) is dropped after."""
    on_event(TrialEvent(run_id=plan.run_id, kind="phase", phase=START_PHASE))
    threads = torch.get_num_threads()
    try:
        with _environment(OFFLINE_ENV if plan.request.offline else {}):
            return execute(plan, on_event, threads_for(plan))
    finally:
        torch.set_num_threads(threads)
        forget_trial()


def forget_trial() -> None:
    """Drop Dynamo's compiled frames (a fresh worker would have none, and a process that compiles the same model
    class trial after trial reaches Dynamo's recompile limit and falls back to eager) and the CUDA caching
    allocator's blocks (the next trial's peak memory is its own)."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        dynamo.reset()
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _interrupted(plan: PlannedTrial, reason: str, started_at: datetime) -> RunResult:
    finished = datetime.now(timezone.utc)
    device = plan.request.device or ("cpu" if trains_on_cpu(plan.request) else "cuda:0")
    return plan.result(TrialStatus.interrupted, reason, started_at=started_at,
                       timing=Timing(total_s=(finished - started_at).total_seconds()), device=device, world_size=1)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _console_beside_logs(console: Console) -> Iterator[None]:
    """Keep ``console`` writing to the terminal while a trial's output (file descriptors 1 and 2) goes to its log:
    a console on descriptor 1 or 2 writes to a copy of it, taken now. Other consoles (a file, a test's capture)
    are left alone."""
    try:
        descriptor = console.file.fileno()
    except (AttributeError, OSError, ValueError):  # not backed by a descriptor: unaffected by the redirection
        yield
        return
    if descriptor not in (1, 2):
        yield
        return
    original = console.file
    copy = os.fdopen(os.dup(descriptor), "w", buffering=1, encoding=getattr(original, "encoding", None) or "utf-8")
    console.file = copy
    try:
        yield
    finally:
        console.file = original
        copy.close()
