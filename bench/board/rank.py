"""Grouping result files into leaderboard sections and ranking the configurations in each, with ties.

A section is one (workload, hardware class). Inside it, runs on machines that match the class ("official") and
runs that do not are ranked separately, so a faster unofficial machine can never push an official entry down; and
verified runs, submitted ones and unrankable ones (:mod:`bench.board.trust`) are kept apart the same way, so an
unverified claim never pushes a verified entry down. An entry is one *configuration* in one such group: the runs
that share submission, submission source hash, resolved hyperparameters and workload hash. Pooling anything else
would mix a 15 s smoke run or a hand-set learning rate into a submission's seeds. Some configurations are shown but never compared (``Entry.excluded`` says why): runs
under other workload settings than the workload file's, sweep trials, and hyperparameters that differ from the
submission's manifest.

A submission is ranked once, by its *current* configuration (:func:`current_configurations`): the checked re-runs
of its latest tuning sweep, else the latest of its manifest's configurations. Its earlier sources and
configurations are kept as history (``Entry.superseded_by``), reachable from its page. The seeds of an entry are
summarised by mean and Student-t interval; entries with at least ``MIN_SEEDS`` scored seeds are ordered by the
workload's target metric and share a rank only where the statistics say so (:func:`tie_groups`); entries with
fewer are listed as provisional, by their mean. Only runs with status ``ok`` and a final evaluation are scored;
all others are counted and explained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.board.stats import Estimate, mean_ci, welch
from bench.board.trust import Standing, Trust, Voucher
from bench.errors import BenchError
from bench.spec.hparams import flatten, format_value, value_at
from bench.results.registry import REGISTRY_PATH, KnownVersion
from bench.spec.loading import find_submission, load_workload, workload_path
from bench.results.schema import RunResult, TrialStatus
from bench.spec.submission import SubmissionManifest
from bench.spec.workload import DEFAULT_REFERENCE, WorkloadSpec

DEFAULT_METRIC = "val_loss"  # what a section is ranked by when its workload file is gone
MIN_SEEDS = 3  # scored seeds an entry needs to be ranked: two give a t interval with 1 degree of freedom (x12.7)


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


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sweep_trial(run: RunResult) -> bool:
    """A trial of a ``bench tune`` sweep: its ``tuning`` record names its index in the sweep. The declared best
    configuration, re-run on fresh seeds, carries the sweep's record (and budget) without a trial index."""
    return run.tuning is not None and "trial" in run.tuning


def tuned_rerun(run: RunResult) -> bool:
    """A re-run of a sweep's declared best: a ``tuning`` record without a trial index."""
    return run.tuning is not None and "trial" not in run.tuning


def rerun_problem(run: RunResult) -> str | None:
    """Why a re-run of a sweep's declared best cannot be ranked as one, or None.

    Its overrides must equal the configuration its record names as chosen (``tuning.chosen``): a ``--set`` run
    with a copied tuning record would otherwise pass for a tuned one. Its seed must not be one the sweep trained
    with (``tuning.tuning_seeds``): the chosen configuration was selected on those, so they would flatter it.
    """
    assert run.tuning is not None
    chosen = run.tuning.get("chosen")
    if not isinstance(chosen, dict):
        return "its tuning record names no chosen configuration (tuning.chosen), so it cannot be checked"
    if _canonical(run.overrides or {}) != _canonical(chosen):
        return (
            f"its hyperparameters are not the declared best of sweep {run.tuning.get('sweep_id', '?')}: overrides "
            f"{_canonical(run.overrides or {})} instead of {_canonical(chosen)}"
        )
    if run.seed in (run.tuning.get("tuning_seeds") or []):
        return f"seed {run.seed} is one the sweep tuned on; the declared best is ranked on fresh seeds only"
    return None


