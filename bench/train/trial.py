"""One trial: prepare data, build and train the recipe's model under the budget, evaluate, measure, report.

:func:`run_trial` never raises for anything a recipe does. A crash, an out-of-memory error, a NaN loss, an
oversized model or an overrun becomes a :class:`RunResult` with that status and a reason, so a scheduler running
many trials loses nothing. It does not write the result: the scheduler does, so that one process owns the results
directory.
"""

from __future__ import annotations

import random
import signal
import threading
import traceback
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bench.errors import BenchError
from bench.spec.loading import load_submission
from bench.spec.result import ParamCounts, RunResult, Timing, TrialStatus
from bench.train.api import BudgetExhausted
from bench.train.clock import TrainingClock
from bench.train.context import HardLimitExceeded, HarnessContext, TrainingDiverged
from bench.train.evaluate import evaluate, evaluation_windows
from bench.train.loader import load_recipe_class, submission_hash
from bench.train.request import TrialEvent, TrialRequest
from bench.train.targets import time_to_target

TRACEBACK_TAIL_LINES = 25


def resolve_hyperparameters(manifest_hparams: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """Manifest defaults with ``overrides`` applied; an override of an unknown name is a user error (a typo)."""
    unknown = sorted(set(overrides) - set(manifest_hparams))
    if unknown:
        raise BenchError(
            f"{where}: unknown hyperparameter {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(manifest_hparams)) or 'none'})"
        )
    return {**manifest_hparams, **overrides}


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed every generator a recipe might use, so a (workload, recipe, seed) triple has one loss curve."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed was initialised (Ray Train, torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _data_parallel(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """With several ranks the harness wraps the recipe's model in DDP, so a recipe is the same for 1 and N GPUs."""
    if world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def warm_lazy_imports() -> None:
    """Import what torch loads lazily on first use, so that no recipe pays for it on its training clock.

    ``torch.optim.Optimizer.__init__`` imports ``torch._dynamo`` the first time any optimizer is built: seconds of
    import time that would otherwise count as training time for whichever trial happens to run first in a process.
    """
    import torch._dynamo  # noqa: F401


class _Watchdog:
    """Stops a recipe that runs past ``limit`` seconds of training clock, by raising in the main thread.

    Only possible when the trial runs on the main thread (signals are delivered there); otherwise the scheduler's
    force-cancel is the hard limit. Evaluation time does not count because the clock is paused then.
    """

    def __init__(self, clock: TrainingClock, limit: float | None) -> None:
        self._clock = clock
        self._limit = limit
        self._done = threading.Event()
        self.fired = False
        self._armed = limit is not None and threading.current_thread() is threading.main_thread()
        self._previous: Any = None

    def __enter__(self) -> _Watchdog:
        if self._armed:
            self._previous = signal.signal(signal.SIGUSR1, self._raise)
            threading.Thread(target=self._watch, name="bench-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._armed:
            signal.signal(signal.SIGUSR1, self._previous)

    def _raise(self, signum: int, frame: object) -> None:
        self.fired = True
        raise HardLimitExceeded(f"still running after {self._limit:.0f}s of training time")

    def _watch(self) -> None:
        main = threading.main_thread().ident
        assert self._limit is not None and main is not None
        while not self._done.wait(0.25):
            if self._clock.elapsed() > self._limit:
                signal.pthread_kill(main, signal.SIGUSR1)
                return


def _tail(exc: BaseException) -> str:
    lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return "\n".join(lines[-TRACEBACK_TAIL_LINES:])


def _failure(exc: BaseException) -> tuple[TrialStatus, str]:
    """Map what escaped a recipe onto a status and a one-line reason."""
    if isinstance(exc, TrainingDiverged):
        return TrialStatus.failed, f"diverged: {exc}"
    if isinstance(exc, HardLimitExceeded):
        return TrialStatus.overrun, f"stopped by the harness: {exc}"
    if isinstance(exc, BudgetExhausted):
        return TrialStatus.overrun, "asked for batches after the budget was spent"
    if isinstance(exc, torch.OutOfMemoryError):
        return TrialStatus.failed, f"out of memory: {str(exc).splitlines()[0]}"
    if isinstance(exc, KeyboardInterrupt):
        return TrialStatus.interrupted, "interrupted by the user"
    return TrialStatus.failed, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def run_trial(request: TrialRequest, on_event: Any = None) -> RunResult:
    """Run one trial end to end and return its result (never raises for recipe problems)."""
    from bench.data.prepare import prepare
    from bench.measure.flops import estimate_flops_per_token
    from bench.measure.meter import Meter
    from bench.train.params import count_parameters

    started = datetime.now(timezone.utc)
    clock_start = TrainingClock()
    clock_start.start()
    spec = request.workload
    folder = Path(request.submission_dir)
    timing: dict[str, float] = {}
    base: dict[str, Any] = dict(
        run_id=request.run_id,
        workload=spec.name,
        workload_hash=spec.content_hash(),
        submission=folder.name,
        submission_hash=submission_hash(folder),
        seed=request.seed,
        hyperparameters=dict(request.overrides),
        started_at=started,
        tuning=request.tuning,
    )

    def emit(phase: str) -> None:
        if on_event is not None:
            on_event(TrialEvent(run_id=request.run_id, kind="phase", phase=phase))

    def finish(status: TrialStatus, reason: str | None = None, **fields: Any) -> RunResult:
        timing["total_s"] = clock_start.elapsed()
        emit("done")
        return RunResult(
            status=status, reason=reason, finished_at=datetime.now(timezone.utc), timing=Timing(**timing),
            **{**base, **fields},
        )

    device = pick_device(request.device)
    rank, world_size = distributed_rank()
    base["device"] = str(device)
    base["world_size"] = world_size
    try:
        manifest = load_submission(folder)
        hparams = resolve_hyperparameters(manifest.hyperparameters, request.overrides, str(folder / "submission.yaml"))
        base["hyperparameters"] = hparams

        emit("data")
        t = clock_start.elapsed()
        data = prepare(spec, Path(request.workload_dir), Path(request.cache_dir) if request.cache_dir else None)
        timing["data_s"] = clock_start.elapsed() - t

        emit("setup")
        t = clock_start.elapsed()
        recipe = load_recipe_class(folder, manifest)()
        warm_lazy_imports()
    except Exception as exc:  # data or submission broken: nothing trained, nothing measured
        status, reason = _failure(exc)
        return finish(status, str(exc) if isinstance(exc, BenchError) else reason, traceback_tail=_tail(exc))

    validation = data.validation()
    windows = evaluation_windows(data.val_tokens, spec.eval.seq_len, spec.eval.tokens)
    meter = Meter(device=device, hardware_class=spec.budget.hardware, world_size=world_size)

    def evaluator(model: nn.Module) -> Any:
        with meter.phase("eval"):
            return evaluate(model, windows, data.token_bytes, device)

    seed_everything(request.seed)
    stream = data.stream(seed=request.seed, rank=rank, world_size=world_size)
    model: nn.Module | None = None
    ctx = HarnessContext(
        workload=spec,
        device=device,
        seed=request.seed,
        hparams=hparams,
        vocab_size=data.vocab_size,
        eos_id=data.eos_id,
        stream=stream,
        evaluator=evaluator,
        flops_per_token=lambda seq_len: estimate_flops_per_token(model, seq_len) if model is not None else 0.0,
        on_event=on_event,
        run_id=request.run_id,
        rank=rank,
        world_size=world_size,
    )
    results: dict[str, Any] = dict(validation=validation)
    status, reason, tail = TrialStatus.ok, None, None
    budget = spec.budget
    hard_limit = budget.wall_clock + budget.overrun_grace if budget.wall_clock is not None else None
    meter.start()
    try:
        with torch.device(device) if device.type == "cuda" else nullcontext():
            model = recipe.build_model(ctx)
        timing["setup_s"] = clock_start.elapsed() - t
        ctx.evaluate_now(model)  # the curve's origin, before any training (clock not started)
        emit("train")
        with _Watchdog(ctx.clock, hard_limit), meter.phase("train"):
            ctx.clock.start()
            trained = recipe.train(ctx, _data_parallel(model, device, world_size))
            ctx.clock.stop()
        if isinstance(trained, DistributedDataParallel):
            trained = trained.module
        if not isinstance(trained, nn.Module):
            raise TypeError(f"Recipe.train returned {type(trained).__name__}, not an nn.Module")
        model = trained
    except BaseException as exc:  # noqa: BLE001 - every failure of the recipe becomes a result
        ctx.clock.stop()
        if isinstance(exc, SystemExit):
            raise
        status, reason = _failure(exc)
        tail = _tail(exc)
    train_seconds = ctx.clock.elapsed()
    timing["train_s"] = train_seconds
    timing["warmup_s"] = ctx.warmup_seconds
    timing["eval_s"] = ctx.clock.paused_seconds
    if ctx.diverged and status is TrialStatus.ok:  # the recipe swallowed the divergence
        status, reason = TrialStatus.failed, f"diverged: {ctx.diverged}"
    if status is TrialStatus.ok and hard_limit is not None and train_seconds > hard_limit:
        status, reason = TrialStatus.overrun, f"returned after {train_seconds:.1f}s of training, limit {hard_limit:.0f}s"

    if model is not None and status in (TrialStatus.ok, TrialStatus.overrun):
        counts = count_parameters(model)
        counted = counts.counted(spec.model.count_embeddings)
        results["params"] = ParamCounts(
            total=counts.total, embedding=counts.embedding, counted=counted, limit=spec.model.max_params
        )
        if status is TrialStatus.ok and counted > spec.model.max_params:
            what = "parameters" if spec.model.count_embeddings else "non-embedding parameters"
            status, reason = TrialStatus.invalid, f"model has {counted:,} {what}, over the limit of {spec.model.max_params:,}"
        try:
            emit("eval")
            ctx.evaluate_now(model)
            results["final"] = ctx.curve[-1]
        except TrainingDiverged as exc:
            status, reason = TrialStatus.failed, f"diverged: {exc}"
        timing["eval_s"] = ctx.clock.paused_seconds

    flops_per_token = ctx.flops_per_token
    report = meter.stop(
        tokens=ctx.tokens, train_seconds=train_seconds, flops_per_token=flops_per_token or 0.0,
        precision="bf16" if device.type == "cuda" else "fp32",
    )
    results.update(report.as_result_fields())
    if status is TrialStatus.ok and spec.eval.downstream and request.downstream and model is not None:
        from bench.downstream.runner import run_workload_downstream

        emit("downstream")
        t = clock_start.elapsed()
        scores, failures = run_workload_downstream(
            model, spec, data, device, spec.eval.downstream, offline=request.offline
        )
        results["downstream"], results["downstream_failures"] = scores, failures
        timing["downstream_s"] = clock_start.elapsed() - t

    if request.model_path is not None and rank == 0 and model is not None and "final" in results:
        from bench.train.checkpoint import export_model

        emit("save")
        results["checkpoint"] = export_model(model, spec.eval.seq_len, data.vocab_size, Path(request.model_path))

    curve = list(ctx.curve)
    ttt = time_to_target(curve, spec.target) if status is TrialStatus.ok else None
    return finish(
        status,
        reason,
        traceback_tail=tail,
        curve=curve,
        train_log=ctx.train_log,
        time_to_target_s=ttt,
        target_reached=ttt is not None,
        steps=ctx.steps,
        tokens=ctx.tokens,
        unique_tokens=stream.unique_tokens,
        tokens_per_s=ctx.tokens / train_seconds if train_seconds > 0 else None,
        packages=report.packages,
        **results,
    )
