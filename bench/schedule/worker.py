"""What runs inside a Ray worker for one trial (or one rank of a multi-GPU trial).

The worker's own output (prints, warnings, native crashes) goes to the trial's log file, not to the terminal, and
progress reaches the driver as :class:`TrialEvent` objects posted to its event box. The budget clock starts in
here, inside ``run_trial``, so the time a trial waited for free resources never counts.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from ray.actor import ActorHandle

from bench.harness.plan import PlannedTrial
from bench.harness.trial import run_trial
from bench.schedule.events import poster
from bench.spec.result import RunResult


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so native output too) to ``path``.

    A worker on another machine may not be able to create the driver's results folder; its output then stays in
    Ray's own worker log on that machine.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below, after the fds are restored
    except OSError:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    faulthandler.enable(all_threads=False)  # a segfault or abort leaves its Python stack in the log
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.close()


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


def execute(plan: PlannedTrial, events: ActorHandle | None, threads: int, log_path: Path | None = None) -> RunResult:
    """Run one trial in this worker: ``threads`` torch threads, output to the plan's log (or ``log_path``), events
    to the ``events`` box."""
    torch.set_num_threads(threads)
    recipe_dir = locate(plan.submission.recipe_dir) if plan.submission.recipe_dir is not None else None
    with output_to(log_path or plan.files.log):
        return run_trial(plan, on_event=poster(events) if events is not None else None, recipe_dir=recipe_dir)
