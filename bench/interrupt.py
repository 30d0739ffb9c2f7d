"""Stopping a command: SIGTERM (a job scheduler's cancel, ``kill``) is handled as Ctrl-C is.

Python turns Ctrl-C into a ``KeyboardInterrupt``, so every ``finally`` and ``with`` block on the way out runs: the
encoding processes of a data build are stopped, running trials are recorded as interrupted. SIGTERM's default is to
end the process at once, which runs none of that and leaves child processes running on their own. Inside
:func:`terminate_as_interrupt` it raises :class:`Terminated`, a ``KeyboardInterrupt``, instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised in the main thread where Ctrl-C's ``KeyboardInterrupt`` would be."""

    def __init__(self) -> None:
        super().__init__("SIGTERM")


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's status for a process ended by the signal: 128 + 15 for SIGTERM, 128 + 2 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def describe(interrupt: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the previous handler is restored
    after it. Elsewhere than in the main thread (where Python delivers signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
