"""Running many trials on Ray: one task per trial, results written by the driver as trials finish.

Each trial runs in a worker process with the resources its hardware class names: a fresh one (``max_calls=1``: no
CUDA context, imported recipe or global state leaks from one trial into the next), except a boxed CPU trial on a
local instance, whose worker holds only the harness (see :func:`shares_worker`) and runs the next such trial too.
Ray itself never retries a trial (its retry would run on a restarted clock); the driver does, ``request.retries``
times, when the worker process died or its node was lost (a preemption, a killed process): the trial runs again as
attempt ``n`` and continues from its last checkpoint, with the training clock continuing from the reading saved
in it (see :func:`bench.harness.phases.resume`). Without a checkpoint (``request.checkpoint_every`` unset, or none
written yet) a retry starts again from nothing, and its result says so. What ``run_trial`` cannot report itself, the
driver records from what it knows (the trial's plan and its last event):

* a trial still running ``plan.limits.worker_s`` after its data was ready is force-cancelled and recorded as ``overrun``;
* a worker that dies (the OS's out-of-memory killer, Ray's memory monitor, a segfault) is ``failed``, once its
  retries (if any) are spent; running out of memory is never retried;
* a lost node, and Ctrl-C, make the trials that were running ``interrupted`` (a lost node: once retries are spent).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle
from rich.console import Console
from rich.markup import escape

import bench
from bench.harness.plan import PlannedTrial
from bench.interrupt import terminate_as_interrupt
from bench.executor.outcome import ResultsNotSaved, RunInterrupted
from bench.executor.cluster import ray_session
from bench.executor.events import EventBox, poster
from bench.executor.ledger import Ledger
from bench.executor.progress import ProgressBoard
from bench.executor.resources import NO_GPU_ENV, TrialResources, check_fits, trains_on_cpu, trial_resources
from bench.executor.progress import PROGRESS_ENV
from bench.executor.worker import Shipped, execute, ship, staged
from bench.harness.trial import boxes_work
from bench.results.schema import CheckpointRecord, RunResult, Timing, TrialStatus
from bench.harness.clock import CPU_TRIAL_ENV
from bench.train.events import TrialEvent
from bench.track import FORWARDED_ENV as TRACK_ENV

START_PHASE = "start"
"""Phase of the event each trial task sends first: the worker is running (``started_at`` of a driver-built result)."""
UNLIMITED_PHASES = (START_PHASE, "data")
"""Phases before the hard limit starts: preparing data is the harness's own work, and a cache miss on a large
workload may take an hour of tokenising that says nothing about the recipe."""

TRIAL_ENV = {"RAY_worker_niceness": "0"}
"""Ray starts workers at niceness 15, below every ordinary process: on a machine that also runs anything else a
trial then gets a few percent of a core (measured: 4-5% beside two busy loops on 2 cores). A benchmark trial is
the machine's foreground work; its worker runs at the normal priority."""

POLL_S = 0.25  # how often the driver looks for finished trials, new events and expired limits
LOG_TAIL_LINES = 25


@dataclass
class _Trial:
    """A planned trial as the driver follows it: its Ray task and what it last heard of it."""

    plan: PlannedTrial
    resources: TrialResources = field(default_factory=TrialResources)
    ref: ray.ObjectRef | None = None
    started: float | None = None  # time.monotonic() when the worker began
    started_at: datetime | None = None
    limit_from: float | None = None  # time.monotonic() when the hard limit started: the first phase after data
    last: TrialEvent | None = None
    last_progress: TrialEvent | None = None  # the last train or eval event: steps, tokens, training time
    previous: list[str] = field(default_factory=list)  # why each earlier attempt ended (its worker died)

    @property
    def attempt(self) -> int:
        return len(self.previous)


@dataclass(frozen=True)
class _Retry:
    """The worker of a trial with retries left died: run it again (it resumes from its checkpoint)."""

    reason: str


def _trial(plan: PlannedTrial, events: ActorHandle, resources: TrialResources) -> RunResult | Shipped:
    events.post.remote(TrialEvent(run_id=plan.run_id, kind="phase", phase=START_PHASE))
    if resources.workers > 1:
        from bench.executor.ddp import run_distributed  # Ray Train (and pandas) load only where they are used

        return run_distributed(plan, events, resources)
    if plan.stage:  # on a cluster: files are written on this node and travel back with the result
        local = staged(plan)
        return ship(local, execute(local, poster(events), resources.cpus))
    return execute(plan, poster(events), resources.cpus)


_trial_task = ray.remote(max_retries=0, max_calls=1)(_trial)
_trial_task_shared = ray.remote(max_retries=0, max_calls=0)(_trial)  # max_calls=0: no limit


