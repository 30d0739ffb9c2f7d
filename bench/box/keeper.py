"""The box's keeper: a trusted process between the harness and the recipe's box, whose only job is to be the box's
reaper, so the harness can count every CPU second the box's processes use.

A fork of the zygote (:mod:`bench.box.zygote`) calls :func:`keep`: it makes itself a child subreaper (``prctl``),
forks the box beneath itself, and reaps whatever ends beneath it. Every process the box starts therefore stays
beneath the keeper: a process the box orphans (a double fork) is re-parented to the keeper, not to init, and when
any of them ends, the keeper's wait adds its CPU time to the keeper's own ``cutime``/``cstime``. So the box's CPU
time is always the keeper's children's times plus those of every living process beneath it, all of which the
harness reads from ``/proc`` (:class:`bench.measure.cputime.ProcessTree`); nothing the box does can hide work from
it. The keeper runs no code but this and the zygote's imports, and the box, walled in after it starts, can neither
signal nor trace it. It writes the box's exit status to the harness (a pipe) as soon as the box's own process ends, so that a box that
died says how (``-11``: killed by SIGSEGV), and exits once nothing is left beneath it, with the box's exit status
(or 128 + the signal).
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def keep(box: Callable[[], int], channel_fd: int, status_fd: int | None = None) -> int:
    """Become a subreaper, run ``box`` in a forked child, reap everything beneath; the box's exit status, also
    written to ``status_fd`` (as ``os.waitstatus_to_exitcode`` gives it) when the box's process ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the zygote's end is the keeper's
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return 70  # without it the box's orphans would escape its CPU time: no box
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = os.fork()
    if child == 0:
        code = 70
        try:
            if status_fd is not None:
                os.close(status_fd)  # only the keeper reports the box's end
            code = box()
        finally:
            os._exit(code)
    os.close(channel_fd)  # only the box holds its end of the channel
    status = 0
    while True:
        try:
            pid, code = os.waitpid(-1, 0)
        except ChildProcessError:
            return status
        except InterruptedError:
            continue
        if pid == child:
            exit_code = os.waitstatus_to_exitcode(code)
            status = 128 - exit_code if exit_code < 0 else exit_code
            if status_fd is not None:
                try:
                    os.write(status_fd, f"{exit_code}\n".encode())
                except OSError:
                    pass  # the harness is no longer listening
                os.close(status_fd)
                status_fd = None


def reap() -> None:
    """Collect every child of this process that has ended, without waiting (the zygote's and a scoring box's
    forks): no zombie is left for the harness to mistake for a living box."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
