"""Counting the model-size limit on whatever module a recipe returns: every tensor it needs at inference.

The count is of *stored* elements, zeros included: a pruned model whose tensors are still dense costs as much
as the dense model; a recipe that wants credit for compression returns a model whose tensors are smaller.
Counting nonzeros instead would reward sparsity that no dense kernel turns into savings, and would make the
count depend on values rather than on the architecture.

What counts, each storage once (a tied weight, or a buffer that views a parameter, is counted once):

- parameters;
- buffers, persistent or not (a model with its weights moved into buffers must not count 0);
- *captured tensors*: tensors held as plain module attributes, or in a list, tuple, set or dict attribute,
  rather than registered; and the parameters, buffers and captured tensors of modules held that way.

A storage counts whole (bytes over element size): a one-element view of a large storage still reaches all of it.

Exempt, because they are recomputed or recomputable from shapes and so hold no learned information:

- :class:`bench.train.model.Rotary` tables equal to what :meth:`~bench.train.model.Rotary.tables` recomputes;
- causal masks: a square lower-triangular 0/1 (or boolean) table, or its additive 0/-inf form;
- the ``weight`` that ``torch.nn.utils.prune`` recomputes as ``weight_orig * weight_mask`` before every forward
  (its ``weight_orig`` parameter and ``weight_mask`` buffer count; ``prune.remove`` drops the mask).

A workload may also limit the model's size in bytes (``model.max_bytes``): :func:`count_model_bytes` counts the
same tensors at the dtypes they are stored in, so that a quantized model (int8 values plus their scales) is
credited with what it really takes to deploy. A tensor subclass such as torchao's ``Int8Tensor`` is counted by the
inner tensors that hold its data, and ``torch.ao``'s packed weights (not parameters, not buffers) through the
state dict, where they are unpacked.

An exemption applies only to a tensor that owns exactly its storage. On the meta device (sizing a model from
its shapes) there are no values to compare, and the exemptions go by shape and place alone. Not detected (honour-based, see
CONTRIBUTING's threat model): tensors hidden inside other Python objects, closures, hooks or globals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.prune import BasePruningMethod
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from bench.train.model import Rotary

_MODULE_INTERNALS = frozenset(vars(nn.Module()))
"""Attribute names every ``nn.Module`` has (``_parameters``, hook dicts ...): not captured state."""


class ParamCounts(NamedTuple):
    """``total``: every counted element (parameters, buffers, captured tensors; a shared storage once).
    ``embedding``: those held by ``nn.Embedding`` parameters (token and learned position tables; a head tied to
    the token table counts here, as in Kaplan et al.). ``buffers``: the part of ``total`` held outside
    parameters. ``exempt``: elements not counted under the stated exemptions."""

    total: int
    embedding: int
    buffers: int = 0
    exempt: int = 0

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding

    def counted(self, include_embeddings: bool) -> int:
        """The figure a workload's ``model.max_params`` limits, per its ``count_embeddings`` switch."""
        return self.total if include_embeddings else self.non_embedding


def _storage(tensor: torch.Tensor) -> tuple[Any, int]:
    """(identity of ``tensor``'s storage, elements that storage holds); the tensor itself where it has none."""
    if tensor.layout == torch.strided and tensor.device.type != "meta" and not is_traceable_wrapper_subclass(tensor):
        try:
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
        except (RuntimeError, NotImplementedError, TypeError):  # tensors without one plain storage
            pointer = 0
        if pointer != 0:
            return (str(tensor.device), pointer), storage.nbytes() // tensor.element_size()
    return ("tensor", id(tensor)), tensor.numel()


def _held(value: Any) -> Iterator[Any]:
    """``value`` and, for a container, its items (one level): where a captured tensor or module can sit."""
    if isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from value
    else:
        yield value


def _captured(module: nn.Module) -> Iterator[tuple[str, Any]]:
    """Tensors and modules held as plain attributes of ``module`` (not registered), with their attribute names."""
    for name, value in vars(module).items():
        if name in _MODULE_INTERNALS:
            continue
        for item in _held(value):
            if isinstance(item, (torch.Tensor, nn.Module)):
                yield name, item


