"""Experiment tracking of trials in TensorBoard and Weights & Biases (optional; off unless asked for).

One tracker per trial, named by its run id, grouped by workload and submission (``tiny/rotary``: the seeds of one
submission side by side), with the result's identity (workload, submission, their hashes, seed, hyperparameters,
device) as its config. It receives the training log, the evaluation curve and, at the end, the result (final
metrics, throughput, MFU, time to target, downstream scores).

Nothing here runs on the training thread but an append: :meth:`Tracker.on_train_log` queues the point, and a writer
thread writes the queued training loss and throughput every :data:`WRITE_EVERY_S` seconds, so a run's curves are
live. Evaluation points are written as they come (the harness calls :meth:`Tracker.on_eval` while the clock is
paused for evaluation), the rest when the trial has ended (:meth:`Tracker.on_result`). A backend that fails never
fails the trial: it is logged and dropped.

Enabled with ``bench run --track`` or the environment variable ``BENCH_TRACK`` (``tensorboard``, ``wandb`` or
``wandb-offline``, comma-separated), which is how the trial workers learn it; files go under ``BENCH_TRACK_DIR``
(``bench`` sets it to ``runs/`` in the project): TensorBoard event files in ``<dir>/<run_id>/``, W&B runs in
``<dir>/wandb/``. ``wandb`` logs online (it needs ``wandb login`` or ``WANDB_API_KEY``) unless ``WANDB_MODE`` says
otherwise; ``wandb-offline`` keeps the run on disk for ``wandb sync`` later, with no network and no account.
Backends are the optional extra ``track`` (``tensorboard``, ``wandb``).
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.errors import BenchError
from bench.results.schema import EvalPoint, RunResult, TrainLogPoint
from bench.spec.hparams import flatten

log = logging.getLogger(__name__)

ENV = "BENCH_TRACK"
DIR_ENV = "BENCH_TRACK_DIR"
DEFAULT_DIR = "runs"
PROJECT = "pretrain-bench"
WRITE_EVERY_S = 15.0
"""How often the writer thread writes the training log: live enough to watch, rare enough to cost the trial nothing."""
FORWARDED_ENV = (ENV, DIR_ENV, "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL")
"""The variables a trial worker on another node needs to track as the driver asked (credentials stay each node's)."""
IDENTITY_FIELDS = ("run_id", "workload", "workload_hash", "submission", "submission_hash", "seed", "hyperparameters",
                   "device", "world_size")


class Tracker:
    """What the harness tells a tracker; this base class tracks nothing (tracking off)."""

    def on_train_log(self, point: TrainLogPoint) -> None:
        """A point of the training log (loss, learning rate ...); queued, never written on the caller's thread."""

    def on_eval(self, point: EvalPoint) -> None:
        """An evaluation point; writes it and the training log queued so far."""

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
    def __init__(self, directory: Path, run_id: str, config: dict[str, Any], offline: bool = False) -> None:
        import wandb

        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT), name=run_id, id=run_id, group=group(config),
            config=config, dir=str(directory), mode="offline" if offline else wandb_mode(), reinit="create_new",
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def summary(self, values: dict[str, float], config: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def close(self) -> None:
        self.run.finish()


BACKENDS: dict[str, Callable[[Path, str, dict[str, Any]], _Backend]] = {
    "tensorboard": _TensorBoard,
    "wandb": _Wandb,
    "wandb-offline": lambda directory, run_id, config: _Wandb(directory, run_id, config, offline=True),
}


def group(config: dict[str, Any]) -> str | None:
    """The group a trial's run belongs to: ``workload/submission``, so a submission's seeds sit together."""
    if "workload" in config and "submission" in config:
        return f"{config['workload']}/{config['submission']}"
    return None


def wandb_mode() -> str:
    """W&B's mode for ``wandb``: online, unless ``$WANDB_MODE`` (W&B's own variable) says otherwise."""
    return os.environ.get("WANDB_MODE") or "online"


def wandb_login_problem(backends: Iterable[str]) -> str | None:
    """Why ``wandb`` online would not start in the trials (no API key in ``$WANDB_API_KEY`` or the netrc file that
    ``wandb login`` writes), or None. Checked once, up front: a trial only logs it, in its own log file."""
    if "wandb" not in backends or wandb_mode() != "online" or os.environ.get("WANDB_API_KEY"):
        return None
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        if netrc.netrc(os.environ.get("NETRC")).authenticators(host):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return (f"W&B online needs an API key for {host} (`wandb login`, or $WANDB_API_KEY); without one the trials do "
            "not track to W&B. --track wandb-offline logs without an account (`wandb sync` uploads later).")


class LiveTracker(Tracker):
    """Tracks to ``backends``: the training log from a writer thread every ``every_s`` seconds (0: at evaluations
    only), evaluation points as they come, the result at the end (see the module docstring)."""

    def __init__(self, backends: list[_Backend], config: dict[str, Any], every_s: float = WRITE_EVERY_S) -> None:
        self.backends = backends
        self.config = config
        self.pending: deque[tuple[int, dict[str, float]]] = deque()  # appended on the training thread, no lock
        self.last_step = -1
        self._writing = threading.Lock()  # one writer at a time: the writer thread, an evaluation, the end
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        if every_s > 0:
            self._writer = threading.Thread(target=self._write_every, args=(every_s,), name="bench-tracker",
                                            daemon=True)
            self._writer.start()

    def on_train_log(self, point: TrainLogPoint) -> None:
        values = {f"train/{k}": v for k, v in point.metrics.items()}
        values |= {"train/tokens": float(point.tokens), "train/seconds": point.train_seconds}
        if point.train_seconds > 0:
            values["train/tokens_per_s"] = point.tokens / point.train_seconds
        self.pending.append((point.step, values))

    def on_eval(self, point: EvalPoint) -> None:
        values = {"eval/val_loss": point.val_loss, "eval/val_bpb": point.val_bpb, "eval/tokens": float(point.tokens),
                  "eval/train_seconds": point.train_seconds}
        self.pending.append((point.step, values))
        self._flush()

    def on_result(self, result: RunResult) -> None:
        self._stop.set()
        if self._writer is not None:
            self._writer.join()
        self._flush()
        final = _final_metrics(result)
        with self._writing:
            self._each(lambda backend: backend.scalars(final, max(self.last_step, result.steps or 0)))
            self._each(lambda backend: backend.summary(final, self.config | {"status": result.status.value}))
            self._each(lambda backend: backend.close())
            self.backends = []

    def _write_every(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self._flush()

    def _flush(self) -> None:
        with self._writing:
            while self.pending:
                step, values = self.pending.popleft()
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


def parse_backends(text: str | None, where: str = ENV) -> list[str]:
    """Backend names from ``--track`` / ``BENCH_TRACK`` text (``tensorboard,wandb``); unknown names, and W&B both
    online and offline, are an error naming ``where`` the text came from."""
    names = list(dict.fromkeys(name.strip().lower() for name in (text or "").split(",") if name.strip()))
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise BenchError(f"{where}: unknown tracker {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if {"wandb", "wandb-offline"} <= set(names):
        raise BenchError(f"{where}: wandb and wandb-offline are one W&B run each; choose one")
    return names


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
    return LiveTracker(started, config) if started else Tracker()


def tracker_from_env(run_id: str, config: dict[str, Any]) -> Tracker:
    """The tracker ``BENCH_TRACK`` / ``BENCH_TRACK_DIR`` ask for; tracking is off when ``BENCH_TRACK`` is unset."""
    backends = parse_backends(os.environ.get(ENV))
    if not backends:
        return Tracker()
    return make_tracker(backends, Path(os.environ.get(DIR_ENV, DEFAULT_DIR)).resolve(), run_id, config)
