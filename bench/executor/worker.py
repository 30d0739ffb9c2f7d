"""What runs in a trial's process: a Ray worker (one trial, or one rank of a multi-GPU trial), or the local executor.

The worker's own output (prints, warnings, native crashes) goes to the trial's log file, not to the terminal, and
progress reaches the driver as :class:`TrialEvent` objects posted to its event box. The log also gets the
harness's side of the story (phase changes, a progress line every :func:`progress_interval` seconds, evaluations,
the outcome), so that it reads on its own: a recipe that prints nothing still leaves a log that shows how far it
got. The budget clock starts in here, inside ``run_trial``, so the time a trial waited for free resources never
counts.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import torch

from bench.data.shards import cache_root
from bench.executor.progress import progress_interval, progress_text
from bench.harness.plan import PlannedTrial, RunFiles
from bench.harness.trial import run_trial
from bench.results.schema import RunResult
from bench.train.events import TrialEvent


@contextmanager
def output_to(path: Path, append: bool = False) -> Iterator[TextIO | None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so native output too) to ``path``; yields
    the log itself, for the harness's own lines (None when it could not be opened).

    A worker on another machine may not be able to create the driver's results folder; its output then stays in
    Ray's own worker log on that machine. A log that cannot be flushed or closed (a full disk) is given up quietly:
    by then the trial has its result, and a log is never worth more than the result.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "a" if append else "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below, after the fds are restored
    except OSError:
        yield None
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    faulthandler.enable(all_threads=False)  # a segfault or abort leaves its Python stack in the log
    try:
        yield log
    finally:
        for stream in (sys.stdout, sys.stderr):
            _give_up_quietly(stream.flush)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        _give_up_quietly(log.close)


def _give_up_quietly(action: Callable[[], None]) -> None:
    """Flush or close a log; a full disk (or a log closed already) loses the log's tail, never the trial."""
    try:
        action()
    except (OSError, ValueError):
        pass


STAGING = "staging"


@dataclass(frozen=True)
class Shipped:
    """A trial's result with the files it wrote on its own node (log, saved model), by name, for the driver to
    write beside the result. How artifacts come home from nodes that do not share the driver's file system."""

    result: RunResult
    files: dict[str, bytes]


def staged(plan: PlannedTrial) -> PlannedTrial:
    """``plan`` with its files in this node's staging folder (``<node cache>/staging/<run_id>/``, the same names):
    a worker on another machine cannot write the driver's results folder, and must not guess whether it can."""
    folder = cache_root(Path(plan.request.cache_dir) if plan.request.cache_dir else None) / STAGING / plan.run_id
    files = plan.files

    def here(path: Path | None) -> Path | None:
        return folder / path.name if path is not None else None

    local = RunFiles(result=here(files.result), log=here(files.log), model=here(files.model),
                     resume=here(files.resume))
    return dataclasses.replace(plan, files=local)


def ship(local: PlannedTrial, result: RunResult) -> Shipped:
    """The result with the staged log and model, which are removed here once read (the driver owns them now).
    A checkpoint stays on the node until the trial has its result (the trial itself removes it then)."""
    files: dict[str, bytes] = {}
    for path in (local.files.log, local.files.model):
        if path is not None and path.is_file():
            files[path.name] = path.read_bytes()
            path.unlink()
    return Shipped(result, files)


def receive(shipped: Shipped, plan: PlannedTrial) -> list[str]:
    """On the driver, once the result is written: write the shipped files into the results folder beside it.
    Returns a problem per file that could not be written (a full disk): the result stands without it."""
    folder = plan.files.result.parent
    problems = []
    for name, content in shipped.files.items():
        if Path(name).name != name:  # names come from the plan; a worker never picks where files go
            continue
        partial = folder / f".{name}.partial"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(content)
            partial.replace(folder / name)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            problems.append(f"{folder / name}: not written ({exc.strerror or exc}); the result stands without it")
    return problems


def locate(folder: Path) -> Path:
    """A submission folder as this worker sees it: the driver's path, else the copy Ray shipped with the task.

    When the driver joined a cluster, it shipped each submission folder as a ``py_modules`` entry, which Ray unpacks
    into a folder on ``sys.path`` under the same folder name.
    """
    if folder.is_dir():
        return folder
    for entry in sys.path:
        candidate = Path(entry) / folder.name
        if (candidate / "submission.yaml").is_file():
            return candidate
    return folder  # importing the recipe reports the missing folder as the trial's failure


class EventLog:
    """An ``on_event`` callback that writes the harness's events into the trial's log and passes them on.

    Phase changes and evaluations are written as they come; training progress once every ``every_s`` seconds
    (the first at once; 0: never), since a recipe may report every step.
    """

    def __init__(
        self, log: TextIO, forward: Callable[[TrialEvent], None] | None = None, every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._log = log
        self._forward = forward
        self._every_s = progress_interval() if every_s is None else every_s
        self._clock = clock
        self._last_progress: float | None = None

    def __call__(self, event: TrialEvent) -> None:
        if self._forward is not None:
            self._forward(event)
        if event.kind == "phase":
            self.write(f"phase {event.phase}")
        elif event.kind == "eval":
            self.write("eval  " + progress_text(event.step, event.tokens, val_loss=event.val_loss,
                                                time_left=event.time_left))
        elif self._due():
            self.write(progress_text(event.step, event.tokens, event.loss, None, event.tokens_per_s, event.time_left))

    def write(self, text: str) -> None:
        """One line, ``[bench 2026-12-01T19:57:08Z] text``: the prefix tells the harness's lines from the recipe's."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self._log.write(f"[bench {stamp}] {text}\n")
        except (OSError, ValueError):  # a full disk or a closed log must never fail the trial
            pass

    def _due(self) -> bool:
        now = self._clock()
        if self._every_s <= 0 or (self._last_progress is not None and now - self._last_progress < self._every_s):
            return False
        self._last_progress = now
        return True


def execute(
    plan: PlannedTrial, forward: Callable[[TrialEvent], None] | None, threads: int, log_path: Path | None = None
) -> RunResult:
    """Run one trial in this process: ``threads`` torch threads, output to the plan's log (or ``log_path``), events
    to ``forward`` (a Ray worker's poster to the driver's event box, the local executor's progress board) and, with
    the harness's own lines, to the log."""
    torch.set_num_threads(threads)
    recipe_dir = locate(plan.submission.recipe_dir) if plan.submission.recipe_dir is not None else None
    with output_to(log_path or plan.files.log, append=plan.attempt > 0) as log:  # a retry's log follows the last
        if log is None:
            return run_trial(plan, on_event=forward, recipe_dir=recipe_dir)
        event_log = EventLog(log, forward)
        event_log.write(
            f"trial {plan.run_id}: {plan.submission.name} seed {plan.request.seed} on workload {plan.workload.name}, "
            f"host {socket.gethostname()}, {_ray_node()}pid {os.getpid()}, {threads} torch threads"
            + (f", attempt {plan.attempt + 1} (retry {plan.attempt} of {plan.request.retries})" if plan.attempt else "")
        )
        result = run_trial(plan, on_event=event_log, recipe_dir=recipe_dir)
        event_log.write(f"result: {result.status.value}" + (f": {result.reason}" if result.reason else ""))
        return result


def _ray_node() -> str:
    """``ray node <id>, `` when running in a Ray worker (which node of the cluster ran the trial); nothing in the
    local executor, which must not load Ray (the machine may not have it)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return ""
    try:
        return f"ray node {ray.get_runtime_context().get_node_id()}, " if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - a log line must never fail the trial
        return ""
