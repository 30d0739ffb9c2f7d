"""The leaderboard's columns: one definition of what each shows, rendered by the Markdown and HTML pages.

Cells are plain text; the renderers add what their format needs (a link on the submission, emphasis on the
ranking metric). Every aggregate is over an entry's scored runs only. The main table holds what a researcher scans
(rank, metric, Δ and speedup against the reference, time to target, throughput, memory, seeds, date) and fits a
1400 px window; a column whose cell is the same for every row moves to the table's caption
(:func:`split_constant`), further measures are one click away (:func:`more_columns`), and what describes an entry
rather than compares it (authors, versions, hyperparameters, hardware, tuning budget) lives on the entry's own page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean

from bench.board import format as fmt
from bench.board.delta import difference_text, speedup_text, time_to_target_text, versus
from bench.board.rank import Entry, Section, delta_sign
from bench.board.stats import mean_ci
from bench.results.schema import RunResult

METRIC_COLUMNS = {"val_loss": "val loss", "val_bpb": "val bpb"}
MEASURED_ENERGY = {"nvml-counter", "rapl"}  # read from hardware counters; codecarbon and TDP figures are modelled
TEXT_COLUMNS = {"rank", "submission", "authors", "why not ranked", "date", "versions", "verified"}  # others: numbers
WRAPPED_COLUMNS = {"authors", "versions", "why not ranked", "verified"}  # long text: may break lines in HTML
KEPT_COLUMNS = {"rank", "submission", "seeds"}  # never moved to the caption: a reader needs n beside each CI


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


def _seeds(entry: Entry) -> str:
    """Scored seeds, then the runs that were not scored by status: ``'3'``, ``'3 (+1 failed)'``."""
    unscored = Entry(entry.submission, (), entry.metric, tuple(r for r in entry.runs if not r.scored))
    return f"{len(entry.scored)}" + (f" (+{unscored.status_counts})" if unscored.runs else "")


def run_peak_memory(run: RunResult) -> float | None:
    """Peak memory of one run: device memory where it was recorded (GPU), else the trial process's host RSS."""
    if run.memory is None:
        return None
    return run.memory.peak_device_bytes or run.memory.peak_host_rss_bytes


def _peak_memory(entry: Entry) -> str:
    return fmt.size(_mean(entry, run_peak_memory))


def _wall_time(entry: Entry) -> str:
    wall = _mean(entry, lambda r: r.timing.train_wall_s)
    return fmt.MISSING if wall is None else f"{wall:.0f} s"


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
    """``"better"`` or ``"worse"`` when the 95% interval of the change vs the reference excludes zero, else ``""``
    (the same verdict the tie groups keep apart, :func:`bench.board.rank.tie_groups`)."""
    sign = delta_sign(entry, entry.reference)
    if sign == 0:
        return ""
    return "better" if (sign < 0) == (entry.direction == "minimize") else "worse"


def _speedup(entry: Entry) -> str:
    if entry.is_reference:
        return "reference"
    if entry.reference is None or not entry.scored:
        return fmt.MISSING
    return speedup_text(versus(entry.reference, entry, entry.metric).speedup)


def verified_text(entry: Entry) -> str:
    """Who verified an entry's runs and on which hardware class (``"maintainers (cpu-2)"``), else ``"submitted"``."""
    return "; ".join(dict.fromkeys(v.label for v in entry.vouchers)) or "submitted"


def _why(entry: Entry) -> str:
    reasons = ([entry.excluded] if entry.excluded else []) + entry.failure_reasons
    return "; ".join(reasons)


# (header, tooltip, cell). Renderers emphasise the header ``METRIC_COLUMNS[section.metric]``: the ranking metric.
Column = tuple[str, str, Callable[[Entry], str]]

RANK: Column = (
    "rank",
    (
        "Position; '=' marks a tie group: no two members differ significantly (Welch, p ≥ 0.05), and all have the "
        "same Δ verdict against the reference."
    ),
    lambda e: e.rank_label,
)
SUBMISSION: Column = ("submission", "Folder under submissions/; links to the entry's page.", lambda e: e.label)

CELLS: dict[str, Callable[[Entry], str]] = {
    "params": _params,
    "tokens": _tokens,
    "val loss": lambda e: _metric(e, "val_loss"),
    "val bpb": lambda e: _metric(e, "val_bpb"),
    "gap to floor": _gap,
    "seeds": _seeds,
    "time to target": time_to_target_text,
    "peak memory": _peak_memory,
    "wall time": _wall_time,
    "tokens/s": _tokens_per_s,
    "MFU": _mfu,
    "energy": _energy,
    "downstream": _downstream,
    "chrF": _chrf,
    "grammar ok": _grammar_ok,
    "date": _date,
    "versions": _versions,
    "authors": lambda e: ", ".join(e.authors) or fmt.MISSING,
    "verified": verified_text,
}

