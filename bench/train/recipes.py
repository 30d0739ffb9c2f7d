"""A complete GPT recipe driven entirely by its typed configuration, so a baseline submission is a list of choices.

Subclass :class:`GPTRecipe` in a submission's ``recipe.py`` and put the choices in ``submission.yaml``; override
``build_model``, ``make_optimizer`` or ``train`` for anything the configuration cannot express (see
``submissions/train-large-compress``), and extend :class:`GPTRecipeConfig` with the recipe's own fields (its
``Config``). Every hyperparameter :class:`GPTRecipe` reads is a field of :class:`GPTRecipeConfig`, with its type,
default and meaning: ``bench show-submission NAME`` prints a submission's resolved configuration.

The model is built with the workload's evaluation context (``eval.seq_len``) as its maximum length, so it can be
trained on shorter sequences and still be evaluated the way the workload says.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from bench.errors import BenchError
from bench.train.api import Recipe, TrialContext
from bench.train.loop import train_lm
from bench.train.lr_schedule import make_schedule
from bench.train.model import GPT, GPTConfig
from bench.train.optim import OPTIMIZERS, build_optimizer, check_options
from bench.train.precision import Precision


class GPTRecipeConfig(BaseModel):
    """Everything :class:`GPTRecipe` reads: the model's shape and switches, the optimizer, the learning-rate
    schedule and the loop. Unknown names and values of the wrong type are errors (strict: ``"3"`` is no number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # the model (bench.train.model.GPTConfig)
    n_layer: int = Field(6, ge=1, description="Transformer blocks.")
    n_head: int = Field(6, ge=1, description="Attention heads per block; n_embd must be divisible by it.")
    n_embd: int = Field(384, ge=1, description="Width of the residual stream.")
    positions: Literal["learned", "rotary", "none"] = Field("learned", description="Position encoding.")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="Normalisation before each sublayer.")
    mlp: Literal["gelu", "swiglu"] = Field("gelu", description="MLP kind.")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width over n_embd (SwiGLU: use 8/3 to match GELU's 4).")
    tie_weights: bool = Field(True, description="Share the token embedding with the output head.")
    bias: bool = Field(False, description="Biases in linear layers and norms.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability while training.")
    grad_checkpointing: bool = Field(False, description="Recompute each block's activations in the backward pass.")
    # the optimizer (bench.train.optim)
    optimizer: str = Field("adamw", description=f"One of the registry's: {', '.join(OPTIMIZERS)}.")
    lr: float = Field(gt=0, description="Peak learning rate (Muon: of its Muon group).")
    weight_decay: float = Field(0.0, ge=0.0, description="Decoupled weight decay of the weight matrices.")
    optimizer_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the optimizer's constructor, e.g. {betas: [0.9, 0.95]}.")
    # the learning-rate schedule (bench.train.lr_schedule), driven by the fraction of the budget spent
    schedule: Literal["constant", "cosine", "wsd"] = Field("cosine", description="Learning-rate schedule.")
    warmup: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of the budget spent warming up linearly.")
    schedule_options: dict[str, Any] = Field(default_factory=dict, description="e.g. {final: 0.1}, {decay: 0.2}.")
    # the loop (bench.train.loop.train_lm)
    batch_size: int = Field(ge=1, description="Sequences per micro-batch.")
    seq_len: int | None = Field(None, ge=1, description="Training context; None: the workload's evaluation context.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the gradient's norm to this; None: no clipping.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    precision: Precision = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on the CPU.")
    compile: bool = Field(False, description="Run the forward through torch.compile (compilation is on the clock).")
    log_every: int = Field(10, ge=1, description="Optimizer steps between logged training losses.")

    @model_validator(mode="after")
    def _choices_fit(self) -> GPTRecipeConfig:
        """Names the optimizer and schedule know, options they accept, a head count that divides the width."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r} (known: {', '.join(OPTIMIZERS)})")
        try:
            check_options(self.optimizer, self.optimizer_options)
            make_schedule(self.schedule, warmup=self.warmup, **self.schedule_options)
            self.gpt_config(vocab_size=2, seq_len=2)
        except BenchError as exc:
            raise ValueError(str(exc)) from None
        return self

    def gpt_config(self, vocab_size: int, seq_len: int) -> GPTConfig:
        """The model this configuration describes, for a workload's vocabulary and a maximum context."""
        shape = self.model_dump(include=set(GPTConfig.__dataclass_fields__) - {"vocab_size", "seq_len"})
        return GPTConfig(vocab_size=vocab_size, seq_len=seq_len, **shape)


def _tuple_lists(options: dict[str, Any]) -> dict[str, Any]:
    """YAML has no tuples; optimizers want ``betas`` as one."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def build_gpt(config: GPTRecipeConfig, vocab_size: int, eval_seq_len: int) -> GPT:
    """The :class:`GPT` that ``config`` describes, as :class:`GPTRecipe` builds it (on the current default device).

    Its maximum length is the longer of the training context (``seq_len``) and the workload's evaluation context,
    so it can train on shorter sequences and still be evaluated as the workload says. Studies (to size a grid's
    model limit) and ``bench check`` (the bare loop it compares against) build it here too.
    """
    return GPT(config.gpt_config(vocab_size, max(config.seq_len or eval_seq_len, eval_seq_len)))


class GPTRecipe(Recipe):
    """Builds :class:`GPT` from its configuration and trains it with :func:`train_lm`.

    Used directly as the entry point ``bench.train.recipes:GPTRecipe`` by the baselines whose choices are all
    hyperparameters; subclassed by recipes that change a step (see ``submissions/train-large-compress``).
    """

    Config = GPTRecipeConfig

    def build_model(self, ctx: TrialContext) -> nn.Module:
        return build_gpt(ctx.config, ctx.vocab_size, ctx.workload.eval.seq_len).to(ctx.device)

    def make_optimizer(self, ctx: TrialContext, model: nn.Module) -> torch.optim.Optimizer:
        config = ctx.config
        return build_optimizer(model, config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                               **_tuple_lists(dict(config.optimizer_options)))

    def make_schedule(self, ctx: TrialContext):  # noqa: ANN201 - a Callable[[float], float]
        config = ctx.config
        return make_schedule(config.schedule, warmup=config.warmup, **dict(config.schedule_options))

    def train(self, ctx: TrialContext, model: nn.Module) -> nn.Module:
        config = ctx.config
        return train_lm(
            ctx,
            model,
            self.make_optimizer(ctx, model),
            batch_size=config.batch_size,
            seq_len=config.seq_len or ctx.workload.eval.seq_len,
            schedule=self.make_schedule(ctx),
            grad_clip=config.grad_clip,
            grad_accum=config.grad_accum,
            precision=config.precision,
            compile=config.compile,
            log_every=config.log_every,
        )


class BudgetPhase(TrialContext):
    """A view of ``ctx`` covering the fraction ``[start, end)`` of the budget, for recipes that train in phases.

    Its batch stream ends when the trial's progress reaches ``end``, and its ``progress()`` runs from 0 to 1 over the
    phase, so a schedule completes within the phase. Everything else (evaluation, logging, the clock) is the
    trial's own: a phase cannot extend the budget, only divide it.
    """

    def __init__(self, ctx: TrialContext, start: float, end: float, config: Any = None) -> None:
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"a phase needs 0 <= start < end <= 1, got [{start}, {end})")
        self._ctx, self._start, self._end = ctx, start, end
        self.hparams = dict(ctx.hparams)
        self.config = ctx.config if config is None else config
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
