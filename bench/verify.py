"""``bench verify``: re-run results' configurations on fresh seeds here and say whether their scores are reproduced.

A result file is its submitter's claim. Verifying it means running the same code (the submission's current source,
which must be the one the result names), on the same workload file, with the same overrides, through the same driver
as ``bench run``, on seeds the claim did not use, and testing the claimed final metric against those re-runs
(:func:`bench.board.trust.judge`: the claimed mean inside the re-runs' prediction interval). Claimed results are
grouped by configuration (one board entry), and each configuration gets one record in ``leaderboard/verifications/``
saying who verified, when, on which machine, with the re-runs' result files beside it. A reproduced configuration's
source is recorded in ``leaderboard/versions.json``, so its results stay rankable after the code moves on.
"""

from __future__ import annotations

import getpass
import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench import driver
from bench.board.rank import Configuration, rerun_problem, sweep_trial
from bench.board.trust import TEST, judge
from bench.errors import BenchError
from bench.harness.plan import TrialRequest
from bench.results.registry import read_registry, version_of, write_registry
from bench.results.schema import RunResult
from bench.results.store import new_run_id, read_result
from bench.results.verification import (
    Host,
    Verdict,
    VerificationRecord,
    claimed_run,
    rerun,
    reruns_dir,
    write_record,
)
from bench.spec.loading import MANIFEST, Submission, load_submission, load_workload
from bench.spec.workload import WorkloadSpec

MIN_RERUNS = 2  # the fewest re-runs that have a spread to test with
FRESH_SEEDS = (1_000, 1_000_000)  # re-runs draw their seeds here, never a seed the claim or its sweep used


@dataclass(frozen=True)
class Claim:
    """Claimed results of one configuration, with the code and workload file that re-run them."""

    results: tuple[RunResult, ...]
    paths: tuple[Path, ...]
    submission: Submission
    workload: WorkloadSpec
    workload_file: Path

    @property
    def metric(self) -> str:
        return self.workload.target.metric


