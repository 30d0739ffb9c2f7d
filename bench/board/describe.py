"""The prose both leaderboard pages share: what the board ranks and how, and a one-line summary of each section.

Keeping it in one place means the Markdown and HTML pages can never state different methods.
"""

from __future__ import annotations

import os
from pathlib import Path
from statistics import stdev

from bench.board import format as fmt
from bench.board.columns import METRIC_COLUMNS, resolution_note
from bench.board.rank import MIN_SEEDS, Group, Section
from bench.board.stats import Estimate, minimum_detectable_difference
from bench.board.trust import TEST, Standing

INTRO = (
    "Each section is one workload on one hardware class, and each submission is one row: its current declared "
    "configuration (the re-runs of its tuned configuration, else its manifest's values), with earlier sources and "
    "configurations on its page. Rows are ranked by the workload's target metric (final validation loss or bits "
    "per byte of the returned model) at the end of the fixed training budget, and each is stated against the "
    "workload's reference baseline: the change in that metric and the speedup in time-to-target, with 95% "
    "confidence intervals. Each section's noise floor says how large a difference its seeds can resolve."
)

METHODS = (
    "Seeds are aggregated as mean ± 95% confidence interval (Student t, n-1 degrees of freedom).",
    (
        "One row per submission: its current configuration is the checked re-runs of its latest bench tune sweep "
        "(the sweep's declared best, re-run on fresh seeds), else the latest of its manifest's configurations. "
        "Earlier sources and configurations are superseded: listed under 'Earlier configurations' and on the "
        "entry's page, with their own numbers, never ranked."
    ),
    (
        "Ties: going down the rows by mean, a row joins the tie group above it only when Welch's unequal-variance "
        "t-test (two-sided, scipy) finds no significant difference (p ≥ 0.05) between it and every member of the "
        "group, and its Δ against the reference has the same verdict as theirs (better, worse, or not significant); "
        "otherwise it opens a new group. A group shares the rank of its first row, shown as '=2'. Unlike chaining "
        "adjacent pairs, this cannot tie two rows that differ significantly, and since Δ is the same Welch test, no "
        "row is tied with the reference while its Δ interval excludes zero. Adjacent rows in different groups may "
        "still be indistinguishable from each other: a distinct rank is an order of means, not a significant "
        "difference (the Δ interval and the noise floor say how far apart rows are). Entries with a single seed "
        "cannot be tested and keep the order of their means."
    ),
    (
        "Noise floor: the minimum detectable difference of a two-sided two-sample t-test at α = 0.05 with 80% power, "
        "MDD = (t(0.975, 2n-2) + t(0.80, 2n-2)) · s · √(2/n), where s is the standard deviation of the reference "
        "entry's seeds on the ranking metric and n its number of seeds (and, for comparison, the ranking's minimum "
        f"of {MIN_SEEDS} seeds). Differences smaller than it are mostly missed at that seed count: a tie means "
        "'closer than about this', not 'equal'."
    ),
    (
        f"An entry needs {MIN_SEEDS} scored seeds to be ranked; entries with fewer are listed as provisional, ordered "
        "by their mean, with their interval (which with two seeds is wide: Student t with 1 degree of freedom is 12.7)."
    ),
    (
        "Runs are pooled only when they share submission, submission source hash, resolved hyperparameters and "
        "workload hash. Runs under other workload settings (e.g. --wall-clock), with hyperparameters that differ "
        "from the manifest (--set), and the trials of a hyperparameter sweep are shown under 'Not ranked' with the "
        "reason. Hyperparameters are listed on each entry's page (floats to three significant digits, more where "
        "fewer would change the value: 0.9999 is not 1); the result files have every digit."
    ),
    (
        "Tuning protocol: a tuned entry is the declared best of a bench tune sweep (scrambled Sobol points over the "
        "manifest's search_space, every trial on the workload's full budget, as in AlgoPerf's external tuning), "
        "re-run on seeds the sweep did not train with. Its runs are ranked only when their hyperparameters equal the "
        "sweep's recorded choice; the sweep's budget (trials x per-trial budget) is charged to it and shown on its "
        "page, and baselines compared at equal tuning have the same number of trials."
    ),
    (
        "Δ vs the reference: difference of means with Welch's 95% interval, coloured where it excludes zero."
    ),
    (
        "Time to target is measured only at evaluations (the section header gives their spacing), so it is shown "
        "as a range: the wider of the 95% interval of the mean of the harness's interpolated crossings and the "
        "range from the mean of each run's last evaluation before the target to the mean of its first evaluation "
        "at it. Speedup (the reference's mean time-to-target over the entry's) is a range the same way: the wider "
        "of its 95% interval (delta method on the log ratio) and the reference's earliest possible mean over the "
        "entry's latest, to its latest over the entry's earliest ('≥' where the entry reached the target before its "
        "first evaluation). Each run's interpolated value is in its result file."
    ),
    (
        "Downstream: each task's score normalised against chance, (acc - chance) / (1 - chance), averaged over "
        "tasks (0 is guessing, 1 is perfect); the per-task table is under 'Downstream per task'."
    ),
    (
        "Only runs with status ok and a final evaluation are scored. Failed, invalid, overrun and interrupted runs "
        "are counted in the seeds column; an entry without a scored run is listed under 'Not ranked' with its "
        "reasons."
    ),
    (
        "Runs on machines that do not match the workload's hardware class, and runs flagged as contended (other "
        "processes used more than 15% of the class's cores while they trained), are ranked separately."
    ),
    (
        "Peak memory: device memory allocated by torch on GPU classes, else the trial process's peak resident "
        "memory on the host. Wall time: wall-clock seconds of the training phase."
    ),
    "Energy: (m) read from hardware counters (NVML, RAPL), (e) estimated (codecarbon or TDP model).",
    (
        "Verification: a result file is its submitter's claim. The board ranks results that someone other than the "
        "submitter reproduced: a bench verify that re-ran the configuration on fresh seeds and found the "
        f"{TEST}, or the maintainers' own runs listed in leaderboard/versions.json. The 'verified' column says who, "
        "on which hardware class. Results nobody has verified are 'submitted': shown apart, and ranked among "
        "themselves only on request (bench leaderboard --include-submitted). Results of a submission that does not "
        "exist here, of a source that is neither the submission's current one nor a version recorded in "
        "leaderboard/versions.json, or that a verification did not reproduce, are never ranked."
    ),
)


