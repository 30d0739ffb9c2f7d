"""Two submissions side by side on one workload, with the differences that matter and their uncertainty.

``A`` is the reference and ``B`` the candidate: differences are ``B - A`` (Welch's t-test, its 95% interval and
two-sided p-value), and the speedup in time-to-target is ``mean TTT(A) / mean TTT(B)`` (above 1: B reaches the
target sooner), with a 95% interval from the delta method on the log ratio. Each side uses its runs on official
hardware when it has any scored ones, and otherwise its runs on other machines, which the notes then say.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean

from rich.table import Table

from bench.board import format as fmt
from bench.board.columns import CELLS, run_downstream, run_kwh
from bench.board.rank import Configuration, Entry, is_official, sweep_trial, unique_runs
from bench.board.stats import Difference, Ratio, welch
from bench.board.delta import difference_text, speedup_text, time_to_target, versus
from bench.errors import BenchError
from bench.results.schema import RunResult

METHOD = (
    "Differences are B - A: Welch's t-test (two-sided, scipy) with the 95% CI of the difference of means. "
    "Time to target is known only between evaluations: shown is the range of its mean over the runs that reached "
    "the target, the wider of its 95% interval and the range the evaluation spacing leaves open. Speedup = mean "
    "time-to-target of A / of B (above 1: B is faster), as a range the same way: the wider of its 95% interval "
    "(delta method on the log ratio, Welch-Satterthwaite degrees of freedom) and A's earliest possible mean over "
    "B's latest, to A's latest over B's earliest."
)


@dataclass(frozen=True)
class ComparisonTable:
    """The comparison of ``b`` (candidate) against ``a`` (reference) on ``workload``."""

    workload: str
    a: str
    b: str
    rows: list[tuple[str, str, str, str]]  # quantity, A, B, B vs A
    loss_difference: Difference
    bpb_difference: Difference
    speedup: Ratio | None  # None when either side never reached the target
    notes: list[str]

    @property
    def headers(self) -> list[str]:
        return ["", f"A: {self.a}", f"B: {self.b}", "B vs A"]

    def to_rich(self) -> Table:
        """A rich table for the terminal (``rich.console.Console().print(table.to_rich())``)."""
        table = Table(
            title=f"{self.b} vs {self.a} on {self.workload}",
            caption="\n".join([*self.notes, METHOD]),
            caption_justify="left",
        )
        table.add_column("", style="bold")
        for header in self.headers[1:]:
            table.add_column(header, justify="right")
        for row in self.rows:
            table.add_row(*row)
        return table


def _one_configuration(runs: Sequence[RunResult], name: str) -> tuple[tuple[RunResult, ...], list[str]]:
    """The runs of the configuration with most scored seeds (then the latest), and notes on what was left out.

    Pooling a 15 s smoke run, a ``--set`` run or sweep trials into a submission's seeds is what issue 16 found on
    the board; ``compare`` keeps to one configuration the same way (see :class:`bench.board.rank.Configuration`).
    """
    by_config: dict[Configuration, list[RunResult]] = defaultdict(list)
    for run in runs:
        if not sweep_trial(run):
            by_config[Configuration.of(run)].append(run)
    if not by_config:
        return tuple(runs), [f"every run of {name} is a sweep trial: they are compared pooled."]

    def weight(config: Configuration) -> tuple[int, object]:
        members = by_config[config]
        return (sum(1 for r in members if r.scored), max(r.finished_at for r in members))

    chosen = max(by_config, key=weight)
    left = len(runs) - len(by_config[chosen])
    notes = []
    if left:
        notes.append(
            f"{left} run(s) of {name} with another configuration (source, hyperparameters, workload settings, or "
            "sweep trials) are left out: only runs of one configuration are pooled."
        )
    return tuple(by_config[chosen]), notes


def _entry(
    results: Sequence[RunResult], name: str, workload: str, workload_hash: str | None = None,
) -> tuple[Entry, bool, list[str]]:
    """The runs of one side, on official hardware if it has a scored run there, of one configuration; whether
    they are official; and notes on the runs left out. With ``workload_hash`` (the hash the board compares under,
    :func:`bench.board.rank.compared_hash`), only runs under it count when it has any, as on the board: older runs
    with more seeds do not outvote the ones on the workload as it is now."""
    runs = [r for r in results if r.workload == workload and r.submission == name]
    if workload_hash is not None and any(r.workload_hash == workload_hash for r in runs):
        runs = [r for r in runs if r.workload_hash == workload_hash]
    if not runs:
        known = sorted({r.submission for r in results if r.workload == workload})
        raise BenchError(
            f"no results for submission {name!r} on workload {workload!r} "
            f"(submissions with results there: {', '.join(known) or 'none'})"
        )
    everything = Entry(name, (), "val_loss", tuple(runs))
    if not everything.scored:
        raise BenchError(
            f"submission {name!r} has no successful run on workload {workload!r} ({everything.status_counts}): "
            + "; ".join(everything.failure_reasons)
        )
    official = any(is_official(r) for r in everything.scored)
    chosen, notes = _one_configuration([r for r in runs if is_official(r) == official], name)
    return Entry(name, (), "val_loss", chosen), official, notes


def _ratio(a: Entry, b: Entry, value: Callable[[RunResult], float | None]) -> str:
    """B / A of the mean of a per-run quantity reported without a test (throughput, energy)."""
    va = [v for r in a.scored if (v := value(r)) is not None]
    vb = [v for r in b.scored if (v := value(r)) is not None]
    return f"{fmean(vb) / fmean(va):.2f}x" if va and vb and fmean(va) > 0 else fmt.MISSING


def compare(
    results: Sequence[RunResult], a: str, b: str, workload: str, workload_hash: str | None = None,
) -> ComparisonTable:
    """Compare submission ``b`` against the reference ``a`` on ``workload`` over their scored seeds (under
    ``workload_hash`` where a side has runs under it: see :func:`_entry`)."""
    if a == b:
        raise BenchError(f"compare needs two different submissions, got {a!r} twice")
    results = unique_runs(results)
    (ea, official_a, notes_a), (eb, official_b, notes_b) = (
        _entry(results, a, workload, workload_hash), _entry(results, b, workload, workload_hash))
    notes = notes_a + notes_b
    for name, official in ((a, official_a), (b, official_b)):
        if not official:
            notes.append(f"{name} has no scored run on official hardware: its runs on other machines are used.")
    classes = {r.hardware.hardware_class for r in ea.runs + eb.runs if r.hardware is not None}
    if official_a != official_b or len(classes) > 1:
        notes.append("The two sides ran on different hardware: times, throughput and energy are not comparable.")

    by_loss = versus(ea, eb, "val_loss")
    loss, speedup = by_loss.difference, by_loss.speedup
    bpb = versus(ea, eb, "val_bpb").difference
    ttt_a, ttt_b = time_to_target(ea), time_to_target(eb)
    for name, entry, reached in ((a, ea, ttt_a), (b, eb, ttt_b)):
        if len(reached) < len(entry.scored):
            notes.append(f"{len(reached)} of {len(entry.scored)} scored runs of {name} reached the target.")
    speedup_cell = "– (target not reached)" if speedup is None else speedup_text(speedup)

    ds_a = [v for r in ea.scored if (v := run_downstream(r)) is not None]
    ds_b = [v for r in eb.scored if (v := run_downstream(r)) is not None]
    rows = [
        ("runs", ea.status_counts, eb.status_counts, ""),
        ("params", CELLS["params"](ea), CELLS["params"](eb), ""),
        ("val loss", CELLS["val loss"](ea), CELLS["val loss"](eb), difference_text(loss)),
        ("val bpb", CELLS["val bpb"](ea), CELLS["val bpb"](eb), difference_text(bpb)),
        ("time to target", CELLS["time to target"](ea), CELLS["time to target"](eb), f"speedup {speedup_cell}"),
        ("tokens/s", CELLS["tokens/s"](ea), CELLS["tokens/s"](eb), _ratio(ea, eb, lambda r: r.tokens_per_s)),
        ("energy", CELLS["energy"](ea), CELLS["energy"](eb), _ratio(ea, eb, run_kwh)),
        (
            "downstream",
            CELLS["downstream"](ea),
            CELLS["downstream"](eb),
            difference_text(welch(ds_a, ds_b)) if ds_a and ds_b else fmt.MISSING,
        ),
    ]
    return ComparisonTable(workload, a, b, rows, loss, bpb, speedup, notes)