def shares_worker(plan: PlannedTrial) -> bool:
    """Whether the trial may run in a worker that ran other trials before (and will run more): a single-process CPU
    trial whose recipe runs boxed, on a local instance. The worker then holds only the harness's own code and state
    (the recipe, its imports and threads live in its box, a fork of the zygote, which ends with the trial), and the
    next trial saves the worker's start and the zygote's (two imports of torch: seconds per trial). Every other
    trial gets a fresh worker: a GPU trial's CUDA context and memory, the ranks of a multi-GPU trial, and a recipe
    that runs in the harness's own process (no Landlock) must not outlive it; on a cluster the driver cannot tell
    whether a node has Landlock (its plans are staged)."""
    return not plan.stage and trains_on_cpu(plan.request) and boxes_work()


def run_trials(
    plans: Sequence[PlannedTrial],
    results_dir: Path,
    address: str | None = None,
    progress: bool = True,
    *,
    dashboard: bool = False,
    console: Console | None = None,
) -> list[RunResult]:
    """Run ``plans`` as Ray tasks, write each result under ``results_dir`` as it finishes, return them in order.

    ``address`` (else ``$RAY_ADDRESS``) joins a running cluster; without it a local Ray instance is started for the
    call and stopped after it. ``progress`` shows a live table on a terminal (one line per state change elsewhere)
    on ``console`` (stderr by default). Raises :class:`BenchError` before starting anything when the cluster does
    not have a trial's hardware, and :class:`RunInterrupted` on Ctrl-C. (Plans were checked when they were made:
    see :func:`bench.harness.plan.plan_trials`.)
    """
    results_dir = Path(results_dir).resolve()
    joined = bool(address or os.environ.get("RAY_ADDRESS")) and not ray.is_initialized()
    # Workers on a cluster may not see this machine's files: they stage theirs and ship them with the result.
    trials = [_Trial(dataclasses.replace(plan, stage=joined) if joined else plan) for plan in plans]
    console = console or Console(stderr=True)
    code = [Path(bench.__file__).parent, *sorted({f for t in trials for f in t.plan.submission.lineage})]
    with ray_session(address, dashboard, ship=code) as dashboard_url:
        if dashboard_url:
            console.print(f"Ray dashboard: http://{dashboard_url}", highlight=False)
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        for trial in trials:
            trial.resources = trial_resources(trial.plan.request, nodes)
            check_fits(trial.plan.request, trial.resources, nodes)
        events = EventBox.remote()
        board_rows = [(t.plan.run_id, t.plan.submission.name, t.plan.request.seed) for t in trials]
        with ProgressBoard(board_rows, console, live=progress and console.is_terminal) as board, \
                terminate_as_interrupt() as received:
            ledger = Ledger(results_dir, board, console)
            try:
                for trial in trials:
                    trial.ref = _submit(trial, events)
                _drive(trials, events, ledger)
            except KeyboardInterrupt as interrupt:
                _interrupt(trials, ledger)
                raise RunInterrupted(ledger.results([t.plan for t in trials]),
                                     received.interrupt(interrupt)) from None
            finally:
                for trial in trials:
                    if trial.ref is not None and trial.plan.run_id not in ledger.done:
                        ray.cancel(trial.ref, force=True)
                ray.kill(events)
    results = ledger.results([t.plan for t in trials])
    if ledger.unsaved:
        raise ResultsNotSaved(results, ledger.unsaved)
    return results


def trial_env(plan: PlannedTrial) -> dict[str, str]:
    """Environment variables of a trial's worker, on whichever node it runs (Ray's ``runtime_env``): a worker
    started by a cluster's node does not inherit the driver's environment. Its data cache is its own node's
    (``$BENCH_CACHE`` where that node's ``ray start`` ran, else the user cache there): never the driver's folder."""
    env = dict(TRIAL_ENV)
    if plan.workload.budget.gpus == 0:  # the CPU-time clock charges spinning OpenMP threads: let them sleep
        env.update(CPU_TRIAL_ENV)
    if trains_on_cpu(plan.request):
        env.update(NO_GPU_ENV)
    if plan.request.offline:  # `--offline` reaches the Hub libraries on every node, not only the driver's
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if every := os.environ.get(PROGRESS_ENV):
        env[PROGRESS_ENV] = every
    env.update({name: value for name in TRACK_ENV if (value := os.environ.get(name))})  # `--track`, on every node
    return env


