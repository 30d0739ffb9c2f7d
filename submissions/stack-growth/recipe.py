"""Model growth by stacking (G_stack, Du et al. 2024): train a shallow GPT, stack its blocks, train the deep one.

Phase 1 (``grow_at`` of the budget) trains a GPT of ``n_layer`` blocks. Then :func:`bench.train.growth.stack_blocks`
repeats the trained stack ``growth_factor`` times (blocks 1..L, 1..L, ...), carrying the embeddings, final norm and
tied head, and phase 2 trains the grown model for the rest of the budget with a fresh optimizer and its own warmup
and cosine schedule: the paper initialises the grown model from the small one's weights and pre-trains it from
there (see README.md). The question it asks: does a deep model whose blocks
start from a trained shallow one beat a model of the final size trained from scratch for the whole budget?
"""

from __future__ import annotations

from pydantic import Field
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bench.errors import BenchError
from bench.measure.flops import estimate_flops_per_token
from bench.train.growth import stack_blocks
from bench.train.params import count_model_bytes, count_parameters
from bench.train.recipes import BudgetPhase, GPTRecipe, GPTRecipeConfig


class StackGrowthConfig(GPTRecipeConfig):
    """The GPT recipe's configuration (``n_layer`` is the shallow model's depth) and the growth's own choices."""

    growth_factor: int = Field(4, ge=2, description="The grown model has n_layer * growth_factor blocks (G_stack's g).")
    grow_at: float = Field(0.3, gt=0.0, lt=1.0, description="Fraction of the budget trained before stacking.")


class _CountingPhase(BudgetPhase):
    """A phase that counts the tokens it served this rank, to weight the two models' FLOPs per token."""

    tokens = 0

    def batches(self, batch_size, seq_len):  # noqa: ANN001, ANN201 - as BudgetPhase.batches
        for inputs, targets in super().batches(batch_size, seq_len):
            self.tokens += inputs.numel()
            yield inputs, targets


def _grown_size(model: nn.Module, factor: int, include_embeddings: bool) -> tuple[int, int]:
    """Parameters (as the workload counts them) and bytes the model will have once its blocks are stacked."""
    blocks = model.blocks
    params = count_parameters(model).counted(include_embeddings) + (factor - 1) * count_parameters(blocks).total
    size = count_model_bytes(model).total + (factor - 1) * count_model_bytes(blocks).total
    return params, size


class StackGrowth(GPTRecipe):
    """G_stack: ``n_layer`` blocks for ``grow_at`` of the budget, ``growth_factor * n_layer`` blocks after."""

    Config = StackGrowthConfig

    def build_model(self, ctx):
        model = super().build_model(ctx)
        factor = ctx.config.growth_factor
        limit = ctx.workload.model
        params, size = _grown_size(model, factor, limit.count_embeddings)
        if params > limit.max_params or (limit.max_bytes is not None and size > limit.max_bytes):
            raise BenchError(
                f"hyperparameters n_layer={model.config.n_layer} x growth_factor={factor} grow the model to "
                f"{params:,} parameters and {size:,} bytes, over the workload's limit "
                f"({limit.max_params:,} parameters, {limit.max_bytes or 'no'} bytes)"
            )
        return model

    def train(self, ctx, model):
        config = ctx.config
        grow_at = config.grow_at
        seq_len = config.seq_len or ctx.workload.eval.seq_len
        shallow = _CountingPhase(ctx, 0.0, grow_at)
        small = super().train(shallow, model)
        wrapped = isinstance(small, DistributedDataParallel)
        inner = small.module if wrapped else small
        grown = stack_blocks(inner, config.growth_factor)
        small_flops = estimate_flops_per_token(inner, seq_len)  # the figure the harness estimated for phase 1
        del small, inner  # the shallow model and its optimizer state are no longer needed
        # From here on every token costs the grown model's FLOPs. The harness multiplies all tokens by one figure,
        # so declaring it now overstates phase 1, which keeps a FLOP budget on the safe side; the exact mean is
        # declared once the second phase has ended.
        grown_flops = estimate_flops_per_token(grown, seq_len)
        ctx.set_flops_per_token(grown_flops)
        if wrapped:
            grown = DistributedDataParallel(grown, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        deep = _CountingPhase(ctx, grow_at, 1.0)
        trained = super().train(deep, grown)
        total = shallow.tokens + deep.tokens
        if total:
            ctx.set_flops_per_token((shallow.tokens * small_flops + deep.tokens * grown_flops) / total)
        return trained
