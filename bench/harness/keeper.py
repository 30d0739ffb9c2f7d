"""The box's keeper: a tiny trusted process between the harness and the recipe's box, whose only job is to be the
box's reaper, so the harness can count every CPU second the box's processes use.

``python -I -S keeper.py CHANNEL_FD COMMAND...``: the keeper makes itself a child subreaper (``prctl``), starts
``COMMAND`` (the box) as its child, and reaps whatever ends beneath it. Every process the box starts therefore stays
beneath the keeper: a process the box orphans (a double fork) is re-parented to the keeper, not to init, and when
any of them ends, the keeper's wait adds its CPU time to the keeper's own ``cutime``/``cstime``. So the box's CPU
time is always the keeper's children's times plus those of every living process beneath it, all of which the
harness reads from ``/proc`` (:class:`bench.harness.box_host.ProcessTree`); nothing the box does can hide work from
it. The keeper runs no code but this file's (the standard library, no site-packages: ``-S``), and the box, walled in
after it starts, can neither signal nor trace it.

The keeper exits once nothing is left beneath it, with the box's exit status (or 128 + the signal that ended it),
and it dies with the harness (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.stderr.write("keeper: cannot become a subreaper; the box's orphans would escape its CPU time\n")
        return 70
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness ends the box; Ctrl-C is the driver's to handle
    channel_fd = int(argv[1])
    box = os.fork()
    if box == 0:
        try:
            os.execv(argv[2], argv[2:])
        finally:
            os._exit(127)
    os.close(channel_fd)  # only the box holds its end of the channel
    status = 0
    while True:
        try:
            pid, code = os.waitpid(-1, 0)
        except ChildProcessError:
            return status
        except InterruptedError:
            continue
        if pid == box:
            status = os.waitstatus_to_exitcode(code)
            status = 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
