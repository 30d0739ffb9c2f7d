"""What the project vouches for, ``leaderboard/versions.json``: each submission's known versions, the maintainers' runs.

A result names the code that produced it by ``submission_hash`` (the submission's files and the shared training code,
``trainer_hash``). The board ranks a result only when that hash is one the project can vouch for: the submission's
current source, or a version recorded here. A version is recorded when results of it are verified (``bench verify``
re-ran them and reproduced their scores) or published by the maintainers from runs of their own (``bench vouch``).
So a submission's earlier sources stay on the board as its history, each saying who recorded it and why, while a
result of code the project has never seen (a copied or invented hash, a submission that does not exist) is not ranked.

``own_runs`` lists result files the maintainers ran themselves: the board marks them verified by the maintainers,
as it marks results a ``bench verify`` reproduced. Each is named by its content's digest
(:func:`bench.results.store.result_digest`), so an edited copy is no longer vouched for.

The file is committed and reviewed like code: it is what a reader trusts, so it changes only in a maintainer's
commit. Nothing in it is signed; see CONTRIBUTING.md, "How results are verified and published".
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field

from bench.results.schema import Name, RunId, RunResult
from bench.results.store import read_model, result_digest, write_atomic
from bench.spec.base import StrictModel

REGISTRY_PATH = Path("leaderboard") / "versions.json"
"""Where the registry lives, relative to the project."""


class KnownVersion(StrictModel):
    """One source of a submission that the project vouches for, with who recorded it and why."""

    submission: Name
    submission_hash: str
    trainer_hash: str | None = Field(
        description="The shared training code the version ran; None where its results predate trainer_hash.")
    recorded: date
    by: str
    why: str = Field(description="What the project's trust rests on: a verification, or the maintainers' own runs.")


class OwnRun(StrictModel):
    """A result file, by its identity and content digest."""

    workload: Name
    submission: Name
    run_id: RunId
    digest: str


class OwnRuns(StrictModel):
    """Results the maintainers ran themselves and published as verified, without a re-run by anyone else."""

    by: str
    recorded: date
    note: str = Field(description="Which runs these are: when, where and why they were made.")
    runs: list[OwnRun]


class Registry(StrictModel):
    schema_version: Literal[1] = 1
    versions: list[KnownVersion] = Field(default_factory=list)
    own_runs: list[OwnRuns] = Field(default_factory=list)

    def knows(self, submission: str, submission_hash: str) -> KnownVersion | None:
        return next((v for v in self.versions
                     if v.submission == submission and v.submission_hash == submission_hash), None)

    def with_versions(self, versions: list[KnownVersion]) -> Registry:
        """This registry with ``versions`` it does not know yet, sorted by submission, then date."""
        new = [v for v in versions if self.knows(v.submission, v.submission_hash) is None]
        unique = list({(v.submission, v.submission_hash): v for v in reversed(new)}.values())[::-1]
        merged = sorted([*self.versions, *unique], key=lambda v: (v.submission, v.recorded, v.submission_hash))
        return self.model_copy(update={"versions": merged})

    def with_own_runs(self, own: OwnRuns) -> Registry:
        """This registry with ``own`` runs added, leaving out runs it already lists with the same digest."""
        listed = {(r.workload, r.submission, r.run_id, r.digest) for o in self.own_runs for r in o.runs}
        runs = [r for r in own.runs if (r.workload, r.submission, r.run_id, r.digest) not in listed]
        if not runs:
            return self
        return self.model_copy(update={"own_runs": [*self.own_runs, own.model_copy(update={"runs": runs})]})


def vouching(registry: Registry, results: list[RunResult], by: str, note: str, recorded: date) -> Registry:
    """``registry`` with ``results`` recorded as the maintainers' own runs (``bench vouch``): each result's source as
    a known version, and each result by its digest."""
    why = f"the maintainers' own runs: {note}"
    own = OwnRuns(by=by, recorded=recorded, note=note, runs=[own_run(r) for r in results])
    return registry.with_versions([version_of(r, recorded, by, why) for r in results]).with_own_runs(own)


def version_of(result: RunResult, recorded: date, by: str, why: str) -> KnownVersion:
    return KnownVersion(submission=result.submission, submission_hash=result.submission_hash,
                        trainer_hash=result.trainer_hash, recorded=recorded, by=by, why=why)


def own_run(result: RunResult) -> OwnRun:
    return OwnRun(workload=result.workload, submission=result.submission, run_id=result.run_id,
                  digest=result_digest(result))


def read_registry(root: Path) -> Registry:
    """The project's registry; an empty one where the file does not exist yet."""
    path = root / REGISTRY_PATH
    return read_model(path, Registry, "registry of versions") if path.exists() else Registry()


def write_registry(root: Path, registry: Registry) -> Path:
    path = root / REGISTRY_PATH
    write_atomic(path, registry.model_dump_json(indent=1) + "\n", overwrite=True)
    return path
