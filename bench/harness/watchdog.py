"""The hard limit inside a trial's worker: a recipe still training past its budget plus grace is stopped."""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from typing import Any

from bench.harness.clock import TrainingClock
from bench.harness.context import HardLimitExceeded


class Watchdog:
    """Stops a recipe that runs past ``limit`` seconds of training clock, or ``wall_limit`` wall seconds (less the
    time the training thread waited for a CPU on a busy machine), by raising :class:`HardLimitExceeded` in the thread
    that entered it.

    On the main thread a signal interrupts even a blocking call (a sleep, a lock); on another thread (Ray Train runs
    each rank's training function in one) the exception is set asynchronously
    (``PyThreadState_SetAsyncExc``) and raised at the thread's next Python instruction, which a training loop
    reaches between kernels; a thread stuck inside one C call (a collective that never completes) is left to the
    scheduler's force-cancel, the outer hard limit. Evaluation time does not count because the clock is paused
    then (the wall limit is generous enough to include it).
    """

    def __init__(self, clock: TrainingClock, limit: float | None, wall_limit: float | None = None) -> None:
        self._clock = clock
        self._limit = limit
        self._wall_limit = wall_limit
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.fired = False
        self._armed = limit is not None
        self._target = threading.current_thread()
        self._on_main = self._target is threading.main_thread()
        self._previous: Any = None
        self._why = ""

    def __enter__(self) -> Watchdog:
        if self._armed:
            if self._on_main:
                self._previous = signal.signal(signal.SIGUSR1, self._raise)
            threading.Thread(target=self._watch, name="bench-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done.set()
        if self._armed and self._on_main:
            signal.signal(signal.SIGUSR1, self._previous)

    def _raise(self, signum: int, frame: object) -> None:
        self.fired = True
        raise HardLimitExceeded(self._why)

    def _watch(self) -> None:
        target = self._target.ident
        assert self._limit is not None and target is not None
        waited = _runqueue_wait(self._target.native_id)
        began = time.perf_counter()
        while not self._done.wait(0.25):
            # Time the training thread was runnable but got no CPU (a busy machine) is not the recipe's: what counts
            # against the wall limit is time on CPU plus time blocked (sleeping, waiting on something).
            wall = time.perf_counter() - began - (_runqueue_wait(self._target.native_id) - waited)
            if self._clock.elapsed() > self._limit:
                self._why = f"still running after {self._limit:.0f}s of training time"
            elif self._wall_limit is not None and wall > self._wall_limit / min(1.0, self._clock.rate):
                self._why = f"still running after {wall:.0f}s of wall time (limit {self._wall_limit:.0f}s)"
            else:
                continue
            with self._lock:  # not after the training thread has left the block (see __exit__)
                if self._done.is_set():
                    return
                if self._on_main:
                    signal.pthread_kill(target, signal.SIGUSR1)
                else:
                    self.fired = True
                    _raise_in(target, self._why)
            return


def _raise_in(thread_id: int, why: str) -> None:
    """Raise :class:`HardLimitExceeded` (with ``why``) in thread ``thread_id`` at its next Python instruction."""
    def init(self: HardLimitExceeded) -> None:
        HardLimitExceeded.__init__(self, why)

    limit = type("HardLimitExceeded", (HardLimitExceeded,), {"__init__": init})
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(limit))


def _runqueue_wait(thread_id: int | None) -> float:
    """Seconds thread ``thread_id`` of this process has spent runnable but waiting for a CPU (Linux schedstat);
    0.0 where the kernel does not report it."""
    try:
        with open(f"/proc/self/task/{thread_id}/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0
