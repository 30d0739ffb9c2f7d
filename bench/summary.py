"""The closing table of ``bench run`` and ``bench tune`` (one row per trial with what a reader checks first), and
how tables reach a pipe or a log file: at the width their content needs, never cut to 80 columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from bench.results.schema import RunResult, TrialStatus
from bench.spec.units import format_count, format_duration

_MEASURED = {"nvml-counter": "(m)", "rapl": "(m)"}  # everything else is an estimate
_STATUS_STYLE = {TrialStatus.ok: "green", TrialStatus.invalid: "yellow", TrialStatus.overrun: "yellow"}
_UNBOUNDED = 100_000  # columns offered to a table measuring its natural width
PROSE_WIDTH = 60
"""Columns of prose (a description, a failure's reason) wrap at this many characters, so that a table's full width
is its numbers' and names' width, not its longest sentence's (``bench list | cat`` was 413 columns wide)."""


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(results: Sequence[RunResult], title: str = "Results", *, run_ids: bool = False) -> Table:
    """gap = validation bits per byte above the corpus's entropy floor; energy (m) measured, (e) estimated.

    ``run_ids`` adds the run id (it starts with the start time), for listings of stored results. Every text that
    comes from a result or from the caller is shown as it is, never read as Rich markup.
    """
    table = Table(
        title=Text(title), title_justify="left",
        caption="gap: bpb above the entropy floor; machine: share of the class's cores other processes used while "
                "the trial trained (CONTENDED: ranked apart); energy (m) measured, (e) estimated",
        caption_justify="left",
    )  # fmt: skip
    table.add_column("submission", no_wrap=True)
    if run_ids:
        table.add_column("run", no_wrap=True)
    for column in ("seed", "status", "loss", "bpb", "gap", "to target", "tokens", "tok/s", "MFU", "machine", "energy"):
        if column == "status":  # the status, then the reason (prose)
            table.add_column(column, justify="left", max_width=PROSE_WIDTH)
        else:
            table.add_column(column, justify="right", no_wrap=True)
    for result in results:
        final = result.final
        floor = result.validation.entropy_floor_bpb if result.validation else None
        gap = final.val_bpb - floor if final is not None and floor is not None else None
        energy = result.energy.kwh if result.energy else None
        method = result.energy.train.method if result.energy else ""
        status = Text(result.status.value, style=_STATUS_STYLE.get(result.status, "red"))
        if result.reason:
            status.append(f"\n{result.reason}")
        table.add_row(
            Text(result.submission),
            *([Text(result.run_id)] if run_ids else []),
            str(result.seed),
            status,
            _number(final.val_loss if final else None),
            _number(final.val_bpb if final else None),
            _number(gap),
            format_duration(result.time_to_target_s) if result.time_to_target_s is not None else "-",
            format_count(result.tokens),
            format_count(result.tokens_per_s) if result.tokens_per_s else "-",
            f"{result.compute.mfu:.1%}" if result.compute and result.compute.mfu is not None else "-",
            _machine(result),
            f"{energy * 1000:.2g} Wh {_MEASURED.get(method, '(e)')}" if energy is not None else "-",
        )
    return table


def _machine(result: RunResult) -> Text:
    """How much of the machine others took while the trial trained: ``idle``, ``4% busy``, or ``CONTENDED 60%``."""
    contention = result.contention
    if contention is None or contention.others is None:
        return Text("-")
    if contention.flagged:
        return Text(f"CONTENDED {contention.others:.0%}", style="bold red")
    return Text("idle" if contention.others < 0.01 else f"{contention.others:.0%} busy")


class FullWidth:
    """A renderable drawn at its natural width whatever the console's width: for output that is not a terminal,
    where a table cut to the 80 columns Rich assumes would lose its numbers ("2.…") while nothing wraps a log.
    Columns of prose keep that width sane by wrapping at :data:`PROSE_WIDTH`."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        natural = Measurement.get(console, options.update_width(_UNBOUNDED), self.renderable).maximum
        yield from console.render(self.renderable, options.update_width(max(natural, 1)))


def print_table(console: Console, renderable: RenderableType) -> None:
    """Print a table to fit a terminal; anywhere else (a pipe, a file, a CI log) at its full width, with no padding
    at the ends of lines (a title is otherwise padded to the table's width)."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(FullWidth(renderable), crop=False)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    console.file.flush()
