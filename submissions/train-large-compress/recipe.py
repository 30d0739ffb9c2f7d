"""Train large, then compress (Li et al. 2020): a model wider than the limit allows, pruned to the limit before the
budget ends, and quantized to int8 when the workload limits the model's bytes.

Phase 1 (``train_fraction`` of the budget) trains a GPT whose MLPs are too wide for the workload's parameter limit.
Then each MLP's hidden units are ranked by ||w_in[j]|| * ||w_out[:, j]|| (the size of the unit's contribution to
the residual stream) and the weakest are removed, the same number from every layer, until the model fits the limit.
Phase 2 fine-tunes the pruned model with a fresh optimizer for the rest of the budget. The question it asks: does a
larger model trained for less time, then compressed, beat a model of the final size trained for the whole budget?

Quantization (hyperparameter ``quantize``: ``auto``, ``int8`` or ``none``; ``auto`` quantizes exactly when the
workload has ``model.max_bytes``): after fine-tuning, the weights of every linear layer and embedding become int8
with a float32 scale per row (:func:`bench.train.quantize.quantize_int8`, torchao's weight-only int8), and the
returned model computes with them. Pruning then aims at the byte limit as the model will be stored after
quantization, so a byte-limited workload gets a model about four times larger in parameters than float32 allows.
"""

import copy
import dataclasses
from collections.abc import Callable

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from bench.train.params import count_model_bytes, count_parameters
from bench.train.quantize import quantize_int8
from bench.train.recipes import BudgetPhase, GPTRecipe, GPTRecipeConfig


class TrainLargeCompressConfig(GPTRecipeConfig):
    """The GPT recipe's configuration (describing the large model) and the compression's own choices."""

    train_fraction: float = Field(0.8, gt=0.0, lt=1.0, description="Fraction of the budget spent on the large model.")
    finetune_lr_scale: float = Field(0.3, gt=0.0, description="The fine-tuning's peak lr over the large model's.")
    quantize: Literal["auto", "int8", "none"] = Field(
        "auto", description="int8 after fine-tuning; auto: exactly when the workload limits the model's bytes.")


def _prune_mlp(mlp: nn.Module, keep: torch.Tensor) -> None:
    """Keep only hidden units ``keep`` of a GELU/SwiGLU MLP, in place."""
    for name in ("c_fc", "c_gate"):
        layer = getattr(mlp, name)
        if layer is None:
            continue
        smaller = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None, device=layer.weight.device)
        smaller.weight.data.copy_(layer.weight.data[keep])
        if layer.bias is not None:
            smaller.bias.data.copy_(layer.bias.data[keep])
        setattr(mlp, name, smaller)
    proj = mlp.c_proj
    smaller = nn.Linear(len(keep), proj.out_features, bias=proj.bias is not None, device=proj.weight.device)
    smaller.weight.data.copy_(proj.weight.data[:, keep])
    if proj.bias is not None:
        smaller.bias.data.copy_(proj.bias.data)
    mlp.c_proj = smaller


def _counted(model: nn.Module, include_embeddings: bool) -> int:
    return count_parameters(model).counted(include_embeddings)


@torch.no_grad()
def prune_to_limit(model: nn.Module, limit: int, include_embeddings: bool) -> nn.Module:
    """Remove the weakest MLP hidden units, equally in every block, until ``model`` has at most ``limit`` parameters."""
    blocks = model.blocks
    mlp = blocks[0].mlp
    hidden = mlp.c_proj.in_features
    inputs = 2 if mlp.c_gate is not None else 1  # SwiGLU has a gate matrix beside c_fc
    per_unit = inputs * (mlp.c_fc.in_features + (mlp.c_fc.bias is not None)) + mlp.c_proj.out_features
    excess = _counted(model, include_embeddings) - limit
    if excess <= 0:
        return model
    remove = -(-excess // (per_unit * len(blocks)))  # ceiling division
    keep_count = hidden - remove
    if keep_count < 1:
        raise ValueError(f"cannot reach {limit} parameters by pruning MLPs alone")
    _keep_strongest(model, _unit_scores(model), keep_count)
    return model


def _unit_scores(model: nn.Module) -> list[torch.Tensor]:
    """Each block's MLP hidden units scored by ||w_in[j]|| * ||w_out[:, j]||."""
    return [block.mlp.c_fc.weight.norm(dim=1) * block.mlp.c_proj.weight.norm(dim=0) for block in model.blocks]


def _keep_strongest(model: nn.Module, scores: list[torch.Tensor], keep_count: int) -> None:
    """Keep the ``keep_count`` best-scored hidden units of every block's MLP, in place."""
    for block, score in zip(model.blocks, scores):
        _prune_mlp(block.mlp, score.topk(keep_count).indices.sort().values)
    model.config = dataclasses.replace(model.config, mlp_ratio=keep_count / model.config.n_embd)


def _pruned_copy(model: nn.Module, scores: list[torch.Tensor], keep_count: int) -> nn.Module:
    smaller = copy.deepcopy(model)
    _keep_strongest(smaller, scores, keep_count)
    return smaller


@torch.no_grad()
def prune_to_fit(model: nn.Module, fits: Callable[[nn.Module], bool]) -> nn.Module:
    """Keep the most MLP hidden units (equally in every block, weakest removed first) for which ``fits`` holds.

    ``fits`` is any size test that only gets harder to pass as units are added (a byte limit after quantization,
    whose bytes per unit depend on the quantized layout); the largest fitting width is found by bisection over
    pruned copies, so ``model`` is returned unchanged when it fits and is never modified.
    """
    if fits(model):
        return model
    scores = _unit_scores(model)
    low, high = 0, model.blocks[0].mlp.c_proj.in_features  # fits(high) is False; the answer is in [1, high)
    best = None
    while high - low > 1:
        middle = (low + high) // 2
        candidate = _pruned_copy(model, scores, middle)
        if fits(candidate):
            low, best = middle, candidate
        else:
            high = middle
    if best is None:
        raise ValueError("cannot fit the workload's limits by pruning MLPs alone")
    return best


def _quantizes(ctx) -> bool:  # noqa: ANN001 - a TrialContext
    choice = ctx.config.quantize
    return choice == "int8" or (choice == "auto" and ctx.workload.model.max_bytes is not None)


class TrainLargeCompress(GPTRecipe):
    """Trains a wide GPT for most of the budget, prunes its MLPs to the limit, fine-tunes, and quantizes when
    the workload limits bytes."""

    Config = TrainLargeCompressConfig

    def train(self, ctx, model):
        config = ctx.config
        quantize = _quantizes(ctx)
        split = config.train_fraction
        large = super().train(BudgetPhase(ctx, 0.0, split), model)
        limit = ctx.workload.model
        small = prune_to_limit(large, limit.max_params, limit.count_embeddings)
        if limit.max_bytes is not None:
            stored = (lambda m: quantize_int8(copy.deepcopy(m))) if quantize else (lambda m: m)
            small = prune_to_fit(small, lambda m: count_model_bytes(stored(m)).total <= limit.max_bytes)
        finetune = config.model_copy(update={"lr": config.lr * config.finetune_lr_scale, "warmup": 0.0})
        tuned = super().train(BudgetPhase(ctx, split, 1.0, config=finetune), small)
        return quantize_int8(tuned) if quantize else tuned
