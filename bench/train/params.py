"""Parameter counting for the model-size limit, on whatever module a recipe returns.

The count is of *stored* parameters: every element of every unique ``nn.Parameter``, zeros included. A pruned
model whose tensors are still dense costs as much as the dense model (``torch.nn.utils.prune`` even keeps the
dense ``weight_orig``); a recipe that wants credit for compression returns a model whose tensors are smaller.
Counting nonzeros instead would reward sparsity that no dense kernel turns into savings, and would make the
count depend on values rather than on the architecture. Buffers (masks, rotary tables) are not parameters.

A workload may also limit the model's size in bytes (``model.max_bytes``): :func:`count_model_bytes` counts the
stored weights at the dtypes they are stored in, so that a quantized model (int8 values plus their scales) is
credited with what it really takes to deploy. :func:`judge_model_size` applies both limits for the trial.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from bench.spec.result import ParamCounts as ResultParamCounts
from bench.spec.workload import ModelLimit


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


# --- size in bytes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelBytes:
    """The bytes of a model's stored state, as :func:`count_model_bytes` counts them.

    ``total``: what a workload's ``model.max_bytes`` limits. ``by_dtype``: the same bytes split by the dtype of the
    tensor that stores them (``{"int8": ..., "float32": ...}``). ``quantized``: the part held by quantized weights,
    their scales and zero points included. ``exempt``: bytes of non-persistent buffers, which are not counted.
    """

    total: int
    by_dtype: dict[str, int]
    quantized: int
    exempt: int

    def describe(self) -> str:
        """``'float32: 8,000,000, int8: 120'``: the breakdown for a reason string, largest first."""
        parts = sorted(self.by_dtype.items(), key=lambda item: -item[1])
        return ", ".join(f"{dtype}: {count:,}" for dtype, count in parts)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _storage_key(tensor: torch.Tensor) -> tuple:
    """Identity of the memory a tensor shows: two views of the same elements (a tied weight) count once."""
    if tensor.is_quantized:
        return ("quantized", id(tensor))
    return (
        tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()),
        tensor.dtype,
    )


def _stored_pieces(tensor: torch.Tensor, quantized: bool = False) -> list[tuple[torch.Tensor, bool]]:
    """The plain tensors that hold ``tensor``'s data, each with whether it belongs to a quantized weight.

    A tensor subclass such as torchao's ``Int8Tensor`` holds its data in inner tensors (``qdata`` int8, ``scale``
    float32 ...) that ``__tensor_flatten__`` names; packed int4 weights are inner ``uint8``/``int32`` tensors, so
    every piece is counted at the dtype it is really stored in, not at the dtype the wrapper reports.
    """
    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        return [piece for name in names for piece in _stored_pieces(getattr(tensor, name), True)]
    return [(tensor, quantized or tensor.is_quantized)]


def _quantized_bytes(tensor: torch.Tensor) -> int:
    """A ``torch.ao`` quantized tensor: its integer values plus the scale and zero point(s) that decode them."""
    values = tensor.numel() * tensor.element_size()
    if tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                            torch.per_channel_affine_float_qparams):
        scales, zero_points = tensor.q_per_channel_scales(), tensor.q_per_channel_zero_points()
        return values + scales.numel() * scales.element_size() + zero_points.numel() * zero_points.element_size()
    return values + 16  # one float64 scale and one int64 zero point


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Tensors inside a state-dict value: a tensor, or a tuple/list/dict of them (``torch.ao``'s packed params)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


def count_model_bytes(model: nn.Module) -> ModelBytes:
    """Count the bytes of ``model``'s weights as stored: each unique tensor's elements at its storage dtype.

    Counted: everything in ``model.state_dict()`` (parameters and persistent buffers, and what quantized modules
    keep there, such as ``torch.ao``'s packed weights, which are not parameters) and every parameter. A weight
    shared by two modules (a tied embedding and head) counts once. Not counted, and reported as ``exempt``:
    non-persistent buffers, which PyTorch defines as not part of a module's state and which the shared GPT uses
    only for tables it recomputes from its configuration (rotary cos/sin). Like :func:`count_parameters`, zeros
    count: a pruned but dense tensor costs its full size.
    """
    state = model.state_dict(keep_vars=True)
    counted = [t for value in state.values() for t in _tensors_in(value)] + list(model.parameters())
    seen: set[tuple] = set()
    by_dtype: dict[str, int] = {}
    quantized = 0
    for piece, is_quantized in (piece for tensor in counted for piece in _stored_pieces(tensor)):
        key = _storage_key(piece)
        if key in seen:
            continue
        seen.add(key)
        size = _quantized_bytes(piece) if piece.is_quantized else piece.numel() * piece.element_size()
        by_dtype[_dtype_name(piece.dtype)] = by_dtype.get(_dtype_name(piece.dtype), 0) + size
        quantized += size if is_quantized else 0
    exempt_pieces = {
        _storage_key(piece): piece for buffer in model.buffers() for piece, _ in _stored_pieces(buffer)
        if _storage_key(piece) not in seen
    }
    exempt = sum(piece.numel() * piece.element_size() for piece in exempt_pieces.values())
    return ModelBytes(total=sum(by_dtype.values()), by_dtype=by_dtype, quantized=quantized, exempt=exempt)


# --- the judgement a trial makes -------------------------------------------------------------------------------


def judge_model_size(model: nn.Module, limit: ModelLimit) -> tuple[ResultParamCounts, str | None]:
    """Count ``model`` against the workload's limits: the counts for the result, and why it is over (or None).

    The reason names every limit broken, with the figures, e.g. ``model has 2,100,000 parameters, over the limit of
    2,000,000`` and ``model weights take 8,400,000 bytes (float32: 8,400,000), over the limit of 2,500,000 bytes``
    (joined by ``; `` when both are broken). Bytes are counted whether or not the workload limits them, so every
    result says how large its model is to deploy.
    """
    counts = count_parameters(model)
    counted = counts.counted(limit.count_embeddings)
    size = count_model_bytes(model)
    reasons = []
    if counted > limit.max_params:
        what = "parameters" if limit.count_embeddings else "non-embedding parameters"
        reasons.append(f"model has {counted:,} {what}, over the limit of {limit.max_params:,}")
    if limit.max_bytes is not None and size.total > limit.max_bytes:
        reasons.append(
            f"model weights take {size.total:,} bytes ({size.describe()}), over the limit of {limit.max_bytes:,} bytes"
        )
    result = ResultParamCounts(
        total=counts.total, embedding=counts.embedding, counted=counted, limit=limit.max_params,
        bytes=size.total, bytes_by_dtype=size.by_dtype, quantized_bytes=size.quantized, max_bytes=limit.max_bytes,
    )
    return result, "; ".join(reasons) or None
