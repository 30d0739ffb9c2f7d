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


class Received:
    """What :func:`terminate_as_interrupt` saw: Ray turns any exception a signal handler raises inside its calls
    into a plain ``KeyboardInterrupt``, so the type alone cannot tell SIGTERM from Ctrl-C."""

    def __init__(self) -> None:
        self.terminated = False

    def interrupt(self, caught: KeyboardInterrupt) -> KeyboardInterrupt:
        """The interrupt ``caught`` stands for: :class:`Terminated` if SIGTERM arrived in the block."""
        return Terminated() if self.terminated and not isinstance(caught, Terminated) else caught


@contextmanager
def terminate_as_interrupt() -> Iterator[Received]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the previous handler is restored
    after it. Elsewhere than in the main thread (where Python delivers signals) it changes nothing."""
    received = Received()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def terminated(signum: int, frame: object) -> None:
        received.terminated = True
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
