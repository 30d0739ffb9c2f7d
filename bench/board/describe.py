"""The prose both leaderboard pages share: what the board ranks and how, and a one-line summary of each section.

Keeping it in one place means the Markdown and HTML pages can never state different methods.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.board import format as fmt
from bench.board.columns import METRIC_COLUMNS
from bench.board.rank import Section
from bench.board.stats import Estimate

INTRO = (
    "Each section is one workload on one hardware class. Submissions are ranked by the workload's target metric "
    "(final validation loss or bits per byte of the returned model) at the end of the fixed training budget; "
    "time-to-target is shown beside it."
)

METHODS = (
    "Seeds are aggregated as mean ± 95% confidence interval (Student t, n-1 degrees of freedom).",
    (
        "Each row is compared with the next by Welch's unequal-variance t-test (two-sided, scipy); when p ≥ 0.05, "
        "or the means are equal, the rows share a rank, shown as '=2'. A chain of such neighbours is one tie group. "
        "Entries with a single seed cannot be tested and keep the order of their means."
    ),
    (
        "Only runs with status ok and a final evaluation are scored. Failed, invalid, overrun and interrupted runs "
        "are counted in the runs column; a submission without a scored run is listed under 'Not ranked' with its "
        "reasons."
    ),
    "Runs on machines that do not match the workload's hardware class are ranked separately ('Unofficial hardware').",
    "Energy: (m) read from hardware counters (NVML, RAPL), (e) estimated (codecarbon or TDP model).",
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
