"""The prose both leaderboard pages share: what the board ranks and how, and a one-line summary of each section.

Keeping it in one place means the Markdown and HTML pages can never state different methods.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.board import format as fmt
from bench.board.columns import METRIC_COLUMNS
from bench.board.rank import MIN_SEEDS, Section
from bench.board.stats import Estimate

INTRO = (
    "Each section is one workload on one hardware class. An entry is one configuration: a submission's source, "
    "its declared hyperparameters and the workload's settings. Entries are ranked by the workload's target metric "
    "(final validation loss or bits per byte of the returned model) at the end of the fixed training budget, and "
    "each is stated against the workload's reference baseline: the change in that metric and the speedup in "
    "time-to-target, with 95% confidence intervals."
)

METHODS = (
    "Seeds are aggregated as mean ± 95% confidence interval (Student t, n-1 degrees of freedom).",
    (
        "Each row is compared with the next by Welch's unequal-variance t-test (two-sided, scipy); when p ≥ 0.05, "
        "or the means are equal, the rows share a rank, shown as '=2'. A chain of such neighbours is one tie group. "
        "Entries with a single seed cannot be tested and keep the order of their means."
    ),
    (
        f"An entry needs {MIN_SEEDS} scored seeds to be ranked; entries with fewer are listed as provisional, "
        "ordered by their mean, with their interval (which with two seeds is wide: Student t with 1 degree of "
        "freedom is 12.7)."
    ),
    (
        "Runs are pooled only when they share submission, submission source hash, resolved hyperparameters and "
        "workload hash. Runs under other workload settings (e.g. --wall-clock), with hyperparameters that differ "
        "from the manifest (--set), and the trials of a hyperparameter sweep are shown under 'Not ranked' with the "
        "reason; the declared best configuration of a sweep, re-run on fresh seeds, is ranked with its tuning budget "
        "on its page. Two source versions of one submission are two entries."
    ),
    (
        "Tuning protocol: a tuned entry ('tuned: ...') is the declared best of a bench tune sweep (scrambled Sobol "
        "points over the manifest's search_space, every trial on the workload's full budget, as in AlgoPerf's "
        "external tuning), re-run on seeds the sweep did not train with. Its runs are ranked only when their "
        "hyperparameters equal the sweep's recorded choice; the sweep's budget (trials x per-trial budget) is "
        "charged to it and shown on its page, and baselines compared at equal tuning have the same number of trials."
    ),
    (
        "Δ vs the reference: difference of means with Welch's 95% interval; speedup: mean time-to-target of the "
        "reference over the entry's, with a 95% interval from the delta method on the log ratio (as bench compare)."
    ),
    (
        "Downstream: each task's score normalised against chance, (acc - chance) / (1 - chance), averaged over "
        "tasks (0 is guessing, 1 is perfect); the per-task table is under 'Downstream per task'."
    ),
    (
        "Only runs with status ok and a final evaluation are scored. Failed, invalid, overrun and interrupted runs "
        "are counted in the runs column; an entry without a scored run is listed under 'Not ranked' with its "
        "reasons."
    ),
    (
        "Runs on machines that do not match the workload's hardware class, and runs flagged as contended (other "
        "processes used more than 15% of the class's cores while they trained), are ranked separately."
    ),
    "Energy: (m) read from hardware counters (NVML, RAPL), (e) estimated (codecarbon or TDP model).",
)


def provisional_line() -> str:
    """What the provisional table is, said where it appears."""
    return (
        f"Provisional: fewer than {MIN_SEEDS} scored seeds, so not ranked. Ordered by mean; run more seeds "
        f"(bench run --seeds {MIN_SEEDS}) to be ranked."
    )


def budget_line(section: Section) -> str:
    """``"60 s of training on cpu-2; at most 2M parameters; target val bpb ≤ 1.0; ranked by val bpb."``"""
    metric = METRIC_COLUMNS[section.metric]
    spec = section.spec
    if spec is None:
        return f"Workload file not found; ranked by {metric}."
    limits = []
    if spec.budget.wall_clock is not None:
        limits.append(fmt.duration_estimate(Estimate(spec.budget.wall_clock, None, 1)) + " of training")
    if spec.budget.tokens is not None:
        limits.append(f"{fmt.si(spec.budget.tokens)} tokens")
    if spec.budget.flops is not None:
        limits.append(f"{spec.budget.flops:.2g} FLOPs")
    relation = "≤" if spec.target.direction == "minimize" else "≥"
    target = f"{METRIC_COLUMNS[spec.target.metric]} {relation} {spec.target.value:g}"
    return (
        f"{' or '.join(limits)} on {spec.budget.hardware}; at most {fmt.si(spec.model.max_params)} parameters; "
        f"target {target}; ranked by {metric}."
    )


def submission_link(name: str, out_dir: Path, root: Path) -> str:
    """Relative link from the pages in ``out_dir`` to the submission's folder, so it works on file:// and GitHub."""
    return Path(os.path.relpath(root / "submissions" / name, out_dir)).as_posix() + "/"
