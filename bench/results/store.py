"""Result files on disk: ``<results_dir>/<workload>/<submission>/<run_id>.json``.

Results are written atomically (temporary file, fsync, rename) and never overwritten, so a crash, a full disk or a
second run can never damage a result that was already recorded. Files that belong to a run sit beside its result
and share its run id, followed by a dot: ``<run_id>.log`` (the worker's output), ``<run_id>.model.safetensors`` (the
saved model) and ``<run_id>.downstream-<time>.json`` (later evaluations). Run ids contain no dot, so a result file is
exactly a ``.json`` file whose stem has none.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import platformdirs
from pydantic import BaseModel, ValidationError

from bench.errors import BenchError
from bench.results.schema import RunResult

DEFAULT_RESULTS_DIR = Path("results")
"""Where commands write results, relative to the project: every run, sweep and study lands here first."""
PUBLISHED_RESULTS_DIR = Path("leaderboard") / "results"
"""Where published results live, relative to the project: the board ranks these, and reading commands read them
beside :data:`DEFAULT_RESULTS_DIR`."""


def new_run_id(seed: int) -> str:
    """A readable, sortable, unique id: ``20261123T221500Z-s0-3f9a1c``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-s{seed}-{os.urandom(3).hex()}"


def run_file(results_dir: Path, workload: str, submission: str, run_id: str, suffix: str) -> Path:
    """A file of run ``run_id``: ``<results_dir>/<workload>/<submission>/<run_id><suffix>``."""
    return results_dir / workload / submission / f"{run_id}{suffix}"


def result_path(results_dir: Path, result: RunResult) -> Path:
    return run_file(results_dir, result.workload, result.submission, result.run_id, ".json")


def is_result_file(path: Path) -> bool:
    return path.suffix == ".json" and "." not in path.stem and not path.name.startswith(".")


class ResultNotWritten(BenchError):
    """A finished result could not be written where it belongs (disk full, no permission), but it is not lost.

    ``kept`` is where it was written instead (a fallback folder, same ``<workload>/<submission>/`` layout), or
    None when no fallback folder took it either; ``text`` is the result's JSON, in memory, either way. A caller
    running several trials catches this, says where the result went, carries on with the others and exits
    non-zero at the end.
    """

    def __init__(self, intended: Path, cause: str, kept: Path | None, text: str, fallback_errors: list[str]):
        self.intended = intended
        self.cause = cause
        self.kept = kept
        self.text = text
        self.fallback_errors = fallback_errors
        if kept is not None:
            where = f"kept it at {kept}: move it to {intended} once there is room"
        else:
            where = f"no fallback folder could take it either ({'; '.join(fallback_errors)}): it is held in memory only"
        super().__init__(f"{intended}: the result was not written ({cause}); {where}")


FALLBACK_ENV = "BENCH_RESULTS_FALLBACK"


def fallback_dirs() -> list[Path]:
    """Where a result goes when its results folder cannot take it, in order: ``$BENCH_RESULTS_FALLBACK`` if
    set, the user's data folder for pretrain-bench, and the system temporary folder (often another disk)."""
    dirs = [Path(env)] if (env := os.environ.get(FALLBACK_ENV)) else []
    dirs.append(Path(platformdirs.user_data_dir("pretrain-bench")) / "unsaved-results")
    dirs.append(Path(tempfile.gettempdir()) / "pretrain-bench-unsaved-results")
    return dirs


class _WriteFailed(BenchError):
    """``write_atomic`` failed for an OS reason (rather than because the file exists)."""


def write_atomic(path: Path, text: str, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` so that readers see either nothing or the whole file.

    A full disk or any other OS error leaves no partial file behind and surfaces as a :class:`BenchError`.
    """
    if path.exists() and not overwrite:
        raise BenchError(f"{path}: already exists; results are never overwritten")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp makes 0600; results are meant to be shared
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if another writer got there first, instead of replacing its file
            os.unlink(tmp)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.EEXIST:
            raise BenchError(f"{path}: already exists; results are never overwritten") from None
        if exc.errno == errno.ENOSPC:
            raise _WriteFailed(f"{path}: disk full while writing; nothing was written") from None
        raise _WriteFailed(f"{path}: cannot write: {exc}") from None


def write_result(result: RunResult, results_dir: Path) -> Path:
    """Record ``result``; returns its path.

    When the results folder cannot take it, the result is written to the first of :func:`fallback_dirs` that
    can and :class:`ResultNotWritten` is raised, saying where it went (or that it is held only in memory).
    """
    path = result_path(results_dir, result)
    text = result.model_dump_json(indent=2) + "\n"
    try:
        write_atomic(path, text)
    except _WriteFailed as exc:
        cause = str(exc).removeprefix(f"{path}: ")
        errors = []
        for folder in fallback_dirs():
            kept = result_path(folder, result)
            try:
                write_atomic(kept, text)
            except BenchError as fallback_exc:
                errors.append(str(fallback_exc))
                continue
            raise ResultNotWritten(path, cause, kept, text, errors) from None
        raise ResultNotWritten(path, cause, None, text, errors) from None
    return path


def read_result(path: Path) -> RunResult:
    return read_model(path, RunResult, "result file")


M = TypeVar("M", bound=BaseModel)


def read_model(path: Path, model: type[M], kind: str) -> M:
    """A JSON file the tool wrote (a result, a verification record, the registry of versions), validated as
    ``model``; anything wrong is an error naming the file and the first bad field (``kind`` says what it should be)."""
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BenchError(
            f"{path}: not a valid {kind}: {field}: {first['msg'].removeprefix('Value error, ')}"
        ) from None
    except UnicodeDecodeError as exc:
        raise BenchError(
            f"{path}: not a valid {kind}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); it was damaged or is not a {kind}"
        ) from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from None


def result_digest(result: RunResult) -> str:
    """SHA-256 of a result's content as the schema reads it: what a verification or the registry names when it
    vouches for a result, so that a file edited afterwards (a score changed) is no longer the one vouched for.
    Formatting does not count (a copy re-indented is the same result); every value does."""
    return hashlib.sha256(result.model_dump_json().encode()).hexdigest()


def load_result_files(dirs: Iterable[Path]) -> list[tuple[Path, RunResult]]:
    """Every result file under ``dirs`` with its path, sorted by start time: pages that link to a run's files
    (the leaderboard's per-entry pages) need to know where it was read from. A corrupt file is an error naming it.

    The same run may appear in several folders (a published copy in ``leaderboard/results`` and its original);
    identical copies are all returned (:func:`bench.board.rank.unique_runs` counts them once). Two files that
    claim one run with different contents are an error naming both: one of them was edited.
    """
    found: list[tuple[Path, RunResult]] = []
    first: dict[tuple[str, str, str], tuple[Path, RunResult]] = {}
    for d in dirs:
        if not d.exists():
            continue
        for path in sorted(d.rglob("*.json")):
            if not is_result_file(path):
                continue
            result = read_result(path)
            key = (result.workload, result.submission, result.run_id)
            seen = first.setdefault(key, (path, result))
            if seen[1] != result:
                raise BenchError(
                    f"run {result.run_id} of {result.submission!r} on {result.workload!r} appears in two result "
                    f"files with different contents: {seen[0]} and {path}; keep only the genuine one"
                )
            found.append((path, result))
    return sorted(found, key=lambda pair: pair[1].started_at)


def load_results(dirs: Iterable[Path]) -> list[RunResult]:
    """Every result file under ``dirs``, sorted by start time (see :func:`load_result_files`)."""
    return [result for _, result in load_result_files(dirs)]
