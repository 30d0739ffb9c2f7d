"""Downstream evaluation of a finished run's saved model (``bench eval RESULT``).

A run made with ``bench run --save-model`` leaves its model beside its result. Evaluating it again later, on other
tasks, more examples or a newer lm-eval, needs the same tokenizer the model was trained with: it comes from the
workload, so the workload file must still be the one the run used (same hash), or be named explicitly by the
caller who vouches for it. The scores go into a new record beside the result; the result itself is never changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.data.prepare import prepare
from bench.errors import BenchError
from bench.measure.hardware import package_versions
from bench.results.store import read_result, write_atomic
from bench.spec.loading import load_workload, workload_path
from bench.results.schema import DownstreamEvaluation, RunResult
from bench.spec.workload import DownstreamTask, WorkloadSpec
from bench.train.saved_model import load_model

EVALUATION_INFIX = ".downstream-"


@dataclass(frozen=True)
class SavedRun:
    """A result whose model was saved, with the saved file's path."""

    result: RunResult
    result_path: Path
    model_path: Path


def saved_run(result_path: Path) -> SavedRun:
    """The run recorded in ``result_path`` and its saved model; errors say why the run cannot be re-evaluated."""
    result = read_result(result_path)
    checkpoint = result.saved_model
    if checkpoint is None:
        raise BenchError(f"{result_path}: run {result.run_id} saved no model; rerun it with `bench run --save-model`")
    if checkpoint.file is None:
        raise BenchError(f"{result_path}: run {result.run_id} could not save its model: {checkpoint.error}")
    return SavedRun(result, result_path, confined_model_path(result_path, checkpoint.file))


def confined_model_path(result_path: Path, name: str) -> Path:
    """The saved model's path: ``name`` (the result's ``checkpoint.file``) inside the result's own folder.

    A result file is input like any other; a ``checkpoint.file`` with a folder part, ``..`` or an absolute path (or a
    link leading out of the folder) would make ``bench eval`` read a file from anywhere, so it is refused.
    """
    folder = result_path.parent.resolve()
    candidate = folder / name
    if name in ("", ".", "..") or Path(name).name != name or "/" in name or "\\" in name or Path(name).is_absolute():
        raise BenchError(
            f"{result_path}: field 'checkpoint.file' is {name!r}; it must be a file name in the result's folder "
            f"({folder}), without folders, '..' or an absolute path"
        )
    if candidate.exists() and not candidate.resolve().is_relative_to(folder):
        raise BenchError(
            f"{result_path}: field 'checkpoint.file' {name!r} is a link to {candidate.resolve()}, outside the "
            f"result's folder ({folder})"
        )
    return candidate


def workload_for(run: SavedRun, workload: str | None) -> tuple[Path, WorkloadSpec, str | None]:
    """The workload file to take the tokenizer and tasks from, its spec, and a warning if any.

    Without ``workload`` (a name or a path) it is the run's own workload by name, which must still hash as it did
    for the run: a changed file may tokenise differently, and the scores would be silently wrong. A workload named
    explicitly is used as given; a different hash is then only a warning.
    """
    path = workload_path(workload or run.result.workload)
    spec = load_workload(path)
    if spec.content_hash() == run.result.workload_hash:
        return path, spec, None
    differs = (
        f"{path} (hash {spec.content_hash()[:12]}) is not the workload run {run.result.run_id} trained on "
        f"(hash {run.result.workload_hash[:12]})"
    )
    if workload is None:
        raise BenchError(
            f"{differs}: it changed since, or the run used a derived budget; if its data and tokenizer are unchanged, "
            "name it with --workload to evaluate anyway"
        )
    return path, spec, f"{differs}; its tokenizer must match the one the model was trained with"


def evaluate_saved(
    run: SavedRun,
    workload: WorkloadSpec,
    workload_dir: Path,
    tasks: list[DownstreamTask],
    device: torch.device | str,
    *,
    offline: bool = False,
    include_paths: Sequence[Path] = (),
    samples: dict[str, list[dict[str, Any]]] | None = None,
) -> DownstreamEvaluation:
    """Score ``run``'s saved model on ``tasks`` with ``workload``'s tokenizer and evaluation window.

    ``include_paths``: folders of custom lm-eval task YAMLs; ``samples``, when given, receives lm-eval's per-sample
    records by task (see :func:`write_samples`)."""
    from bench.downstream.runner import run_workload_downstream

    if not tasks:
        raise BenchError(f"workload '{workload.name}' lists no downstream tasks; name some with --task")
    started, start = datetime.now(timezone.utc), time.perf_counter()
    assert run.result.saved_model is not None
    model = load_model(run.model_path, device, run.result.saved_model.sha256)
    data = prepare(workload, workload_dir)
    scores, failures = run_workload_downstream(
        model, workload, data, device, tasks, offline=offline, include_paths=include_paths, samples=samples
    )
    return DownstreamEvaluation(
        run_id=run.result.run_id, workload=workload.name, workload_hash=workload.content_hash(),
        submission=run.result.submission, checkpoint_sha256=run.result.saved_model.sha256 or "", device=str(device),
        started_at=started, seconds=time.perf_counter() - start, downstream=scores, downstream_failures=failures,
        packages=package_versions(),
    )


def write_evaluation(run: SavedRun, evaluation: DownstreamEvaluation) -> Path:
    """Record ``evaluation`` beside the run's result as ``<run_id>.downstream-<time>.json``; returns its path."""
    stamp = evaluation.started_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = run.result_path.with_name(f"{run.result.run_id}{EVALUATION_INFIX}{stamp}.json")
    write_atomic(path, evaluation.model_dump_json(indent=2) + "\n")
    return path


def write_samples(evaluation_path: Path, samples: dict[str, list[dict[str, Any]]]) -> Path:
    """lm-eval's per-sample records as JSON lines beside the evaluation record (``<record>.samples.jsonl``), one
    object per sample with its ``task``; what lm-eval holds that JSON cannot (numpy values, sets) is converted."""
    from lm_eval.utils import handle_non_serializable

    path = evaluation_path.with_name(f"{evaluation_path.stem}.samples.jsonl")
    lines = (
        json.dumps({"task": task, **record}, default=handle_non_serializable, ensure_ascii=False)
        for task, records in sorted(samples.items()) for record in records
    )
    write_atomic(path, "".join(line + "\n" for line in lines))
    return path