@dataclass(frozen=True)
class Configuration:
    """What makes two runs seeds of one entry. A sweep's trials form one configuration per sweep (``sweep``); the
    re-runs of a sweep's declared best form one per sweep too (``tuned``: the sweep id), apart from untuned runs
    that happen to use the same hyperparameters (those carry no tuning budget)."""

    submission: str
    submission_hash: str
    hyperparameters: str  # canonical JSON of the resolved hyperparameters ("" for a sweep's trials)
    workload_hash: str
    sweep: str | None = None
    tuned: str | None = None

    @classmethod
    def of(cls, run: RunResult) -> Configuration:
        if sweep_trial(run):
            assert run.tuning is not None
            sweep = str(run.tuning.get("sweep_id", "unnamed sweep"))
            return cls(run.submission, run.submission_hash, "", run.workload_hash, sweep)
        tuned = str(run.tuning.get("sweep_id", "unnamed sweep")) if tuned_rerun(run) else None  # type: ignore[union-attr]
        return cls(run.submission, run.submission_hash, _canonical(run.hyperparameters), run.workload_hash, None, tuned)

    @property
    def digest(self) -> str:
        """A short stable name for file names: eight hex digits of the key (an untuned key hashes as it did
        before ``tuned`` existed, so entry pages keep their names)."""
        fields = dataclasses.astuple(self)
        key = _canonical(fields if self.tuned is not None else fields[:-1])
        return hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Entry:
    """One configuration's runs in one group, with its place once ranked (``rank`` is None for unranked entries).

    ``variant`` is a short tag that tells apart entries of one submission (``"tuned"``, ``"source 1a2b3c4d"``,
    ``"changed hyperparameters"``); ``changes`` lists the hyperparameters the configuration changed from the
    manifest, for its page (names stay out of table cells and plot legends); ``excluded`` is why the entry is
    shown but never compared; ``superseded_by`` is the slug of its submission's current entry when this one is an
    earlier configuration; ``reference`` is the entry of the workload's reference submission that the headline
    columns compare this one with (None for the reference itself or where there is none). ``standing`` is what
    stands behind its runs (:mod:`bench.board.trust`), ``vouchers`` who verified them, and ``version`` the
    registry's record of its source when that is not the submission's current one.
    """

    submission: str
    authors: tuple[str, ...]
    metric: str
    runs: tuple[RunResult, ...]
    rank: int | None = None
    tied: bool = False
    variant: str = ""
    changes: tuple[tuple[str, str], ...] = ()  # (dotted name, value as format_value prints it)
    excluded: str | None = None
    superseded_by: str | None = None
    reference: Entry | None = None
    is_reference: bool = False
    slug: str = ""
    direction: str = "minimize"
    standing: Standing = Standing.verified
    vouchers: tuple[Voucher, ...] = ()
    version: KnownVersion | None = None

    @property
    def label(self) -> str:
        return f"{self.submission} · {self.variant}" if self.variant else self.submission

    @property
    def current(self) -> bool:
        """Comparable and its submission's current configuration: what the board ranks."""
        return self.excluded is None and self.superseded_by is None

    @property
    def provisional(self) -> bool:
        """Scored and current, but with too few seeds to be ranked."""
        return self.current and 0 < len(self.scored) < MIN_SEEDS

    @property
    def tuned(self) -> str | None:
        """The sweep whose declared best this entry re-runs (None for a manifest's configuration)."""
        tuning = self.runs[0].tuning
        return None if tuning is None or sweep_trial(self.runs[0]) else str(tuning.get("sweep_id", "unnamed sweep"))

    @property
    def scored(self) -> list[RunResult]:
        return [r for r in self.runs if r.scored]

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
            if not r.scored
        )
        return [reason if n == 1 else f"{reason} (x{n})" for reason, n in sorted(reasons.items())]


