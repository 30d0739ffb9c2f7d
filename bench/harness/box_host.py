"""The harness's end of a recipe's box: start it, time it from outside, serve it, stop it.

The recipe runs in its own process (:mod:`bench.box.main`) beneath a keeper (:mod:`bench.box.keeper`), walled in
by :mod:`bench.box.sandbox`. This module is everything the harness does with it:

* **starting** it with the paths it may read (the interpreter, ``bench``, the submission's folders) and the one it
  may write (a scratch folder of its own), a minimal environment, and one end of a socket pair;
* **timing** it: on a CPU class the training clock is the CPU time of every process beneath the keeper, read from
  ``/proc`` (:class:`~bench.measure.cputime.ProcessTree`); on a GPU class, wall time while the box runs. Either way
  the reading is taken here, outside the recipe's process, and whatever the recipe patches in its own interpreter
  cannot move it;
* **pausing** it: while the harness evaluates, probes the machine or checkpoints, the whole box is frozen (SIGSTOP),
  so no thread of the recipe works off the clock;
* **serving** it (:func:`serve`): every batch, evaluation and checkpoint goes through the harness's context
  (:class:`~bench.harness.context.HarnessContext`), which owns the budget; the box only asks;
* **ending** it: once the model is returned (or the limits pass, or it breaks the protocol) everything beneath the
  keeper is killed.
"""

from __future__ import annotations

import math
import os
import select
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


import bench
from bench.box import sandbox
from bench.box.channel import SharedBuffer, Channel, ChannelClosed, ChannelError, read_fd
from bench.harness.compile_cache import compiles
from bench.harness.context import HarnessContext, TrainingDiverged, eval_due
from bench.harness.zygote import box_env, spawn, wait_gone
from bench.harness.plan import PlannedTrial
from bench.harness.scratch import scratch_folder
from bench.measure.cputime import ProcessTree

READY_TIMEOUT_S = 120.0
"""How long the box may take to import torch and the harness's code before it counts as broken (a cold import on
a loaded machine takes seconds; this only catches a box that never comes up)."""
POLL_S = 0.25
MAX_MODEL_BYTES = 64 << 30
MAX_STATE_BYTES = 64 << 30
MAX_BATCH_TOKENS = 1 << 28
BUFFER_BYTES = 1 << 22


class BoxBroken(RuntimeError):
    """The box did something outside its protocol, died, or never came up; the trial fails with this reason."""


class ModelUnusable(RuntimeError):
    """A model the box handed over cannot be read, loaded or run to be evaluated; the trial fails with this reason."""


@dataclass
class Returned:
    """What the box handed over last: the model's bytes and form, or why there is none."""

    form: str | None = None
    data: bytes | None = None
    failure: dict[str, Any] | None = None  # the box's own report of what the recipe raised
    broken: str | None = None  # the harness's account: died, broke the protocol, overran