def _submit(trial: _Trial, events: ActorHandle) -> ray.ObjectRef:
    resources = trial.resources
    plan = dataclasses.replace(trial.plan, attempt=trial.attempt, previous=tuple(trial.previous))
    # A multi-GPU trial's task only launches and waits for its Ray Train workers, which hold the real resources.
    single = resources.workers == 1
    options: dict[str, Any] = {
        "num_cpus": resources.cpus if single else 0,
        "num_gpus": resources.gpus if single else 0,
        "name": f"trial {trial.plan.run_id}",
    }
    if trial.plan.request.resources and single:  # (a multi-GPU trial's workers are placed by Ray Train)
        options["resources"] = dict(trial.plan.request.resources)
    options["runtime_env"] = {"env_vars": trial_env(trial.plan)}
    task = _trial_task_shared if single and shares_worker(plan) else _trial_task
    return task.options(**options).remote(plan, events, resources)


def _drive(trials: list[_Trial], events: ActorHandle, ledger: Ledger) -> None:
    """Wait for every trial, forwarding events to the board and enforcing hard limits, until all are recorded."""
    by_run_id = {t.plan.run_id: t for t in trials}
    by_ref = {t.ref: t for t in trials}
    while by_ref:
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=POLL_S)
        for event in ray.get(events.drain.remote()):
            trial = by_run_id[event.run_id]
            if trial.started is None:
                trial.started, trial.started_at = time.monotonic(), datetime.now(timezone.utc)
            if trial.limit_from is None and event.phase not in UNLIMITED_PHASES:
                trial.limit_from = time.monotonic()
            trial.last = event
            if event.kind != "phase":
                trial.last_progress = event
            ledger.board.event(event)
        for ref in ready:
            trial = by_ref.pop(ref)
            outcome = _collect(trial)
            if isinstance(outcome, _Retry):
                _retry(trial, outcome, events, ledger)
                by_ref[trial.ref] = trial
                continue
            ledger.record(trial.plan, outcome)
        now = time.monotonic()
        for ref, trial in list(by_ref.items()):
            data_limit = trial.plan.request.data_timeout
            if data_limit is not None and trial.started is not None and trial.limit_from is None \
                    and now - trial.started > data_limit:
                ray.cancel(ref, force=True)
                del by_ref[ref]
                ledger.record(trial.plan, _data_timeout(trial, data_limit))
                continue
            limit = trial.plan.limits.worker_s
            if trial.limit_from is not None and limit is not None and now - trial.limit_from > limit:
                ray.cancel(ref, force=True)
                del by_ref[ref]
                ledger.record(trial.plan, _overrun(trial))


def _retry(trial: _Trial, retry: _Retry, events: ActorHandle, ledger: Ledger) -> None:
    """Run ``trial`` again: a new task, whose limits start again (its training clock continues from the checkpoint)."""
    trial.previous.append(retry.reason)
    trial.started = trial.started_at = trial.limit_from = None
    trial.last = None
    retries = trial.plan.request.retries
    ledger.console.print(
        f"{escape(trial.plan.run_id)}  retry {trial.attempt} of {retries}: {escape(retry.reason)}",
        highlight=False, soft_wrap=True,
    )
    trial.ref = _submit(trial, events)


def _interrupt(trials: list[_Trial], ledger: Ledger) -> None:
    """Ctrl-C or SIGTERM: stop every unfinished trial; the ones that had started are recorded as interrupted."""
    for trial in trials:
        if trial.ref is None or trial.plan.run_id in ledger.done:
            continue
        ray.cancel(trial.ref, force=True)
        if trial.started is not None:
            elapsed = time.monotonic() - trial.started
            reason = f"stopped by the user (Ctrl-C or SIGTERM) after {elapsed:.0f}s; last seen: {_describe(trial)}"
            ledger.record(trial.plan, _driver_result(trial, TrialStatus.interrupted, reason))


