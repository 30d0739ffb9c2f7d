"""How a run of trials can end other than with every result written, whichever executor ran it."""

from __future__ import annotations

from bench.errors import BenchError
from bench.results.schema import RunResult
from bench.results.store import ResultNotWritten


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during :func:`run_trials`, raised after running trials were stopped and recorded as
    ``interrupted``.

    ``results`` holds every result written, finished and interrupted; trials that never started are not recorded;
    ``by`` is the interrupt that stopped the run (a :class:`bench.interrupt.Terminated` for SIGTERM). Being a
    ``KeyboardInterrupt``, it ends a program that does not catch it the way Ctrl-C does (exit status 130).
    """

    def __init__(self, results: list[RunResult], by: KeyboardInterrupt | None = None) -> None:
        super().__init__(f"interrupted; {len(results)} results recorded")
        self.results = results
        self.by = by or KeyboardInterrupt()


class ResultsNotSaved(BenchError):
    """Some finished results could not be written to the results folder (disk full ...), raised after every trial
    ended. Each was kept in a fallback folder or in memory (see :class:`ResultNotWritten`); ``results`` holds all
    results of the run, ``unsaved`` says where each unsaved one went."""

    def __init__(self, results: list[RunResult], unsaved: list[ResultNotWritten]) -> None:
        super().__init__("\n".join(str(problem) for problem in unsaved))
        self.results = results
        self.unsaved = unsaved