def noise_floor(section: Section) -> str:
    """The section's noise floor in one sentence, from its (first) reference entry's seed spread."""
    metric = METRIC_COLUMNS[section.metric]
    reference = next((g.reference for g in section.groups if g.reference is not None), None)
    if reference is None:
        return "Noise floor unknown: the section has no entry of its reference baseline to measure seed spread on."
    values = reference.values()
    if len(values) < 2:
        return f"Noise floor unknown: {reference.submission} has a single seed, so no seed spread to measure."
    sd, n = stdev(values), len(values)
    floor = minimum_detectable_difference(sd, n)
    at_min = "" if n == MIN_SEEDS else (
        f"; with {MIN_SEEDS} seeds each it is {minimum_detectable_difference(sd, MIN_SEEDS):.3f}"
    )
    return (
        f"Noise floor: {floor:.3f} {metric}. Two entries of {n} seeds each with {reference.submission}'s seed spread "
        f"(s = {sd:.3f}) must differ by this much to be told apart (two-sided t-test, α = 0.05, 80% power){at_min}. "
        "Closer entries are likely tied."
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
        f"target {target}; ranked by {metric}; {resolution_note(spec.eval.every)} (the resolution of time to "
        "target)."
    )


def reading(out_dir: Path, root: Path) -> list[tuple[str, str, str]]:
    """``(title, relative link, what it answers)`` of the written analyses drawn from the board's runs: the
    project's FINDINGS.md and each published study's report (``out_dir/studies/*/report.md``)."""
    links = []
    findings = root / "FINDINGS.md"
    if findings.is_file():
        links.append(("FINDINGS.md", Path(os.path.relpath(findings, out_dir)).as_posix(),
                      "what these results answer: effect sizes, intervals, tests, comparison with published work"))
    for report in sorted((out_dir / "studies").glob("*/report.md")):
        question = next((line.removeprefix("**Question.**").strip() for line in report.read_text().splitlines()
                         if line.startswith("**Question.**")), "")
        links.append((f"study {report.parent.name}", report.relative_to(out_dir).as_posix(), question))
    return links


def submission_link(name: str, out_dir: Path, root: Path) -> str:
    """Relative link from the pages in ``out_dir`` to the submission's folder, so it works on file:// and GitHub."""
    return Path(os.path.relpath(root / "submissions" / name, out_dir)).as_posix() + "/"


def group_heading(section: Section, group: Group) -> tuple[str, str] | None:
    """The title and explanation a group is shown under, or None for the main one (verified, official hardware).
    One wording for both pages."""
    parts, about = [], []
    if group.standing is Standing.submitted:
        parts.append("Submitted, not verified")
        ranked = ("Ranked among themselves (--include-submitted), not against the verified tables above"
                  if any(e.rank is not None or e.provisional for e in group.entries) else
                  "Not ranked: bench leaderboard --include-submitted ranks them here, apart from verified results")
        about.append("Nobody but their submitters has reproduced these results yet (bench verify RESULT... re-runs "
                     f"them on fresh seeds). {ranked}.")
    elif group.standing is Standing.unrankable:
        parts.append("Not rankable")
        about.append("Results the project cannot vouch for, each with its reason: a submission that does not exist "
                     "here, a source that is neither the submission's current one nor a version recorded in "
                     "leaderboard/versions.json, or a verification that did not reproduce them.")
    if not group.official:
        machines = "; ".join(group.machines) or "unknown machines"
        contended = f" Flagged as contended: {'; '.join(group.contended)}." if group.contended else ""
        parts.append("unofficial hardware or a contended machine" if parts else
                     "Unofficial hardware or a contended machine")
        about.append(f"Runs on machines that do not match {section.hardware_class} ({machines}), or that shared "
                     f"their machine with other work while they trained.{contended} Compared among themselves only, "
                     "not against the tables above.")
    return (": ".join(parts), " ".join(about)) if parts else None