def _collect(trial: _Trial) -> RunResult | Shipped | _Retry:
    """The trial's own result (with its files, from a node of a cluster), a retry (its worker died and it has
    retries left), or the driver's account of why there is no result."""
    can_retry = trial.attempt < trial.plan.request.retries
    try:
        return ray.get(trial.ref)
    except ray.exceptions.NodeDiedError as exc:
        reason = f"the machine running the trial left the Ray cluster: {_first_line(exc)}"
        if can_retry:
            return _Retry(reason)
        return _driver_result(trial, TrialStatus.interrupted, reason)
    except ray.exceptions.LocalRayletDiedError as exc:  # the driver's own node: nothing left to retry on
        reason = f"the machine running the trial left the Ray cluster: {_first_line(exc)}"
        return _driver_result(trial, TrialStatus.interrupted, reason)
    except ray.exceptions.OutOfMemoryError:
        reason = "killed by Ray's memory monitor: the machine ran out of memory"
        return _driver_result(trial, TrialStatus.failed, reason, _log_tail(trial))
    except ray.exceptions.WorkerCrashedError as exc:
        tail = _log_tail(trial)
        fatal = next((line for line in (tail or "").splitlines() if line.startswith("Fatal Python error")), None)
        cause = fatal or "killed by the operating system, e.g. for lack of memory"
        if can_retry:
            return _Retry(f"the worker process died: {fatal or _first_line(exc)}")
        return _driver_result(trial, TrialStatus.failed, f"the worker process died: {cause}", tail)
    except ray.exceptions.RayTaskError as exc:  # the harness itself raised in the worker
        cause = exc.cause if exc.cause is not None else exc
        if can_retry and type(cause).__name__ in ("TrainingFailedError", "WorkerGroupError"):
            # Ray Train's worker group lost a rank (run_trial itself never raises for what a recipe does): a
            # multi-GPU trial is retried like a single worker, every rank resuming from rank 0's checkpoint
            return _Retry(f"a worker of the trial's group died: {_first_line(cause)}")
        tail = "\n".join(str(exc).rstrip().splitlines()[-LOG_TAIL_LINES:])
        return _driver_result(trial, TrialStatus.failed, f"{type(cause).__name__}: {_first_line(cause)}", tail)
    except ray.exceptions.RayError as exc:
        return _driver_result(trial, TrialStatus.failed, f"{type(exc).__name__}: {_first_line(exc)}", _log_tail(trial))


def _data_timeout(trial: _Trial, limit: float) -> RunResult:
    reason = (
        f"not training {limit:.0f}s after the worker started (the data timeout): preparing the workload's data on the "
        f"worker's node (or loading the recipe) took too long; stopped by the scheduler; last seen: "
        f"{_describe(trial)}. Prepare the data on every node first (`bench prepare` there), or raise --data-timeout"
    )
    return _driver_result(trial, TrialStatus.failed, reason, _log_tail(trial))


def _overrun(trial: _Trial) -> RunResult:
    budget, limits = trial.plan.workload.budget, trial.plan.limits
    allowance = limits.worker_s - limits.train_wall_s
    if budget.hard_limit is None and budget.wall_clock is not None:
        training = f"budget {budget.wall_clock:.0f}s + grace {budget.overrun_grace:.0f}s"
    else:
        training = f"hard limit {limits.train_s:.0f}s of training"
    if limits.train_wall_s > limits.train_s + 1e-9:
        training += f" on the CPU-time clock, at most {limits.train_wall_s:.0f}s of wall time"
    reason = (
        f"no result {limits.worker_s:.0f}s after its data was ready ({training}, then {allowance:.0f}s for set-up "
        f"and evaluation); stopped by the scheduler; last seen: {_describe(trial)}"
    )
    return _driver_result(trial, TrialStatus.overrun, reason, _log_tail(trial))


def _driver_result(trial: _Trial, status: TrialStatus, reason: str, tail: str | None = None) -> RunResult:
    """A result built on the driver from the plan and the last event, for a trial that returned none."""
    progress, finished = trial.last_progress, time.monotonic()
    return trial.plan.result(
        status, reason,
        started_at=trial.started_at or datetime.now(timezone.utc),
        timing=Timing(train_s=progress.train_seconds if progress else 0.0,
                      total_s=finished - trial.started if trial.started is not None else 0.0),
        device=trial.plan.request.device or ("cuda:0" if trial.resources.gpus else "cpu"),
        world_size=trial.resources.workers,
        traceback_tail=tail,
        steps=progress.step if progress else 0,
        tokens=progress.tokens if progress else 0,
        checkpoints=_retries_record(trial),
    )


def _retries_record(trial: _Trial) -> CheckpointRecord | None:
    """What the driver knows of a trial's checkpoints and retries, for a result it builds itself."""
    every = trial.plan.request.checkpoint_every
    if not every and not trial.previous:
        return None
    return CheckpointRecord(every_s=every, attempts=trial.attempt + 1, restarted=list(trial.previous))


def _describe(trial: _Trial) -> str:
    """What the driver last heard of a trial: its phase and progress, e.g. 'phase train, step 120, ...'."""
    if trial.last is None:
        return "nothing (the worker had not reported yet)"
    parts = [f"phase {trial.last.phase}"] if trial.last.kind == "phase" else []
    if (progress := trial.last_progress) is not None:
        loss = f", loss {progress.loss:.4f}" if progress.loss is not None else ""
        parts.append(
            f"step {progress.step}, {progress.tokens:,} tokens, {progress.train_seconds:.1f}s of training{loss}"
        )
    return ", ".join(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _log_tail(trial: _Trial) -> str | None:
    """The end of the trial's log (a native crash's stack, the last prints), when the driver can read it."""
    try:
        lines = trial.plan.files.log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    except OSError:
        return None
    return "\n".join(lines[-LOG_TAIL_LINES:]) or None
