"""Result files on disk: ``<results_dir>/<workload>/<submission>/<run_id>.json``.

Results are written atomically (temporary file, fsync, rename) and never overwritten, so a crash, a full disk or a
second run can never damage a result that was already recorded. Files that belong to a run sit beside its result
and share its run id, followed by a dot: ``<run_id>.log`` (the worker's output), ``<run_id>.model.safetensors`` (the
saved model) and ``<run_id>.downstream-<time>.json`` (later evaluations). Run ids contain no dot, so a result file is
exactly a ``.json`` file whose stem has none.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from bench.errors import BenchError
from bench.spec.result import RunResult

DEFAULT_RESULTS_DIR = Path("results")


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


def write_atomic(path: Path, text: str, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` so that readers see either nothing or the whole file.

    A full disk or any other OS error leaves no partial file behind and surfaces as a :class:`BenchError`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise BenchError(f"{path}: already exists; results are never overwritten")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
        Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.EEXIST:
            raise BenchError(f"{path}: already exists; results are never overwritten") from None
        if exc.errno == errno.ENOSPC:
            raise BenchError(f"{path}: disk full while writing; nothing was written") from None
        raise BenchError(f"{path}: cannot write: {exc}") from None


def write_result(result: RunResult, results_dir: Path) -> Path:
    """Record ``result``; returns its path."""
    path = result_path(results_dir, result)
    write_atomic(path, result.model_dump_json(indent=2) + "\n")
    return path


def read_result(path: Path) -> RunResult:
    try:
        return RunResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BenchError(f"{path}: not a valid result file: {field}: {first['msg']}") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from None


def load_results(dirs: Iterable[Path]) -> list[RunResult]:
    """Every result file under ``dirs``, sorted by start time. A corrupt file is an error naming it."""
    results = [read_result(p) for d in dirs if d.exists() for p in sorted(d.rglob("*.json")) if is_result_file(p)]
    return sorted(results, key=lambda r: r.started_at)
