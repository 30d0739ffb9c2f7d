"""Model growth: the G_stack operator of Du et al. 2024, "Stacking Your Transformers" (NeurIPS 2024).

G_stack grows a trained model in depth by stacking it on itself: a model with blocks ``b_1 .. b_L`` becomes one with
``g * L`` blocks ``b_1 .. b_L, b_1 .. b_L, ...`` (the whole stack repeated ``g`` times, in order; not each block
repeated in place), and the token embedding, position table, final norm and head are carried over. The grown model
therefore computes ``head(norm(stack^g(embed(x))))``: the small model's stack applied ``g`` times. This does not
preserve the small model's function (the residual stream passes through every block ``g`` times), which the paper
found to matter less than starting from trained blocks; its default growth factor is ``g = 4``.

The copies are independent tensors: after growth every block trains on its own, as in the paper (sharing them
would be a weight-tied, looped model instead).
"""

from __future__ import annotations

import copy
import dataclasses

from torch import nn

from bench.errors import BenchError
from bench.train.model import GPT


def stack_blocks(model: GPT, factor: int) -> GPT:
    """Return a new :class:`GPT` with ``model``'s blocks stacked ``factor`` times; ``model`` itself is unchanged.

    Everything but the blocks (embeddings, final norm, head, the tie between head and embedding, device, dtype,
    ``requires_grad``) is a copy of ``model``'s; ``config.n_layer`` becomes ``factor * n_layer``.
    """
    if not isinstance(model, GPT):
        raise BenchError(f"stacking needs the shared GPT (bench.train.model.GPT), got {type(model).__name__}")
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise BenchError(f"the growth factor must be a positive integer, got {factor!r}")
    grown = copy.deepcopy(model)  # one memo for the whole model, so the tied head stays tied to the copied embedding
    grown.blocks = nn.ModuleList(copy.deepcopy(block) for _ in range(factor) for block in model.blocks)
    grown.config = dataclasses.replace(model.config, n_layer=factor * model.config.n_layer)
    return grown
