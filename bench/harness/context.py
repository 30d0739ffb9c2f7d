"""The harness's side of the recipe API: the budgeted batch stream, the clock, evaluation and logging.

One :class:`HarnessContext` exists per trial (per rank). It is the only way a recipe gets data, and it enforces the
workload's budget: the batch iterator ends when the time, token or FLOP budget is spent, evaluation runs with the
training clock paused, and a NaN/inf loss ends the trial as diverged.

With several ranks (DDP), every decision that changes control flow (stop now, evaluate now) is agreed by all ranks
with one tiny all-reduce, so that no rank waits forever in a gradient all-reduce that another rank never enters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from bench.results.schema import EvalPoint, TrainLogPoint
from bench.spec.workload import WorkloadSpec
from bench.track import Tracker
from bench.train.api import BudgetExhausted, TrialContext
from bench.harness.clock import ClockView, TrainingClock
from bench.harness.eval_schedule import next_evaluation
from bench.train.evaluate import EvalScore
from bench.train.events import TrialEvent
from bench.train.resume import Stopwatch, rng_state, save_state, set_rng_state

MAX_TRAIN_LOG_POINTS = 2000  # the result keeps an evenly thinned training log of at most this many points
EVENT_INTERVAL_S = 0.5  # progress events are throttled: displays need a few per second, not one per step
AGREE_EVERY = 8  # ranks agree on clock-dependent decisions (time up, evaluation or checkpoint due) every 8 batches


class TrialAbort(BaseException):
    """Ends a trial from inside the recipe. A BaseException, so a recipe's ``except Exception`` cannot swallow it."""


class TrainingDiverged(TrialAbort):
    """The training or validation loss became NaN or infinite."""


class HardLimitExceeded(TrialAbort):
    """The recipe ran past its budget plus grace without returning; the harness stopped it."""


