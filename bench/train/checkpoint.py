"""Saving the model a trial returned so that it can be evaluated again later (``bench eval``).

The model's class lives in the submission's code, which may change or disappear after the run, and a recipe may
return a model of another shape than the one it built (pruned, distilled). A pickled module or a bare state dict
would need that exact code to load. ``torch.export`` instead captures the forward pass as a graph together with its
weights (an ``ExportedProgram``, saved as ``.pt2``), which loads with torch alone.

What is exported is an evaluation-mode copy of the model on the CPU, in the dtype the recipe left it in, with the
batch and sequence dimensions dynamic (sequence up to the workload's evaluation length): the file then serves any
later evaluation batch, on any machine, and is moved to the evaluating device when loaded.
"""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path

import torch
from torch import nn
from torch.export.passes import move_to_device_pass

from bench.errors import BenchError
from bench.spec.result import ModelCheckpoint

MODEL_SUFFIX = ".model.pt2"
MAX_BATCH = 65_536  # export needs an upper bound on the dynamic batch; far above any evaluation batch


def export_model(model: nn.Module, seq_len: int, vocab_size: int, path: Path) -> ModelCheckpoint:
    """Export ``model`` (token ids ``(B, T)`` -> logits, ``T <= seq_len``) to ``path``; never raises.

    A model that cannot be exported (for instance one whose forward pass branches on tensor values) yields a
    record with the reason instead of a file: the trial's result stands either way.
    """
    start = time.perf_counter()
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # torch wants the .pt2 suffix
    try:
        program = _export(model, seq_len, vocab_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, partial)
        partial.replace(path)  # a reader never sees a half-written model
    except Exception as exc:  # noqa: BLE001 - the training result must survive a model that cannot be saved
        partial.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ModelCheckpoint(seconds=time.perf_counter() - start, error=f"{type(exc).__name__}: {first}".rstrip(": "))
    return ModelCheckpoint(
        file=path.name, sha256=file_sha256(path), bytes=path.stat().st_size, seconds=time.perf_counter() - start
    )


def _export(model: nn.Module, seq_len: int, vocab_size: int) -> torch.export.ExportedProgram:
    original = getattr(model, "_orig_mod", model)  # a torch.compile wrapper exports as the module it wraps
    copied = copy.deepcopy(original).to("cpu").eval()
    length = max(2, seq_len)  # export specialises sizes 0 and 1: the example must be larger
    example = torch.randint(0, vocab_size, (2, length), dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes = ({0: batch, 1: torch.export.Dim("seq", min=1, max=length)},)
    with torch.no_grad():
        return torch.export.export(copied, (example,), dynamic_shapes=shapes)


def load_model(path: Path, device: torch.device | str, sha256: str | None = None) -> nn.Module:
    """The exported model at ``path`` on ``device``, checked against ``sha256`` when given."""
    if not path.is_file():
        raise BenchError(f"{path}: saved model not found (was the run made with `bench run --save-model`?)")
    if sha256 is not None and file_sha256(path) != sha256:
        raise BenchError(f"{path}: the file's SHA-256 differs from the one its result recorded; it was modified")
    try:
        program = torch.export.load(path)
    except Exception as exc:  # noqa: BLE001 - a damaged file or one from an incompatible torch
        raise BenchError(f"{path}: cannot load the saved model with torch {torch.__version__}: {exc}") from None
    device = torch.device(device)
    if device.type != "cpu":
        program = move_to_device_pass(program, device)
    return SavedModel(program.module())


class SavedModel(nn.Module):
    """A loaded exported model. Its graph was captured in evaluation mode and cannot switch (the exported module
    refuses ``train()`` and ``eval()``), so here those only set the flag: evaluation code can treat it like any model."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.graph(idx)

    def train(self, mode: bool = True) -> SavedModel:
        self.training = mode
        return self


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
