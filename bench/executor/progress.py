"""The live view of a run: one table row per trial, fed by the events workers send, instead of interleaved logs.

On a terminal the table redraws a few times a second; elsewhere (a CI log, a pipe, nohup, SLURM, ``progress=False``)
each trial prints one line per state change and, while it trains, a progress line (step, tokens, loss, tokens/s,
time left) every :func:`progress_interval` seconds, so a log shows a run is alive and how it goes yet stays short.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from typing_extensions import Self

from bench.errors import BenchError
from bench.results.schema import RunResult, TrialStatus
from bench.spec.units import format_count, format_duration, parse_duration
from bench.train.events import TrialEvent

PROGRESS_ENV = "BENCH_PROGRESS_EVERY"
DEFAULT_PROGRESS_EVERY_S = 10.0

_STATUS_STYLE = {
    TrialStatus.ok: "green",
    TrialStatus.failed: "red",
    TrialStatus.invalid: "yellow",
    TrialStatus.overrun: "magenta",
    TrialStatus.interrupted: "dim",
}


@dataclass
class _Row:
    run_id: str
    submission: str
    seed: int
    state: str = "queued"
    step: int | None = None
    loss: float | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None
    time_left: float | None = None
    tokens: int | None = None
    note: str = ""
    last_line: float | None = None  # clock reading when the last progress line was printed


def progress_interval() -> float:
    """Seconds between progress lines when not on a terminal: ``$BENCH_PROGRESS_EVERY`` (``30``, ``1m``; 0 turns
    them off), else 10 s. Ray workers started by ``bench run`` inherit it, so trial logs follow it too."""
    text = os.environ.get(PROGRESS_ENV, "").strip()
    return parse_interval(text, f"${PROGRESS_ENV}") if text else DEFAULT_PROGRESS_EVERY_S


def parse_interval(text: str, where: str) -> float:
    """``30``, ``30s`` or ``1m`` -> seconds; errors name ``where`` the text came from (an option, a variable)."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise BenchError(f"{where}: {exc}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise BenchError(f"{where}: expected a duration of 0 s or more, got {text!r}")
    return seconds


def progress_text(
    step: int | None, tokens: int | None, loss: float | None = None, val_loss: float | None = None,
    tokens_per_s: float | None = None, time_left: float | None = None,
) -> str:
    """``step 120  tokens 1.23M  loss 3.4567  val loss 3.5012  25.4k tok/s  12.0s left``; unknown values left out."""
    parts = [
        f"step {step}" if step is not None else None,
        f"tokens {format_count(tokens)}" if tokens is not None else None,
        f"loss {loss:.4f}" if loss is not None else None,
        f"val loss {val_loss:.4f}" if val_loss is not None else None,
        f"{format_count(tokens_per_s)} tok/s" if tokens_per_s is not None else None,
        f"{format_duration(time_left)} left" if time_left is not None else None,
    ]  # fmt: skip
    return "  ".join(part for part in parts if part is not None)


class ProgressBoard:
    """Tracks every trial of a run; use as a context manager around the run."""

    def __init__(
        self, trials: list[tuple[str, str, int]], console: Console, live: bool, *,
        every_s: float | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        """``trials``: (run id, submission, seed) of each trial, in display order. Without ``live``, a progress line
        per training trial every ``every_s`` seconds (default :func:`progress_interval`; 0: none)."""
        self._rows = {run_id: _Row(run_id, submission, seed) for run_id, submission, seed in trials}
        self._console = console
        self._every_s = progress_interval() if every_s is None else every_s
        self._clock = clock
        self._live = Live(console=console, get_renderable=self._table, refresh_per_second=4) if live else None

    def __enter__(self) -> Self:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()

    def event(self, event: TrialEvent) -> None:
        row = self._rows[event.run_id]
        if event.kind == "phase":
            if event.phase and event.phase != "done":  # the trial's status follows at once
                self._set_state(row, event.phase)
            return
        row.step = event.step
        row.tokens = event.tokens
        row.time_left = event.time_left
        if event.kind == "train":
            row.loss = event.loss if event.loss is not None else row.loss
            row.tokens_per_s = event.tokens_per_s if event.tokens_per_s is not None else row.tokens_per_s
        else:
            row.val_loss = event.val_loss
        self._progress_line(row)

    def finish(self, result: RunResult) -> None:
        row = self._rows[result.run_id]
        row.time_left = None
        if result.final is not None:
            row.val_loss = result.final.val_loss
        row.note = result.reason or ""
        self._set_state(row, result.status.value)

    def _set_state(self, row: _Row, state: str) -> None:
        if state == row.state:
            return
        row.state = state
        note = f": {row.note}" if row.note else ""
        val = f" (val loss {row.val_loss:.4f})" if state == TrialStatus.ok.value and row.val_loss else ""
        self._line(row, f"{state}{val}{note}")

    def _progress_line(self, row: _Row) -> None:
        """The trial's numbers, the first time it reports and then every ``every_s`` seconds at most."""
        now = self._clock()
        if self._every_s <= 0 or (row.last_line is not None and now - row.last_line < self._every_s):
            return
        row.last_line = now
        self._line(row, progress_text(row.step, row.tokens, row.loss, row.val_loss, row.tokens_per_s, row.time_left))

    def _line(self, row: _Row, text: str) -> None:
        if self._live is None:
            self._console.print(
                f"{row.run_id}  {row.submission}  seed {row.seed}  {text}", highlight=False, markup=False, soft_wrap=True
            )

    def _table(self) -> Table:
        table = Table(title="trials", title_justify="left", expand=False)
        for column in ("run", "submission", "seed", "state", "step", "loss", "val loss", "tok/s", "left", "note"):
            table.add_column(
                column, justify="right" if column in ("seed", "step", "loss", "val loss", "tok/s", "left") else "left"
            )
        for row in self._rows.values():
            style = next((s for status, s in _STATUS_STYLE.items() if status.value == row.state), "")
            table.add_row(
                Text(row.run_id),
                Text(row.submission),
                str(row.seed),
                Text(row.state, style=style),
                "" if row.step is None else str(row.step),
                _number(row.loss),
                _number(row.val_loss),
                "" if row.tokens_per_s is None else format_count(row.tokens_per_s),
                "" if row.time_left is None else format_duration(row.time_left),
                Text(row.note[:60]),
            )
        return table


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
