"""The one way through for every command that trains: ``bench run``, ``tune``, ``study run`` and ``check``.

A command says *what* to train, as :class:`~bench.harness.plan.TrialRequest` objects, and how to run them
(:class:`Execution`); :func:`run` does the rest the same way for all of them, so every rule holds for every command:

1. **plan** each request once (:func:`bench.harness.plan.plan_trials`): the submission must enter the workload, its
   hyperparameters with the overrides must be a valid configuration of its recipe (names, types, the optimizer
   registry), checkpointing and retries default by the workload's length. A problem is an error before anything
   runs, naming the file and the field.
2. **prepare** each distinct workload's data once, here on the driver (a cache hit after the first time), with a
   progress bar, so a data error stops everything before any trial starts and trials start on a warm cache;
3. **stamp** the prepared validation tokens' checksum into every request, so a worker on another node that read
   other data fails instead of training on it;
4. **execute** the plans on the executor, which writes each result as its trial ends: Ray (a local instance or a
   cluster), or this process, one trial after another (``local``: debugging, and machines without Ray).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.markup import escape

from bench.data.prepare import PreparedData, RichPrepareProgress, format_summary, prepare
from bench.errors import BenchError
from bench.harness.plan import DEFAULT_ALLOWANCE_S, PlannedTrial, TrialRequest, plan_trials
from bench.results.schema import RunResult
from bench.spec.loading import Submission
from bench.spec.workload import WorkloadSpec

EXECUTORS = ("ray", "local")
Executor = Literal["ray", "local"]


@dataclass(frozen=True)
class Execution:
    """How a command's trials run: where results go, on which executor (``ray``: Ray workers, ``local``: this
    process, one trial after another; see :mod:`bench.executor.local`), which Ray cluster (None: ``$RAY_ADDRESS``,
    else a local instance), whether progress is shown, and where the driver's own lines go (stderr by default)."""

    results_dir: Path
    address: str | None = None
    progress: bool = True
    console: Console | None = None
    allowance_s: float = DEFAULT_ALLOWANCE_S
    executor: Executor = "ray"

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise BenchError(f"--executor: unknown executor {self.executor!r} (known: {', '.join(EXECUTORS)})")
        if self.executor == "local" and self.address:
            raise BenchError(f"--address {self.address}: the local executor runs trials in this process, not on a "
                             "Ray cluster; leave one of them out")


def run(
    requests: Sequence[TrialRequest], execution: Execution, submissions: Iterable[Submission] = ()
) -> list[RunResult]:
    """Plan, prepare, stamp and execute ``requests`` (see the module docstring); the results in request order.

    ``submissions`` are already loaded submissions the requests name (others are loaded once here). Raises
    :class:`~bench.errors.BenchError` for anything wrong before a trial starts, and the executor's
    :class:`~bench.executor.outcome.RunInterrupted` / :class:`~bench.executor.outcome.ResultsNotSaved`."""
    if not requests:
        return []
    console = execution.console or Console(stderr=True)
    plans = plan_trials(requests, execution.results_dir, submissions, execution.allowance_s)
    plans = stamp(plans, prepare_once(plans, console))
    if execution.executor == "local":
        from bench.executor.local import run_trials as run_here

        return run_here(plans, execution.results_dir, execution.progress, console=console)
    from bench.executor.ray_runner import run_trials  # Ray loads only once there is something to run

    return run_trials(plans, execution.results_dir, execution.address, execution.progress, console=console)


def _data_key(plan: PlannedTrial) -> tuple[str, str, str | None]:
    """What decides a trial's data: the workload's settings and where its relative paths and cache are."""
    return plan.workload.content_hash(), plan.request.workload_dir, plan.request.cache_dir


def prepare_once(plans: Sequence[PlannedTrial], console: Console) -> dict[tuple[str, str, str | None], PreparedData]:
    """Each distinct workload's data of ``plans``, prepared (or found in the cache) once."""
    prepared: dict[tuple[str, str, str | None], PreparedData] = {}
    for plan in plans:
        key = _data_key(plan)
        if key not in prepared:
            prepared[key] = prepare_with_progress(plan.workload, Path(plan.request.workload_dir),
                                                  Path(plan.request.cache_dir) if plan.request.cache_dir else None,
                                                  console)
    return prepared


def prepare_with_progress(
    spec: WorkloadSpec, workload_dir: Path, cache_dir: Path | None, console: Console
) -> PreparedData:
    """Prepare a workload's data with a progress bar and a summary line (``bench prepare`` and :func:`run`); when
    Ctrl-C or SIGTERM stops it, say what is kept before the interrupt goes on (the build stopped its processes)."""
    try:
        with RichPrepareProgress(console) as progress:
            data = prepare(spec, workload_dir, cache_dir, progress)
    except KeyboardInterrupt:
        console.print(f"[bold]{escape(spec.name)}[/]: stopped while preparing its data; the parts encoded so far are "
                      "kept, and the next prepare continues from them", highlight=False, soft_wrap=True)
        raise
    console.print(f"[bold]{escape(spec.name)}[/]: {escape(format_summary(data))}", highlight=False, soft_wrap=True)
    return data


def stamp(
    plans: Sequence[PlannedTrial], prepared: dict[tuple[str, str, str | None], PreparedData]
) -> list[PlannedTrial]:
    """``plans`` whose requests carry the validation checksum of the data the driver prepared for them."""
    return [
        dataclasses.replace(plan, request=plan.request.model_copy(
            update={"data_checksum": prepared[_data_key(plan)].meta.val_checksum}))
        for plan in plans
    ]
