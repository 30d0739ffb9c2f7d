"""Grouping result files into leaderboard sections and ranking the submissions in each, with ties.

A section is one (workload, hardware class). Inside it, runs on machines that match the class ("official") and
runs that do not are ranked separately, so a faster unofficial machine can never push an official entry down.
An entry is one submission's runs in one such group: its seeds are summarised by mean and Student-t interval,
and the entries are ordered by the workload's target metric. Each entry is tested against the next one with
Welch's t-test; when the difference is not significant (or the means are equal) the two share a rank, shown as
"=2". Only runs with status ``ok`` and a final evaluation are scored; all others are counted and explained.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.board.stats import Estimate, mean_ci, welch
from bench.errors import BenchError
from bench.spec.loading import load_submission, load_workload, submission_dir, workload_path
from bench.spec.result import RunResult, TrialStatus
from bench.spec.submission import SubmissionManifest
from bench.spec.workload import WorkloadSpec

DEFAULT_METRIC = "val_loss"  # what a section is ranked by when its workload file is gone


def unique_runs(results: Iterable[RunResult]) -> list[RunResult]:
    """Each run once, so that overlapping result folders never count one seed twice.

    A published copy of a result (``leaderboard/results``) and its original (``results/``) are the same run.
    Two *different* files claiming one run id are an error: one of them was edited.
    """
    seen: dict[tuple[str, str, str], RunResult] = {}
    for run in results:
        key = (run.workload, run.submission, run.run_id)
        if key not in seen:
            seen[key] = run
        elif seen[key] != run:
            raise BenchError(
                f"run {run.run_id} of {run.submission!r} on {run.workload!r} appears in two result files with "
                "different contents; keep only the genuine one"
            )
    return list(seen.values())


def is_scored(run: RunResult) -> bool:
    """Only a successful run with a final evaluation has a score; any other run is counted but never ranked."""
    return run.status == TrialStatus.ok and run.final is not None


@dataclass(frozen=True)
class Entry:
    """One submission's runs in one group, with its place once ranked (``rank`` is None for unranked entries)."""

    submission: str
    authors: tuple[str, ...]
    metric: str
    runs: tuple[RunResult, ...]
    rank: int | None = None
    tied: bool = False
    p_next: float | None = None  # Welch's p-value against the next ranked entry
    has_next: bool = False

    @property
    def scored(self) -> list[RunResult]:
        return [r for r in self.runs if is_scored(r)]

    def values(self, metric: str | None = None) -> list[float]:
        """Final value of ``metric`` (default: the ranking metric) of every scored run."""
        name = metric or self.metric
        return [getattr(r.final, name) for r in self.scored]

    @property
    def score(self) -> Estimate:
        return mean_ci(self.values())

    @property
    def rank_label(self) -> str:
        if self.rank is None:
            return ""
        return f"={self.rank}" if self.tied else str(self.rank)

    @property
    def status_counts(self) -> str:
        """``"3 ok, 1 failed"``, in the order statuses are declared."""
        counts = Counter(r.status for r in self.runs)
        return ", ".join(f"{counts[s]} {s.value}" for s in TrialStatus if counts[s])

    @property
    def failure_reasons(self) -> list[str]:
        """Why runs were not scored, each distinct reason once with its count: ``"failed: loss is NaN (x2)"``."""
        reasons = Counter(
            f"{r.status.value}: {r.reason or 'no reason recorded'}"
            if r.status != TrialStatus.ok
            else "ok: no final evaluation recorded"
            for r in self.runs
            if not is_scored(r)
        )
        return [reason if n == 1 else f"{reason} (x{n})" for reason, n in sorted(reasons.items())]


@dataclass(frozen=True)
class Group:
    """The entries of one section run on official (matching) or unofficial hardware: ranked first, then the rest."""

    official: bool
    entries: tuple[Entry, ...]

    @property
    def ranked(self) -> list[Entry]:
        return [e for e in self.entries if e.rank is not None]

    @property
    def unranked(self) -> list[Entry]:
        return [e for e in self.entries if e.rank is None]

    @property
    def machines(self) -> list[str]:
        """The distinct machines the group's runs used, for saying what 'unofficial' was."""
        return sorted({_machine(r) for e in self.entries for r in e.runs if r.hardware is not None})


@dataclass(frozen=True)
class Section:
    workload: str
    hardware_class: str
    spec: WorkloadSpec | None
    metric: str
    groups: tuple[Group, ...]
    notes: tuple[str, ...]

    @property
    def slug(self) -> str:
        """A file- and anchor-safe name: ``40m-10gb--1xH100``."""
        return f"{self.workload}--{self.hardware_class}"

    @property
    def direction(self) -> str:
        return self.spec.target.direction if self.spec else "minimize"

    @property
    def entries(self) -> list[Entry]:
        return [e for g in self.groups for e in g.entries]


def _machine(run: RunResult) -> str:
    hw = run.hardware
    assert hw is not None
    if hw.gpus:
        return ", ".join(f"{n}x {gpu}" for gpu, n in sorted(Counter(hw.gpus).items()))
    return f"{hw.cpu_model} ({hw.cpu_cores} cores)"


