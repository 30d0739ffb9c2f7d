"""Where finished trials go, whichever executor ran them: the results folder and the progress board."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from bench.executor.progress import ProgressBoard
from bench.executor.worker import Shipped, receive
from bench.harness.plan import PlannedTrial
from bench.results.schema import RunResult
from bench.results.store import ResultNotWritten, write_result


@dataclass
class Ledger:
    """The results folder and the progress board of a run; what was recorded, and what could not be written."""

    results_dir: Path
    board: ProgressBoard
    console: Console
    done: dict[str, RunResult] = field(default_factory=dict)
    unsaved: list[ResultNotWritten] = field(default_factory=list)

    def record(self, plan: PlannedTrial, outcome: RunResult | Shipped) -> None:
        """Write the result, then any files shipped with it (log, model): a write that fails loses nothing (the
        fallback holds the result), a file that cannot be written only costs that file, and the run goes on."""
        result = outcome.result if isinstance(outcome, Shipped) else outcome
        try:
            write_result(result, self.results_dir)
        except ResultNotWritten as problem:
            self.unsaved.append(problem)
            self.console.print(f"[bold red]not saved:[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
        for problem in receive(outcome, plan) if isinstance(outcome, Shipped) else []:
            self.console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        self.done[plan.run_id] = result
        self.board.finish(result)
        if plan.files.resume is not None and not plan.stage:  # never resumed from now
            plan.files.resume.unlink(missing_ok=True)

    def results(self, plans: list[PlannedTrial]) -> list[RunResult]:
        """The recorded results, in the order of ``plans`` (those never recorded left out)."""
        return [self.done[plan.run_id] for plan in plans if plan.run_id in self.done]
