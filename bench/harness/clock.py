"""The harness's training clock: it runs while the recipe trains and pauses while the harness evaluates.

Only the harness pauses it, so evaluation time never counts against a recipe's budget. Everything inside
``Recipe.train`` counts, including ``torch.compile`` warm-up and any compression a recipe does after its last batch:
that is the fixed-time rule.

What the clock counts depends on the hardware class (:func:`clock_for`):

- **GPU classes: wall-clock seconds.** The class names dedicated accelerators, so elapsed time is the resource.
- **CPU classes (``cpu-N``): the trial process's CPU time divided by N**, i.e. seconds of the N cores the class
  names, fully used. On a shared machine the wall clock measures the machine's load (a trial that gets half of the
  cores trains half as many steps in the same wall time); CPU time measures the work the trial itself did, so the
  budget buys the same compute whatever else runs. It is still a fixed-*time* budget: a faster implementation of
  the same recipe gets more steps in it. CPU time of every thread of the process counts (threads a recipe starts
  too), and of child processes once they are reaped; a recipe that sleeps gains nothing (sleep uses no CPU).
  Waiting OpenMP threads are told to sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``, set by the scheduler for
  CPU trials), so idle spinning is not charged as work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench.measure.cputime import process_cpu_seconds

WALL = "wall"

CPU_TRIAL_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Environment of a CPU-class trial's process, set before torch loads OpenMP. Measured on the 2-core VM
(benchmarks/README.md, "OpenMP wait policy"): with the default policy, CPU seconds per step of the tiny baseline
rose 20-290% when two busy loops shared the cores (spinning threads burn the time a descheduled sibling is away);
with PASSIVE they rose 6-8%, and idle they were the same."""


def clock_for(hardware_class_cores: int | None) -> tuple[str, Callable[[], float]]:
    """The clock's name and source for a class: CPU time over ``cores`` for ``cpu-N``, else the wall clock."""
    if hardware_class_cores:
        cores = hardware_class_cores
        return f"cpu-time/{cores}", lambda: process_cpu_seconds() / cores
    return WALL, time.perf_counter


class ClockView:
    """What a recipe sees of the training clock (``ctx.clock``): its name and reading, no way to pause, stop or
    restart it. The harness keeps the :class:`TrainingClock` itself (see :func:`bench.harness.context.training_clock`)."""

    __slots__ = ("_clock",)

    def __init__(self, clock: TrainingClock) -> None:
        self._clock = clock

    @property
    def name(self) -> str:
        return self._clock.name

    @property
    def running(self) -> bool:
        return self._clock.running

    def elapsed(self) -> float:
        """Seconds the clock has run."""
        return self._clock.elapsed()


class TrainingClock:
    """Accumulates running time across pause/resume; reads are cheap (one clock read, about a microsecond).

    ``source`` is what it counts (see the module docstring); pauses are tallied in wall seconds, since they are
    the harness's own time (evaluation), reported separately. ``synchronize`` waits for the device's queued work
    (:func:`bench.train.runtime.synchronizer`) and is called before every reading that starts or stops the clock
    (pauses too), so queued GPU work is charged to the interval that queued it; :meth:`elapsed` does not wait.

    ``rate`` turns the source's seconds into the budget's: the hardware class's reference seconds per second of
    this host (:mod:`bench.harness.calibration`; 1.0 uncalibrated). It changes only while the clock is stopped (the
    harness measures the host during a pause), so each running interval is counted at one rate.
    """

    def __init__(self, source: Callable[[], float] = time.perf_counter, name: str = WALL,
                 synchronize: Callable[[], None] | None = None) -> None:
        self.name = name
        self._source = source
        self._synchronize = synchronize or (lambda: None)
        self._accumulated = 0.0
        self._host = 0.0  # the same intervals in the source's own seconds
        self._started_at: float | None = None
        self._held: float | None = None
        self.rate = 1.0
        self.paused_seconds = 0.0
        self.observer: Callable[[str], None] | None = None  # told 'start' and 'stop' (the harness's supervisor)

    @property
    def running(self) -> bool:
        return self._started_at is not None

    def start(self) -> None:
        if self._started_at is None:
            self._synchronize()  # work queued before the start (an evaluation's) is not training's
            if self.observer is not None:
                self.observer("start")
            self._started_at = self._source()

    def stop(self) -> None:
        if self._started_at is not None:
            self._synchronize()  # training's queued work is training's
            interval = self._source() - self._started_at
            self._accumulated += interval * self.rate
            self._host += interval
            self._started_at = None
            if self.observer is not None:
                self.observer("stop")

    def set_rate(self, rate: float) -> None:
        """Count the next running intervals at ``rate`` (the clock must be stopped)."""
        if self._started_at is not None:
            raise RuntimeError("the clock's rate changes only while it is stopped")
        if not rate > 0:
            raise ValueError(f"a clock rate must be positive, got {rate}")
        self.rate = float(rate)

    def resume_from(self, seconds: float, host_seconds: float | None = None) -> None:
        """Continue a resumed trial's clock from the reading its checkpoint saved (the clock must be stopped)."""
        if self._started_at is not None:
            raise RuntimeError("the clock must be stopped to set its reading")
        self._accumulated = float(seconds)
        self._host = float(seconds if host_seconds is None else host_seconds)

    def host_elapsed(self) -> float:
        """The same running intervals in this host's own seconds (the source's, before the rate)."""
        if self._started_at is None:
            return self._host
        return self._host + self._source() - self._started_at

    def elapsed(self) -> float:
        """Seconds the clock has run (the budget's seconds)."""
        if self._held is not None:
            return self._held
        if self._started_at is None:
            return self._accumulated
        return self._accumulated + (self._source() - self._started_at) * self.rate

    @contextmanager
    def held(self) -> Iterator[float]:
        """One reading for the whole block: every :meth:`elapsed` inside returns it (the harness answers a request
        from one reading instead of reading a process tree from ``/proc`` once per question)."""
        self._held = None
        self._held = self.elapsed()
        try:
            yield self._held
        finally:
            self._held = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the clock for the duration of the block (if it was running); the pause time is tallied."""
        was_running = self.running
        self.stop()
        began = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - began
            if was_running:
                self.start()