class HarnessContext(TrialContext):
    def __init__(
        self,
        *,
        workload: WorkloadSpec,
        device: torch.device,
        seed: int,
        hparams: dict[str, Any],
        config: Any,
        vocab_size: int,
        eos_id: int,
        stream: Any,
        evaluator: Callable[[nn.Module], EvalScore],
        on_event: Callable[[TrialEvent], None] | None = None,
        tracker: Tracker | None = None,
        clock: TrainingClock | None = None,
        run_id: str = "",
        rank: int = 0,
        world_size: int = 1,
        checkpoint_every: float | None = None,
        checkpoint_path: Path | None = None,
    ) -> None:
        self.workload = workload
        self.device = device
        self.seed = seed
        self.hparams = dict(hparams)
        self.config = config
        self.vocab_size = vocab_size
        self.eos_id = eos_id
        self.rank = rank
        self.world_size = world_size
        self._clock = clock or TrainingClock()
        self.curve: list[EvalPoint] = []
        self.train_log: list[TrainLogPoint] = []
        self.steps = 0
        self.tokens = 0  # across all ranks: the budget is global
        self.warmup_seconds: float | None = None
        self._pause_hook: Callable[[], None] | None = None  # called at each evaluation pause, clock stopped
        self.exhausted = False
        self.stream_ended_at: float | None = None  # the clock's reading when the budget ended the stream
        self.diverged: str | None = None
        self._stream = stream
        self._evaluator = evaluator
        self._estimate_flops: Callable[[int], float] | None = None
        self._flops_per_token: float | None = None
        self.precision = "fp32"  # what the recipe declared it trains in (train_lm does); fp32 until then
        self._on_event = on_event
        self._tracker = tracker or Tracker()
        self._run_id = run_id
        self._budget = workload.budget
        self._next_eval = next_evaluation(0.0, workload.eval.every, workload.eval.early)
        self._log_every = 1
        self._last_event = 0.0
        self._last_loss: float | None = None
        self._checkpoint_every = checkpoint_every if checkpoint_every and checkpoint_path is not None else None
        self._next_checkpoint = self._checkpoint_every or math.inf
        self.checkpoint_path = checkpoint_path
        self.checkpoints_saved = 0  # over all attempts of the trial (a resumed trial continues the counts)
        self.checkpoint_seconds = 0.0  # wall seconds spent saving, off the clock
        self._agreement_calls: dict[str, int] = {}  # per clock-dependent decision, how often it was asked
        self.checkpoint_bytes: int | None = None
        self.resumes: list[dict[str, Any]] = []  # one per attempt that continued from a checkpoint
        self._restored: dict[str, Any] | None = None

    # --- budget --------------------------------------------------------------------------------------------

    @property
    def clock(self) -> ClockView:
        """The training clock, read-only: a recipe reads it, only the harness starts, stops and pauses it."""
        return ClockView(self._clock)

    def elapsed(self) -> float:
        return self._clock.elapsed()

    @property
    def flops_per_token(self) -> float | None:
        return self._flops_per_token

    def set_flops_per_token(self, flops_per_token: float) -> None:
        if not (math.isfinite(flops_per_token) and flops_per_token > 0):
            raise ValueError(f"flops_per_token must be a positive finite number, got {flops_per_token}")
        self._flops_per_token = float(flops_per_token)

    def estimate_flops_with(self, estimate: Callable[[int], float]) -> None:
        """The harness's default FLOPs-per-token estimate for the model built (given the training seq_len), used
        when the first batches are asked for unless the recipe declared its own figure."""
        self._estimate_flops = estimate

    def set_precision(self, precision: str) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision

    @property
    def unique_tokens(self) -> int:
        """Distinct training tokens served (repeats over epochs not counted)."""
        return self._stream.unique_tokens

    @property
    def tokens_per_s(self) -> float | None:
        elapsed = self._clock.elapsed()
        return self.tokens / elapsed if elapsed > 0 else None

    def _fractions(self, extra_tokens: int = 0) -> list[float]:
        budget = self._budget
        fractions = self._work_fractions(extra_tokens)
        if budget.wall_clock is not None:
            fractions.append(self._clock.elapsed() / budget.wall_clock)
        return fractions

    def _work_fractions(self, extra_tokens: int = 0) -> list[float]:
        """The token and FLOP parts of the budget spent: the same on every rank (unlike the clock's reading)."""
        budget = self._budget
        fractions = []
        if budget.tokens is not None:
            fractions.append((self.tokens + extra_tokens) / budget.tokens)
        if budget.flops is not None and self._flops_per_token is not None:
            fractions.append((self.tokens + extra_tokens) * self._flops_per_token / budget.flops)
        return fractions

    def progress(self) -> float:
        return min(1.0, max(self._fractions(), default=0.0))

    def time_left(self) -> float:
        if self._budget.wall_clock is None:
            return math.inf
        return max(0.0, self._budget.wall_clock - self._clock.elapsed())

    def should_stop(self) -> bool:
        return self.exhausted or any(f >= 1.0 for f in self._fractions())

    def batches(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        if self.exhausted:
            raise BudgetExhausted("the training budget is spent; no more batches are served")
        return self._serve(batch_size, seq_len)

    def _serve(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while (batch := self.serve_batch(batch_size, seq_len)) is not None:
            yield _to_device(batch[:, :-1], self.device), _to_device(batch[:, 1:], self.device)

    def serve_batch(self, batch_size: int, seq_len: int) -> np.ndarray | None:
        """The next batch's ``(batch_size, seq_len + 1)`` training tokens, admitted by the budget and counted;
        None once the budget is spent (then the stream has ended for good). A batch that would cross the token or
        FLOP budget is not drawn; time is checked before drawing."""
        if self.exhausted:
            return None
        batch_tokens = batch_size * seq_len * self.world_size
        if self._flops_per_token is None and self._estimate_flops is not None:
            self._flops_per_token = self._estimate_flops(seq_len)
        over = any(f > 1.0 for f in self._work_fractions(batch_tokens))  # every rank decides alike, unasked
        if over or (self._budget.wall_clock is not None
                    and self._agree_now_and_then("time", self.time_left() <= 0.0)):
            self.exhausted = True
            self.stream_ended_at = self._clock.elapsed()
            return None
        batch = self._stream.draw(batch_size, seq_len)
        if self.steps == 1 and self.warmup_seconds is None:
            self.warmup_seconds = self._clock.elapsed()
        self.steps += 1
        self.tokens += batch_tokens
        return batch

    # --- checkpoints -------------------------------------------------------------------------------------

    @property
    def checkpoint_every(self) -> float | None:
        return self._checkpoint_every

    def checkpoint_due(self) -> bool:
        if self._checkpoint_every is None:
            return False
        return self._agree_now_and_then("checkpoint", self._clock.elapsed() >= self._next_checkpoint)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Save ``state`` with the harness's own, with the clock stopped: the time it takes is recorded, not
        charged. Rank 0 writes; every rank waits for it (a checkpoint is complete before training goes on)."""
        self._save_checkpoint({"recipe": state, "rng": rng_state()})

    def _save_checkpoint(self, recipe: dict[str, Any]) -> None:
        """Save the recipe's part (its ``recipe`` state and ``rng`` states) with the harness's own, when due."""
        if self._checkpoint_every is None or self.checkpoint_path is None:
            return
        if self._clock.elapsed() < self._next_checkpoint:  # not due: the clock stops once per interval, no more
            return
        was_running = self._clock.running
        self._clock.stop()
        try:
            with Stopwatch() as watch:
                elapsed = self._clock.elapsed()
                while self._next_checkpoint <= elapsed:
                    self._next_checkpoint += self._checkpoint_every
                self.checkpoints_saved += 1
                if self.rank == 0:
                    full = {"harness": self._harness_state(), "recipe": recipe["recipe"], "rng": recipe["rng"]}
                    self.checkpoint_bytes = save_state(full, self.checkpoint_path)
                self._agree(False)  # a barrier: no rank trains on while rank 0 writes
            self.checkpoint_seconds += watch.seconds
        finally:
            if was_running:
                self._clock.start()

    def _harness_state(self) -> dict[str, Any]:
        return {
            "clock_s": self._clock.elapsed(), "clock_host_s": self._clock.host_elapsed(), "clock_rate": self._clock.rate,
            "steps": self.steps, "tokens": self.tokens, "warmup_seconds": self.warmup_seconds,
            "curve": [point.model_dump(mode="json") for point in self.curve],
            "train_log": [point.model_dump(mode="json") for point in self.train_log],
            "log_every": self._log_every, "next_eval": self._next_eval, "next_checkpoint": self._next_checkpoint,
            "last_loss": self._last_loss, "precision": self.precision, "flops_per_token": self._flops_per_token,
            "stream": self._stream.state_dict(),
            "checkpoints_saved": self.checkpoints_saved, "checkpoint_seconds": self.checkpoint_seconds,
            "checkpoint_bytes": self.checkpoint_bytes, "resumes": list(self.resumes),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state (before ``Recipe.train``, with the clock stopped): the harness's
        counters, curve, stream position and clock reading now, the RNG states, and the recipe's part for
        :meth:`restored`."""
        harness = state["harness"]
        self._clock.resume_from(harness["clock_s"], harness.get("clock_host_s"))
        self._clock.set_rate(harness.get("clock_rate", 1.0))
        self.steps, self.tokens, self.warmup_seconds = harness["steps"], harness["tokens"], harness["warmup_seconds"]
        self.curve = [EvalPoint.model_validate(point) for point in harness["curve"]]
        self.train_log = [TrainLogPoint.model_validate(point) for point in harness["train_log"]]
        self._log_every, self._next_eval = harness["log_every"], harness["next_eval"]
        self._next_checkpoint = harness["next_checkpoint"]
        self._last_loss, self.precision = harness["last_loss"], harness["precision"]
        if harness["flops_per_token"] is not None:
            self._flops_per_token = harness["flops_per_token"]
        self._stream.load_state_dict(harness["stream"])
        self.checkpoints_saved, self.checkpoint_seconds = harness["checkpoints_saved"], harness["checkpoint_seconds"]
        self.checkpoint_bytes = harness["checkpoint_bytes"]
        self.resumes = list(harness["resumes"])
        set_rng_state(state["rng"])
        self._restored = state["recipe"]

    def restored(self) -> dict[str, Any] | None:
        state, self._restored = self._restored, None
        return state

    # --- evaluation and logging ----------------------------------------------------------------------------

    def _evaluate_now(self, model: nn.Module) -> EvalScore:
        """Evaluate with the clock paused and append the point to the curve. Not public: it pauses the clock, and
        a recipe may only evaluate when the harness says it is due (the harness calls :func:`evaluate_now`)."""
        with self._clock.paused():
            score = self._evaluator(model)
            if self._pause_hook is not None:  # the harness's own work while the recipe waits (the clock's probe)
                self._pause_hook()
        point = EvalPoint(
            step=self.steps,
            tokens=self.tokens,
            train_seconds=self._clock.elapsed(),
            val_loss=score.loss,
            val_bpb=score.bpb,
        )
        self.curve.append(point)
        with self._clock.paused():
            self._tracker.on_eval(point)
        self._emit(TrialEvent(run_id=self._run_id, kind="eval", step=self.steps, tokens=self.tokens,
                              train_seconds=point.train_seconds, time_left=self._event_time_left(),
                              val_loss=score.loss), force=True)
        if not math.isfinite(score.loss):
            self.diverged = f"validation loss became {score.loss} at step {self.steps}"
            raise TrainingDiverged(self.diverged)
        return score

    def _agree_now_and_then(self, what: str, flag: bool) -> bool:
        """:meth:`_agree` on a flag that depends on each rank's clock, asked every :data:`AGREE_EVERY` calls for
        ``what`` (False in between, on every rank alike): an all-reduce and a host sync per micro-batch would
        stall every step of a multi-GPU trial. A time budget then ends, and an evaluation or checkpoint comes, up
        to ``AGREE_EVERY - 1`` batches late (the time budget's grace covers it). With one rank, every call."""
        if self.world_size == 1:
            return flag
        calls = self._agreement_calls.get(what, 0)
        self._agreement_calls[what] = calls + 1
        return self._agree(flag) if calls % AGREE_EVERY == 0 else False

    def _agree(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank (a no-op with one rank)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def evaluate_if_due(self, model: nn.Module) -> float | None:
        if not self._agree_now_and_then("eval", self._clock.elapsed() >= self._next_eval):
            return None
        return self._evaluate_scheduled(model).loss

    def _evaluate_scheduled(self, model: nn.Module) -> EvalScore:
        """The evaluation the cadence asked for: the next one is scheduled, then ``model`` is evaluated."""
        self._next_eval = next_evaluation(self._clock.elapsed(), self.workload.eval.every, self.workload.eval.early)
        return self._evaluate_now(model)

    def log(self, **metrics: float) -> None:
        values = {key: float(value) for key, value in metrics.items()}
        for key, value in values.items():
            if not math.isfinite(value) and key in ("loss", "train_loss"):
                self.diverged = f"training {key} became {value} at step {self.steps}"
                raise TrainingDiverged(self.diverged)
        if "loss" in values:
            self._last_loss = values["loss"]
        elapsed = self._clock.elapsed()
        if self.steps % self._log_every == 0:
            point = TrainLogPoint(step=self.steps, tokens=self.tokens, train_seconds=elapsed, metrics=values)
            self.train_log.append(point)
            self._tracker.on_train_log(point)  # buffers only: written at the next evaluation, off the clock
            if len(self.train_log) > MAX_TRAIN_LOG_POINTS:
                self.train_log = self.train_log[::2]
                self._log_every *= 2
        self._emit(TrialEvent(run_id=self._run_id, kind="train", step=self.steps, tokens=self.tokens,
                              train_seconds=elapsed, time_left=self._event_time_left(), loss=self._last_loss,
                              tokens_per_s=self.tokens / elapsed if elapsed > 0 else None))

    def _event_time_left(self) -> float | None:
        left = self.time_left()
        return None if math.isinf(left) else left

    def _emit(self, event: TrialEvent, force: bool = False) -> None:
        if self._on_event is None or self.rank != 0:
            return
        now = time.monotonic()
        if force or now - self._last_event >= EVENT_INTERVAL_S:
            self._last_event = now
            self._on_event(event)


def tokens_drawn(ctx: HarnessContext) -> int:
    """Tokens the trial's batch stream served, counted at the stream (``ctx.tokens`` is what the budget admitted)."""
    return ctx._stream.tokens_drawn


def training_clock(ctx: HarnessContext) -> TrainingClock:
    """The harness's own handle on the trial's clock (start, stop, pause); the recipe gets ``ctx.clock``, a view."""
    return ctx._clock


def evaluate_now(ctx: HarnessContext, model: nn.Module) -> EvalScore:
    """Evaluate ``model`` now, off the clock, and add the point to the curve: the harness's first and final
    evaluations (a recipe's are those :meth:`HarnessContext.evaluate_if_due` finds due)."""
    return ctx._evaluate_now(model)


def _to_device(tokens: np.ndarray, device: torch.device) -> torch.Tensor:
    """int64 copy on ``device``; from pinned memory and without blocking the host on CUDA."""
    tensor = torch.from_numpy(tokens.astype(np.int64))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def eval_due(ctx: HarnessContext) -> bool:
    """Whether the cadence wants an evaluation now (one rank: a boxed recipe's context asks the harness)."""
    return ctx._clock.elapsed() >= ctx._next_eval


def evaluate_due(ctx: HarnessContext, model: nn.Module) -> EvalScore:
    """Evaluate ``model`` as the cadence's due evaluation, off the clock (a boxed recipe handed it over)."""
    return ctx._evaluate_scheduled(model)


def save_checkpoint(ctx: HarnessContext, recipe: dict[str, Any]) -> None:
    """Save a boxed recipe's part of a checkpoint (its ``recipe`` state and its ``rng`` states) with the
    harness's own, when one is due."""
    ctx._save_checkpoint(recipe)


def on_pause(ctx: HarnessContext, hook: Callable[[], None] | None) -> None:
    """Have ``hook`` called at each evaluation pause, with the clock stopped (the clock's calibration probe)."""
    ctx._pause_hook = hook
