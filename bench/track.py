"""Experiment tracking of trials in TensorBoard and Weights & Biases (optional; off unless asked for).

One tracker per trial, named by its run id, with the result's identity (workload, submission, their hashes, seed,
hyperparameters, device) as its config. It receives the training log, the evaluation curve and, at the end, the
result (final metrics, throughput, MFU, time to target, downstream scores).

Nothing here runs on the training clock's hot path: :meth:`Tracker.on_train_log` only appends to a list; points are
written when an evaluation point arrives (the harness calls :meth:`Tracker.on_eval` while the clock is paused for
evaluation) and when the trial has ended (:meth:`Tracker.on_result`). A backend that fails never fails the trial:
it is logged and dropped.

Enabled with the environment variable ``BENCH_TRACK`` (``tensorboard``, ``wandb`` or both, comma-separated); files go
under ``BENCH_TRACK_DIR`` (default ``./runs``): TensorBoard event files in ``<dir>/<run_id>/``, W&B runs in
``<dir>/wandb/``. W&B runs offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads them later), so it
needs no network and no account. Backends are the optional extra ``track`` (``tensorboard``, ``wandb``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.results.schema import EvalPoint, RunResult, TrainLogPoint
from bench.spec.hparams import flatten

log = logging.getLogger(__name__)

ENV = "BENCH_TRACK"
DIR_ENV = "BENCH_TRACK_DIR"
DEFAULT_DIR = "runs"
PROJECT = "pretrain-bench"
IDENTITY_FIELDS = ("run_id", "workload", "workload_hash", "submission", "submission_hash", "seed", "hyperparameters",
                   "device", "world_size")


class Tracker:
    """What the harness tells a tracker; this base class tracks nothing (tracking off)."""

    def on_train_log(self, point: TrainLogPoint) -> None:
        """A point of the training log (loss, learning rate ...); buffered, never written here."""

    def on_eval(self, point: EvalPoint) -> None:
        """An evaluation point; writes it and the training log buffered so far."""

    def on_result(self, result: RunResult) -> None:
        """The trial's result: writes what is left, the final metrics, and closes the run."""


