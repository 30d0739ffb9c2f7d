"""Running many trials on Ray: one task per trial, results written by the driver as trials finish.

Each trial runs in a fresh worker process (``max_calls=1``: no CUDA context, imported recipe or global state leaks
from one trial into the next) with the resources its hardware class names, and is never retried (a retried trial
would run on a restarted clock). What ``run_trial`` cannot report itself, the driver records from what it knows
(the request and the trial's last event):

* a trial still running ``hard_limit_s`` after its data was ready is force-cancelled and recorded as ``overrun``;
* a worker that dies (the OS's out-of-memory killer, Ray's memory monitor, a segfault) is ``failed``;
* a lost node, and Ctrl-C, make the trials that were running ``interrupted``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle
from rich.console import Console

import bench
from bench.errors import BenchError
from bench.results import run_file, write_result
from bench.schedule.cluster import ray_session
from bench.schedule.events import EventBox
from bench.schedule.progress import ProgressBoard
from bench.schedule.resources import TrialResources, check_fits, trial_resources
from bench.schedule.worker import execute
from bench.spec.loading import load_submission
from bench.spec.result import RunResult, Timing, TrialStatus
from bench.spec.workload import WorkloadSpec
from bench.train.loader import submission_hash
from bench.train.request import TrialEvent, TrialRequest
from bench.train.trial import resolve_hyperparameters

DEFAULT_ALLOWANCE_S = 1800.0
"""Time a trial may take beyond its training budget and grace: set-up, the evaluations (the training clock is
paused during them) and downstream tasks. Generous on purpose: it only exists to end trials that hang, and a false
alarm would throw away a finished run."""

START_PHASE = "start"
"""Phase of the event each trial task sends first: the worker is running (``started_at`` of a driver-built result)."""
UNLIMITED_PHASES = (START_PHASE, "data")
"""Phases before the hard limit starts: preparing data is the harness's own work, and a cache miss on a large
workload may take an hour of tokenising that says nothing about the recipe."""

POLL_S = 0.25  # how often the driver looks for finished trials, new events and expired limits
LOG_TAIL_LINES = 25


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_trials`, raised after running trials were stopped and recorded as ``interrupted``.

    ``results`` holds every result written, finished and interrupted; trials that never started are not recorded.
    Being a ``KeyboardInterrupt``, it ends a program that does not catch it the way Ctrl-C does (exit status 130).
    """

    def __init__(self, results: list[RunResult]) -> None:
        super().__init__(f"interrupted; {len(results)} results recorded")
        self.results = results


def hard_limit_s(workload: WorkloadSpec, allowance_s: float = DEFAULT_ALLOWANCE_S) -> float | None:
    """Seconds after data preparation at which a trial's worker is stopped: budget + overrun grace + allowance.

    None for token- or FLOP-only budgets: the scheduler cannot know how long those may take on this hardware.
    """
    budget = workload.budget
    if budget.wall_clock is None:
        return None
    return budget.wall_clock + budget.overrun_grace + allowance_s


@dataclass
class _Trial:
    request: TrialRequest
    submission: str
    hyperparameters: dict[str, Any]
    log_path: Path
    limit_s: float | None
    resources: TrialResources = field(default_factory=TrialResources)
    ref: ray.ObjectRef | None = None
    started: float | None = None  # time.monotonic() when the worker began
    started_at: datetime | None = None
    limit_from: float | None = None  # time.monotonic() when the hard limit started: the first phase after data
    last: TrialEvent | None = None
    last_progress: TrialEvent | None = None  # the last train or eval event: steps, tokens, training time


@ray.remote(max_retries=0, max_calls=1)
def _trial_task(request: TrialRequest, events: ActorHandle, log_file: str, resources: TrialResources) -> RunResult:
    events.post.remote(TrialEvent(run_id=request.run_id, kind="phase", phase=START_PHASE))
    if resources.workers > 1:
        from bench.schedule.ddp import run_distributed  # Ray Train (and pandas) load only where they are used

        return run_distributed(request, events, log_file, resources)
    return execute(request, events, log_file, resources.cpus)


