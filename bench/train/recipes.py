"""A complete GPT recipe driven entirely by hyperparameters, so a baseline submission is a list of choices.

Subclass :class:`GPTRecipe` in a submission's ``recipe.py`` and put the choices in ``submission.yaml``; override
``build_model``, ``make_optimizer`` or ``train`` for anything the hyperparameters cannot express (see
``submissions/train-large-compress``). Hyperparameters read here:

- model: the :class:`~bench.train.model.GPTConfig` fields (``n_layer``, ``n_head``, ``n_embd``, ``positions``,
  ``norm``, ``mlp``, ``mlp_ratio``, ``tie_weights``, ``bias``, ``dropout``, ``grad_checkpointing``)
- optimizer: ``optimizer`` (adamw | lion | lamb | sophia | muon), ``lr``, ``weight_decay``, ``optimizer_options``
  (a mapping passed on, e.g. ``{betas: [0.9, 0.95]}``)
- schedule: ``schedule`` (constant | cosine | wsd), ``warmup``, ``schedule_options`` (e.g. ``{decay: 0.2}``)
- loop: ``batch_size``, ``seq_len`` (training context), ``grad_clip``, ``grad_accum``, ``precision``, ``compile``

The model is built with the workload's evaluation context (``eval.seq_len``) as its maximum length, so it can be
trained on shorter sequences and still be evaluated the way the workload says.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from bench.train.api import Recipe, TrialContext
from bench.train.loop import train_lm
from bench.train.model import GPT
from bench.train.optim import OPTIMIZERS, build_optimizer
from bench.train.lr_schedule import make_schedule


def _tuple_lists(options: dict[str, Any]) -> dict[str, Any]:
    """YAML has no tuples; optimizers want ``betas`` as one."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def build_gpt(hparams: dict[str, Any], vocab_size: int, eval_seq_len: int) -> GPT:
    """The :class:`GPT` that ``hparams`` describe, as :class:`GPTRecipe` builds it (on the current default device).

    Its maximum length is the longer of the training context (the ``seq_len`` hyperparameter) and the workload's
    evaluation context, so it can train on shorter sequences and still be evaluated as the workload says. Studies
    (to size a grid's model limit) and ``bench check`` (the bare loop it compares against) build it here too.
    """
    seq_len = max(int(hparams.get("seq_len", eval_seq_len)), eval_seq_len)
    shape = {k: v for k, v in hparams.items() if k != "seq_len"}
    return GPT.from_hparams(shape, vocab_size, seq_len)


class GPTRecipe(Recipe):
    """Builds :class:`GPT` from the hyperparameters and trains it with :func:`train_lm`.

    Used directly as the entry point ``bench.train.recipes:GPTRecipe`` by the baselines whose choices are all
    hyperparameters; subclassed by recipes that change a step (see ``submissions/train-large-compress``).
    """

    def build_model(self, ctx: TrialContext) -> nn.Module:
        return build_gpt(ctx.hparams, ctx.vocab_size, ctx.workload.eval.seq_len).to(ctx.device)

    def make_optimizer(self, ctx: TrialContext, model: nn.Module) -> torch.optim.Optimizer:
        hp = ctx.hparams
        return build_optimizer(
            model,
            hp.get("optimizer", "adamw"),
            lr=float(hp["lr"]),
            weight_decay=float(hp.get("weight_decay", 0.0)),
            **_tuple_lists(dict(hp.get("optimizer_options", {}))),
        )

    def make_schedule(self, ctx: TrialContext):  # noqa: ANN201 - a Callable[[float], float]
        hp = ctx.hparams
        return make_schedule(hp.get("schedule", "cosine"), warmup=float(hp.get("warmup", 0.0)),
                             **dict(hp.get("schedule_options", {})))

    def train(self, ctx: TrialContext, model: nn.Module) -> nn.Module:
        hp = ctx.hparams
        return train_lm(
            ctx,
            model,
            self.make_optimizer(ctx, model),
            batch_size=int(hp["batch_size"]),
            seq_len=int(hp.get("seq_len", ctx.workload.eval.seq_len)),
            schedule=self.make_schedule(ctx),
            grad_clip=hp.get("grad_clip", 1.0),
            grad_accum=int(hp.get("grad_accum", 1)),
            precision=hp.get("precision", "auto"),
            compile=bool(hp.get("compile", False)),
            log_every=int(hp.get("log_every", 10)),
        )


def optimizer_names(recipe_class: type[Recipe]) -> Collection[str] | None:
    """The optimizer names a recipe's ``optimizer`` hyperparameter may take: those of the registry for recipes
    built on :class:`GPTRecipe`, None (unchecked) for a recipe of its own, which may use the key for anything."""
    return tuple(OPTIMIZERS) if issubclass(recipe_class, GPTRecipe) else None


class BudgetPhase(TrialContext):
    """A view of ``ctx`` covering the fraction ``[start, end)`` of the budget, for recipes that train in phases.

    Its batch stream ends when the trial's progress reaches ``end``, and its ``progress()`` runs from 0 to 1 over the
    phase, so a schedule completes within the phase. Everything else (evaluation, logging, the clock) is the
    trial's own: a phase cannot extend the budget, only divide it.
    """

    def __init__(self, ctx: TrialContext, start: float, end: float, hparams: dict[str, Any] | None = None) -> None:
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"a phase needs 0 <= start < end <= 1, got [{start}, {end})")
        self._ctx, self._start, self._end = ctx, start, end
        self.hparams = dict(ctx.hparams if hparams is None else hparams)
        # The trial's facts, copied by name: forwarding unknown attributes would also hand out whatever else the
        # context holds, and a class default on TrialContext would shadow the forwarding (rank 0 under DDP).
        self.workload, self.device, self.seed = ctx.workload, ctx.device, ctx.seed
        self.vocab_size, self.eos_id = ctx.vocab_size, ctx.eos_id
        self.rank, self.world_size = ctx.rank, ctx.world_size

    def batches(self, batch_size: int, seq_len: int):  # noqa: ANN201 - Iterator[tuple[Tensor, Tensor]]
        for batch in self._ctx.batches(batch_size, seq_len):
            yield batch
            if self._end < 1.0 and self._ctx.progress() >= self._end:
                return

    def progress(self) -> float:
        return min(1.0, max(0.0, (self._ctx.progress() - self._start) / (self._end - self._start)))

    def elapsed(self) -> float:
        return self._ctx.elapsed()

    def time_left(self) -> float:
        return self._ctx.time_left()

    def should_stop(self) -> bool:
        return self._ctx.should_stop() or self._ctx.progress() >= self._end

    def evaluate_if_due(self, model: nn.Module) -> float | None:
        return self._ctx.evaluate_if_due(model)

    def log(self, **metrics: float) -> None:
        self._ctx.log(**metrics)

    def set_flops_per_token(self, flops_per_token: float) -> None:
        self._ctx.set_flops_per_token(flops_per_token)

    def set_precision(self, precision: str) -> None:
        self._ctx.set_precision(precision)