def _modules(model: nn.Module) -> list[nn.Module]:
    """Every module reachable from ``model``: registered submodules and modules held as plain attributes."""
    found: dict[int, nn.Module] = {}
    todo = [model]
    while todo:
        module = todo.pop()
        if id(module) in found:
            continue
        found[id(module)] = module
        todo.extend(m for m in module._modules.values() if m is not None)
        todo.extend(item for _, item in _captured(module) if isinstance(item, nn.Module))
    return list(found.values())


def _owns_storage(tensor: torch.Tensor) -> bool:
    return _storage(tensor)[1] == tensor.numel() and tensor.layout == torch.strided


def _is_rotary_table(module: nn.Module, name: str, tensor: torch.Tensor) -> bool:
    """``module.cos`` / ``module.sin`` of a Rotary, equal to the tables recomputed on the CPU or its device."""
    if not (isinstance(module, Rotary) and name in ("cos", "sin") and tensor.ndim == 2 and tensor.is_floating_point()):
        return False
    if tensor.is_meta:
        return True  # shapes only (sizing a model on the meta device): nothing to compare, nothing hidden
    seq_len, half = tensor.shape
    base = float(getattr(module, "base", 10000.0))
    for device in {torch.device("cpu"), tensor.device}:
        cos, sin = Rotary.tables(2 * half, seq_len, base, device=device)
        expected = (cos if name == "cos" else sin).to(tensor.device, tensor.dtype)
        if torch.equal(tensor, expected):
            return True
    return False


def _is_causal_mask(tensor: torch.Tensor) -> bool:
    """A (1, ..., 1, T, T) lower-triangular table of ones (any dtype), or the additive 0 / -inf form."""
    if tensor.ndim < 2 or tensor.shape[-1] != tensor.shape[-2] or any(d != 1 for d in tensor.shape[:-2]):
        return False
    if tensor.is_meta:
        return True
    size = tensor.shape[-1]
    lower = torch.ones(size, size, dtype=torch.bool, device=tensor.device).tril()
    if torch.equal(tensor, lower.to(tensor.dtype).view(tensor.shape)):
        return True
    if not tensor.is_floating_point():
        return False
    additive = torch.zeros(size, size, dtype=tensor.dtype, device=tensor.device).masked_fill(~lower, float("-inf"))
    return torch.equal(tensor, additive.view(tensor.shape))


def _is_pruned_weight(module: nn.Module, name: str, tensor: torch.Tensor) -> bool:
    """The attribute ``torch.nn.utils.prune`` recomputes before every forward, holding exactly orig * mask."""
    hooks = [h for h in module._forward_pre_hooks.values() if isinstance(h, BasePruningMethod)]
    if not any(getattr(h, "_tensor_name", None) == name for h in hooks):
        return False
    orig, mask = module._parameters.get(f"{name}_orig"), module._buffers.get(f"{name}_mask")
    if orig is None or mask is None:
        return False
    return tensor.is_meta or torch.equal(tensor, (orig * mask).to(tensor.dtype))


def _exempt(module: nn.Module, name: str, tensor: torch.Tensor) -> bool:
    if not _owns_storage(tensor):
        return False
    with torch.no_grad():
        return (
            _is_rotary_table(module, name, tensor)
            or _is_causal_mask(tensor)
            or _is_pruned_weight(module, name, tensor)
        )


class _Holdings(NamedTuple):
    """Every storage a model holds, once: those counted, those exempt, and which counted ones are parameters
    and embedding tables. Keys are :func:`_storage` identities; values the tensor that holds the storage."""

    counted: dict[Any, torch.Tensor]
    exempt: dict[Any, torch.Tensor]
    parameters: set[Any]
    embedding: set[Any]


def _state_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    """Tensors of the state dict, where packed weights (``torch.ao``'s, held by script objects) are unpacked."""
    for value in model.state_dict(keep_vars=True).values():
        yield from (t for t in _held(value) if isinstance(t, torch.Tensor))


