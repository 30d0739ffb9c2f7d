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

An exemption applies only to a tensor that owns exactly its storage. On the meta device (sizing a model from
its shapes) there are no values to compare, and the exemptions go by shape and place alone. Not detected (honour-based, see
CONTRIBUTING's threat model): tensors hidden inside other Python objects, closures, hooks or globals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.prune import BasePruningMethod

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
    if tensor.layout == torch.strided and tensor.device.type != "meta":
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):  # wrapper subclasses without one storage
            storage = None
        if storage is not None and storage.data_ptr() != 0:
            return (str(tensor.device), storage.data_ptr()), storage.nbytes() // tensor.element_size()
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


def count_parameters(model: nn.Module) -> ParamCounts:
    """Count the elements of every tensor ``model`` holds (see the module docstring), and which are embeddings."""
    modules = _modules(model)
    counted: dict[Any, int] = {}
    for module in modules:
        for param in module._parameters.values():
            if param is not None:
                key, elements = _storage(param)
                counted[key] = elements
    in_parameters = sum(counted.values())
    embedding = {
        _storage(p)[0] for m in modules if isinstance(m, nn.Embedding) for p in m._parameters.values() if p is not None
    }
    exempt: dict[Any, int] = {}
    for module in modules:
        held = [(n, b) for n, b in module._buffers.items() if b is not None]
        held += [(n, t) for n, t in _captured(module) if isinstance(t, torch.Tensor)]
        for name, tensor in held:
            key, elements = _storage(tensor)
            if key in counted:
                continue
            if _exempt(module, name, tensor):
                exempt[key] = elements
            else:
                counted[key] = elements
                exempt.pop(key, None)
    total = sum(counted.values())
    return ParamCounts(
        total=total,
        embedding=sum(counted[k] for k in embedding),
        buffers=total - in_parameters,
        exempt=sum(exempt.values()),
    )
