"""A verification record: someone re-ran a result's configuration on fresh seeds and compared (``bench verify``).

Verifications live in ``leaderboard/verifications/``: ``records/<id>.json`` (who, when, on which machine, the claimed
results by content digest, the re-runs, the test and its verdict) and ``runs/``, a results folder with the re-runs'
own result files and logs (``bench results --results-dir leaderboard/verifications/runs`` lists them). The board
reads them (:mod:`bench.board.trust`): it loads each record's re-runs, checks their digests, and recomputes the
verdict from the numbers rather than taking the record's word for it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from bench.errors import BenchError
from bench.results.schema import Name, RunId, RunResult, TrialStatus
from bench.results.store import load_result_files, read_model, result_digest, write_atomic
from bench.spec.base import StrictModel

VERIFICATIONS_DIR = Path("leaderboard") / "verifications"
"""Where verifications live, relative to the project."""
RECORDS = "records"
RERUNS = "runs"


class Verdict(str, enum.Enum):
    reproduced = "reproduced"  # the claimed mean lies inside the re-runs' prediction interval
    not_reproduced = "not reproduced"  # it lies outside: the claimed scores are not what the code produces here
    inconclusive = "inconclusive"  # too few scored re-runs, or re-runs on hardware other than the workload's class


class Host(StrictModel):
    """The machine the re-runs ran on, as their results recorded it."""

    hardware_class: str = Field(description="The workload's hardware class.")
    matches_class: bool
    machine: str = Field(description="CPU model and cores, or the GPUs.")
    hostname_hash: str
    contended: bool = Field(description="Whether any re-run shared its machine with other work (flagged).")


class ClaimedRun(StrictModel):
    """A result whose scores were put to the test, named by its content digest."""

    run_id: RunId
    seed: int
    digest: str
    value: float = Field(description="Its final value of the record's metric.")


class Rerun(StrictModel):
    run_id: RunId
    seed: int
    digest: str
    status: TrialStatus
    value: float | None = Field(description="Its final value of the record's metric; None when not scored.")


class VerificationRecord(StrictModel):
    schema_version: Literal[1] = 1
    id: RunId
    verifier: str = Field(description="Who ran the verification: git's user.name, else $USER.")
    user: str = Field(description="$USER of the process that ran it.")
    at: datetime
    host: Host
    workload: Name
    workload_hash: str
    submission: Name
    submission_hash: str
    trainer_hash: str | None
    hyperparameters: dict[str, Any]
    overrides: dict[str, Any]
    metric: str
    test: str = Field(description="The statistical test, in words, with its alpha.")
    claimed: list[ClaimedRun]
    reruns: list[Rerun]
    verdict: Verdict
    reason: str


def record_path(root: Path, record_id: str) -> Path:
    return root / VERIFICATIONS_DIR / RECORDS / f"{record_id}.json"


def reruns_dir(root: Path) -> Path:
    """Where verifications' re-runs are written: a results folder of their own."""
    return root / VERIFICATIONS_DIR / RERUNS


def claimed_run(result: RunResult, metric: str) -> ClaimedRun:
    assert result.final is not None
    return ClaimedRun(run_id=result.run_id, seed=result.seed, digest=result_digest(result),
                      value=getattr(result.final, metric))


def rerun(result: RunResult, metric: str) -> Rerun:
    value = getattr(result.final, metric) if result.scored and result.final is not None else None
    return Rerun(run_id=result.run_id, seed=result.seed, digest=result_digest(result), status=result.status,
                 value=value)


def write_record(root: Path, record: VerificationRecord) -> Path:
    path = record_path(root, record.id)
    write_atomic(path, record.model_dump_json(indent=2) + "\n")
    return path


def load_records(root: Path) -> list[tuple[Path, VerificationRecord, list[RunResult]]]:
    """Every record of the project with its re-runs, each re-run checked against the digest the record gives it.

    A record whose re-run files are missing or differ from what it recorded is an error naming both: either was
    edited after the verification, and the board cannot tell which to believe.
    """
    paths = sorted((root / VERIFICATIONS_DIR / RECORDS).glob("*.json"))
    if not paths:
        return []
    runs = reruns_dir(root)
    on_disk = {(r.workload, r.submission, r.run_id): r for _, r in load_result_files([runs])}
    found = []
    for path in paths:
        record = read_model(path, VerificationRecord, "verification record")
        if record.id != path.stem:
            raise BenchError(f"{path}: id: {record.id!r} is not the record's file name {path.stem!r}")
        reruns = []
        for listed in record.reruns:
            result = on_disk.get((record.workload, record.submission, listed.run_id))
            if result is None:
                raise BenchError(f"{path}: reruns: re-run {listed.run_id} has no result file under "
                                 f"{runs / record.workload / record.submission}")
            if result_digest(result) != listed.digest:
                raise BenchError(f"{path}: reruns: the result file of re-run {listed.run_id} under {runs} is not the "
                                 "one the record names (its digest differs): one of them was edited")
            reruns.append(result)
        found.append((path, record, reruns))
    return found