def run_trials(
    requests: Sequence[TrialRequest],
    results_dir: Path,
    address: str | None = None,
    progress: bool = True,
    *,
    allowance_s: float = DEFAULT_ALLOWANCE_S,
    dashboard: bool = False,
    console: Console | None = None,
) -> list[RunResult]:
    """Run ``requests`` as Ray tasks, write each result under ``results_dir`` as it finishes, return them in order.

    ``address`` (else ``$RAY_ADDRESS``) joins a running cluster; without it a local Ray instance is started for the
    call and stopped after it. ``progress`` shows a live table on a terminal (one line per state change elsewhere)
    on ``console`` (stderr by default). Raises :class:`BenchError` before starting anything when a request is
    unusable (unknown hyperparameter, duplicate run id, hardware the cluster does not have), and
    :class:`RunInterrupted` on Ctrl-C.
    """
    results_dir = Path(results_dir).resolve()
    trials = [_plan(request, results_dir, allowance_s) for request in requests]
    duplicates = [run_id for run_id, n in Counter(t.request.run_id for t in trials).items() if n > 1]
    if duplicates:
        raise BenchError(f"run ids must be unique within a run, repeated: {', '.join(duplicates)}")
    console = console or Console(stderr=True)
    done: dict[str, RunResult] = {}
    code = [Path(bench.__file__).parent, *sorted({Path(t.request.submission_dir) for t in trials})]
    with ray_session(address, dashboard, ship=code) as dashboard_url:
        if dashboard_url:
            console.print(f"Ray dashboard: http://{dashboard_url}", highlight=False)
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        for trial in trials:
            trial.resources = trial_resources(trial.request, nodes)
            check_fits(trial.request, trial.resources, nodes)
        events = EventBox.remote()
        board_rows = [(t.request.run_id, t.submission, t.request.seed) for t in trials]
        with ProgressBoard(board_rows, console, live=progress and console.is_terminal) as board:
            try:
                for trial in trials:
                    trial.ref = _submit(trial, events)
                _drive(trials, events, results_dir, board, done)
            except KeyboardInterrupt:
                _interrupt(trials, results_dir, board, done)
                raise RunInterrupted([done[t.request.run_id] for t in trials if t.request.run_id in done]) from None
            finally:
                for trial in trials:
                    if trial.ref is not None and trial.request.run_id not in done:
                        ray.cancel(trial.ref, force=True)
                ray.kill(events)
    return [done[t.request.run_id] for t in trials]


def _plan(request: TrialRequest, results_dir: Path, allowance_s: float) -> _Trial:
    """Check a request on the driver (a typo must fail now, not in a worker) and give it absolute paths."""
    folder = Path(request.submission_dir).resolve()
    manifest = load_submission(folder)
    hyperparameters = resolve_hyperparameters(
        manifest.hyperparameters, request.overrides, str(folder / "submission.yaml")
    )
    absolute = {"submission_dir": str(folder), "workload_dir": str(Path(request.workload_dir).resolve())}
    for name in ("cache_dir", "model_path"):
        if getattr(request, name) is not None:
            absolute[name] = str(Path(getattr(request, name)).resolve())
    request = request.model_copy(update=absolute)
    return _Trial(
        request=request,
        submission=manifest.name,
        hyperparameters=hyperparameters,
        log_path=run_file(results_dir, request.workload.name, manifest.name, request.run_id, ".log"),
        limit_s=hard_limit_s(request.workload, allowance_s),
    )


def _submit(trial: _Trial, events: ActorHandle) -> ray.ObjectRef:
    resources = trial.resources
    # A multi-GPU trial's task only launches and waits for its Ray Train workers, which hold the real resources.
    single = resources.workers == 1
    options: dict[str, Any] = {
        "num_cpus": resources.cpus if single else 0,
        "num_gpus": resources.gpus if single else 0,
        "name": f"trial {trial.request.run_id}",
    }
    return _trial_task.options(**options).remote(trial.request, events, str(trial.log_path), resources)


def _drive(
    trials: list[_Trial], events: ActorHandle, results_dir: Path, board: ProgressBoard, done: dict[str, RunResult]
) -> None:
    """Wait for every trial, forwarding events to the board and enforcing hard limits, until all are recorded."""
    by_run_id = {t.request.run_id: t for t in trials}
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
            board.event(event)
        for ref in ready:
            trial = by_ref.pop(ref)
            _record(trial, _collect(trial), results_dir, board, done)
        now = time.monotonic()
        for ref, trial in list(by_ref.items()):
            if trial.limit_from is not None and trial.limit_s is not None and now - trial.limit_from > trial.limit_s:
                ray.cancel(ref, force=True)
                del by_ref[ref]
                _record(trial, _overrun(trial), results_dir, board, done)


