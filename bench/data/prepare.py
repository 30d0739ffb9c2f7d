"""``prepare``: from a workload's data and tokenizer specs to cached token shards, in one pass over the source.

The source is read once (twice for a BPE tokenizer not yet learned: first its training sample), split into
training and validation text, encoded by a pool of worker processes while it is read (:mod:`bench.data.build`),
and written to a cache entry whose key hashes everything the tokens depend on, a Hub dataset's resolved commit
included. An interrupted build keeps its completed parts and the next ``prepare`` continues it. A second
``prepare`` of the same workload is a cache hit that opens the memory maps and reads nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from bench.data.build import BuildProgress, default_workers, encode_splits, finish
from bench.data.shards import (
    META_FILE,
    PIPELINE_VERSION,
    TOKENIZER_FILE,
    TRAIN_FILE,
    VAL_FILE,
    ShardMeta,
    building,
    file_sha256,
    cache_root,
    open_tokens,
    read_meta,
    read_validation,
    token_checksum,
    verify_training,
    write_meta,
)
from bench.data.sources import Splitter, fingerprint, require_regular_file, resolve_revision, split_documents
from bench.data.stream import Order, TokenStream
from bench.data.tokenizer import (
    BPE_VERSION,
    LoadedTokenizer,
    byte_tokenizer,
    describe,
    load_tokenizer,
    save_tokenizer,
    token_bytes,
    token_dtype,
    train_bpe,
)
from bench.errors import BenchError
from bench.results.schema import ValidationData
from bench.spec.units import format_bytes, format_count
from bench.spec.workload import BpeTokenizerSpec, ByteTokenizerSpec, FileTokenizerSpec, HubSource, WorkloadSpec


class PrepareProgress:
    """Receives progress from :func:`prepare`. This base class shows nothing; :class:`RichPrepareProgress` draws."""

    def phase(self, description: str, total_bytes: int | None, done_bytes: int = 0) -> None:
        """A new phase begins; ``total_bytes`` is None when its length is unknown; ``done_bytes`` were done by an
        earlier, interrupted build (so a rate and ETA count only this run's work)."""

    def update(self, bytes_done: int, tokens_done: int) -> None:
        """Text bytes processed and tokens written so far in the current phase."""


class RichPrepareProgress(PrepareProgress):
    """A progress bar per phase with bytes, tokens, MB/s and ETA. Use as a context manager around ``prepare``."""

    def __init__(self, console: Console | None = None):
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[tokens]} tokens"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: Any = None

    def __enter__(self) -> RichPrepareProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def phase(self, description: str, total_bytes: int | None, done_bytes: int = 0) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, total=task.completed)
        self._task = self._progress.add_task(description, total=total_bytes, completed=done_bytes, tokens="-")

    def update(self, bytes_done: int, tokens_done: int) -> None:
        self._progress.update(
            self._task, completed=bytes_done, tokens=format_count(tokens_done) if tokens_done else "-"
        )


@dataclass(frozen=True)
class PreparedData:
    """A prepared dataset: the training and validation token arrays (read-only memory maps) and their metadata.

    Pickling sends only the cache path and reopens the maps on the other side, so a Ray worker on the same
    machine (or sharing the cache folder) never receives the arrays themselves.
    """

    cache_path: Path
    cache_hit: bool
    meta: ShardMeta
    train_tokens: np.ndarray

    @classmethod
    def load(cls, cache_path: Path, cache_hit: bool = True) -> PreparedData:
        """Open a complete cache entry (file sizes checked; contents are verified when read, see below)."""
        meta = read_meta(cache_path)
        train = open_tokens(cache_path / TRAIN_FILE, meta.dtype, meta.train.tokens)
        open_tokens(cache_path / VAL_FILE, meta.dtype, meta.val.tokens)
        return cls(cache_path, cache_hit, meta, train)

    @property
    def val_tokens(self) -> np.ndarray:
        """The validation ids, re-read and verified on every access (see :meth:`verify_validation`)."""
        return self.verify_validation()

    def verify_validation(self) -> np.ndarray:
        """Re-read ``val.bin``, check it against the length, vocabulary and checksum recorded at prepare time,
        and return it (read-only, in memory). Raises :class:`~bench.data.shards.DamagedCache` naming the file.

        Done before every evaluation run, since it is cheap (megabytes): a validation file overwritten after
        ``bench prepare``, even with valid ids, would otherwise be scored while the result records the original
        checksum."""
        return read_validation(self.cache_path, self.meta)

    def verify_training(self) -> None:
        """Check the training ids once for this object (:meth:`stream` calls it): every id inside the
        vocabulary, and the file's recorded SHA-256. Raises :class:`~bench.data.shards.DamagedCache`."""
        self._training_verified  # noqa: B018 - computed once, cached

    @cached_property
    def _training_verified(self) -> bool:
        verify_training(self.train_tokens, self.meta, self.cache_path / TRAIN_FILE)
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        return (PreparedData.load, (self.cache_path, self.cache_hit))

    @property
    def vocab_size(self) -> int:
        return self.meta.vocab_size

    @property
    def eos_id(self) -> int:
        return self.meta.eos_id

    @property
    def source_revision(self) -> str | None:
        """The Hugging Face dataset commit the tokens came from (None for other sources or when unresolved)."""
        return self.meta.source_revision

    @property
    def tokenizer_path(self) -> Path:
        return self.cache_path / TOKENIZER_FILE

    def tokenizer(self) -> LoadedTokenizer:
        """The tokenizer that produced these tokens (loaded on demand: most trials never need it)."""
        return load_tokenizer(self.tokenizer_path)

    @cached_property
    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes each token id stands for (0 for end-of-text), for bits per byte of any window."""
        return token_bytes(self.tokenizer())

    def stream(self, seed: int, order: Order = "random", rank: int = 0, world_size: int = 1) -> TokenStream:
        """The batch stream over the training split, the only data a recipe receives (see :class:`TokenStream`).

        The training file is verified first (once per object), so a damaged cache fails here, as the cache's
        fault, rather than inside the recipe."""
        self.verify_training()
        return TokenStream(self.train_tokens, seed, order, rank, world_size)

    def validation(self) -> ValidationData:
        """The validation set's identity as a result records it."""
        meta = self.meta
        return ValidationData(
            checksum=meta.val_checksum,
            tokens=meta.val.tokens,
            bytes=meta.val.bytes,
            bytes_per_token=meta.val_bytes_per_token,
            entropy_floor_bpb=meta.entropy_floor_bpb,
            source_revision=meta.source_revision,
            data_key=meta.key,
        )