@dataclass
class RecipeBox:
    """A started box: its keeper process, the channel, the tree of processes beneath the keeper."""

    keeper: int  # the keeper's pid: everything beneath it is the box
    channel: Channel
    tree: ProcessTree
    scratch: Path
    exit_status: int  # the pipe on which the keeper writes the box's exit status when the box's process ends
    walls: dict[str, Any] = field(default_factory=dict)
    buffer: SharedBuffer | None = None

    @classmethod
    def start(cls, plan: PlannedTrial, threads: int, gpu: bool) -> RecipeBox:
        """Start the box for ``plan`` (forked by the zygote, beneath a keeper) and wait until it is walled in."""
        scratch = scratch_folder("box", plan.run_id)
        readable = [*sandbox.python_paths(), Path(bench.__file__).resolve().parent,
                    *(folder.resolve() for folder in plan.submission.lineage)]
        if plan.submission.recipe_dir is not None:
            readable.append(plan.submission.recipe_dir.resolve())
        env = box_env(scratch, TORCHINDUCTOR_CACHE_DIR=str(scratch / "inductor"),
                      TRITON_CACHE_DIR=str(scratch / "triton"))
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        try:
            keeper, channel = spawn("main", scratch, env, keeper_status=status_write)
        except BaseException:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        box = cls(keeper, channel, ProcessTree(keeper), scratch, status_read)
        channel.send({"kind": "setup", "read": [str(p) for p in readable],
                      "devices": [str(p) for p in sandbox.gpu_devices()] if gpu else [], "scratch": str(scratch),
                      "threads": threads, "compile": compiles(plan.hyperparameters)})
        if not channel.ready(READY_TIMEOUT_S):
            box.end()
            raise BoxBroken(f"the recipe's process did not start within {READY_TIMEOUT_S:.0f}s")
        try:
            ready, _ = channel.receive()
        except (ChannelClosed, ChannelError) as exc:
            how = box.how_it_ended(timeout_s=1.0)
            box.end()
            raise BoxBroken(f"the recipe's process {how} before it was ready ({exc}); see the log") from None
        if ready.get("kind") != "ready":
            box.end()
            raise BoxBroken(f"the recipe's process said {ready.get('kind')!r} before it was ready")
        box.walls = dict(ready.get("walls", {}))
        return box

    def cpu_seconds(self) -> float:
        return self.tree.cpu_seconds()

    def how_it_ended(self, timeout_s: float = 5.0) -> str:
        """How the box's process ended, in words, from the exit status its keeper reports (waiting ``timeout_s``
        for it): "died of SIGSEGV", "exited with status 3"; "ended" when the keeper says nothing."""
        ready, _, _ = select.select([self.exit_status], [], [], timeout_s)
        try:
            code = int(os.read(self.exit_status, 32).decode().strip()) if ready else None
        except (OSError, ValueError):
            code = None
        if code is None:
            return "ended"
        if code < 0:
            try:
                return f"died of {signal.Signals(-code).name}"
            except ValueError:
                return f"died of signal {-code}"
        return f"exited with status {code}"

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Nothing of the box runs inside the block (the harness evaluates, probes, checkpoints)."""
        self.tree.stop()
        try:
            yield
        finally:
            self.tree.resume()

    def end(self) -> None:
        """Kill everything beneath the keeper, then the keeper; remove the scratch folder."""
        self.tree.kill()
        try:
            os.kill(self.keeper, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(self.keeper)
        self.channel.close()
        os.close(self.exit_status)
        if self.buffer is not None:
            self.buffer.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def box_clock(box: RecipeBox, cores: int | None) -> tuple[str, Callable[[], float]]:
    """The training clock's name and source for a boxed trial: CPU seconds of the box's processes over the class's
    cores on a CPU class (``cores``), else the wall clock (the box is frozen while the clock is paused)."""
    if cores:
        return f"cpu-time/{cores}", lambda: box.cpu_seconds() / cores
    return "wall", time.perf_counter


@dataclass
class Serving:
    """How :func:`serve` turns the box's models into scores: ``evaluate(form, data)`` evaluates a handed-over
    model with the clock paused and returns its loss (the harness's context records the point)."""

    evaluate: Callable[[str, bytes, bool], float]  # form, bytes, scheduled (False: the origin)
    origin: bool  # evaluate the model as built (a first attempt); a resumed trial's curve has its origin
    restored: Path | None  # the recipe's part of the checkpoint to resume from, copied into the scratch folder
    save_checkpoint: Callable[[int], None]  # the descriptor of the box's state file


def serve(box: RecipeBox, ctx: HarnessContext, serving: Serving, train_limit_s: float, wall_limit_s: float,
          facts: dict[str, Any]) -> Returned:
    """Start the clock, answer the box until it returns a model, fails, dies, breaks the protocol or passes a
    limit; stop the clock. Never raises for what the box does."""
    clock = ctx._clock
    began = time.perf_counter()
    serving_s = 0.0  # wall seconds the box waited for the harness: not the recipe's, for the wall limit
    clock.start()
    box.channel.send({"kind": "go", **facts, "clock": _snapshot(ctx)})
    try:
        while True:
            if not box.channel.ready(POLL_S):
                over = _over_limit(ctx, began + serving_s, train_limit_s, wall_limit_s)
                if over:
                    return Returned(broken=over)
                continue
            received = time.perf_counter()
            message, fds = box.channel.receive()
            try:
                with clock.held():  # one reading of the box's CPU time answers the whole request
                    outcome = _answer(box, ctx, serving, message, fds)
            except (ValueError, TypeError, KeyError) as exc:  # a request the harness's context refuses
                raise ChannelError(f"{message.get('kind')}: {exc}") from None
            finally:
                for fd in fds:
                    os.close(fd)
            serving_s += time.perf_counter() - received
            if outcome is not None:
                return outcome
            over = _over_limit(ctx, began + serving_s, train_limit_s, wall_limit_s)
            if over:
                return Returned(broken=over)
    except ChannelClosed:
        return Returned(broken=f"the recipe's process {box.how_it_ended()} without returning a model; its output "
                               "(a crash's Python stack too) is in the log")
    except (ChannelError, BoxBroken) as exc:
        return Returned(broken=f"the recipe's process broke the box's protocol: {exc}")
    finally:
        clock.stop()


def _answer(box: RecipeBox, ctx: HarnessContext, serving: Serving, message: dict[str, Any],
            fds: list[int]) -> Returned | None:
    kind = message["kind"]
    if ctx.diverged and kind not in ("returned", "failed"):
        box.channel.send({"kind": "abort", "reason": ctx.diverged})
        return None
    if kind == "batch":
        _serve_batch(box, ctx, message)
    elif kind == "log":
        _log(ctx, message)
    elif kind == "flops":
        ctx.set_flops_per_token(_number(message, "flops_per_token"))
    elif kind == "precision":
        ctx.set_precision(str(message.get("precision")))
    elif kind in ("built", "evaluate"):
        form, data = _model(message, fds)
        due = kind == "built" and serving.origin or kind == "evaluate" and eval_due(ctx)
        loss = None
        if due:
            with box.frozen():
                try:
                    loss = serving.evaluate(form, data, kind == "evaluate")
                except TrainingDiverged:
                    box.channel.send({"kind": "abort", "reason": ctx.diverged or "validation loss diverged"})
                    return None
                except ModelUnusable as exc:
                    box.channel.send({"kind": "abort", "reason": str(exc)})
                    return Returned(broken=f"the {'built' if kind == 'built' else 'handed-over'} model could not be "
                                          f"evaluated: {exc}")
        reply: dict[str, Any] = {"kind": "evaluated", "loss": loss, "clock": _snapshot(ctx)}
        if kind == "built" and serving.restored is not None:
            reply["restored"] = serving.restored.name
        box.channel.send(reply)
    elif kind == "checkpoint":
        if len(fds) != 1:
            raise ChannelError("a checkpoint comes with its state file")
        with box.frozen():
            serving.save_checkpoint(fds[0])
        box.channel.send({"kind": "checkpointed", "clock": _snapshot(ctx)})
    elif kind == "returned":
        form, data = _model(message, fds)
        return Returned(form=form, data=data)
    elif kind == "failed":
        return Returned(failure={k: str(message.get(k, ""))[:4000] for k in ("error", "message", "cause", "traceback")})
    else:
        raise ChannelError(f"unknown request {kind!r}")
    return None


def _serve_batch(box: RecipeBox, ctx: HarnessContext, message: dict[str, Any]) -> None:
    batch_size, seq_len = _integer(message, "batch_size"), _integer(message, "seq_len")
    if batch_size < 1 or seq_len < 1 or batch_size * (seq_len + 1) > MAX_BATCH_TOKENS:
        raise ChannelError(f"a batch of {batch_size} x {seq_len} tokens")
    if "flops_per_token" in message and ctx.flops_per_token is None:
        ctx.set_flops_per_token(_number(message, "flops_per_token"))
    tokens = ctx.serve_batch(batch_size, seq_len)
    if tokens is None:
        box.channel.send({"kind": "end", "clock": _snapshot(ctx)})
        return
    reply: dict[str, Any] = {"kind": "batch", "clock": _snapshot(ctx)}
    fds: tuple[int, ...] = ()
    tokens = tokens.astype(SharedBuffer.TOKENS)
    if box.buffer is None or not box.buffer.fits(tokens):
        if box.buffer is not None:
            box.buffer.close()
        size = max(BUFFER_BYTES, 2 * tokens.nbytes)
        box.buffer = SharedBuffer.create(size)
        reply["buffer_size"], fds = size, (box.buffer.fd,)
    box.buffer.write(tokens)
    box.channel.send(reply, fds)


def _log(ctx: HarnessContext, message: dict[str, Any]) -> None:
    metrics = message.get("metrics")
    if not isinstance(metrics, dict) or len(metrics) > 64:
        raise ChannelError("log: expected a mapping of at most 64 metrics")
    values = {str(k)[:64]: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    try:
        ctx.log(**values)
    except TrainingDiverged:
        pass  # ctx.diverged is set: the next request is answered with abort


def _model(message: dict[str, Any], fds: list[int]) -> tuple[str, bytes]:
    form = message.get("format")
    if form not in ("gpt", "archive") or len(fds) != 1:
        raise ChannelError("a model comes as one file, in the form 'gpt' or 'archive'")
    return form, read_fd(fds[0], MAX_MODEL_BYTES)


def _snapshot(ctx: HarnessContext) -> dict[str, Any]:
    left = ctx.time_left()
    return {"elapsed": ctx.elapsed(), "progress": ctx.progress(), "time_left": None if math.isinf(left) else left,
            "stop": ctx.should_stop(), "eval_due": eval_due(ctx), "checkpoint_due": ctx.checkpoint_due()}


def _over_limit(ctx: HarnessContext, began: float, train_limit_s: float, wall_limit_s: float) -> str | None:
    elapsed = ctx.elapsed()
    if elapsed > train_limit_s:
        return f"still running after {train_limit_s:.0f}s of training time (the hard limit)"
    wall = time.perf_counter() - began  # began moved on by the harness's serving (evaluations too)
    wall_limit_s /= min(1.0, ctx._clock.rate)  # a slower host than the reference gets its seconds' worth of wall time
    if wall > wall_limit_s:
        return f"still running after {wall:.0f}s of wall time (limit {wall_limit_s:.0f}s)"
    return None


def _integer(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChannelError(f"{message['kind']}: {key} must be an integer, got {value!r}")
    return value


def _number(message: dict[str, Any], key: str) -> float:
    value = message.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ChannelError(f"{message['kind']}: {key} must be a finite number, got {value!r}")
    return float(value)
