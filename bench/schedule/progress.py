"""The live view of a run: one table row per trial, fed by the events workers send, instead of interleaved logs.

On a terminal the table redraws a few times a second; elsewhere (a CI log, a pipe, ``progress=False``) each trial
prints one line per state change, so a log file stays short and readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from typing_extensions import Self

from bench.spec.result import RunResult, TrialStatus
from bench.spec.units import format_count, format_duration
from bench.train.events import TrialEvent

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
    note: str = ""


class ProgressBoard:
    """Tracks every trial of a run; use as a context manager around the run."""

    def __init__(self, trials: list[tuple[str, str, int]], console: Console, live: bool) -> None:
        """``trials``: (run id, submission, seed) of each trial, in display order."""
        self._rows = {run_id: _Row(run_id, submission, seed) for run_id, submission, seed in trials}
        self._console = console
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
        row.time_left = event.time_left
        if event.kind == "train":
            row.loss = event.loss if event.loss is not None else row.loss
            row.tokens_per_s = event.tokens_per_s if event.tokens_per_s is not None else row.tokens_per_s
        else:
            row.val_loss = event.val_loss

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
        if self._live is None:
            note = f": {row.note}" if row.note else ""
            val = f" (val loss {row.val_loss:.4f})" if state == TrialStatus.ok.value and row.val_loss else ""
            self._console.print(
                f"{row.run_id}  {row.submission}  seed {row.seed}  {state}{val}{note}",
                highlight=False,
                markup=False,
                soft_wrap=True,
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
                row.run_id,
                row.submission,
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
