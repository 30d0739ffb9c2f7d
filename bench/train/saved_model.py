"""Saving the model a trial returned so that it can be evaluated again later (``bench eval``), without ever running
code from the saved file.

A results folder is shared, downloaded and swapped; whoever can replace a saved model can also edit the SHA-256 its
result records. So loading must be safe for *any* file, not only for one whose hash matches: a saved model is
**weights in safetensors** (a JSON header and raw tensor bytes, parsed without pickle) **plus a declarative
description** stored in that header's metadata, from which the harness rebuilds the module with its own code. One
file, so one hash covers weights and description together.

The description the harness can rebuild is the shared GPT's :class:`~bench.train.model.GPTConfig` (every baseline,
and models pruned to another shape, as long as the config says the shape). Other models are not saved: torch.export's
``.pt2`` would capture any module, but ``torch.export.load`` (torch 2.13) unpickles parts of the archive
(``torch.load(weights_only=False)`` for pickled weights and constants, ``pickle.loads`` for opaque constants), so
loading an untrusted ``.pt2`` can run code. Their result records why instead of a file. Results saved in that old
format remain readable; their ``.pt2`` is never loaded (:func:`load_model` says why).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model as save_safetensors_from
from torch import nn

from bench.errors import BenchError
from bench.results.schema import SavedModel
from bench.train.model import GPT, GPTConfig

MODEL_SUFFIX = ".model.safetensors"
LEGACY_SUFFIX = ".pt2"
FORMAT = "pretrain-bench/gpt"
FORMAT_VERSION = "1"
"""Metadata keys of a saved model's safetensors header: ``format``, ``format_version`` and ``config`` (GPTConfig as
JSON); a file without exactly this format is not loaded."""

UNSAFE_PT2 = (
    "torch.export's .pt2 is not used because torch.export.load unpickles parts of the archive (weights_only=False), "
    "so loading one could run code"
)


class NotSaveable(Exception):
    """The model has no declarative description the harness can rebuild it from."""


def save_model(model: nn.Module, seq_len: int, vocab_size: int, path: Path) -> SavedModel:
    """Save ``model`` (token ids ``(B, T)`` -> logits, ``T <= seq_len``) to ``path`` as safetensors; never raises.

    A model that cannot be described declaratively (anything but the shared GPT whose config matches its weights)
    yields a record with the reason instead of a file: the trial's result stands either way.
    """
    start = time.perf_counter()
    partial = path.with_name(f".{path.name}.partial")
    try:
        gpt = describable_gpt(model, seq_len, vocab_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors_from(gpt, str(partial), metadata=describe(gpt.config))
        partial.replace(path)  # a reader never sees a half-written model
    except Exception as exc:  # noqa: BLE001 - the training result must survive a model that cannot be saved
        partial.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        label = "" if isinstance(exc, NotSaveable) else f"{type(exc).__name__}: "
        return SavedModel(seconds=time.perf_counter() - start, error=f"{label}{first}".rstrip(": "))
    return SavedModel(
        file=path.name, sha256=file_sha256(path), bytes=path.stat().st_size, seconds=time.perf_counter() - start
    )


def describe(config: GPTConfig) -> dict[str, str]:
    """The safetensors metadata that describes a GPT with ``config``."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(dataclasses.asdict(config))}


def describable_gpt(model: nn.Module, seq_len: int, vocab_size: int) -> GPT:
    """``model`` as a shared GPT whose config rebuilds exactly its tensors, else :class:`NotSaveable`."""
    original = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves as the module it wraps
    if type(original) is not GPT:  # a subclass may override forward: its config would not describe it
        raise NotSaveable(
            f"only the shared GPT (bench.train.model.GPT) can be saved, this model is {type(original).__qualname__}; "
            f"{UNSAFE_PT2}"
        )
    config = original.config
    if config.vocab_size != vocab_size or config.seq_len < seq_len:
        raise NotSaveable(
            f"the GPT's config (vocab_size={config.vocab_size}, seq_len={config.seq_len}) does not fit the workload "
            f"(vocab_size={vocab_size}, evaluation seq_len={seq_len})"
        )
    with torch.device("meta"):
        rebuilt = {name: tensor.shape for name, tensor in GPT(config).state_dict().items()}
    actual = {name: tensor.shape for name, tensor in original.state_dict().items()}
    if rebuilt != actual:
        differ = sorted(n for n in rebuilt.keys() | actual.keys() if rebuilt.get(n) != actual.get(n))
        raise NotSaveable(f"the GPT's config does not describe its tensors (differ: {', '.join(differ[:4])})")
    if config.tie_weights and original.lm_head.weight is not original.wte.weight:
        raise NotSaveable("the GPT's config says tie_weights but its lm_head and embedding are separate tensors")
    quantized = sorted(name for name, tensor in original.state_dict().items()
                       if type(tensor) not in (torch.Tensor, nn.Parameter) or tensor.is_quantized)
    if quantized:
        raise NotSaveable(
            f"quantized weights ({', '.join(quantized[:3])}{', ...' if len(quantized) > 3 else ''}) cannot be saved "
            "as plain safetensors with a GPT config yet; the model was evaluated with them, but is not kept"
        )
    return original


