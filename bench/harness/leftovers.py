"""What a recipe left running when ``Recipe.train`` returned: Python threads and child processes it started.

A thread (or process) still running after ``train()`` returned could go on changing the model while the harness
evaluates it, or keep working off the clock. The harness records what runs before ``train()`` (its own samplers,
the watchdog, Ray's and torch's threads) and, when it returns, names what is new and still alive.

Not counted as the recipe's: threads whose code belongs to torch, Ray or the experiment trackers (``torch.compile``
starts compile threads and a compile-worker process it keeps for later compiles), a ``concurrent.futures`` worker
thread that sits idle waiting for work, multiprocessing's resource tracker and torch's compile workers among the
processes. Native threads (torch's intra-op pool, OpenMP, autograd's device threads, even when they have run Python
code and so appear as "dummy" threads) are not counted; so a native thread a recipe starts through ctypes or an
extension is not seen either.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from dataclasses import dataclass

import psutil

from bench.harness.supervisor import stat_fields

TRUSTED_MODULES = ("torch", "ray", "wandb", "mlflow", "tqdm", "codecarbon")
"""Packages whose threads are theirs, not the recipe's: the module of a thread's target (or its class's ``run``)."""

TRUSTED_PROCESSES = ("torch._inductor.compile_worker", "multiprocessing.resource_tracker")
"""Child processes a library starts and keeps on purpose (matched in the command line)."""

_IDLE_FILES = ("threading.py", "queue.py", os.path.join("concurrent", "futures", "thread.py"))


@dataclass(frozen=True)
class Running:
    """The threads and child processes alive at one moment."""

    threads: frozenset[int]  # id() of the Thread objects (idents are reused once a thread ends)
    processes: frozenset[tuple[int, float]]  # (pid, start time): pids are reused too
    running_python: frozenset[int] = frozenset()  # idents of every thread with a Python frame, threading's or not

    @classmethod
    def now(cls) -> Running:
        return cls(frozenset(id(t) for t in threading.enumerate()), frozenset(_children()),
                   frozenset(sys._current_frames()))


def left_running(before: Running) -> list[str]:
    """The threads and processes started since ``before`` that are still running and are the recipe's, described
    one by one ('thread writer (recipe.py)', 'process 1234 python ...'); empty when it cleaned up."""
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        if id(thread) in before.threads or not thread.is_alive() or _trusted(thread, frames):
            continue
        if isinstance(thread, threading._DummyThread):  # a native thread that ran Python code (autograd's device
            continue  # threads run checkpointed and custom backward passes): not started from Python, not seen
        found.append(f"thread {thread.name!r} ({_code_of(thread)})")
    # Threads started beneath threading (``_thread.start_new_thread``) are not in threading.enumerate(), but they
    # run Python code, so they have a frame; a native thread that is idle has none.
    known = {t.ident for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}
    for ident, frame in frames.items():
        if ident in known or ident in before.running_python:
            continue
        while frame.f_back is not None:
            frame = frame.f_back  # the outermost frame: the function the thread was started with
        module = frame.f_globals.get("__name__", "?")
        if module.split(".")[0] not in TRUSTED_MODULES:
            found.append(f"thread {ident} (started outside threading, running {module}.{frame.f_code.co_name})")
    for pid, created in _children():
        if (pid, created) in before.processes:
            continue
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(process.cmdline())
        except psutil.Error:  # ended meanwhile
            continue
        if not any(name in command for name in TRUSTED_PROCESSES):
            found.append(f"process {pid} ({command[:80]})")
    return found


def _children() -> list[tuple[int, float]]:
    """(pid, start time) of every descendant of this process.

    The start time is the kernel's count of clock ticks from boot to the process's start, which never changes.
    psutil's ``create_time()`` adds the boot time, which Linux derives afresh from the wall clock at every read of
    ``/proc/stat`` and which moves by a second now and then: the same process then looked new, and the harness's own
    supervisor was once taken for a process the recipe left running."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            found.append((child.pid, _start_time(child)))
        except psutil.Error:  # ended meanwhile
            continue
    return found


def _start_time(process: psutil.Process) -> float:
    try:
        return float(stat_fields(f"/proc/{process.pid}/stat")[19])  # field 22: starttime
    except (OSError, IndexError, ValueError):  # no /proc (macOS, whose boot time does not move): psutil's
        return process.create_time()


def _target(thread: threading.Thread) -> object:
    target = getattr(thread, "_target", None)
    if isinstance(thread, threading.Timer):  # codecarbon's sampler re-arms a Timer at every tick
        target = thread.function
    elif target is None and type(thread).run is not threading.Thread.run:
        return type(thread).run
    while isinstance(target, functools.partial):
        target = target.func
    return target


def _code_of(thread: threading.Thread) -> str:
    target = _target(thread)
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{getattr(target, '__qualname__', type(target).__name__)}"


def _trusted(thread: threading.Thread, frames: dict[int, object]) -> bool:
    target = _target(thread)
    module = getattr(target, "__module__", None) or ""
    if module.split(".")[0] in TRUSTED_MODULES:
        return True
    if module == "concurrent.futures.thread":  # an executor's worker: harmless while it waits for work
        frame = frames.get(thread.ident)  # type: ignore[arg-type]
        while frame is not None:
            if not frame.f_code.co_filename.endswith(_IDLE_FILES):  # type: ignore[attr-defined]
                return False
            frame = frame.f_back  # type: ignore[attr-defined]
        return True
    return False
