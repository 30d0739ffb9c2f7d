"""Resumable trials: a trial's full training state in one file, written atomically, read without unpickling.

A long trial is checkpointed every ``checkpoint_every`` seconds of its training clock (see
:meth:`bench.harness.context.HarnessContext.checkpoint_due`); when its worker dies (a lost node, a preemption), the
scheduler runs it again and the new worker continues from the last checkpoint, with the clock continuing from the
reading saved in it.

A state is a nested structure of dicts, lists, tuples, Python scalars, strings, ``None``, torch tensors and numpy
arrays (a model's and an optimizer's ``state_dict``, the harness's counters, the RNG states). It is stored as **one
safetensors file**: every tensor by a generated name, and the structure as JSON in the header's metadata, where each
tensor is a ``{"__tensor__": name}`` placeholder. Loading parses JSON and raw tensor bytes only: nothing in the file
is executed (the project never calls ``torch.load(weights_only=False)``, and nothing here calls ``torch.load``).
The file is written to a temporary name beside its destination, flushed to disk and renamed over it, so a worker
killed while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from bench.errors import BenchError

RESUME_SUFFIX = ".resume.safetensors"
FORMAT = "pretrain-bench/trial-state"
FORMAT_VERSION = "1"

_TENSOR, _ARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"


class DamagedCheckpoint(BenchError):
    """A checkpoint file that is not one of this suite's, or does not parse."""


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors)}"
        # cloned: safetensors refuses tensors that share storage (tied weights), and views must be contiguous
        tensors[name] = value.detach().to("cpu").contiguous().clone()
        return {_TENSOR: name}
    if isinstance(value, np.ndarray):
        name = f"t{len(tensors)}"
        tensors[name] = torch.from_numpy(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("="))).clone()
        return {_ARRAY: name, "dtype": value.dtype.str}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: _encode(item, tensors) for key, item in value.items()}
        return {_ITEMS: [[_encode(key, tensors), _encode(item, tensors)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_encode(item, tensors) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint a {type(value).__qualname__}: states hold tensors, arrays and plain values")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        return tensors[value[_TENSOR]]
    if _ARRAY in value:
        return tensors[value[_ARRAY]].numpy().astype(np.dtype(value["dtype"]), copy=True)
    if _TUPLE in value:
        return tuple(_decode(item, tensors) for item in value[_TUPLE])
    if _ITEMS in value:
        return {_hashable(_decode(key, tensors)): _decode(item, tensors) for key, item in value[_ITEMS]}
    return {key: _decode(item, tensors) for key, item in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


def save_state(state: dict[str, Any], path: Path) -> int:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename); returns the file's size."""
    tensors: dict[str, torch.Tensor] = {}
    structure = json.dumps(_encode(state, tensors))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        save_file(tensors, str(partial),
                  metadata={"format": FORMAT, "format_version": FORMAT_VERSION, "state": structure})
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def load_state(path: Path) -> dict[str, Any]:
    """The state saved at ``path`` (tensors on the CPU). Raises :class:`DamagedCheckpoint`."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise DamagedCheckpoint(f"{path}: not a readable checkpoint ({exc})") from None
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise DamagedCheckpoint(f"{path}: not a pretrain-bench trial checkpoint (format {metadata.get('format')!r})")
    try:
        state = _decode(json.loads(metadata["state"]), tensors)
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise DamagedCheckpoint(f"{path}: the checkpoint's state does not parse ({exc})") from None
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"{path}: the checkpoint's state is not a mapping")
    return state


def rng_state() -> dict[str, Any]:
    """Every generator a recipe may draw from: Python's, numpy's global one, torch's CPU one (and CUDA's)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


class Stopwatch:
    """Wall seconds of a block, for the checkpoint's own bookkeeping (saving and restoring are off the clock)."""

    def __enter__(self) -> Stopwatch:
        self.began = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.began
