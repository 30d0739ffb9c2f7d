"""The standard language-model training loop, against the :class:`~bench.train.api.TrialContext` API.

Written so that it costs nothing over a bare loop: the loss is accumulated on the device and read back (one
host-device sync) only every ``log_every`` steps; the learning rate is a Python float computed from
``ctx.progress()``. The loop ends when ``ctx.batches`` does, i.e. when the harness says the budget is spent.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bench.errors import BenchError
from bench.train.api import TrialContext
from bench.train.optim import optimizer_step
from bench.train.precision import Precision, autocast, resolve_precision


def train_lm(
    ctx: TrialContext,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    seq_len: int,
    schedule: Callable[[float], float],
    grad_clip: float | None = 1.0,
    grad_accum: int = 1,
    precision: Precision = "auto",
    compile: bool = False,
    log_every: int = 10,
) -> nn.Module:
    """Train ``model`` on ``ctx.batches(batch_size, seq_len)`` until the budget ends; return ``model``.

    One optimizer step per ``grad_accum`` micro-batches of ``batch_size`` sequences; a trailing incomplete
    accumulation when the stream ends is dropped. Each param group's learning rate is its ``lr`` when training
    starts (the peak, as given to :func:`bench.train.optim.build_optimizer`) times ``schedule(ctx.progress())``,
    so groups with different peaks (Muon's two) keep their ratio. Gradients are clipped to norm ``grad_clip``
    (``None``: no clipping). Each step goes through :func:`bench.train.optim.optimizer_step`, so an optimizer
    that needs more than gradients (Sophia's Hessian estimate) gets it from its own registry entry. The precision
    trained in is declared to ``ctx`` (for the meter's MFU).
    ``ctx.log(loss=..., lr=...)`` every ``log_every`` steps records the mean training loss since the last log and
    the first group's learning rate. A model whose ``forward`` takes ``targets`` (nanoGPT's convention; the shared
    :class:`~bench.train.model.GPT`) returns its mean loss, computed without the full logits
    (:mod:`bench.train.lm_loss`); other models return logits, and the loop takes the cross-entropy in fp32.
    With ``compile`` the forward (with the loss, for such a model) runs through ``torch.compile``; the uncompiled
    module (same parameters) is what gets evaluated and returned. When the harness hands over a DDP-wrapped model
    (several workers), the micro-batches before the last of each accumulation skip DDP's gradient all-reduce.
    When the harness asks for checkpoints (``ctx.checkpoint_due()``, polled after each optimizer step), the model's
    and optimizer's ``state_dict`` and the loop's counters are saved; a resumed trial's ``ctx.restored()`` gives
    them back here, and training continues from that step exactly (the harness restores stream, clock and RNGs).
    """
    if batch_size < 1 or seq_len < 1 or grad_accum < 1 or log_every < 1:
        raise BenchError(
            f"batch_size, seq_len, grad_accum and log_every must be positive, "
            f"got {batch_size}, {seq_len}, {grad_accum}, {log_every}"
        )
    core = model.module if isinstance(model, DistributedDataParallel) else model
    restored = ctx.restored()  # a resumed trial: this loop's state at its last checkpoint
    if restored is not None:
        core.load_state_dict(restored["model"])
        optimizer.load_state_dict(restored["optimizer"])
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    forward = torch.compile(model) if compile else model
    takes_targets = "targets" in inspect.signature(core.forward).parameters
    precision_ctx = autocast(ctx.device, precision)
    ctx.set_precision(resolve_precision(ctx.device, precision))
    model.train()

    # Under DDP, gradients are all-reduced only on the last micro-batch of each accumulation.
    skip_sync = model.no_sync if isinstance(model, DistributedDataParallel) else contextlib.nullcontext
    # The forward an optimizer that needs more than gradients re-runs (Sophia, for its Hessian estimate) runs on the
    # bare module under DDP, outside DDP's reducer: its gradients are taken with autograd.grad, which the reducer
    # never sees, and the optimizer's step averages what it estimates over the ranks (bench.train.optim.sophia_step).
    bare_forward = forward if core is model else core

    def rerun_forward(x: torch.Tensor) -> torch.Tensor:
        with skip_sync(), precision_ctx:
            return bare_forward(x)

    step = micro = 0
    loss_sum = torch.zeros((), device=ctx.device)
    logged_micro = 0
    if restored is not None:
        step, micro, logged_micro = (int(restored["loop"][key]) for key in ("step", "micro", "logged_micro"))
        loss_sum = restored["loop"]["loss_sum"].to(ctx.device)
    for x, y in ctx.batches(batch_size, seq_len):
        micro += 1
        with contextlib.nullcontext() if micro % grad_accum == 0 else skip_sync():
            with precision_ctx:
                outputs = forward(x, y) if takes_targets else forward(x)
            loss = outputs if takes_targets else F.cross_entropy(outputs.flatten(0, 1).float(), y.flatten())
            (loss / grad_accum).backward()
        loss_sum += loss.detach()
        if micro % grad_accum:
            continue

        multiplier = schedule(ctx.progress())
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer_step(optimizer, lambda: rerun_forward(x))
        optimizer.zero_grad(set_to_none=True)
        step += 1

        if step % log_every == 0:
            ctx.log(loss=(loss_sum / (micro - logged_micro)).item(), lr=optimizer.param_groups[0]["lr"])
            loss_sum.zero_()
            logged_micro = micro
        ctx.evaluate_if_due(model)
        if ctx.checkpoint_due():  # between optimizer steps: no accumulated gradient to save
            ctx.checkpoint({
                "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                "loop": {"step": step, "micro": micro, "logged_micro": logged_micro, "loss_sum": loss_sum},
            })
    optimizer.zero_grad(set_to_none=True)
    return model