def identity(root: Path) -> str:
    """Who is verifying: git's ``user.name`` in the project, else the login name."""
    try:
        name = subprocess.run(["git", "config", "user.name"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    return name or login()


def login() -> str:
    """``$USER``, else the login name the system knows, else "unknown"."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _checked(path: Path, result: RunResult, root: Path) -> tuple[Submission, WorkloadSpec, Path]:
    """The submission and workload that re-run ``result``; an error naming the file and the field when it cannot be
    re-run as it ran (a forged name or hash, other workload settings, an unscored or unrankable run)."""
    if not result.scored:
        raise BenchError(f"{path}: status: {result.status.value} ({result.reason or 'no final evaluation'}): only a "
                         "scored result has scores to verify")
    if sweep_trial(result):
        raise BenchError(f"{path}: tuning: a trial of a sweep; sweep trials are never ranked, so there is nothing to "
                         "verify (verify the re-runs of its declared best)")
    if result.tuning is not None and (problem := rerun_problem(result)):
        raise BenchError(f"{path}: tuning: {problem}")
    if result.not_ranked:
        raise BenchError(f"{path}: not_ranked: {result.not_ranked}; such a result is never ranked")
    folder = root / "submissions" / result.submission
    if not (folder / MANIFEST).exists():
        raise BenchError(f"{path}: submission: no submission {result.submission!r} in this project "
                         f"({folder / MANIFEST} does not exist), so there is no code to re-run")
    submission = load_submission(folder)
    current = submission.source_hash()
    if result.submission_hash != current:
        raise BenchError(f"{path}: submission_hash: {result.submission_hash[:8]} is not the current source of "
                         f"submissions/{result.submission} ({current[:8]}): only the code that produced a result can "
                         "reproduce it (verify it at the commit whose source has that hash)")
    workload_file = root / "workloads" / f"{result.workload}.yaml"
    if not workload_file.is_file():
        raise BenchError(f"{path}: workload: no workload file {workload_file}")
    spec = load_workload(workload_file)
    if result.workload_hash != spec.content_hash():
        raise BenchError(f"{path}: workload_hash: {result.workload_hash[:8]} is not {workload_file} as it is now "
                         f"({spec.content_hash()[:8]}): the result ran under other settings (e.g. --wall-clock), "
                         "which cannot be re-run from the file")
    resolved = submission.hyperparameters(result.overrides or {}, result.workload, str(path))
    if resolved != result.hyperparameters:
        raise BenchError(f"{path}: hyperparameters: not what submissions/{result.submission} with the result's "
                         f"overrides ({result.overrides or {}}) resolves to, so they cannot be re-run as claimed")
    return submission, spec, workload_file


def claims(paths: Sequence[Path], root: Path) -> list[Claim]:
    """The results at ``paths``, checked (:func:`_checked`) and grouped by configuration, in the order given."""
    grouped: dict[Configuration, list[tuple[Path, RunResult]]] = {}
    loaded: dict[Configuration, tuple[Submission, WorkloadSpec, Path]] = {}
    for path in paths:
        result = read_result(path)
        config = Configuration.of(result)
        loaded.setdefault(config, _checked(path, result, root))
        grouped.setdefault(config, []).append((path, result))
    return [
        Claim(tuple(r for _, r in found), tuple(p for p, _ in found), *loaded[config])
        for config, found in grouped.items()
    ]


def fresh_seeds(claim: Claim, count: int) -> list[int]:
    """``count`` random seeds from :data:`FRESH_SEEDS` that no claimed result and no sweep behind them trained on:
    the re-runs must be new draws of the configuration's seed noise, not repeats of what was claimed."""
    used = {r.seed for r in claim.results}
    for result in claim.results:
        used.update((result.tuning or {}).get("tuning_seeds") or [])
    seeds: list[int] = []
    while len(seeds) < count:
        seed = FRESH_SEEDS[0] + secrets.randbelow(FRESH_SEEDS[1] - FRESH_SEEDS[0])
        if seed not in used and seed not in seeds:
            seeds.append(seed)
    return seeds


def _requests(claim: Claim, seeds: Sequence[int], offline: bool) -> list[TrialRequest]:
    overrides = claim.results[0].overrides or {}
    return [
        TrialRequest(workload=claim.workload, workload_dir=str(claim.workload_file.parent),
                     submission_dir=str(claim.submission.folder), seed=seed, overrides=overrides,
                     overrides_from=f"overrides of {claim.paths[0]}", run_id=new_run_id(seed), downstream=False,
                     offline=offline)
        for seed in seeds
    ]


def _host(claim: Claim, reruns: Sequence[RunResult]) -> Host:
    hardware = next((r.hardware for r in reruns if r.hardware is not None), None)
    contended = any(r.contention is not None and r.contention.flagged for r in reruns)
    if hardware is None:
        return Host(hardware_class=claim.workload.budget.hardware, matches_class=False, machine="unknown (no re-run "
                    "got as far as recording its hardware)", hostname_hash="", contended=contended)
    return Host(hardware_class=hardware.hardware_class, matches_class=hardware.matches_class,
                machine=hardware.machine, hostname_hash=hardware.hostname_hash, contended=contended)


def record(claim: Claim, reruns: Sequence[RunResult], verifier: str) -> VerificationRecord:
    """The verification record of ``claim`` given its ``reruns``: the verdict of :func:`bench.board.trust.judge`."""
    first = claim.results[0]
    judgement = judge([getattr(r.final, claim.metric) for r in claim.results], reruns, claim.metric)
    now = datetime.now(timezone.utc)
    return VerificationRecord(
        id=f"{now.strftime('%Y%m%dT%H%M%SZ')}-{first.workload}-{first.submission}-{secrets.token_hex(3)}",
        verifier=verifier, user=login(), at=now, host=_host(claim, reruns),
        workload=first.workload, workload_hash=first.workload_hash, submission=first.submission,
        submission_hash=first.submission_hash, trainer_hash=first.trainer_hash,
        hyperparameters=first.hyperparameters, overrides=first.overrides or {}, metric=claim.metric, test=TEST,
        claimed=[claimed_run(r, claim.metric) for r in claim.results],
        reruns=[rerun(r, claim.metric) for r in reruns], verdict=judgement.verdict, reason=judgement.reason,
    )


def verify(
    paths: Sequence[Path], root: Path, reruns: int | None = None, *, address: str | None = None,
    progress: bool = True, offline: bool = False,
) -> list[tuple[Path, VerificationRecord]]:
    """Verify the results at ``paths`` in project ``root`` (see the module docstring); each record with the path
    it was written to.

    ``reruns`` is the number of fresh seeds per configuration (default: as many as it claims, at least
    :data:`MIN_RERUNS`); ``address`` the Ray cluster, as for ``bench run``. Every claim is checked before anything
    trains, and all re-runs go through one :func:`bench.driver.run` into the project's re-runs folder
    (:func:`bench.results.verification.reruns_dir`), so they share its scheduling.
    """
    if reruns is not None and reruns < MIN_RERUNS:
        raise BenchError(f"--reruns: at least {MIN_RERUNS}, so that the re-runs have a spread to test with")
    execution = driver.Execution(reruns_dir(root), address, progress)
    found = claims(paths, root)
    plans = [(claim, _requests(claim, fresh_seeds(claim, reruns or max(MIN_RERUNS, len(claim.results))), offline))
             for claim in found]
    results = driver.run([request for _, requests in plans for request in requests], execution,
                         [claim.submission for claim in found])
    verifier = identity(root)
    written, start = [], 0
    registry = before = read_registry(root)
    for claim, requests in plans:
        mine = results[start:start + len(requests)]
        start += len(requests)
        made = record(claim, mine, verifier)
        written.append((write_record(root, made), made))
        if made.verdict is Verdict.reproduced:
            why = f"verification {made.id}: re-runs on fresh seeds reproduced {len(made.claimed)} result(s)"
            registry = registry.with_versions([version_of(claim.results[0], made.at.date(), verifier, why)])
    if registry != before:
        write_registry(root, registry)
    return written
