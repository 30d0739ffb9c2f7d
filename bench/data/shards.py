"""The data cache on disk: one folder per prepared dataset, either complete or absent.

Layout: ``<root>/shards/<key>/`` holds ``train.bin`` and ``val.bin`` (flat little-endian uint16 or uint32 token
ids, every document followed by the end-of-text id), the ``tokenizer.json`` that produced them and ``meta.json``
(:class:`ShardMeta`: dtype, lengths, counts, checksum). Raw arrays rather than ``.npy`` because the length is not
known until the last document is encoded; they are opened as read-only memory maps, so a trial's memory does not
grow with the dataset. An entry is built in ``<root>/partial/<key>/`` under a lock and renamed into ``shards/``
when complete, so readers never see a half-written one; an interrupted or failed build leaves its completed
parts there, and the next build of the same key continues from them (see :mod:`bench.data.build`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import platformdirs
from pydantic import BaseModel, ConfigDict, ValidationError

from bench.errors import BenchError

PIPELINE_VERSION = 1
"""Part of every cache key: bump it whenever a change to the pipeline would change the tokens it produces."""

TRAIN_FILE = "train.bin"
VAL_FILE = "val.bin"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"


def cache_root(cache_dir: Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$BENCH_CACHE``, else the user's cache folder for pretrain-bench."""
    if cache_dir is not None:
        return Path(cache_dir)
    if env := os.environ.get("BENCH_CACHE"):
        return Path(env)
    return Path(platformdirs.user_cache_dir("pretrain-bench"))


class SplitInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    documents: int
    bytes: int
    tokens: int


class ShardMeta(BaseModel):
    """What a cache entry holds and how it was made; returned with the data and recorded in results."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    key: str
    inputs: dict[str, Any]
    """Everything the key hashes: source identity, budgets, tokenizer identity, pipeline version."""
    dtype: Literal["uint16", "uint32"]
    vocab_size: int
    eos_id: int
    train: SplitInfo
    val: SplitInfo
    val_checksum: str
    """SHA-256 of the validation ids as little-endian uint32 (whatever the stored dtype): equal checksums,
    comparable validation losses."""
    train_sha256: str | None = None
    """SHA-256 of ``train.bin``'s bytes as stored; None in entries prepared before it was recorded (their
    training ids are still range-checked)."""
    val_bytes_per_token: float
    entropy_floor_bpb: float | None
    """Bits per byte of the validation text under its true distribution, when the source knows it (synthetic)."""
    created_at: datetime
    build_seconds: float
    """Wall time of the build that completed the entry (a resumed build counts only its own run)."""
    source_revision: str | None = None
    """The commit of a Hugging Face dataset the tokens were read from (None for other sources, or when it could
    not be resolved offline); also part of ``inputs``, hence of the key."""
    workers: int = 0
    """Encoding processes of the build that completed the entry (0: encoded in the preparing process)."""


def token_checksum(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(tokens, dtype="<u4").tobytes()).hexdigest()


class DamagedCache(BenchError):
    """A cached token file no longer holds what ``bench prepare`` wrote: changed bytes, or ids outside the
    vocabulary. Not the recipe's doing; the entry must be rebuilt."""

    def __init__(self, path: Path, problem: str):
        self.path = path
        super().__init__(
            f"damaged cache: {path}: {problem}; delete {path.parent} and re-run `bench prepare` to rebuild it"
        )


VERIFY_CHUNK_TOKENS = 2**24
"""Tokens checked per step when verifying a training file: bounded memory (32-64 MB) for a file of any size."""


def check_ids(tokens: np.ndarray, vocab_size: int, path: Path, offset: int = 0) -> None:
    """Raise :class:`DamagedCache` if any id in ``tokens`` (``offset`` ids into ``path``) is ``>= vocab_size``.

    Such an id would otherwise fail inside the recipe's embedding lookup and read as the recipe's fault."""
    if len(tokens) and int(tokens.max()) >= vocab_size:
        at = int(np.argmax(tokens >= vocab_size))
        raise DamagedCache(
            path,
            f"token id {int(tokens[at])} at position {offset + at:,} lies outside the vocabulary of {vocab_size:,} ids",
        )