def _holdings(model: nn.Module) -> _Holdings:
    modules = _modules(model)
    counted: dict[Any, torch.Tensor] = {}
    for module in modules:
        for param in module._parameters.values():
            if param is not None:
                counted[_storage(param)[0]] = param
    parameters = set(counted)
    embedding = {
        _storage(p)[0] for m in modules if isinstance(m, nn.Embedding) for p in m._parameters.values() if p is not None
    }
    exempt: dict[Any, torch.Tensor] = {}
    held = [(m, n, b) for m in modules for n, b in m._buffers.items() if b is not None]
    held += [(m, n, t) for m in modules for n, t in _captured(m) if isinstance(t, torch.Tensor)]
    for module, name, tensor in held:
        key = _storage(tensor)[0]
        if key in counted:
            continue
        if _exempt(module, name, tensor):
            exempt[key] = tensor
        else:
            counted[key] = tensor
            exempt.pop(key, None)
    for tensor in _state_tensors(model):  # what the walk above cannot see: weights packed into script objects
        key = _storage(tensor)[0]
        if key not in counted and key not in exempt:
            counted[key] = tensor
    return _Holdings(counted, exempt, parameters, embedding)


def count_parameters(model: nn.Module) -> ParamCounts:
    """Count the elements of every tensor ``model`` holds (see the module docstring), and which are embeddings."""
    holdings = _holdings(model)
    elements = {key: _storage(tensor)[1] for key, tensor in holdings.counted.items()}
    total = sum(elements.values())
    return ParamCounts(
        total=total,
        embedding=sum(elements[k] for k in holdings.embedding),
        buffers=total - sum(elements[k] for k in holdings.parameters),
        exempt=sum(_storage(tensor)[1] for tensor in holdings.exempt.values()),
    )


# --- size in bytes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelBytes:
    """The bytes of a model's stored state, as :func:`count_model_bytes` counts them.

    ``total``: what a workload's ``model.max_bytes`` limits. ``by_dtype``: the same bytes split by the dtype of the
    tensor that stores them (``{"int8": ..., "float32": ...}``). ``quantized``: the part held by quantized weights,
    their scales and zero points included. ``exempt``: bytes of the exempt tensors, which are not counted.
    """

    total: int
    by_dtype: dict[str, int]
    quantized: int
    exempt: int

    def describe(self) -> str:
        """``'float32: 8,000,000, int8: 120'``: the breakdown for a reason string, largest first."""
        parts = sorted(self.by_dtype.items(), key=lambda item: -item[1])
        return ", ".join(f"{dtype}: {count:,}" for dtype, count in parts)


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


def _piece_bytes(tensor: torch.Tensor) -> int:
    """Bytes of one plain tensor: its whole storage (as elements are counted), or for a ``torch.ao`` quantized
    tensor its integer values plus the scale and zero point(s) that decode them."""
    if tensor.is_quantized:
        values = tensor.numel() * tensor.element_size()
        if tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                torch.per_channel_affine_float_qparams):
            scales, zero_points = tensor.q_per_channel_scales(), tensor.q_per_channel_zero_points()
            return values + scales.numel() * scales.element_size() + zero_points.numel() * zero_points.element_size()
        return values + 16  # one float64 scale and one int64 zero point
    return _storage(tensor)[1] * tensor.element_size()


def count_model_bytes(model: nn.Module) -> ModelBytes:
    """Count the bytes of the tensors :func:`count_parameters` counts, each piece at its storage dtype."""
    holdings = _holdings(model)
    by_dtype: dict[str, int] = {}
    quantized = 0
    seen: set[Any] = set()
    for tensor in holdings.counted.values():
        for piece, is_quantized in _stored_pieces(tensor):
            key = ("quantized", id(piece)) if piece.is_quantized else _storage(piece)[0]
            if key in seen:
                continue
            seen.add(key)
            size = _piece_bytes(piece)
            dtype = str(piece.dtype).removeprefix("torch.")
            by_dtype[dtype] = by_dtype.get(dtype, 0) + size
            quantized += size if is_quantized else 0
    exempt = sum(_piece_bytes(p) for t in holdings.exempt.values() for p, _ in _stored_pieces(t))
    return ModelBytes(total=sum(by_dtype.values()), by_dtype=by_dtype, quantized=quantized, exempt=exempt)
