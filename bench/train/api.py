"""The recipe API: the whole surface a submission programs against.

A submission's ``recipe.py`` defines a subclass of :class:`Recipe`. The harness calls ``build_model`` then ``train``
and evaluates the model ``train`` returns. Everything a recipe may learn about the trial comes through the
:class:`TrialContext`: the workload, the device, the seed, its hyperparameters, and the budgeted batch stream.

What a recipe may not do (see CONTRIBUTING.md): read data other than ``ctx.batches``, look at validation data,
touch the clock, or change the tokenizer. It may choose any architecture, optimizer, schedule, precision or
compression, and return a model different from the one it built (pruned, distilled, weight-averaged ...).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from bench.spec.workload import WorkloadSpec


class TrialContext(abc.ABC):
    """What the harness gives a recipe. Implemented by :class:`bench.harness.context.HarnessContext`."""

    workload: WorkloadSpec
    device: torch.device
    seed: int
    hparams: dict[str, Any]  # the hyperparameters as declared for this workload, with the command's overrides
    config: Any  # the same, validated into the recipe's ``Config`` (defaults filled in); ``hparams`` if it has none
    vocab_size: int
    eos_id: int
    rank: int  # this process's rank among the trial's workers (0 with one worker)
    world_size: int  # the number of workers (processes, one per GPU) training the model together

    @abc.abstractmethod
    def batches(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, targets)`` int64 tensors of shape ``(batch_size, seq_len)`` on ``ctx.device``.

        ``targets`` are ``inputs`` shifted by one token. The iterator ends when the budget (time, tokens or
        FLOPs) is spent; iterating again after that raises :class:`BudgetExhausted`. With several workers each
        rank receives its own batches. Every token served counts toward the token budget.
        """

    @abc.abstractmethod
    def elapsed(self) -> float:
        """Seconds on the training clock so far (what the time budget counts; evaluations excluded). The clock
        itself is the harness's: a recipe reads it, it cannot pause or stop it."""

    @abc.abstractmethod
    def time_left(self) -> float:
        """Seconds of training budget left (``inf`` when the workload has no wall-clock budget)."""

    @abc.abstractmethod
    def progress(self) -> float:
        """Fraction of the budget spent, in [0, 1]: the largest of the time, token and FLOP fractions.

        Learning-rate schedules should be driven by this, since the number of steps that fit in a fixed time
        is not known in advance.
        """

    @abc.abstractmethod
    def should_stop(self) -> bool:
        """True once any budget is spent."""

    @abc.abstractmethod
    def evaluate_if_due(self, model: nn.Module) -> float | None:
        """Evaluate on validation data when the workload's cadence says so; returns the loss or None.

        The training clock is paused during evaluation. The recipe sees only the scalar loss.
        """

    @abc.abstractmethod
    def log(self, **metrics: float) -> None:
        """Record training metrics (loss, lr ...) for the progress display and the result's training log."""

    @abc.abstractmethod
    def set_flops_per_token(self, flops_per_token: float) -> None:
        """Declare the model's training FLOPs per token, for FLOP budgets and MFU.

        The harness computes it from the model by default (6N + attention term); a recipe whose model does
        unusual work per token (e.g. a teacher forward pass for distillation) declares its own figure.
        """

    @abc.abstractmethod
    def set_precision(self, precision: str) -> None:
        """Declare the precision the model trains in ("fp32" or "bf16"), for the hardware peak MFU is measured
        against. :func:`bench.train.loop.train_lm` declares it; a recipe with its own loop should too (default fp32).
        """

    # --- checkpoints (optional: contexts without them never ask for one) ------------------------------------

    def checkpoint_due(self) -> bool:
        """True when the harness wants a checkpoint now (every ``checkpoint_every`` seconds of training clock).

        A loop that can be resumed polls it between optimizer steps and then calls :meth:`checkpoint`; a recipe
        that never does is simply not resumable (a retried trial starts again from nothing)."""
        return False

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Save the recipe's ``state`` (model and optimizer ``state_dict``, its own counters: tensors, arrays and
        plain values) with the harness's own (stream position, clock reading, curve, RNG states), off the clock."""

    def restored(self) -> dict[str, Any] | None:
        """The ``state`` given to the last :meth:`checkpoint` of an earlier attempt of this trial, once, when the
        trial was resumed (the harness has already restored its own part); None otherwise."""
        return None


class Recipe(abc.ABC):
    """Base class of every submission's recipe.

    ``Config`` is the recipe's configuration as a typed model (a pydantic model that forbids unknown fields, such
    as :class:`bench.train.recipes.GPTRecipeConfig`): every hyperparameter it reads, with its type, default and
    meaning. The manifest's hyperparameters (and a command's overrides) are validated against it before any trial
    starts, so a misspelt name or a value of the wrong type is an error naming the manifest and the field, never a
    silent default; the recipe reads the validated values from ``ctx.config``. A recipe without one (None) gets the
    hyperparameters as a plain mapping, checked only against the manifest's own values.
    """

    Config: ClassVar[type[BaseModel] | None] = None

    @abc.abstractmethod
    def build_model(self, ctx: TrialContext) -> nn.Module:
        """Return a causal LM: int64 ``(B, T)`` token ids -> ``(B, T, vocab)`` logits. Built on ``ctx.device``."""

    @abc.abstractmethod
    def train(self, ctx: TrialContext, model: nn.Module) -> nn.Module:
        """Train ``model`` with ``ctx.batches`` until the stream ends; return the model to evaluate."""


class BudgetExhausted(RuntimeError):
    """Raised when a recipe asks for batches after the budget is spent."""