def read_validation(folder: Path, meta: ShardMeta) -> np.ndarray:
    """The validation ids, read afresh from ``val.bin`` and verified against ``meta`` (length, id range,
    checksum), as a read-only in-memory array: what is scored is exactly what was hashed."""
    path = folder / VAL_FILE
    try:
        tokens = np.fromfile(path, dtype=np.dtype(meta.dtype).newbyteorder("<"))
    except OSError as exc:
        raise DamagedCache(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(tokens) != meta.val.tokens:
        raise DamagedCache(path, f"holds {len(tokens):,} tokens, {meta.val.tokens:,} were written")
    check_ids(tokens, meta.vocab_size, path)
    if token_checksum(tokens) != meta.val_checksum:
        raise DamagedCache(path, f"its checksum no longer matches the one {META_FILE} recorded when it was prepared")
    tokens.flags.writeable = False
    return tokens


def verify_training(tokens: np.ndarray, meta: ShardMeta, path: Path) -> None:
    """Check the training ids (a memory map of ``path``) chunk by chunk: id range always, and the file's
    SHA-256 when ``meta`` recorded one."""
    digest = hashlib.sha256()
    for start in range(0, len(tokens), VERIFY_CHUNK_TOKENS):
        chunk = np.ascontiguousarray(tokens[start : start + VERIFY_CHUNK_TOKENS])
        check_ids(chunk, meta.vocab_size, path, start)
        digest.update(memoryview(chunk).cast("B"))
    if meta.train_sha256 is not None and digest.hexdigest() != meta.train_sha256:
        raise DamagedCache(path, f"its SHA-256 no longer matches the one {META_FILE} recorded when it was prepared")


class TokenFile:
    """A raw token file being appended to (a context manager). Fsynced when the block completes, so that the
    rename that publishes the entry cannot outrun the data on a crash."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path = path
        self.dtype = dtype
        self.tokens = 0
        self._handle = open(path, "wb")  # noqa: SIM115 - closed by __exit__: this class is the context manager

    def __enter__(self) -> TokenFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        with self._handle:
            if exc_type is None:
                self._handle.flush()
                os.fsync(self._handle.fileno())

    def write(self, tokens: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(tokens, dtype=self.dtype)).cast("B")
        self._handle.write(data)
        self.tokens += len(tokens)


def file_sha256(path: Path, chunk_bytes: int = 1 << 24) -> str:
    """SHA-256 of a token file's bytes, read in chunks: recorded so that later readers can tell the file changed
    (:func:`verify_training` hashes the same bytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def open_tokens(path: Path, dtype: str, count: int) -> np.ndarray:
    """A read-only memory map of ``count`` ids; a file of the wrong size means the entry was damaged."""
    itemsize = np.dtype(dtype).itemsize
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BenchError(
            f"{path}: cannot open the cached tokens: {exc}; delete {path.parent} to prepare again"
        ) from None
    if size != count * itemsize or count == 0:
        raise BenchError(
            f"{path}: damaged cache entry ({size:,} bytes, expected {count * itemsize:,}); "
            f"delete {path.parent} to prepare again"
        )
    return np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=(count,))


def write_meta(folder: Path, meta: ShardMeta) -> None:
    with open(folder / META_FILE, "w", encoding="utf-8") as handle:
        handle.write(meta.model_dump_json(indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_meta(folder: Path) -> ShardMeta:
    path = folder / META_FILE
    try:
        return ShardMeta.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise BenchError(f"{path}: unreadable cache metadata ({exc}); delete {folder} to prepare again") from None


PARTIAL_DIR = "partial"
"""Folder of ``cache_root`` holding unfinished builds, one per key, and their lock files."""


def partial_folder(entry: Path) -> Path:
    """Where the build of ``entry`` (``<root>/shards/<key>``) keeps its completed parts until it is published."""
    return entry.parent.parent / PARTIAL_DIR / entry.name


def disk_full(root: Path, partial: Path) -> BenchError:
    return BenchError(
        f"{root}: disk full while preparing data; the completed parts are kept in {partial}. Free space there (or "
        "set BENCH_CACHE to a folder on a disk with room for the token shards) and prepare again to continue."
    )


@contextmanager
def building(entry: Path) -> Iterator[Path | None]:
    """Lock the build of ``entry`` and yield its partial folder; publish it as ``entry`` when the block completes.

    The folder persists across failures (Ctrl-C included), so the next build continues where this one stopped;
    a full disk becomes a :class:`BenchError` naming the cache. A second process building the same key waits for
    the lock (an advisory ``flock``: one machine, or a file system that supports it) and then gets None, because
    the entry is complete: equal keys mean equal contents.
    """
    partial = partial_folder(entry)
    root = entry.parent.parent
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock = open(partial.with_name(partial.name + ".lock"), "a")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(root, partial) from None
        raise BenchError(f"{partial.parent}: cannot create the data cache: {exc}") from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks (some network mounts): build unlocked, as before
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        if (entry / META_FILE).exists():
            yield None
            return
        try:
            partial.mkdir(exist_ok=True)
            yield partial
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(root, partial) from None
            raise
        try:
            os.rename(partial, entry)
        except OSError as exc:
            raise BenchError(f"{entry}: cannot publish the prepared data from {partial}: {exc}") from None
    finally:
        lock.close()  # releases the lock