@dataclass(frozen=True)
class Group:
    """The entries of one section run on official (matching) or unofficial hardware, with one standing (verified,
    submitted or unrankable): ranked first, then the rest."""

    official: bool
    entries: tuple[Entry, ...]
    standing: Standing = Standing.verified

    @property
    def ranked(self) -> list[Entry]:
        return [e for e in self.entries if e.rank is not None]

    @property
    def provisional(self) -> list[Entry]:
        """Comparable entries with 1 to ``MIN_SEEDS - 1`` scored seeds, best mean first."""
        return [e for e in self.entries if e.provisional]

    @property
    def compared(self) -> list[Entry]:
        """Ranked, then provisional: every entry that has headline numbers."""
        return self.ranked + self.provisional

    @property
    def superseded(self) -> list[Entry]:
        """Earlier configurations of the ranked and provisional submissions (their history), best mean first."""
        return [e for e in self.entries if e.superseded_by is not None]

    @property
    def unranked(self) -> list[Entry]:
        """Entries without a scored run, and entries shown apart (``excluded``)."""
        return [e for e in self.entries if e.rank is None and not e.provisional and e.superseded_by is None]

    @property
    def reference(self) -> Entry | None:
        """The entry every other one is stated against, where the group has one."""
        return next((e for e in self.entries if e.is_reference), None)

    def history(self, entry: Entry) -> list[Entry]:
        """The other entries of ``entry``'s submission in this group: earlier configurations, sweeps, other runs."""
        return [e for e in self.entries if e.submission == entry.submission and e.slug != entry.slug]

    @property
    def machines(self) -> list[str]:
        """The distinct machines the group's runs used, for saying what 'unofficial' was."""
        return sorted({r.hardware.machine for e in self.entries for r in e.runs if r.hardware is not None})

    @property
    def contended(self) -> list[str]:
        """Why runs of the group were flagged as contended (one line per distinct reason), for the same purpose."""
        return sorted({r.contention.reason for e in self.entries for r in e.runs
                       if r.contention is not None and r.contention.flagged and r.contention.reason})


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


def is_official(run: RunResult) -> bool:
    """Whether a run belongs to the official group of its section: hardware that matches the class, and a machine
    that was not contended while it trained (see :mod:`bench.measure.contention`).

    A run without a hardware record failed before the machine was fingerprinted: it can only add to a failure
    count, so it goes with the official runs it was most likely meant for. A *successful* run without one cannot
    prove its hardware and is never official.
    """
    if run.contention is not None and run.contention.flagged:
        return False  # the machine was shared: its numbers measure the load as much as the recipe
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
                self._submissions[name] = find_submission(name, self.root).manifest
            except BenchError:
                self._submissions[name] = None
        return self._submissions[name]


def delta_sign(entry: Entry, reference: Entry | None) -> int:
    """-1 or +1 when the 95% interval of ``entry``'s change against ``reference`` excludes zero (the sign of the
    change), else 0: what the Δ column's colour says. The reference itself, and an entry without one, are 0."""
    if reference is None or entry.slug == reference.slug or not entry.scored or not reference.scored:
        return 0
    d = welch(reference.values(), entry.values())
    if d.low is None or d.high is None or d.low <= 0 <= d.high:
        return 0
    return 1 if d.value > 0 else -1


def _indistinguishable(a: Entry, b: Entry) -> bool:
    """Equal means, or Welch's test finds no significant difference (with a single seed it cannot test)."""
    test = welch(a.values(), b.values())
    return test.value == 0 or test.significant is False


def tie_groups(ordered: list[Entry], reference: Entry | None = None) -> list[int]:
    """For each entry of ``ordered`` (best first), the index of the first entry of its tie group.

    Going down the order, an entry joins the group above it only when it is indistinguishable from *every* member
    (Welch, p >= 0.05, or equal means) and its change against ``reference`` has the same verdict (better, worse, or
    not significant) as theirs; otherwise it opens a new group. Chaining adjacent pairs instead would tie a and c
    through b although a and c differ significantly. Since Δ is the same Welch test against the reference, a tie
    group can never contain the reference and an entry whose Δ excludes zero, nor entries of different Δ colours.
    """
    starts: list[int] = []
    group: list[int] = []
    for i, entry in enumerate(ordered):
        if group and delta_sign(entry, reference) == delta_sign(ordered[group[0]], reference) and all(
            _indistinguishable(ordered[j], entry) for j in group
        ):
            group.append(i)
        else:
            group = [i]
        starts.append(group[0])
    return starts


