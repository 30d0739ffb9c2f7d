"""The leaderboard's columns: one definition of what each shows, rendered by the Markdown and HTML pages.

Cells are plain text; the renderers add what their format needs (a link on the submission, emphasis on the
ranking metric). Every aggregate is over an entry's scored runs only. The main table is kept narrow: a column whose
cell is the same for every row moves to the table's caption (:func:`split_constant`), and what describes an entry
rather than compares it (authors, versions, date, hardware, tuning budget) lives on the entry's own page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean

from bench.board import format as fmt
from bench.board.rank import Entry, Section
from bench.board.stats import ALPHA, mean_ci
from bench.board.delta import difference_text, speedup_text, time_to_target, versus
from bench.results.schema import RunResult

METRIC_COLUMNS = {"val_loss": "val loss", "val_bpb": "val bpb"}
MEASURED_ENERGY = {"nvml-counter", "rapl"}  # read from hardware counters; codecarbon and TDP figures are modelled
TEXT_COLUMNS = {"rank", "submission", "authors", "runs", "why not ranked", "date", "versions"}  # others: numbers
WRAPPED_COLUMNS = {"authors", "versions", "why not ranked"}  # long text that may break lines in the HTML table
KEPT_COLUMNS = {"rank", "submission", "runs"}  # never moved to the caption: a reader needs n beside each CI


def _mean(entry: Entry, value: Callable[[RunResult], float | None]) -> float | None:
    values = [v for r in entry.scored if (v := value(r)) is not None]
    return fmean(values) if values else None


def run_kwh(run: RunResult) -> float | None:
    """Training energy of one run in kWh: the report's best figure, else its train-phase joules."""
    if run.energy is None:
        return None
    if run.energy.kwh is not None:
        return run.energy.kwh
    joules = run.energy.train.joules
    return None if joules is None else joules / 3.6e6


def energy_measured(run: RunResult) -> bool:
    """Whether a run's training energy was read from counters (NVML, RAPL, or codecarbon reading RAPL).

    codecarbon without RAPL multiplies a TDP by utilisation and time: on a fixed-time budget that figure restates
    the training time, so it can neither rank entries nor be plotted as if it measured something else.
    """
    if run.energy is None or run_kwh(run) is None:
        return False
    method = run.energy.train.method
    if method in MEASURED_ENERGY:
        return True
    return method == "codecarbon" and "rapl" in (run.energy.codecarbon_method or "").lower()


def section_energy_measured(section: Section) -> bool:
    """Whether any scored run of a section has a measured energy figure (else energy is neither shown nor drawn)."""
    return any(energy_measured(r) for e in section.entries for r in e.scored)


ENERGY_NOT_SHOWN = (
    "Energy is not shown or plotted: no run measured it with a hardware counter (NVML, RAPL). codecarbon's "
    "estimate from power ratings and utilisation over time only restates the training time on a fixed-time budget."
)


def normalised_downstream(run: RunResult) -> float | None:
    """Mean over a run's downstream tasks of ``(score - chance) / (1 - chance)``: 0 is guessing, 1 is perfect.

    Raw accuracies cannot be averaged across tasks of chance 0.5 (minimal pairs) and 0.25 (four choices); tasks
    without a chance level are left out of the average (the caption says which).
    """
    values = [(s.value - s.chance) / (1 - s.chance) for s in run.downstream if s.chance is not None and s.chance < 1]
    return fmean(values) if values else None


def run_downstream(run: RunResult) -> float | None:
    """The single downstream score of a run, as the board and ``bench compare`` show it (chance-normalised)."""
    return normalised_downstream(run)


def _metric(entry: Entry, name: str) -> str:
    return fmt.estimate(mean_ci(entry.values(name))) if entry.scored else fmt.MISSING


def _p_next(entry: Entry) -> str:
    if not entry.has_next:
        return ""
    if entry.p_next is None:
        return "untested (n=1)"
    if entry.p_next < ALPHA:
        return fmt.p_value(entry.p_next)
    return f"{fmt.p_value(entry.p_next)} (tie)"


