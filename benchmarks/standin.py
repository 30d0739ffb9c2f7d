"""A synthetic stand-in of a GPU workload, for running its configurations where its data is not (a CPU test, a GPU
machine without network).

The stand-in keeps what decides a model's shapes, memory and speed: the vocabulary size (so the embedding and the LM
head are the real ones), the evaluation context (the training sequence length of every baseline) and the model
limit. It replaces the rest: the data is the built-in synthetic corpus (no download of 10-100 GB of FineWeb), the
tokenizer maps bytes to ids 0-255 and pads its vocabulary with tokens that never occur (no BPE to train), the
hardware class is one this machine has, and the budget is a few batches or seconds. It keeps the base workload's
name by default, so a submission's entry for that workload applies to it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from bench.data.tokenizer import EOS, _byte_to_char, save_tokenizer
from bench.spec.workload import WorkloadSpec

TOKENIZER_FILE = "standin-tokenizer.json"


def padded_byte_tokenizer(vocab_size: int) -> Tokenizer:
    """Bytes as ids 0-255, then tokens that never occur (no merge produces them) up to ``vocab_size - 1``, then the
    end-of-text token: a tokenizer with exactly ``vocab_size`` ids that encodes any text, learned from nothing."""
    alphabet = [char for _, char in sorted(_byte_to_char().items())]
    vocab = {char: byte for byte, char in enumerate(alphabet)}
    pairs = (first + second for first in alphabet for second in alphabet)
    for index, token in zip(range(256, vocab_size - 1), pairs):
        vocab[token] = index
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOS])
    return tokenizer


def standin_spec(
    base: WorkloadSpec, *, hardware: str, budget: dict[str, Any], name: str | None = None,
    train_bytes: str = "2MB", val_bytes: str = "128KB", eval_tokens: int = 8192, eval_every: str = "1h",
) -> dict[str, Any]:
    """The stand-in of ``base`` as a workload mapping (what its YAML holds): ``budget`` gives its limits (e.g.
    ``{"tokens": 3072}`` or ``{"wall_clock": "20s"}``), ``hardware`` its class; no downstream tasks, no generation."""
    vocab_size = base.tokenizer.vocab_size if base.tokenizer.kind == "bpe" else None
    if vocab_size is None:
        raise ValueError(f"workload {base.name!r}: a stand-in copies a BPE vocabulary size, and this one has a "
                         f"{base.tokenizer.kind} tokenizer")
    return {
        "name": name or base.name,
        "description": f"Synthetic stand-in of {base.name}: its vocabulary size ({vocab_size}), context "
                       f"({base.eval.seq_len}) and model limit, the built-in synthetic corpus, {hardware}.",
        "data": {"source": {"kind": "synthetic", "seed": 0}, "train_bytes": train_bytes, "val_bytes": val_bytes},
        "tokenizer": {"kind": "file", "path": TOKENIZER_FILE},
        "model": base.model.model_dump(mode="json", exclude_none=True),
        "budget": {**budget, "hardware": hardware},
        "target": base.target.model_dump(mode="json"),
        "eval": {"every": eval_every, "early": 0, "seq_len": base.eval.seq_len, "tokens": eval_tokens},
        "seeds": 1,
        "reference": base.reference,
    }


def write_standin(folder: Path, base: WorkloadSpec, **settings: Any) -> Path:
    """Write the stand-in of ``base`` (see :func:`standin_spec` for ``settings``) and its tokenizer into ``folder``;
    returns the workload file, named after the stand-in as workload files must be."""
    spec = standin_spec(base, **settings)
    folder.mkdir(parents=True, exist_ok=True)
    save_tokenizer(padded_byte_tokenizer(base.tokenizer.vocab_size), folder / TOKENIZER_FILE)
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
