"""Train large, then compress: a model wider than the limit allows, pruned to the limit before the budget ends.

Phase 1 (``train_fraction`` of the budget) trains a GPT whose MLPs are too wide for the workload's parameter limit.
Then each MLP's hidden units are ranked by ||w_in[j]|| * ||w_out[:, j]|| (the size of the unit's contribution to
the residual stream) and the weakest are removed, the same number from every layer, until the model fits the limit.
Phase 2 fine-tunes the pruned model with a fresh optimizer for the rest of the budget. The question it asks: does a
larger model trained for less time, then compressed, beat a model of the final size trained for the whole budget?
"""

import dataclasses

import torch
from torch import nn

from bench.train.params import count_parameters
from bench.train.recipes import BudgetPhase, GPTRecipe


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
    for block in blocks:
        mlp = block.mlp
        score = mlp.c_fc.weight.norm(dim=1) * mlp.c_proj.weight.norm(dim=0)
        keep = score.topk(keep_count).indices.sort().values
        _prune_mlp(mlp, keep)
    model.config = dataclasses.replace(model.config, mlp_ratio=keep_count / model.config.n_embd)
    return model


class TrainLargeCompress(GPTRecipe):
    """Trains a wide GPT for most of the budget, prunes its MLPs to the limit, then fine-tunes."""

    def train(self, ctx, model):
        hp = ctx.hparams
        split = float(hp["train_fraction"])
        large = super().train(BudgetPhase(ctx, 0.0, split), model)
        limit = ctx.workload.model.max_params
        small = prune_to_limit(large, limit, ctx.workload.model.count_embeddings)
        finetune = dict(hp, lr=float(hp["lr"]) * float(hp["finetune_lr_scale"]), warmup=0.0)
        return super().train(BudgetPhase(ctx, split, 1.0, hparams=finetune), small)