def _time_to_target(entry: Entry) -> str:
    reached = time_to_target(entry)
    total = len(entry.scored)
    if not reached:
        return f"not reached (0/{total})" if total else fmt.MISSING
    shown = fmt.duration_estimate(mean_ci(reached))
    return shown if len(reached) == total else f"{shown} ({len(reached)}/{total})"


def _params(entry: Entry) -> str:
    counts = [r.params.counted for r in entry.scored if r.params is not None]
    return fmt.si(max(counts)) if counts else fmt.MISSING


def _energy(entry: Entry) -> str:
    runs = [r for r in entry.scored if run_kwh(r) is not None]
    if not runs:
        return fmt.MISSING
    measured = all(energy_measured(r) for r in runs)
    kwh = fmean(run_kwh(r) for r in runs)  # type: ignore[misc]
    return f"{fmt.energy(kwh)} ({'m' if measured else 'e'})"


def _gap(entry: Entry) -> str:
    def gap(run: RunResult) -> float | None:
        floor = run.validation.entropy_floor_bpb if run.validation else None
        return None if floor is None or run.final is None else run.final.val_bpb - floor

    return fmt.signed(_mean(entry, gap))


def _mfu(entry: Entry) -> str:
    mfu = _mean(entry, lambda r: r.compute.mfu if r.compute else None)
    return fmt.MISSING if mfu is None else f"{100 * mfu:.1f}%"


def _downstream(entry: Entry) -> str:
    values = [v for r in entry.scored if (v := normalised_downstream(r)) is not None]
    if not values:
        return fmt.MISSING
    score = mean_ci(values)
    return f"{fmt.signed(score.mean)}" + ("" if score.half_width is None else f" ± {score.half_width:.3f}")


def _first_decoding(run: RunResult, want_grammar: bool = False):  # noqa: ANN202 - a DecodingScores or None
    """The decoding a generation column shows: the first (greedy, by the workloads' convention), or for grammar
    scores the last one the grammar judged (the sampled one: greedy text of a small model is mostly repetition)."""
    if run.generation is None or not run.generation.decodings:
        return None
    if not want_grammar:
        return run.generation.decodings[0]
    judged = [d for d in run.generation.decodings if d.grammar is not None]
    return judged[-1] if judged else None


def _chrf(entry: Entry) -> str:
    values = [d.chrf for r in entry.scored if (d := _first_decoding(r)) is not None]
    return fmt.estimate(mean_ci(values), digits=1) if values else fmt.MISSING


def _grammar_ok(entry: Entry) -> str:
    values = [d.grammar.accepted for r in entry.scored if (d := _first_decoding(r, True)) is not None
              and d.grammar.accepted is not None]
    return fmt.estimate(mean_ci(values), digits=2) if values else fmt.MISSING


def _date(entry: Entry) -> str:
    return max(r.finished_at for r in entry.runs).date().isoformat()


def _versions(entry: Entry) -> str:
    def version(run: RunResult) -> str:
        torch = run.packages.get("torch") or (run.hardware.torch if run.hardware else None)
        return f"{run.packages.get('pretrain-bench', '?')} / torch {torch or '?'}"

    return "; ".join(sorted({version(r) for r in entry.runs}))


def _tokens_per_s(entry: Entry) -> str:
    return fmt.si(_mean(entry, lambda r: r.tokens_per_s))


def _tokens(entry: Entry) -> str:
    return fmt.si(_mean(entry, lambda r: float(r.tokens)))


def _vs_reference(entry: Entry) -> str:
    if entry.is_reference:
        return "reference"
    if entry.reference is None or not entry.scored:
        return fmt.MISSING
    return difference_text(versus(entry.reference, entry, entry.metric).difference, p=False)


def delta_verdict(entry: Entry) -> str:
    """``"better"`` or ``"worse"`` when the 95% interval of the change vs the reference excludes zero, else ``""``."""
    if entry.reference is None or not entry.scored:
        return ""
    d = versus(entry.reference, entry, entry.metric).difference
    if d.low is None or d.high is None or d.low <= 0 <= d.high:
        return ""
    lower = d.high < 0
    return "better" if lower == (entry.direction == "minimize") else "worse"