def _resolve(workload_dir: Path, path: str) -> Path:
    return workload_dir / Path(path).expanduser()


def cache_inputs(spec: WorkloadSpec, workload_dir: Path, commit: str | None = None) -> dict[str, Any]:
    """Everything the tokens depend on. A learned BPE tokenizer is a function of the source and budgets already
    listed, so its spec stands for its content; a tokenizer file is identified by the hash of its bytes; a Hub
    dataset by the ``commit`` its revision resolved to (:func:`~bench.data.sources.resolve_revision`)."""
    tokenizer: dict[str, Any] = spec.tokenizer.model_dump(mode="json")
    if isinstance(spec.tokenizer, BpeTokenizerSpec):
        tokenizer["bpe_version"] = BPE_VERSION
    elif isinstance(spec.tokenizer, FileTokenizerSpec):
        path = _resolve(workload_dir, spec.tokenizer.path)
        require_regular_file(path, "tokenizer.path")
        try:
            tokenizer = {"kind": "file", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        except OSError as exc:
            raise BenchError(f"tokenizer.path: cannot read {path}: {exc.strerror or exc}") from None
    return {
        "pipeline": PIPELINE_VERSION,
        "source": fingerprint(spec.data.source, workload_dir, commit),
        "train_bytes": spec.data.train_bytes,
        "val_bytes": spec.data.val_bytes,
        "tokenizer": tokenizer,
    }


def prepare(
    spec: WorkloadSpec,
    workload_dir: Path,
    cache_dir: Path | None = None,
    progress: PrepareProgress | None = None,
    workers: int | None = None,
    commit: str | None = None,
) -> PreparedData:
    """Tokenize the workload's data into the cache (``cache_dir``, else ``$BENCH_CACHE``, else the user cache)
    unless an identical entry is there already, and open it. Relative paths are relative to ``workload_dir``.

    ``workers`` encoding processes (default :func:`~bench.data.build.default_workers`: one per core); the tokens
    do not depend on it. A build that fails or is interrupted keeps its completed parts in the cache's
    ``partial/`` folder and the next call continues it. ``commit``: the Hub dataset's commit as resolved already
    (``PreparedData.source_revision`` of the driver's ``prepare``), so that the trials of one run open the data the
    driver prepared even if the branch moves meanwhile, and ask the Hub nothing.
    """
    progress = progress or PrepareProgress()
    root = cache_root(cache_dir)
    source = spec.data.source
    if commit is None and isinstance(source, HubSource):
        commit = resolve_revision(source, workload_dir, root)
    inputs = cache_inputs(spec, workload_dir, commit)
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]
    entry = root / "shards" / key
    if (entry / META_FILE).exists():
        return PreparedData.load(entry, cache_hit=True)
    started = time.perf_counter()
    total = spec.data.train_bytes + spec.data.val_bytes
    workers = default_workers(total) if workers is None else workers
    with building(entry) as folder:
        if folder is None:  # another process completed it while this one waited
            return PreparedData.load(entry, cache_hit=True)
        tokenizer = _tokenizer(spec, workload_dir, root, progress, folder)

        def splitter(state: dict[str, Any] | None) -> Splitter:
            return Splitter(source, workload_dir, spec.data.train_bytes, spec.data.val_bytes, state, commit)

        totals = encode_splits(splitter, tokenizer, folder, key, workers, progress, total)
        write_meta(
            folder,
            ShardMeta(
                version=PIPELINE_VERSION,
                key=key,
                inputs=inputs,
                dtype=token_dtype(tokenizer.vocab_size).name,
                vocab_size=tokenizer.vocab_size,
                eos_id=tokenizer.eos_id,
                created_at=datetime.now(timezone.utc),
                build_seconds=time.perf_counter() - started,
                source_revision=commit,
                workers=workers,
                **_counts(folder, totals, token_dtype(tokenizer.vocab_size)),
            ),
        )
        finish(folder)
    return PreparedData.load(entry, cache_hit=False)


