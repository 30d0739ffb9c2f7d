"""Ends a local Ray instance's processes when the ``bench`` command that started it dies without stopping it.

Ray ties its head processes (GCS, raylet, dashboard, monitors) to the driver that started them (Linux's parent-death
signal), but not the raylet's own children: after a SIGKILL of the driver, or the out-of-memory killer's, its
dashboard and runtime-env agents notice the raylet is gone within seconds, then spend a minute trying to report
that to the dead GCS before they exit (measured with Ray 2.60 on Linux: 62 s). A command killed again and again
(a scheduler's retries) would pile them up.

:func:`watch` starts this file as a small process of its own session (so a terminal's Ctrl-C or a signal to the
command's process group does not reach it), with a pipe from the driver as its standard input. It keeps the list of
Ray's processes (the given ones and their descendants, refreshed every :data:`POLL_S` seconds) and, when the pipe
ends, kills those still running: the driver closes the pipe after ``ray.shutdown()``, and the kernel closes it when
the driver dies, however it dies. It imports nothing of ``bench`` or Ray.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterable

import psutil

POLL_S = 0.5


def watch(pids: Iterable[int]) -> subprocess.Popen[bytes]:
    """Start the reaper for the processes ``pids`` and their descendants; close its stdin (then wait for it) once
    they were stopped the ordinary way, so it only kills what a clean shutdown left behind."""
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, pids)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )


def reap(pids: Iterable[int], stdin: int = 0) -> None:
    """Follow ``pids`` and their descendants until ``stdin`` ends, then kill every one of them still running
    (psutil checks each is still the process it recorded, not another that got its pid since)."""
    known = _processes(pids)
    while True:
        known.update(_processes(_descendants(set(known)) - set(known)))
        known = {pid: process for pid, process in known.items() if process.is_running()}  # an orphan stays
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready and not os.read(stdin, 4096):
            break
    for process in known.values():
        try:
            process.kill()
        except psutil.Error:
            pass


def _processes(pids: Iterable[int]) -> dict[int, psutil.Process]:
    found = {}
    for pid in pids:
        try:
            found[pid] = psutil.Process(pid)
        except psutil.Error:
            pass
    return found


def _descendants(pids: set[int]) -> set[int]:
    """Every process below ``pids`` in the process tree, from one pass over the system's processes."""
    children: dict[int, list[int]] = {}
    for process in psutil.process_iter(["ppid"]):
        children.setdefault(process.info["ppid"], []).append(process.pid)
    found: set[int] = set()
    frontier = list(pids)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


if __name__ == "__main__":
    reap(int(pid) for pid in sys.argv[1:])