def _speedup(entry: Entry) -> str:
    if entry.is_reference:
        return "reference"
    if entry.reference is None or not entry.scored:
        return fmt.MISSING
    return speedup_text(versus(entry.reference, entry, entry.metric).speedup)


def _why(entry: Entry) -> str:
    reasons = ([entry.excluded] if entry.excluded else []) + entry.failure_reasons
    return "; ".join(reasons)


# (header, tooltip, cell). Renderers emphasise the header ``METRIC_COLUMNS[section.metric]``: the ranking metric.
Column = tuple[str, str, Callable[[Entry], str]]

RANK: Column = (
    "rank",
    "Position; '=' marks a tie: not significantly different from its neighbour.",
    lambda e: e.rank_label,
)
SUBMISSION: Column = ("submission", "Folder under submissions/; links to the entry's page.", lambda e: e.label)
RUNS: Column = ("runs", "Runs by status; only ok runs with a final evaluation are scored.", lambda e: e.status_counts)

CELLS: dict[str, Callable[[Entry], str]] = {
    "params": _params,
    "tokens": _tokens,
    "val loss": lambda e: _metric(e, "val_loss"),
    "val bpb": lambda e: _metric(e, "val_bpb"),
    "gap to floor": _gap,
    "p vs next": _p_next,
    "time to target": _time_to_target,
    "tokens/s": _tokens_per_s,
    "MFU": _mfu,
    "energy": _energy,
    "downstream": _downstream,
    "chrF": _chrf,
    "grammar ok": _grammar_ok,
    "date": _date,
    "versions": _versions,
    "authors": lambda e: ", ".join(e.authors) or fmt.MISSING,
}

TIPS = {
    "params": "Parameters counted against the workload's limit.",
    "tokens": "Training tokens served, mean over scored runs.",
    "val loss": "Final validation loss (nats/token), mean ± 95% CI.",
    "val bpb": "Final validation bits per byte, mean ± 95% CI.",
    "gap to floor": "val bpb above the corpus's entropy floor, where the source knows it.",
    "p vs next": "Welch's t-test on the ranking metric against the next ranked row.",
    "time to target": "Training time to reach the target, mean ± 95% CI over runs that reached it.",
    "tokens/s": "Training throughput, mean over scored runs.",
    "MFU": "Model FLOPs utilisation, mean over scored runs.",
    "energy": "Training energy, mean over scored runs; (m) measured by hardware counters, (e) estimated.",
    "downstream": "Downstream score normalised against chance, (acc - chance) / (1 - chance), averaged over tasks: "
    "0 is guessing, 1 is perfect; mean ± 95% CI over seeds.",
    "chrF": "Generation: sacrebleu chrF (0-100) of the model's greedy continuations of held-out documents against "
    "their true continuations, mean ± 95% CI over seeds.",
    "grammar ok": "Generation: fraction of the complete sentences of sampled continuations that the synthetic "
    "corpus's true grammar accepts, mean ± 95% CI over seeds (synthetic workloads only).",
    "date": "Latest run.",
    "versions": "pretrain-bench / torch that produced the runs.",
    "authors": "From the submission's manifest.",
}


def _column(name: str) -> Column:
    return (name, TIPS[name], CELLS[name])


@dataclass(frozen=True)
class Board:
    """What a section's tables need to know beyond the entries: its metric, its reference and its energy method."""

    metric: str
    reference: str
    energy: bool  # whether energy is measured anywhere in the section (else neither shown nor drawn)
    floor: bool  # whether any run knows the corpus's entropy floor
    generation: bool = False  # whether any run has generation metrics
    grammar: bool = False  # whether any run's generations were judged by a true grammar


def board_of(section: Section) -> Board:
    reference = section.spec.reference if section.spec else "adamw-baseline"
    floor = any(
        r.validation is not None and r.validation.entropy_floor_bpb is not None
        for e in section.entries
        for r in e.scored
    )
    runs = [r for e in section.entries for r in e.scored]
    generation = any(_first_decoding(r) is not None for r in runs)
    grammar = any(_first_decoding(r, True) is not None for r in runs)
    return Board(section.metric, reference, section_energy_measured(section), floor, generation, grammar)