def _record(
    trial: _Trial, result: RunResult, results_dir: Path, board: ProgressBoard, done: dict[str, RunResult]
) -> None:
    write_result(result, results_dir)
    done[trial.request.run_id] = result
    board.finish(result)


def _interrupt(trials: list[_Trial], results_dir: Path, board: ProgressBoard, done: dict[str, RunResult]) -> None:
    """Ctrl-C: stop every unfinished trial; the ones that had started are recorded as interrupted."""
    for trial in trials:
        if trial.ref is None or trial.request.run_id in done:
            continue
        ray.cancel(trial.ref, force=True)
        if trial.started is not None:
            elapsed = time.monotonic() - trial.started
            reason = f"stopped by the user (Ctrl-C) after {elapsed:.0f}s; last seen: {_describe(trial)}"
            _record(trial, _driver_result(trial, TrialStatus.interrupted, reason), results_dir, board, done)


def _collect(trial: _Trial) -> RunResult:
    """The trial's own result, or the driver's account of why there is none."""
    try:
        return ray.get(trial.ref)
    except (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError) as exc:
        reason = f"the machine running the trial left the Ray cluster: {_first_line(exc)}"
        return _driver_result(trial, TrialStatus.interrupted, reason)
    except ray.exceptions.OutOfMemoryError:
        reason = "killed by Ray's memory monitor: the machine ran out of memory"
        return _driver_result(trial, TrialStatus.failed, reason, _log_tail(trial))
    except ray.exceptions.WorkerCrashedError:
        tail = _log_tail(trial)
        fatal = next((line for line in (tail or "").splitlines() if line.startswith("Fatal Python error")), None)
        cause = fatal or "killed by the operating system, e.g. for lack of memory"
        return _driver_result(trial, TrialStatus.failed, f"the worker process died: {cause}", tail)
    except ray.exceptions.RayTaskError as exc:  # the harness itself raised in the worker
        cause = exc.cause if exc.cause is not None else exc
        tail = "\n".join(str(exc).rstrip().splitlines()[-LOG_TAIL_LINES:])
        return _driver_result(trial, TrialStatus.failed, f"{type(cause).__name__}: {_first_line(cause)}", tail)
    except ray.exceptions.RayError as exc:
        return _driver_result(trial, TrialStatus.failed, f"{type(exc).__name__}: {_first_line(exc)}", _log_tail(trial))


def _overrun(trial: _Trial) -> RunResult:
    budget = trial.request.workload.budget
    assert trial.limit_s is not None and budget.wall_clock is not None
    allowance = trial.limit_s - budget.wall_clock - budget.overrun_grace
    reason = (
        f"no result {trial.limit_s:.0f}s after its data was ready (budget {budget.wall_clock:.0f}s + grace "
        f"{budget.overrun_grace:.0f}s + {allowance:.0f}s for set-up and evaluation); stopped by the "
        f"scheduler; last seen: {_describe(trial)}"
    )
    return _driver_result(trial, TrialStatus.overrun, reason, _log_tail(trial))


def _driver_result(trial: _Trial, status: TrialStatus, reason: str, tail: str | None = None) -> RunResult:
    """A result built on the driver from the request and the last event, for a trial that returned none."""
    request, progress = trial.request, trial.last_progress
    finished_at = datetime.now(timezone.utc)
    started_at = trial.started_at or finished_at
    return RunResult(
        run_id=request.run_id,
        status=status,
        reason=reason,
        traceback_tail=tail,
        workload=request.workload.name,
        workload_hash=request.workload.content_hash(),
        submission=trial.submission,
        submission_hash=submission_hash(Path(request.submission_dir)),
        seed=request.seed,
        hyperparameters=trial.hyperparameters,
        device=request.device or ("cuda:0" if trial.resources.gpus else "cpu"),
        world_size=trial.resources.workers,
        started_at=started_at,
        finished_at=finished_at,
        steps=progress.step if progress else 0,
        tokens=progress.tokens if progress else 0,
        timing=Timing(
            train_s=progress.train_seconds if progress else 0.0, total_s=(finished_at - started_at).total_seconds()
        ),
        tuning=request.tuning,
    )


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
        lines = trial.log_path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    except OSError:
        return None
    return "\n".join(lines[-LOG_TAIL_LINES:]) or None