def _counts(folder: Path, totals: BuildProgress, dtype: np.dtype) -> dict[str, Any]:
    """The counts and checksum for :class:`ShardMeta` from the build's totals, checked against the files."""
    val_tokens = np.fromfile(folder / VAL_FILE, dtype=dtype)
    train_size = (folder / TRAIN_FILE).stat().st_size
    if len(val_tokens) != totals.val.tokens or train_size != totals.train.tokens * dtype.itemsize:
        raise BenchError(f"{folder}: token files disagree with the build's records; delete {folder} and prepare again")
    floor = -totals.val_log_prob / math.log(2) / totals.val.bytes if totals.val_log_prob_known else None
    return {
        "train": totals.train,
        "val": totals.val,
        "val_checksum": token_checksum(val_tokens),
        "train_sha256": file_sha256(folder / TRAIN_FILE),
        "val_bytes_per_token": totals.val.bytes / totals.val.tokens,
        "entropy_floor_bpb": floor,
    }


def _tokenizer(
    spec: WorkloadSpec, workload_dir: Path, root: Path, progress: PrepareProgress, folder: Path
) -> LoadedTokenizer:
    """The build's tokenizer, saved into ``folder``; a resumed build reuses the one saved there."""
    saved = folder / TOKENIZER_FILE
    if saved.exists():
        return load_tokenizer(saved)
    tokenizer = _make_tokenizer(spec, workload_dir, root, progress)
    save_tokenizer(tokenizer.tokenizer, saved)
    return tokenizer


def _make_tokenizer(spec: WorkloadSpec, workload_dir: Path, root: Path, progress: PrepareProgress) -> LoadedTokenizer:
    if isinstance(spec.tokenizer, ByteTokenizerSpec):
        return describe(byte_tokenizer(), "byte tokenizer")
    if isinstance(spec.tokenizer, FileTokenizerSpec):
        return load_tokenizer(_resolve(workload_dir, spec.tokenizer.path))
    limit = min(spec.tokenizer.train_sample_bytes, spec.data.train_bytes)
    progress.phase("reading the BPE sample", limit)
    sample: list[str] = []
    collected = 0
    for piece in split_documents(spec.data.source, workload_dir, spec.data.train_bytes, spec.data.val_bytes):
        if piece.split != "train":
            continue
        room = limit - collected
        sample.append(piece.text if piece.nbytes <= room else _cut_utf8(piece.text, room))
        collected += min(piece.nbytes, room)
        progress.update(collected, 0)
        if collected >= limit:
            break
    progress.phase(f"learning a {spec.tokenizer.vocab_size}-token BPE", None)
    return describe(train_bpe(sample, spec.tokenizer.vocab_size, root), "BPE tokenizer")


def _cut_utf8(text: str, nbytes: int) -> str:
    """The longest prefix of ``text`` within ``nbytes`` UTF-8 bytes."""
    return text.encode("utf-8")[:nbytes].decode("utf-8", errors="ignore")


def format_summary(data: PreparedData) -> str:
    """One line for ``bench prepare``: documents, tokens, bytes per token, entropy floor, where the cache is."""
    meta = data.meta
    floor = f", entropy floor {meta.entropy_floor_bpb:.3f} bits/byte" if meta.entropy_floor_bpb is not None else ""
    return (
        f"train {format_bytes(meta.train.bytes)} / val {format_bytes(meta.val.bytes)} of text: "
        f"{meta.train.documents:,} / {meta.val.documents:,} documents, "
        f"{format_count(meta.train.tokens)} / {format_count(meta.val.tokens)} tokens, "
        f"{meta.val_bytes_per_token:.2f} bytes/token (vocab {meta.vocab_size:,}){floor}; "
        f"{'cache hit' if data.cache_hit else 'cached'} at {data.cache_path}"
    )