def load_model(path: Path, device: torch.device | str, sha256: str | None = None) -> GPT:
    """The model saved at ``path`` on ``device``, in evaluation mode, checked against ``sha256`` when given.

    Only a safetensors file with this suite's description is read, and nothing in it is executed: the header is
    JSON, the tensors are raw bytes, and the module is built by :class:`GPT` from the validated config.
    """
    if path.name.endswith(LEGACY_SUFFIX):
        raise BenchError(
            f"{path}: saved in the old torch.export .pt2 format, which is not loaded for safety ({UNSAFE_PT2}); "
            "re-run the trial with `bench run --save-model` to save it as safetensors"
        )
    if not path.is_file():
        raise BenchError(f"{path}: saved model not found (was the run made with `bench run --save-model`?)")
    if sha256 is not None and file_sha256(path) != sha256:
        raise BenchError(f"{path}: the file's SHA-256 differs from the one its result recorded; it was modified")
    config, dtype = read_description(path)
    _check_shapes(path, config)  # before allocating: a description must not make us build an arbitrary model
    model = GPT(config).to(dtype)
    try:
        load_safetensors_into(model, str(path), strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise BenchError(f"{path}: the weights do not match the model its description gives: {exc}") from None
    return model.to(device).eval()


def read_description(path: Path) -> tuple[GPTConfig, torch.dtype]:
    """The validated GPT config in ``path``'s safetensors header and the dtype of its weights."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata: dict[str, str] = handle.metadata() or {}
            names = list(handle.keys())
            dtype = handle.get_tensor(names[0]).dtype if names else torch.float32
    except (SafetensorError, OSError, ValueError) as exc:
        raise BenchError(f"{path}: not a safetensors model file ({exc})") from None
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise BenchError(
            f"{path}: metadata format is {metadata.get('format')!r} version {metadata.get('format_version')!r}; "
            f"expected {FORMAT!r} version {FORMAT_VERSION!r}"
        )
    return _config(path, metadata.get("config", "")), dtype


def _check_shapes(path: Path, config: GPTConfig) -> None:
    """The file's tensors are exactly those of a GPT with ``config`` (names and shapes, tied weights stored once)."""
    with safe_open(str(path), framework="pt") as handle:
        stored = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    layers = {name.split(".")[1] for name in stored if name.startswith("blocks.")}
    if len(layers) != config.n_layer:  # checked first: even on the meta device, building n_layer blocks takes time
        raise BenchError(f"{path}: the description says n_layer={config.n_layer}, the file holds {len(layers)} blocks")
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in GPT(config).state_dict().items()}
    if config.tie_weights:  # saved once, under either name
        expected.pop("lm_head.weight" if "wte.weight" in stored else "wte.weight", None)
    if stored != expected:
        differ = sorted(n for n in stored.keys() | expected.keys() if stored.get(n) != expected.get(n))
        raise BenchError(f"{path}: the stored tensors do not match the model its description gives (differ: "
                         f"{', '.join(differ[:4])})")


def _config(path: Path, text: str) -> GPTConfig:
    try:
        fields: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: metadata field 'config' is not JSON ({exc})") from None
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    if not isinstance(fields, dict) or not set(fields) <= known:
        unknown = sorted(set(fields) - known) if isinstance(fields, dict) else type(fields).__name__
        raise BenchError(f"{path}: metadata field 'config' has unknown entries: {unknown}")
    try:
        return GPTConfig(**fields)
    except (BenchError, TypeError) as exc:
        raise BenchError(f"{path}: metadata field 'config': {exc}") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
