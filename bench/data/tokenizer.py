"""Tokenizers: raw bytes, byte-level BPE learned from the training split, or a given ``tokenizer.json``.

Each is a plain ``tokenizers.Tokenizer`` with an end-of-text special token, because the pipeline separates
documents with it and evaluation needs the same id. The byte tokenizer maps byte ``b`` to id ``b`` and the
end-of-text token to 256 (vocabulary 257), so a byte-level model's ids are the UTF-8 bytes themselves.
A learned BPE tokenizer is cached by the hash of the text it was trained on: workloads that share a training
sample share the tokenizer, and learning it again (minutes on large samples) is never needed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from bench.errors import BenchError
from bench.spec.workload import WorkloadSpec

EOS = "<|endoftext|>"
EOS_NAMES = (EOS, "<|end_of_text|>", "</s>", "<eos>", "[EOS]")
"""Special tokens recognised as end-of-text in a given tokenizer file, in order of preference."""

BPE_VERSION = 1
"""Bumped whenever the BPE recipe below changes, so that cached tokenizers learned the old way are not reused."""


@dataclass(frozen=True)
class LoadedTokenizer:
    tokenizer: Tokenizer
    eos_id: int
    vocab_size: int
    """One more than the largest id: the size a model's embedding table needs."""


def describe(tokenizer: Tokenizer, origin: str) -> LoadedTokenizer:
    """Find the end-of-text id and the vocabulary size; ``origin`` names the tokenizer in the error."""
    special = {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    eos_id = next((special[name] for name in EOS_NAMES if name in special), None)
    if eos_id is None:
        raise BenchError(
            f"{origin}: the tokenizer has no end-of-text special token (looked for {', '.join(EOS_NAMES)}; "
            f"special tokens present: {', '.join(special) or 'none'}); the pipeline needs one to separate documents"
        )
    vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
    return LoadedTokenizer(tokenizer, eos_id, vocab_size)


def token_dtype(vocab_size: int) -> np.dtype:
    """Little-endian uint16 when every id fits (half the disk and memory bandwidth), else uint32."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def load_tokenizer(path: Path) -> LoadedTokenizer:
    """Read a ``tokenizer.json`` (a prepared cache entry's, or a workload's own) with its end-of-text id."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except FileNotFoundError:
        raise BenchError(f"{path}: tokenizer file not found") from None
    except Exception as exc:  # noqa: BLE001 - the Rust side raises a bare Exception for malformed files
        raise BenchError(f"{path}: not a valid tokenizer.json: {exc}") from None
    return describe(tokenizer, str(path))


def _byte_to_char() -> dict[int, str]:
    """The byte-level alphabet's character for each byte: printable Latin-1 bytes stand for themselves, the
    other bytes (controls, space, a few others) are shifted to code points from 256 upward in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = (b for b in range(256) if b not in printable)
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + n) for n, b in enumerate(shifted)})
    return table


def byte_tokenizer() -> Tokenizer:
    """Ids are UTF-8 bytes (0-255) and the end-of-text token is 256: nothing learned, nothing cached."""
    tokenizer = Tokenizer(models.BPE(vocab={char: b for b, char in _byte_to_char().items()}, merges=[]))
    # Without the regex split each document is one pre-token, which is faster and, with no merges, the same ids.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOS])
    return tokenizer


def token_bytes(loaded: LoadedTokenizer) -> np.ndarray:
    """UTF-8 bytes each id stands for, 0 for special tokens: what bits per byte divide by.

    Exact for byte-level tokenizers (the byte and BPE kinds, GPT-style files), whose token strings spell one byte
    per character. Other tokenizers are measured by decoding each token alone, which can miss a word-initial
    space that some of them only restore in context.
    """
    tokenizer = loaded.tokenizer
    byte_of = (
        {char: b for b, char in _byte_to_char().items()} if isinstance(tokenizer.decoder, decoders.ByteLevel) else {}
    )
    added = tokenizer.get_added_tokens_decoder()
    sizes = np.zeros(loaded.vocab_size, dtype=np.int64)
    for token, i in tokenizer.get_vocab(with_added_tokens=True).items():
        if i in added and added[i].special:
            continue
        if byte_of and all(char in byte_of for char in token):
            sizes[i] = len(token)
        else:
            sizes[i] = len(tokenizer.decode([i]).encode("utf-8"))
    return sizes


def _sample_hash(texts: Sequence[str], vocab_size: int) -> str:
    digest = hashlib.sha256(json.dumps({"bpe": BPE_VERSION, "vocab_size": vocab_size}).encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def train_bpe(texts: Sequence[str], vocab_size: int, cache_root: Path) -> Tokenizer:
    """Learn a byte-level BPE of ``vocab_size`` tokens (end-of-text included, id 0) from ``texts``.

    The result is cached under ``cache_root/tokenizers`` by the hash of the texts and the settings. The vocabulary
    can come out smaller than asked when the sample has fewer distinct pieces to merge.
    """
    path = cache_root / "tokenizers" / f"bpe-{_sample_hash(texts, vocab_size)[:32]}.json"
    if path.exists():
        return load_tokenizer(path).tokenizer
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    save_tokenizer(tokenizer, path)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> None:
    """Write ``path`` whole or not at all, so a concurrent reader or a full disk never leaves a broken file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise BenchError(f"{path.parent}: cannot create the tokenizer cache: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(tokenizer.to_str())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise BenchError(
                f"{path.parent}: disk full while saving the tokenizer; free space or set BENCH_CACHE"
            ) from None
        raise BenchError(f"{path}: cannot write: {exc}") from None


GPT2_SPLIT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The pre-tokenization regex of ``pre_tokenizers.ByteLevel(use_regex=True)`` (GPT-2's), in tiktoken's spelling."""


def tiktoken_encoding(loaded: LoadedTokenizer) -> Any:
    """The same byte-level BPE as a ``tiktoken.Encoding`` (for measuring which encoder is faster per core).

    tiktoken can express a ``tokenizers`` BPE exactly when its pre-tokenizer is ByteLevel with GPT-2's regex and
    no prefix space, it has no normalizer, and every merge's result has a larger id than the merges before it: then
    ranking pairs by the id of the merged token (tiktoken) and by the merge's position (``tokenizers``) agree.
    What :func:`train_bpe` learns is such a tokenizer. Raises :class:`BenchError` saying why for any other one.
    """
    import tiktoken

    data = json.loads(loaded.tokenizer.to_str())
    model, pre = data.get("model") or {}, data.get("pre_tokenizer") or {}
    problems = [
        why
        for why, bad in (
            ("not a BPE model", model.get("type") != "BPE"),
            ("a normalizer", data.get("normalizer") is not None),
            (
                "no byte-level pre-tokenizer with GPT-2's regex",
                pre.get("type") != "ByteLevel" or not pre.get("use_regex", True),
            ),
            ("a prefix space", pre.get("add_prefix_space", False)),
            (
                "BPE dropout or word affixes",
                model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"),
            ),
        )
        if bad
    ]
    byte_of = {char: b for b, char in _byte_to_char().items()}
    vocab: dict[str, int] = model.get("vocab") or {}
    if any(char not in byte_of for token in vocab for char in token):
        problems.append("tokens outside the byte-level alphabet")
    if not problems:
        merges = [m.split(" ") if isinstance(m, str) else m for m in model.get("merges", [])]
        ids = [vocab.get(a + b, -1) for a, b in merges]
        if any(i < 0 for i in ids) or any(later <= earlier for earlier, later in zip(ids, ids[1:])):
            problems.append("merge results whose ids do not grow with the merge order")
    if problems:
        raise BenchError(f"tiktoken cannot express this tokenizer exactly: it has {', '.join(problems)}")
    ranks = {bytes(byte_of[char] for char in token): i for token, i in vocab.items()}
    special = {t.content: i for i, t in loaded.tokenizer.get_added_tokens_decoder().items() if t.special}
    return tiktoken.Encoding(name="bench-bpe", pat_str=GPT2_SPLIT, mergeable_ranks=ranks, special_tokens=special)


def workload_vocab_size(spec: WorkloadSpec, workload_dir: Path) -> int:
    """The vocabulary the workload's tokenizer gives, without preparing any data (a BPE's size is its spec's)."""
    tokenizer = spec.tokenizer
    if tokenizer.kind == "byte":
        return describe(byte_tokenizer(), "byte tokenizer").vocab_size
    if tokenizer.kind == "bpe":
        return tokenizer.vocab_size
    return load_tokenizer(workload_dir / tokenizer.path).vocab_size
