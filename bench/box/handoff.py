"""A model leaving the box: written to the box's scratch folder, opened, and its descriptor passed to the harness.

Two forms. The shared GPT (every baseline, and models grown or pruned to another GPT shape) goes as safetensors
with its config in the header (:mod:`bench.train.saved_model`): the harness rebuilds it with its own code, so no
code of the recipe's ever runs where it is judged, and the model is causal by construction. Any other module goes as
a ``torch.save`` archive, which only a sandboxed scoring process unpickles (:mod:`bench.harness.scoring`); the
harness reads that archive's tensors' sizes without unpickling it, to count what the model carries.
"""

from __future__ import annotations

import os
import pickle
import types
import uuid
from pathlib import Path

import torch
from safetensors.torch import save_model as save_safetensors
from torch import nn

from bench.train.saved_model import NotSaveable, describable_gpt, describe

GPT_FORM = "gpt"
ARCHIVE_FORM = "archive"


def pack_model(model: nn.Module, scratch: Path, vocab_size: int, seq_len: int) -> tuple[int, str]:
    """``(descriptor, form)`` of ``model`` written to a file in ``scratch`` that is unlinked at once: only the
    descriptor names it, and the harness reads it from there."""
    path = scratch / f"model-{uuid.uuid4().hex}"
    try:
        gpt = describable_gpt(model, seq_len, vocab_size)
    except NotSaveable:
        torch.save(model, path, pickle_module=_ArchivePickling)
        form = ARCHIVE_FORM
    else:
        save_safetensors(gpt, str(path), metadata=describe(gpt.config))
        form = GPT_FORM
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    path.unlink()
    return fd, form


def bound_method(function: object, owner: object) -> types.MethodType:
    """``function`` bound to ``owner``: how an archive's methods set on an instance are rebuilt when unpickled."""
    return types.MethodType(function, owner)


class _ArchivePickling:
    """``torch.save``'s pickle module for archives: pickle's, except that a method set on an instance whose function
    is not a plain function is pickled as that function and its owner. Python pickles a bound method by its name,
    which a ``functools.partial`` lacks, and libraries set such methods: torchao's quantization replaces each
    quantized module's ``extra_repr`` with a partial bound to the module."""

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj: object) -> object:
            if isinstance(obj, types.MethodType) and not hasattr(obj.__func__, "__name__"):
                return bound_method, (obj.__func__, obj.__self__)
            return NotImplemented