TIPS = {
    "params": "Parameters counted against the workload's limit.",
    "tokens": "Training tokens served, mean over scored runs.",
    "val loss": "Final validation loss (nats/token), mean ± 95% CI.",
    "val bpb": "Final validation bits per byte, mean ± 95% CI.",
    "gap to floor": "val bpb above the corpus's entropy floor, where the source knows it.",
    "seeds": "Scored seeds (ok runs with a final evaluation); runs that were not scored, by status, in brackets.",
    "time to target": "Training time to reach the target, known only between evaluations: the range of the mean over "
    "the runs that reached it (the wider of its 95% interval and the range the evaluation spacing leaves open).",
    "peak memory": "Peak memory, mean over scored runs: device memory allocated by torch on GPUs, else the trial "
    "process's peak resident memory (RSS) on the host.",
    "wall time": "Wall-clock seconds of the training phase (evaluations excluded), mean over scored runs. On a CPU "
    "class the budget is CPU time, so wall time is longer where the machine was shared.",
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
    "verified": "Who reproduced the results, on which hardware class: a bench verify whose re-runs on fresh seeds "
    "reproduced them, or the maintainers' own runs (leaderboard/versions.json). 'submitted': nobody but the "
    "submitter yet.",
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
    eval_every: float | None = None  # training seconds between evaluations: the resolution of time-to-target


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
    every = section.spec.eval.every if section.spec else None
    return Board(section.metric, reference, section_energy_measured(section), floor, generation, grammar, every)


def resolution_note(every: float | None) -> str:
    """What limits time-to-target's precision, said beside it: ``'evaluations every 15 s'``."""
    if every is None:
        return "evaluation spacing unknown (workload file not found)"
    return f"evaluations every {every:g} s" if every < 120 else f"evaluations every {every / 60:g} min"


def _delta(board: Board) -> Column:
    metric = METRIC_COLUMNS[board.metric]
    return (
        f"Δ vs {board.reference}",
        f"Change in {metric} against {board.reference}, the workload's reference baseline: difference of means "
        "with its 95% CI (Welch). Negative is better for a loss; coloured where the interval excludes zero.",
        _vs_reference,
    )


def _time_to_target_column(board: Board) -> Column:
    name, tip, cell = _column("time to target")
    return name, f"{tip} Here: {resolution_note(board.eval_every)}.", cell


def headline_columns(board: Board, ranked: bool) -> tuple[Column, ...]:
    """The main table: who wins and by how much (Δ and speedup against the reference), then the costs."""
    speedup: Column = (
        "speedup",
        f"Mean time-to-target of {board.reference} divided by this entry's (above 1: faster), as a range: the "
        f"wider of the 95% interval (delta method on the log ratio) and what the evaluation spacing leaves open "
        f"({resolution_note(board.eval_every)}); over runs that reached the target.",
        _speedup,
    )
    columns: list[Column] = [RANK] if ranked else []
    columns += [SUBMISSION, _column(METRIC_COLUMNS[board.metric]), _delta(board)]
    columns += [_time_to_target_column(board), speedup, _column("tokens/s"), _column("peak memory")]
    columns += [_column("seeds"), _column("verified"), _column("date")]
    return tuple(columns)


def more_columns(board: Board) -> tuple[Column, ...]:
    """Further measures of the compared entries, one click away from the main table: size, quality beyond the
    ranking metric, cost."""
    columns: list[Column] = [SUBMISSION, _column("params")]
    columns += [_column("gap to floor")] if board.floor else []
    columns += [_column("downstream")]
    columns += [_column("chrF")] if board.generation else []
    columns += [_column("grammar ok")] if board.grammar else []
    columns += [_column("MFU"), _column("wall time")]
    columns += [_column("energy")] if board.energy else []
    return tuple(columns)


def superseded_columns(board: Board) -> tuple[Column, ...]:
    """Earlier configurations: what they scored, for the history of each submission."""
    return (
        SUBMISSION,
        _column(METRIC_COLUMNS[board.metric]),
        _delta(board),
        _time_to_target_column(board),
        _column("seeds"),
        _column("verified"),
        _column("date"),
    )


def unranked_columns(board: Board) -> tuple[Column, ...]:
    metric = METRIC_COLUMNS[board.metric]
    return (
        SUBMISSION,
        _column("seeds"),
        _column(metric),
        ("why not ranked", "Why the entry is shown apart, and the status and reason of every run not scored.", _why),
    )


def detail_columns(board: Board) -> tuple[Column, ...]:
    """What an entry's page lists about it (energy only where some run of the section measured it)."""
    names = ["authors", "val loss", "val bpb", "time to target", "tokens", "tokens/s", "MFU"]
    names += ["energy"] if board.energy else []
    names += ["params", "peak memory", "wall time", "seeds", "date", "versions"]
    return tuple(_time_to_target_column(board) if n == "time to target" else _column(n) for n in names)


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
