"""CPU time: what a CPU class's training clock counts, of this process or of a process tree read from outside it.

:func:`process_cpu_seconds` is a process's own reading (the in-process mode of a trial, the bare loops of the
benchmarks). :class:`ProcessTree` reads a tree of processes from ``/proc``, the way the harness times a recipe's box
(:mod:`bench.harness.box_host`): the CPU seconds of every process beneath a root (its *keeper*, which reaps them),
living or ended, so nothing the tree's processes patch or do can move it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's threads and of its reaped child processes."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


def stat_fields(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` from the third on (state, ppid, ...): those after the command name, which
    may hold spaces and parentheses. Field N of proc(5) is item N - 3."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()


WALK_EVERY_S = 0.25


def _ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of ``pid``, in clock ticks (fields 14-17 of ``/proc/PID/stat``)."""
    return sum(int(value) for value in stat_fields(pid)[11:15])


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of each of its threads), from ``/proc/PID/task/TID/children``."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found += [int(child) for child in text.split()]
    return found


class ProcessTree:
    """Everything beneath ``root`` (not ``root`` itself), read from ``/proc``.

    ``root`` is a reaper (a child subreaper, see :mod:`bench.harness.keeper`), so every process ever started
    beneath it stays beneath it while it lives and, once ended, is counted in the reaper's ``cutime``/``cstime``:
    :meth:`cpu_seconds` is the total CPU time of everything that ever ran beneath it. Readings never go down (a
    process read between its end and its reaping is counted once, through its parent)."""

    def __init__(self, root: int, walk_every_s: float = WALK_EVERY_S) -> None:
        self.root = root
        self._last = 0.0
        self._walk_every_s = walk_every_s
        self._walked_at: float | None = None
        self._main: int | None = None  # the root's first child (the box's own process), read on every call
        self._others = 0  # ticks of everything else, as of the last walk

    def pids(self) -> list[int]:
        """Every living (or not yet reaped) process beneath the root, parents before children."""
        found, frontier = [], children(self.root)
        while frontier:
            pid = frontier.pop(0)
            found.append(pid)
            frontier += children(pid)
        return found

    def cpu_seconds(self) -> float:
        """User + system seconds of everything that ran beneath the root: its reaped children's (``cutime`` and
        ``cstime``) and every living descendant's own and reaped children's. The whole tree is walked every
        ``walk_every_s``; in between only its main process is read (one file), and the rest counts as it was at the
        last walk, so a reading costs tens of microseconds and work elsewhere in the tree is counted late, never
        lost."""
        now = time.monotonic()
        if self._main is None or self._walked_at is None or now - self._walked_at >= self._walk_every_s:
            return self._walk(now)
        try:
            ticks = self._others + _ticks(self._main)
        except (OSError, IndexError, ValueError):
            return self._walk(now)
        self._last = max(self._last, ticks / CLOCK_TICKS)
        return self._last

    def _walk(self, now: float) -> float:
        try:
            root = stat_fields(self.root)
        except OSError:
            return self._last  # the keeper is gone: the tree has ended, its last reading stands
        ticks, main, main_ticks = int(root[13]) + int(root[14]), None, 0
        for pid in self.pids():
            try:
                own = _ticks(pid)
            except (OSError, IndexError, ValueError):
                continue  # it ended between the listing and the reading: its parent counts it now
            if main is None:
                main, main_ticks = pid, own
            ticks += own
        self._main, self._others, self._walked_at = main, ticks - main_ticks, now
        self._last = max(self._last, ticks / CLOCK_TICKS)
        return self._last

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process beneath the root, again until no new one appears (one may start a child
        while the signal goes round)."""
        sent: set[int] = set()
        for _ in range(10):
            pids = [pid for pid in self.pids() if pid not in sent]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                sent.add(pid)

    def stop(self) -> None:
        """Freeze the tree (SIGSTOP: it cannot be caught): nothing beneath the root runs until :meth:`resume`."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