def headline_columns(board: Board, ranked: bool) -> tuple[Column, ...]:
    """The main table: who wins and by how much (Δ and speedup against the reference), then the costs."""
    metric = METRIC_COLUMNS[board.metric]
    delta: Column = (
        f"Δ vs {board.reference}",
        f"Change in {metric} against {board.reference}, the workload's reference baseline: difference of means "
        "with its 95% CI (Welch). Negative is better for a loss.",
        _vs_reference,
    )
    speedup: Column = (
        "speedup",
        f"Time-to-target of {board.reference} divided by this entry's (above 1: faster), with a 95% CI from the "
        "delta method on the log ratio; over runs that reached the target.",
        _speedup,
    )
    columns: list[Column] = [RANK] if ranked else []
    columns += [SUBMISSION, RUNS, _column(metric), delta]
    columns += [_column("p vs next")] if ranked else []
    columns += [_column("time to target"), speedup]
    columns += [_column("gap to floor")] if board.floor else []
    columns += [_column("params"), _column("tokens/s")]
    columns += [_column("energy")] if board.energy else []
    columns += [_column("downstream")]
    columns += [_column("chrF")] if board.generation else []
    columns += [_column("grammar ok")] if board.grammar else []
    return tuple(columns)


def unranked_columns(board: Board) -> tuple[Column, ...]:
    metric = METRIC_COLUMNS[board.metric]
    return (
        SUBMISSION,
        RUNS,
        _column(metric),
        ("why not ranked", "Why the entry is shown apart, and the status and reason of every run not scored.", _why),
    )


DETAIL_COLUMNS: tuple[Column, ...] = tuple(
    _column(name)
    for name in ("authors", "val loss", "val bpb", "tokens", "tokens/s", "MFU", "energy", "params", "date", "versions")
)


def split_constant(
    columns: Sequence[Column], entries: Sequence[Entry]
) -> tuple[tuple[Column, ...], list[tuple[str, str]]]:
    """Columns whose cell differs between rows, and ``(header, value)`` of those that are the same for all.

    With a single row nothing is constant: that row's values belong in the table.
    """
    if len(entries) < 2:
        return tuple(columns), []
    kept, constant = [], []
    for column in columns:
        name, _, cell = column
        values = {cell(e) for e in entries}
        if name in KEPT_COLUMNS or len(values) > 1:
            kept.append(column)
        else:
            constant.append((name, values.pop()))
    return tuple(kept), constant


def downstream_columns(entries: Sequence[Entry]) -> tuple[Column, ...]:
    """The submission, then one column per downstream task that any scored run of ``entries`` has: mean ± 95% CI
    over seeds. Empty when no run has downstream scores."""
    tasks = sorted({score.task for entry in entries for run in entry.scored for score in run.downstream})
    if not tasks:
        return ()

    def score_of(task: str) -> Callable[[Entry], str]:
        def cell(entry: Entry) -> str:
            values = [s.value for r in entry.scored for s in r.downstream if s.task == task]
            return fmt.estimate(mean_ci(values)) if values else fmt.MISSING

        return cell

    return (
        SUBMISSION,
        *((task, f"{task}: mean ± 95% CI over seeds.", score_of(task)) for task in tasks),
    )


def downstream_caption(entries: Sequence[Entry]) -> str:
    """What the per-task table shows, with each task's metric and chance level (from the runs themselves)."""
    described: dict[str, str] = {}
    for score in (s for e in entries for r in e.scored for s in r.downstream):
        chance = f", chance {score.chance:.2f}" if score.chance is not None else ", no chance level: not normalised"
        described.setdefault(score.task, f"{score.task} ({score.metric}{chance})")
    return (
        "Downstream scores of the returned models, mean ± 95% CI over seeds: "
        + "; ".join(described[task] for task in sorted(described))
        + "."
    )