def is_official(run: RunResult) -> bool:
    """Whether a run belongs to the official group of its section.

    A run without a hardware record failed before the machine was fingerprinted: it can only add to a failure
    count, so it goes with the official runs it was most likely meant for. A *successful* run without one cannot
    prove its hardware and is never official.
    """
    if run.hardware is not None:
        return run.hardware.matches_class
    return run.status != TrialStatus.ok


class SpecLookup:
    """Workload specs and submission manifests by name, read once each; a missing file is ``None``, not an error.

    A result outlives the files that produced it (a workload renamed, a submission withdrawn), and the board still
    shows it with what the result itself records. A file that exists but does not load is the user's to fix.
    """

    def __init__(self, root: Path):
        self.root = root
        self._workloads: dict[str, WorkloadSpec | None] = {}
        self._submissions: dict[str, SubmissionManifest | None] = {}

    def workload(self, name: str) -> WorkloadSpec | None:
        if name not in self._workloads:
            try:
                path = workload_path(name, self.root)
            except BenchError:
                self._workloads[name] = None
            else:
                self._workloads[name] = load_workload(path)
        return self._workloads[name]

    def submission(self, name: str) -> SubmissionManifest | None:
        if name not in self._submissions:
            try:
                folder = submission_dir(name, self.root)
            except BenchError:
                self._submissions[name] = None
            else:
                self._submissions[name] = load_submission(folder)
        return self._submissions[name]


def rank_entries(entries: Iterable[Entry], direction: str = "minimize") -> list[Entry]:
    """Order entries best first and assign ranks; entries without a scored run follow, unranked, by name.

    Each entry is compared with the next by Welch's t-test on the ranking metric. A chain of non-significant
    neighbours is one tie group sharing the rank of its first member. Where either side has a single seed the
    test is impossible and the order of the means stands (the page shows that the difference was not tested).
    """
    entries = list(entries)
    sign = 1.0 if direction == "minimize" else -1.0
    scored = sorted((e for e in entries if e.scored), key=lambda e: (sign * e.score.mean, e.submission))
    unranked = sorted((e for e in entries if not e.scored), key=lambda e: e.submission)
    tests = [welch(a.values(), b.values()) for a, b in itertools.pairwise(scored)]
    same = [t.value == 0 or t.significant is False for t in tests]  # same[i]: entry i ties entry i + 1
    ranked: list[Entry] = []
    for i, entry in enumerate(scored):
        start = i
        while start > 0 and same[start - 1]:
            start -= 1
        tied = (i > 0 and same[i - 1]) or (i < len(same) and same[i])
        p_next = tests[i].p if i < len(tests) else None
        ranked.append(dataclasses.replace(entry, rank=start + 1, tied=tied, p_next=p_next, has_next=i < len(tests)))
    return ranked + unranked


def _notes(spec: WorkloadSpec | None, name: str, metric: str, runs: list[RunResult]) -> list[str]:
    """Warnings a reader needs before trusting the comparison in a section."""
    notes = []
    if spec is None:
        notes.append(f"workloads/{name}.yaml not found: ranked by {metric}, target and budget unknown.")
    hashes = {r.workload_hash for r in runs}
    if len(hashes) > 1:
        notes.append(f"Results come from {len(hashes)} versions of the workload (different workload hashes).")
    checksums = {r.validation.checksum for r in runs if r.validation is not None}
    if len(checksums) > 1:
        notes.append(
            f"Results were evaluated on {len(checksums)} different validation sets (checksums differ): "
            "their losses are not directly comparable."
        )
    return notes


def build_sections(results: Iterable[RunResult], root: Path) -> list[Section]:
    """Every (workload, hardware class) with its groups ranked, in name order."""
    lookup = SpecLookup(root)
    by_key: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for run in unique_runs(results):
        spec = lookup.workload(run.workload)
        hardware_class = run.hardware.hardware_class if run.hardware else spec.budget.hardware if spec else "unknown"
        by_key[(run.workload, hardware_class)].append(run)

    sections = []
    for (name, hardware_class), runs in sorted(by_key.items()):
        spec = lookup.workload(name)
        metric = spec.target.metric if spec else DEFAULT_METRIC
        direction = spec.target.direction if spec else "minimize"
        groups = []
        for official in (True, False):
            by_submission: dict[str, list[RunResult]] = defaultdict(list)
            for run in runs:
                if is_official(run) == official:
                    by_submission[run.submission].append(run)
            if not by_submission:
                continue
            entries = []
            for submission, sub_runs in by_submission.items():
                manifest = lookup.submission(submission)
                authors = tuple(manifest.authors) if manifest else ()
                entries.append(Entry(submission, authors, metric, tuple(sub_runs)))
            groups.append(Group(official, tuple(rank_entries(entries, direction))))
        sections.append(
            Section(name, hardware_class, spec, metric, tuple(groups), tuple(_notes(spec, name, metric, runs)))
        )
    return sections