def rank_entries(
    entries: Iterable[Entry],
    direction: str = "minimize",
    min_seeds: int = MIN_SEEDS,
    reference: Entry | None = None,
) -> list[Entry]:
    """Order entries best first and assign ranks to current ones with ``min_seeds`` scored seeds or more.

    Tie groups (:func:`tie_groups`) share the rank of their first member. Provisional entries (fewer seeds) follow
    unranked, by mean; then superseded configurations, by mean; then entries without a scored run or shown apart,
    by name.
    """
    entries = list(entries)
    sign = 1.0 if direction == "minimize" else -1.0

    def by_mean(e: Entry) -> tuple[float, str, str]:
        return (sign * e.score.mean, e.submission, e.variant)

    comparable = [e for e in entries if e.current and e.scored]
    scored = sorted((e for e in comparable if len(e.scored) >= min_seeds), key=by_mean)
    provisional = sorted((e for e in comparable if len(e.scored) < min_seeds), key=by_mean)
    superseded = sorted((e for e in entries if e.superseded_by is not None), key=by_mean)
    rest = sorted((e for e in entries if e not in comparable and e.superseded_by is None),
                  key=lambda e: (e.submission, e.variant))
    starts = tie_groups(scored, reference)
    ranked = [
        dataclasses.replace(entry, rank=starts[i] + 1, tied=starts.count(starts[i]) > 1)
        for i, entry in enumerate(scored)
    ]
    return ranked + provisional + superseded + rest


_MISSING: Any = object()  # a name one side of a comparison of hyperparameters does not have


