"""A background thread that calls a sampling function at a fixed interval, for the measurements that must watch a
trial while it trains (host RSS, RAPL counters, GPU telemetry). The thread sleeps on an event between calls, so it
costs nothing in between and stops at once when asked."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Poller:
    """Calls ``sample`` every ``interval_s`` seconds on a daemon thread named ``name``, from ``start`` until ``stop``.

    A ``sample`` that returns ``False`` ends the polling early (a device that stopped answering, say).
    """

    def __init__(self, sample: Callable[[], object], interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._sample = sample
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            if self._sample() is False:
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for a sample in progress to finish."""
        self._stopping.set()
        self._thread.join()
