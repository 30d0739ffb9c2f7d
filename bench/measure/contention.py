"""How much of its hardware class a trial actually had: other processes' CPU use, CPU steal, load, GPU neighbours.

A fixed-time race is only fair when every trial had the machine its class names. The CPU classes' clock counts
the trial's own CPU time (:mod:`bench.harness.clock`), which takes most of a shared machine's load out of the
numbers, but not all of it: caches, memory bandwidth and SMT siblings are shared too. So every result also records
what else ran during its training phase, and is flagged when that was more than :data:`OTHERS_THRESHOLD` of the
class's cores; the leaderboard ranks flagged results apart.

Other processes' CPU comes from ``/proc/stat`` (busy time of every core) minus this process's own CPU time; only
the part that cannot have run on cores the class does not use counts against the class (a 2-core trial on a
16-core machine is not contended by a job on the other 14). Steal is the hypervisor's share of the same period.

GPU neighbours are the other processes NVML lists as computing on the trial's GPUs
(``nvmlDeviceGetComputeRunningProcesses``) when training starts and when it stops, the trial's own process and its
descendants (the supervisor, compile workers) left out. Where NVML's process ids are not this process's (a
container with its own PID namespace: the trial, which holds a CUDA context on its GPU, is not among them), or NVML
cannot list processes, the count is unknown (None), not zero.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil
import pynvml
import torch

from bench.measure.hardware import NvmlUnavailable, nvml_handles
from bench.results.schema import Contention
from bench.measure.cputime import process_cpu_seconds

OTHERS_THRESHOLD = 0.15
"""Other processes may use up to this fraction of the class's cores during training before a result is flagged.
Ray's own processes and the driver use a few percent of a core; two busy loops on a 2-core machine use 100%."""

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Sample:
    wall: float
    own_cpu: float
    busy: float | None  # seconds of all cores busy, from /proc/stat
    steal: float | None
    total: float | None
    load: float | None


def _proc_stat() -> tuple[float, float, float] | None:
    """(busy, steal, total) seconds over all cores since boot, or None where /proc/stat is not there."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy / _TICK, steal / _TICK, (busy + idle + iowait + steal) / _TICK


def _sample(own: Callable[[], float]) -> _Sample:
    stat = _proc_stat()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    busy, steal, total = stat if stat is not None else (None, None, None)
    return _Sample(time.perf_counter(), own(), busy, steal, total, load)


def own_process_tree() -> set[int]:
    """This process and its descendants, as they are now."""
    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


class GpuNeighbours:
    """Other processes computing on ``devices`` (CUDA), seen through NVML at :meth:`start` and :meth:`stop`."""

    def __init__(self, devices: Sequence[torch.device]) -> None:
        self._devices = list(devices)
        self._handles: list[object] = []
        self._others: set[int] = set()
        self._known = True

    def start(self) -> None:
        try:
            self._handles = nvml_handles(self._devices)
        except NvmlUnavailable:
            self._known = False
            return
        self._look()

    def _look(self) -> None:
        try:
            pids = {p.pid for handle in self._handles for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        except pynvml.NVMLError:
            self._known = False
            return
        own = own_process_tree()
        if not pids & own:  # we hold a context on these GPUs: NVML's ids are another PID namespace's
            self._known = False
        self._others |= pids - own

    def stop(self) -> int | None:
        """How many other processes were seen on the GPUs; None when that cannot be known."""
        if self._handles:
            if self._known:
                self._look()
            pynvml.nvmlShutdown()
        return len(self._others) if self._known else None


class ContentionProbe:
    """Measures the machine between :meth:`start` and :meth:`stop` (the training phase) for ``cores`` of a class.

    ``cores`` is the class's core count (``cpu-N``); for GPU classes pass the cores the trial was given, and the
    trial's ``gpus``, whose other processes (:class:`GpuNeighbours`) flag the result too. ``own`` reads the
    trial's own CPU seconds (default: this process's; a boxed trial's are its box's and the harness's serving it).
    """

    def __init__(self, cores: int, gpus: Sequence[torch.device] = (),
                 own: Callable[[], float] = process_cpu_seconds) -> None:
        self.cores = max(1, cores)
        self._own = own
        self._start: _Sample | None = None
        self._neighbours = GpuNeighbours(gpus) if gpus else None

    def start(self) -> None:
        if self._neighbours is not None:
            self._neighbours.start()
        self._start = _sample(self._own)

    def stop(self) -> Contention:
        if self._start is None:
            raise RuntimeError("ContentionProbe.stop() before start()")
        begin, end = self._start, _sample(self._own)
        gpu_neighbours = self._neighbours.stop() if self._neighbours is not None else None
        wall = max(end.wall - begin.wall, 1e-9)
        own = max(0.0, end.own_cpu - begin.own_cpu)
        share = own / (self.cores * wall)
        others = steal = None
        if begin.busy is not None and end.busy is not None:
            others_cores = max(0.0, (end.busy - begin.busy) - own) / wall
            spare = max(0, (os.cpu_count() or self.cores) - self.cores)
            others = max(0.0, others_cores - spare) / self.cores
            total = end.total - begin.total
            steal = (end.steal - begin.steal) / total if total > 0 else 0.0
        reasons = []
        if others is not None and others > OTHERS_THRESHOLD:
            reasons.append(f"other processes used {others:.0%} of the {self.cores} cores the class names "
                           f"(threshold {OTHERS_THRESHOLD:.0%})")
        if steal is not None and steal > OTHERS_THRESHOLD:
            reasons.append(f"the hypervisor stole {steal:.0%} of CPU time")
        if gpu_neighbours:
            reasons.append(f"{gpu_neighbours} other process(es) ran on the trial's GPU(s)")
        return Contention(
            cpu_share=share, others=others, steal=steal, load_start=begin.load, load_end=end.load,
            gpu_neighbours=gpu_neighbours, threshold=OTHERS_THRESHOLD, flagged=bool(reasons),
            reason="; ".join(reasons) or None,
        )
