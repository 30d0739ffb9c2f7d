"""The harness's training clock: it runs while the recipe trains and pauses while the harness evaluates.

Only the harness pauses it, so evaluation time never counts against a recipe's budget, and nothing a recipe does
can stop it. Everything inside ``Recipe.train`` counts, including ``torch.compile`` warm-up and any compression a
recipe does after its last batch: that is the fixed-time rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class TrainingClock:
    """Accumulates running time across pause/resume; reads are cheap (one ``perf_counter`` call)."""

    def __init__(self) -> None:
        self._accumulated = 0.0
        self._started_at: float | None = None
        self.paused_seconds = 0.0

    @property
    def running(self) -> bool:
        return self._started_at is not None

    def start(self) -> None:
        if self._started_at is None:
            self._started_at = time.perf_counter()

    def stop(self) -> None:
        if self._started_at is not None:
            self._accumulated += time.perf_counter() - self._started_at
            self._started_at = None

    def elapsed(self) -> float:
        """Seconds the clock has run."""
        if self._started_at is None:
            return self._accumulated
        return self._accumulated + time.perf_counter() - self._started_at

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