class _Backend:
    """One tracking library's run: scalars by step, a summary at the end."""

    def scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def summary(self, values: dict[str, float], config: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _TensorBoard(_Backend):
    def __init__(self, directory: Path, run_id: str, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(directory / run_id))
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=2, default=str)}\n```")

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step=step)

    def summary(self, values: dict[str, float], config: dict[str, Any]) -> None:
        flat = {key: value if isinstance(value, (int, float, str, bool)) else json.dumps(value, default=str)
                for key, value in flatten(config).items()}
        from torch.utils.tensorboard.summary import hparams

        # The HPARAMS tab's entry, in this run's own event file (SummaryWriter.add_hparams would open a second one).
        writer = self.writer._get_file_writer()  # noqa: SLF001 - the writer add_hparams itself uses
        for summary in hparams(flat, values):
            writer.add_summary(summary)

    def close(self) -> None:
        self.writer.close()


class _Wandb(_Backend):
    def __init__(self, directory: Path, run_id: str, config: dict[str, Any]) -> None:
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT), name=run_id, id=run_id, config=config,
            dir=str(directory), mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new",
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def summary(self, values: dict[str, float], config: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def close(self) -> None:
        self.run.finish()


BACKENDS: dict[str, Callable[[Path, str, dict[str, Any]], _Backend]] = {"tensorboard": _TensorBoard, "wandb": _Wandb}


class BufferedTracker(Tracker):
    """Tracks to ``backends``, writing only at evaluation points and at the end (see the module docstring)."""

    def __init__(self, backends: list[_Backend], config: dict[str, Any]) -> None:
        self.backends = backends
        self.config = config
        self.pending: list[tuple[int, dict[str, float]]] = []
        self.last_step = -1

    def on_train_log(self, point: TrainLogPoint) -> None:
        self.pending.append((point.step, {f"train/{k}": v for k, v in point.metrics.items()}
                             | {"train/tokens": float(point.tokens), "train/seconds": point.train_seconds}))

    def on_eval(self, point: EvalPoint) -> None:
        values = {"eval/val_loss": point.val_loss, "eval/val_bpb": point.val_bpb, "eval/tokens": float(point.tokens),
                  "eval/train_seconds": point.train_seconds}
        self.pending.append((point.step, values))
        self._flush()

    def on_result(self, result: RunResult) -> None:
        self._flush()
        final = _final_metrics(result)
        self._each(lambda backend: backend.scalars(final, max(self.last_step, result.steps or 0)))
        self._each(lambda backend: backend.summary(final, self.config | {"status": result.status.value}))
        self._each(lambda backend: backend.close())
        self.backends = []

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        for step, values in pending:
            self._each(lambda backend: backend.scalars(values, step))  # noqa: B023 - called at once
            self.last_step = max(self.last_step, step)

    def _each(self, call: Callable[[_Backend], None]) -> None:
        for backend in list(self.backends):
            try:
                call(backend)
            except Exception:  # noqa: BLE001 - tracking must never fail a trial
                log.warning("tracking to %s failed; it is off for this trial", type(backend).__name__, exc_info=True)
                self.backends.remove(backend)


def _final_metrics(result: RunResult) -> dict[str, float]:
    values: dict[str, Any] = {
        "final/val_loss": result.final.val_loss if result.final else None,
        "final/val_bpb": result.final.val_bpb if result.final else None,
        "final/tokens": result.tokens, "final/steps": result.steps, "final/tokens_per_s": result.tokens_per_s,
        "final/mfu": result.compute.mfu if result.compute else None,
        "final/time_to_target_s": result.time_to_target_s, "final/train_s": result.timing.train_s,
        "final/energy_kwh": result.energy.kwh if result.energy else None,
    }
    for score in result.downstream:
        values[f"downstream/{score.task}/{score.metric}"] = score.value
    return {key: float(value) for key, value in values.items() if isinstance(value, (int, float))}


def parse_backends(text: str | None) -> list[str]:
    """Backend names from ``BENCH_TRACK``-style text (``tensorboard,wandb``); unknown names are an error."""
    names = [name.strip().lower() for name in (text or "").split(",") if name.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise BenchError(f"{ENV}: unknown tracker {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def identity(fields: dict[str, Any]) -> dict[str, Any]:
    """The config a tracked run gets: the result's identity fields present in ``fields``."""
    return {key: fields[key] for key in IDENTITY_FIELDS if key in fields}


def make_tracker(backends: Iterable[str], directory: Path, run_id: str, config: dict[str, Any]) -> Tracker:
    """A tracker writing to ``backends`` under ``directory`` (a plain :class:`Tracker` when none); a backend whose
    library is missing or fails to start is reported and left out, never fatal."""
    started: list[_Backend] = []
    for name in backends:
        try:
            started.append(BACKENDS[name](directory, run_id, config))
        except ImportError as exc:
            log.warning("tracking to %s is off: %s (install pretrain-bench[track])", name, exc)
        except Exception:  # noqa: BLE001 - tracking must never fail a trial
            log.warning("tracking to %s could not start; it is off for this trial", name, exc_info=True)
    return BufferedTracker(started, config) if started else Tracker()


def tracker_from_env(run_id: str, config: dict[str, Any]) -> Tracker:
    """The tracker ``BENCH_TRACK`` / ``BENCH_TRACK_DIR`` ask for; tracking is off when ``BENCH_TRACK`` is unset."""
    backends = parse_backends(os.environ.get(ENV))
    if not backends:
        return Tracker()
    return make_tracker(backends, Path(os.environ.get(DIR_ENV, DEFAULT_DIR)).resolve(), run_id, config)
