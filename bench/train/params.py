"""Parameter counting for the model-size limit, on whatever module a recipe returns.

The count is of *stored* parameters: every element of every unique ``nn.Parameter``, zeros included. A pruned
model whose tensors are still dense costs as much as the dense model (``torch.nn.utils.prune`` even keeps the
dense ``weight_orig``); a recipe that wants credit for compression returns a model whose tensors are smaller.
Counting nonzeros instead would reward sparsity that no dense kernel turns into savings, and would make the
count depend on values rather than on the architecture. Buffers (masks, rotary tables) are not parameters.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn


class ParamCounts(NamedTuple):
    """``total``: unique parameters (a tied weight once). ``embedding``: those held by ``nn.Embedding`` modules
    (token and learned position tables; a head tied to the token table counts here, as in Kaplan et al.)."""

    total: int
    embedding: int

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding

    def counted(self, include_embeddings: bool) -> int:
        """The figure a workload's ``model.max_params`` limits, per its ``count_embeddings`` switch."""
        return self.total if include_embeddings else self.non_embedding


def count_parameters(model: nn.Module) -> ParamCounts:
    """Count ``model``'s unique stored parameters, and how many of them are embedding tables."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a shared tensor once
    embedding_params = {id(p): p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return ParamCounts(total=total, embedding=sum(p.numel() for p in embedding_params.values()))