def hyperparameter_changes(declared: dict[str, Any], resolved: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(name, declared value, value used)`` for every hyperparameter a run changed, dotted names, sorted."""
    before, after = flatten(declared), flatten(resolved)
    return [
        (name, before.get(name, _MISSING), after.get(name, _MISSING))
        for name in sorted(set(before) | set(after))
        if before.get(name, _MISSING) != after.get(name, _MISSING)
    ]


def _changes(declared: dict[str, Any], run: RunResult) -> list[tuple[str, Any, Any]]:
    """What a run changed of its manifest's hyperparameters: the overrides it records, or, for a result made
    before overrides were recorded, the differences on the names both have (a name the manifest gained later
    was no override; the source hash tells that manifest version apart)."""
    if run.overrides is not None:
        return hyperparameter_changes({k: value_at(declared, k) for k in run.overrides}, run.overrides)
    common = set(declared) & set(run.hyperparameters)
    return hyperparameter_changes({k: declared[k] for k in common}, {k: run.hyperparameters[k] for k in common})


def _shown(value: Any) -> str:
    """A hyperparameter value as a person would type it after ``--set``; "(unset)" where one side lacks it."""
    return "(unset)" if value is _MISSING else format_value(value)


def compared_hash(spec: WorkloadSpec | None, runs: list[RunResult]) -> tuple[str | None, str | None]:
    """The workload hash a section's entries are compared under, and a note when it is not the file's own.

    Normally the workload file's current hash: a result recorded under other settings (``--wall-clock 15s``)
    differs from it. When no result matches the file (the file was edited, or the spec grew a field, after every
    run), the most common hash among the results is used instead, so the board does not empty; the note says so.
    """
    if spec is None:
        return None, None
    current = spec.content_hash()
    if not runs or any(r.workload_hash == current for r in runs):
        return current, None
    counts = Counter(r.workload_hash for r in runs)
    chosen = max(counts, key=lambda h: (counts[h], max(r.finished_at for r in runs if r.workload_hash == h)))
    return chosen, (
        f"No result matches workloads/{spec.name}.yaml as it is now (hash {current[:8]}): entries are compared "
        f"under workload hash {chosen[:8]}, the most common among the results. Re-run to compare on the current file."
    )


Changes = tuple[tuple[str, str], ...]


def _exclusion(
    config: Configuration,
    runs: list[RunResult],
    spec: WorkloadSpec | None,
    manifest: SubmissionManifest | None,
    workload_hash: str | None,
) -> tuple[str, Changes, str | None]:
    """``(variant tag, hyperparameters changed from the manifest, why the configuration is shown apart)``; the
    reason is None for a comparable one."""
    if config.sweep is not None:
        trials = len(runs)
        return (
            "sweep trials",
            (),
            f"{trials} trial(s) of the hyperparameter sweep {config.sweep} (bench tune): sweep trials are never "
            "ranked; the declared best configuration, re-run on fresh seeds, is.",
        )
    if runs[0].not_ranked:
        return "not entered", (), f"{runs[0].not_ranked}."
    if spec is not None and workload_hash is not None and config.workload_hash != workload_hash:
        return (
            f"workload {config.workload_hash[:8]}",
            (),
            f"other workload settings (e.g. --wall-clock or --tokens): workload hash {config.workload_hash[:8]}, "
            f"the entries compared here have {workload_hash[:8]} (workloads/{spec.name}.yaml).",
        )
    if manifest is not None:
        changed = _changes(manifest.declared(runs[0].workload), runs[0])
    else:  # the submission folder is gone: what the run says it overrode
        changed = [(name, _MISSING, value) for name, value in sorted((runs[0].overrides or {}).items())]
    changes = tuple((name, _shown(new)) for name, _, new in changed)
    used = ", ".join(f"{name}={value}" for name, value in changes)
    if config.tuned is not None:  # the re-runs of a sweep's declared best
        problems = sorted({p for p in map(rerun_problem, runs) if p})
        if problems:
            return "tuned (unchecked)", changes, f"re-run of sweep {config.tuned} not ranked: {'; '.join(problems)}."
        return "tuned", changes, None
    if changed and manifest is not None:
        declared = ", ".join(f"{name}={_shown(old)}" for name, old, _ in changed)
        return (
            "changed hyperparameters",
            changes,
            f"hyperparameters differ from submissions/{config.submission}/submission.yaml (e.g. --set): "
            f"{used} instead of {declared}. Only a submission's declared configuration is ranked.",
        )
    return "", changes, None


SUBMITTED = (
    "submitted, not verified: nobody but its submitter has reproduced these results yet (bench verify RESULT... "
    "re-runs them; bench leaderboard --include-submitted ranks submitted entries apart)."
)


def _entries(
    runs: list[RunResult],
    spec: WorkloadSpec | None,
    lookup: SpecLookup,
    workload_hash: str | None,
    direction: str,
    official: bool,
    standing: Standing,
    trust: Trust,
    include_submitted: bool,
) -> list[Entry]:
    """One entry per configuration of a group's runs; entries of one submission's source versions are labelled.
    Unrankable entries are shown apart with what the board cannot vouch for; submitted ones too, unless
    ``include_submitted``."""
    by_config: dict[Configuration, list[RunResult]] = defaultdict(list)
    for run in runs:
        by_config[Configuration.of(run)].append(run)
    sources: dict[str, set[str]] = defaultdict(set)
    for config in by_config:
        sources[config.submission].add(config.submission_hash)
    entries = []
    for config, config_runs in by_config.items():
        manifest = lookup.submission(config.submission)
        variant, changes, excluded = _exclusion(config, config_runs, spec, manifest, workload_hash)
        if standing is Standing.unrankable:
            why = "; ".join(sorted({reason for r in config_runs if (reason := trust.unrankable(r))}))
            excluded = f"not rankable: {why}." + (f" Also: {excluded}" if excluded else "")
        elif standing is Standing.submitted and not include_submitted and excluded is None:
            excluded = SUBMITTED
        if len(sources[config.submission]) > 1:
            source = f"source {config.submission_hash[:8]}"
            variant = f"{source}, {variant}" if variant else source
        slug = (f"{config.submission}-{config.digest}" + ("" if official else "-unofficial")
                + ("" if standing is Standing.verified else f"-{standing.value}"))
        authors = tuple(manifest.authors) if manifest else ()
        metric = spec.target.metric if spec else DEFAULT_METRIC
        vouchers = tuple(dict.fromkeys(v for r in config_runs for v in trust.vouchers(r)))
        entry = Entry(config.submission, authors, metric, tuple(config_runs), variant=variant, changes=changes,
                      excluded=excluded, standing=standing, vouchers=vouchers,
                      version=trust.earlier_version(config_runs[0]))
        entries.append(dataclasses.replace(entry, slug=slug, direction=direction))
    return entries


def _recency(entry: Entry) -> tuple[bool, str, datetime, str]:
    """What makes an entry its submission's current configuration: tuned re-runs before the manifest's values,
    then the latest sweep (sweep ids start with their UTC start time, as ``bench tune`` picks its tuned
    configuration), then the latest run (then the slug, so that equal times still pick one)."""
    sweep = entry.tuned
    return (sweep is not None, sweep or "", max(r.finished_at for r in entry.runs), entry.slug)


def current_configurations(entries: list[Entry]) -> list[Entry]:
    """Mark every comparable, scored entry as superseded by its submission's current configuration, except that one.

    A submission is one row on the board: its declared configuration as it stands (the checked re-runs of its
    latest tuning sweep, else the latest of its manifest's configurations). A first source with hand-set values and
    its tuned re-runs are one submission's history, not two competitors; entries shown apart (sweep trials, --set
    runs) and entries without a scored run are left as they are.
    """
    candidates: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.excluded is None and entry.scored:
            candidates[entry.submission].append(entry)
    current = {name: max(group, key=_recency).slug for name, group in candidates.items()}
    return [
        dataclasses.replace(e, superseded_by=current[e.submission])
        if e.excluded is None and e.scored and e.slug != current[e.submission]
        else e
        for e in entries
    ]


def _with_reference(entries: list[Entry], reference: Entry | None) -> list[Entry]:
    """Mark ``reference`` (by slug: the entries are ranked copies) and point every other comparable entry at it."""
    if reference is None:
        return entries
    chosen = next(dataclasses.replace(e, is_reference=True) for e in entries if e.slug == reference.slug)
    return [
        chosen if e.slug == chosen.slug
        else dataclasses.replace(e, reference=chosen) if e.excluded is None and e.scored
        else e
        for e in entries
    ]


def _notes(spec: WorkloadSpec | None, name: str, metric: str, runs: list[RunResult]) -> list[str]:
    """Warnings a reader needs before trusting the comparison in a section."""
    notes = []
    if spec is None:
        notes.append(f"workloads/{name}.yaml not found: ranked by {metric}, target and budget unknown.")
    hashes = {r.workload_hash for r in runs}
    if spec is None and len(hashes) > 1:  # with the file, entries of other settings are shown apart instead
        notes.append(f"Results come from {len(hashes)} versions of the workload (different workload hashes).")
    checksums = {r.validation.checksum for r in runs if r.validation is not None}
    if len(checksums) > 1:
        notes.append(
            f"Results were evaluated on {len(checksums)} different validation sets (checksums differ): "
            "their losses are not directly comparable."
        )
    return notes


def build_sections(
    results: Iterable[RunResult], root: Path, trust: Trust | None = None, include_submitted: bool = False
) -> list[Section]:
    """Every (workload, hardware class) with its groups ranked, in name order.

    ``trust`` says what stands behind each run (default: the project's registry and verification records, see
    :mod:`bench.board.trust`). Verified runs are ranked; submitted ones form groups of their own, ranked among
    themselves only with ``include_submitted``; unrankable ones are shown apart.
    """
    trust = trust if trust is not None else Trust.load(root)
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
        reference = spec.reference if spec else DEFAULT_REFERENCE
        workload_hash, hash_note = compared_hash(spec, runs)
        standings = {(run.submission, run.run_id): trust.standing(run) for run in runs}
        groups = []
        for standing in Standing:
            for official in (True, False):
                group_runs = [run for run in runs
                              if is_official(run) == official and standings[(run.submission, run.run_id)] is standing]
                if not group_runs:
                    continue
                entries = current_configurations(_entries(group_runs, spec, lookup, workload_hash, direction,
                                                          official, standing, trust, include_submitted))
                chosen = next((e for e in entries if e.submission == reference and e.current and e.scored), None)
                ranked = rank_entries(entries, direction, reference=chosen)
                groups.append(Group(official, tuple(_with_reference(ranked, chosen)), standing))
        notes = _notes(spec, name, metric, runs) + ([hash_note] if hash_note else []) + _earlier_sources(groups)
        sections.append(Section(name, hardware_class, spec, metric, tuple(groups), tuple(notes)))
    return sections


def _earlier_sources(groups: list[Group]) -> list[str]:
    """What a reader must know about entries compared on a source that is no longer their submission's own: one
    note per reason the registry gives, naming the submissions."""
    by_why: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        for entry in group.compared:
            if entry.version is not None:
                by_why[f"{entry.version.why} (recorded {entry.version.recorded} by {entry.version.by})"].add(
                    entry.submission)
    return [
        f"{', '.join(sorted(names))}: compared on an earlier source than submissions/ holds now, a version "
        f"{REGISTRY_PATH} vouches for: {why}."
        for why, names in sorted(by_why.items())
    ]
