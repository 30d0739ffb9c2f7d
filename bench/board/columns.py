"""The leaderboard's columns: one definition of what each shows, rendered by both the Markdown and HTML pages.

Cells are plain text; the renderers add what their format needs (a link on the submission, emphasis on the
ranking metric). Every aggregate is over an entry's scored runs only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean

from bench.board import format as fmt
from bench.board.rank import Entry
from bench.board.stats import ALPHA, mean_ci
from bench.spec.result import RunResult

METRIC_COLUMNS = {"val_loss": "val loss", "val_bpb": "val bpb"}
MEASURED_ENERGY = {"nvml-counter", "rapl"}  # read from hardware counters; codecarbon and TDP figures are modelled
TEXT_COLUMNS = {"rank", "submission", "authors", "runs", "why not ranked", "date", "versions"}  # others: numbers
WRAPPED_COLUMNS = {"authors", "versions", "why not ranked"}  # long text that may break lines in the HTML table


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


def run_downstream(run: RunResult) -> float | None:
    """Mean score over a run's downstream tasks."""
    return fmean(s.value for s in run.downstream) if run.downstream else None


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
    reached = [r.time_to_target_s for r in entry.scored if r.target_reached and r.time_to_target_s is not None]
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
    measured = all(r.energy is not None and r.energy.train.method in MEASURED_ENERGY for r in runs)
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
    score = _mean(entry, run_downstream)
    return fmt.MISSING if score is None else f"{score:.3f}"


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


# (header, tooltip, cell). Renderers emphasise the header ``METRIC_COLUMNS[section.metric]``: the ranking metric.
Column = tuple[str, str, Callable[[Entry], str]]

RANKED_COLUMNS: tuple[Column, ...] = (
    ("rank", "Position; '=' marks a tie: not significantly different from its neighbour.", lambda e: e.rank_label),
    ("submission", "Folder under submissions/.", lambda e: e.submission),
    ("authors", "From the submission's manifest.", lambda e: ", ".join(e.authors) or fmt.MISSING),
    ("runs", "Runs by status; only ok runs with a final evaluation are scored.", lambda e: e.status_counts),
    ("params", "Parameters counted against the workload's limit.", _params),
    ("tokens", "Training tokens served, mean over scored runs.", _tokens),
    ("val loss", "Final validation loss (nats/token), mean ± 95% CI.", lambda e: _metric(e, "val_loss")),
    ("val bpb", "Final validation bits per byte, mean ± 95% CI.", lambda e: _metric(e, "val_bpb")),
    ("gap to floor", "val bpb above the corpus's entropy floor, where the source knows it.", _gap),
    ("p vs next", "Welch's t-test on the ranking metric against the next row.", _p_next),
    ("time to target", "Training time to reach the target, mean ± 95% CI over runs that reached it.", _time_to_target),
    ("tokens/s", "Training throughput, mean over scored runs.", _tokens_per_s),
    ("MFU", "Model FLOPs utilisation, mean over scored runs.", _mfu),
    ("energy", "Training energy, mean over scored runs; (m) measured by hardware counters, (e) estimated.", _energy),
    ("downstream", "Mean score over the downstream tasks.", _downstream),
    ("date", "Latest run.", _date),
    ("versions", "pretrain-bench / torch that produced the runs.", _versions),
)

UNRANKED_COLUMNS: tuple[Column, ...] = (
    RANKED_COLUMNS[1],
    RANKED_COLUMNS[2],
    RANKED_COLUMNS[3],
    ("why not ranked", "Status and reason of every run that was not scored.", lambda e: "; ".join(e.failure_reasons)),
)

CELLS: dict[str, Callable[[Entry], str]] = {name: cell for name, _, cell in RANKED_COLUMNS}


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
        ("submission", "Folder under submissions/.", lambda e: e.submission),
        *((task, f"{task}: mean ± 95% CI over seeds.", score_of(task)) for task in tasks),
    )


def downstream_caption(entries: Sequence[Entry]) -> str:
    """What the downstream table shows, with each task's metric and chance level (from the runs themselves)."""
    described: dict[str, str] = {}
    for score in (s for e in entries for r in e.scored for s in r.downstream):
        chance = f", chance {score.chance:.2f}" if score.chance is not None else ""
        described.setdefault(score.task, f"{score.task} ({score.metric}{chance})")
    return (
        "Downstream scores of the returned models, mean ± 95% CI over seeds: "
        + "; ".join(described[task] for task in sorted(described))
        + "."
    )
