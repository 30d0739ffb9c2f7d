"""Which results the board can vouch for, and who verified them.

A result file is a claim by whoever ran it: anyone can edit its scores or copy it under another name. The board ranks
a run by what stands behind it (its :class:`Standing`):

- **unrankable**: the project cannot vouch for the code it names (the submission does not exist here, or its
  ``submission_hash`` is neither the submission's current source nor a version recorded in
  ``leaderboard/versions.json``), or a verification re-ran it and did not reproduce its scores. Never ranked;
  shown apart with the reason.
- **verified**: a verification record reproduced it (``bench verify``), or the maintainers list it among their own
  runs in the registry; each such :class:`Voucher` names who, on which hardware class, and how.
- **submitted**: neither. Ranked only on request (``bench leaderboard --include-submitted``), apart from verified runs.

Vouchers and refutations name a result by its content digest, so an edited copy of a verified result is submitted.
The board recomputes every record's verdict from its numbers (:func:`judge`), so a record edited to say
"reproduced" over numbers that do not is an error rather than a mark.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bench.board.stats import ALPHA, Reproduction, reproduction
from bench.errors import BenchError
from bench.results.registry import REGISTRY_PATH, KnownVersion, OwnRuns, Registry, read_registry
from bench.results.schema import RunResult
from bench.results.store import result_digest
from bench.results.verification import Verdict, VerificationRecord, load_records
from bench.spec.loading import MANIFEST, load_submission

TEST = (f"claimed mean inside the re-runs' two-sided {1 - ALPHA:.0%} prediction interval for a mean of as many seeds "
        "(Student t with the re-runs' own spread: bench.board.stats.reproduction)")
"""The test a verification applies, in words, as its record states it."""


class Standing(str, enum.Enum):
    verified = "verified"
    submitted = "submitted"
    unrankable = "unrankable"


@dataclass(frozen=True)
class Voucher:
    """Someone who stands behind a run: who, on which hardware class, when and how."""

    by: str
    hardware_class: str
    when: date
    how: str

    @property
    def label(self) -> str:
        return f"{self.by} ({self.hardware_class})"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    test: Reproduction | None = None


def judge(claimed: Sequence[float], reruns: Sequence[RunResult], metric: str) -> Judgement:
    """The verdict on ``claimed`` final values of ``metric`` given ``reruns`` of their configuration on fresh seeds.

    Inconclusive when a re-run ran on hardware that does not match the workload's class (a faster machine could
    reproduce a better claim than the class allows) or fewer than two re-runs were scored (no spread to test with).
    Contention is not a reason: it slows a re-run, which can only make an honest claim fail, never a forged one pass.
    """
    scored = [r for r in reruns if r.scored]
    elsewhere = sorted({r.hardware.machine if r.hardware else "no hardware record" for r in scored
                        if r.hardware is None or not r.hardware.matches_class})
    if elsewhere:
        wanted = scored[0].hardware.hardware_class if scored[0].hardware else "the workload's class"
        return Judgement(Verdict.inconclusive, f"the re-runs ran on hardware that does not match {wanted} "
                                               f"({'; '.join(elsewhere)}), so they cannot reproduce its results")
    if len(scored) < 2:
        statuses = Counter(r.status.value for r in reruns)
        counted = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "none"
        return Judgement(Verdict.inconclusive, f"{len(scored)} scored re-run(s) ({counted}): the test needs two "
                                               "for a spread")
    test = reproduction(claimed, [getattr(r.final, metric) for r in scored])
    assert test.low is not None and test.high is not None
    numbers = (f"claimed mean {metric} {test.claimed:.4f} over {test.n_claimed} seed(s); {test.n_reruns} re-runs "
               f"{test.rerun:.4f}, {test.confidence:.0%} prediction interval [{test.low:.4f}, {test.high:.4f}]")
    if test.reproduced:
        return Judgement(Verdict.reproduced, f"{numbers}: inside", test)
    side = "below" if test.claimed < test.low else "above"
    return Judgement(Verdict.not_reproduced, f"{numbers}: the claim is {side} it", test)


def check_record(path: Path, record: VerificationRecord, reruns: Sequence[RunResult]) -> Judgement:
    """The verdict ``record`` should have, recomputed; an error naming ``path`` when its re-runs are not of the
    configuration it verifies or its verdict does not follow from its numbers."""
    for run in reruns:
        for field in ("workload", "workload_hash", "submission", "submission_hash", "hyperparameters"):
            if getattr(run, field) != getattr(record, field):
                raise BenchError(f"{path}: reruns: re-run {run.run_id} has another {field} than the results it "
                                 "verifies, so it is not a re-run of their configuration")
    judgement = judge([c.value for c in record.claimed], reruns, record.metric)
    if judgement.verdict is not record.verdict:
        raise BenchError(f"{path}: verdict: the record says {record.verdict.value!r}, but its numbers say "
                         f"{judgement.verdict.value!r} ({judgement.reason})")
    return judgement


RunKey = tuple[str, str, str, str]  # workload, submission, run id, content digest


class Trust:
    """What stands behind each run: the project's submissions, its registry of versions, its verification records.

    :meth:`load` reads them from a project; tests build one from a registry of their own.
    """

    def __init__(self, root: Path, registry: Registry,
                 records: Sequence[tuple[Path, VerificationRecord, Sequence[RunResult]]] = ()):
        self.root = root
        self.registry = registry
        self._current: dict[str, tuple[str | None, str | None]] = {}  # name -> (source hash, why there is none)
        self._own: dict[RunKey, list[OwnRuns]] = defaultdict(list)
        self._verified: dict[RunKey, list[Voucher]] = defaultdict(list)
        self._refuted: dict[RunKey, list[str]] = defaultdict(list)
        for own in registry.own_runs:
            for run in own.runs:
                self._own[(run.workload, run.submission, run.run_id, run.digest)].append(own)
        for path, record, reruns in records:
            judgement = check_record(path, record, reruns)
            where = record.host.hardware_class
            for claimed in record.claimed:
                key = (record.workload, record.submission, claimed.run_id, claimed.digest)
                if judgement.verdict is Verdict.reproduced:
                    how = (f"verification {record.id} on {record.at.date().isoformat()}: {judgement.reason} "
                           f"({record.host.machine})")
                    self._verified[key].append(Voucher(record.verifier, where, record.at.date(), how))
                elif judgement.verdict is Verdict.not_reproduced:
                    self._refuted[key].append(f"not reproduced by {record.verifier} on {where} (verification "
                                              f"{record.id}): {judgement.reason}")

    @classmethod
    def load(cls, root: Path) -> Trust:
        """The project's registry (``leaderboard/versions.json``) and verifications (``leaderboard/verifications/``)."""
        return cls(root, read_registry(root), load_records(root))

    def current_source(self, submission: str) -> tuple[str | None, str | None]:
        """``(the submission's current source hash, None)``, or ``(None, why it has none)``."""
        if submission not in self._current:
            folder = self.root / "submissions" / submission
            if not (folder / MANIFEST).exists():
                why = (f"no submission {submission!r} in this project (submissions/{submission}/{MANIFEST}), so "
                       "nothing vouches for its code")
                self._current[submission] = (None, why)
            else:
                try:
                    self._current[submission] = (load_submission(folder).source_hash(), None)
                except BenchError as exc:
                    self._current[submission] = (None, f"submissions/{submission} does not load: {exc}")
        return self._current[submission]

    def _key(self, run: RunResult) -> RunKey:
        return (run.workload, run.submission, run.run_id, result_digest(run))

    def unrankable(self, run: RunResult) -> str | None:
        """Why the board must never rank ``run``, or None."""
        current, missing = self.current_source(run.submission)
        if missing is not None:
            return missing
        if run.submission_hash != current and self.registry.knows(run.submission, run.submission_hash) is None:
            return (f"its code is unknown here: submission_hash {run.submission_hash[:8]} is neither the current "
                    f"source of submissions/{run.submission} ({(current or '')[:8]}) nor a version recorded in "
                    f"{REGISTRY_PATH}")
        refuted = self._refuted.get(self._key(run))
        return "; ".join(refuted) if refuted else None

    def vouchers(self, run: RunResult) -> tuple[Voucher, ...]:
        """Who stands behind ``run`` as it is now (an edited copy has none); own runs are on their own class."""
        key = self._key(run)
        where = run.hardware.hardware_class if run.hardware else "unknown hardware"
        own = [Voucher(o.by, where, o.recorded, f"the maintainers' own run: {o.note}") for o in self._own.get(key, [])]
        return tuple(own + self._verified.get(key, []))

    def standing(self, run: RunResult) -> Standing:
        if self.unrankable(run) is not None:
            return Standing.unrankable
        return Standing.verified if self.vouchers(run) else Standing.submitted

    def earlier_version(self, run: RunResult) -> KnownVersion | None:
        """The registry's record of ``run``'s source when that is not the submission's current one."""
        current, _ = self.current_source(run.submission)
        return None if run.submission_hash == current else self.registry.knows(run.submission, run.submission_hash)
