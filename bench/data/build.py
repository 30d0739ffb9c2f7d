"""Encoding the split stream into a cache entry's token files: in parallel worker processes, and resumably.

The main process reads the source and splits it (:class:`~bench.data.sources.Splitter`), cutting the stream of
pieces into *parts* of about :data:`PART_BYTES` of text. Worker processes (a ``spawn`` pool, one tokenizer thread
each, so throughput grows with the number of processes) encode parts while the main process reads the next ones,
and each writes its part's token files and a record of its counts into ``<partial>/parts/``. The main process
appends completed parts to ``train.bin`` and ``val.bin`` strictly in part order, so the files are byte-identical
whatever the number of workers (and to encoding everything in this process): part boundaries depend only on the
text, and every piece is encoded on its own as before.

After each part is appended, ``progress.json`` records how many parts are in the files, the counts so far and the
splitter's state after that part. A build stopped by an error, Ctrl-C, SIGTERM or a kill keeps all of this; the next build
of the same key truncates the files to the recorded lengths, reuses any part completed beyond them, and continues
the split from the recorded state (for a streamed Hub dataset, its ``IterableDataset.state_dict``: no shard is
read again). Only the contiguous split of a single text file is re-read from its start to find its place.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from tokenizers import Tokenizer

from bench.data.shards import TRAIN_FILE, VAL_FILE, SplitInfo, TokenFile
from bench.data.sources import Piece, Splitter
from bench.data.tokenizer import LoadedTokenizer, describe, token_dtype
from bench.errors import BenchError
from bench.interrupt import terminate_as_interrupt

PART_BYTES = 8 * 2**20
"""Text per part: seconds of work for one worker (so progress and a resume lose little), large enough that the
per-part costs (pickling the text to a worker, two files, an fsync) stay small."""

BATCH_CHARS = 2**20
"""Characters encoded per ``encode_batch_fast`` call: bounded memory for the encodings."""

PIECE_CHARS = 2**16
"""Longer texts are encoded in pieces cut after a newline: a huge string is encoded on one thread, slower per
byte, into an encoding object of gigabytes."""

COPY_BUFFER = 16 * 2**20

PARTS_DIR = "parts"
PROGRESS_FILE = "progress.json"


class Reporter(Protocol):
    """What the build reports to (:class:`bench.data.prepare.PrepareProgress`)."""

    def phase(self, description: str, total_bytes: int | None, done_bytes: int = 0) -> None: ...

    def update(self, bytes_done: int, tokens_done: int) -> None: ...


class PartRecord(BaseModel):
    """A part's counts: written beside its token files by the worker that encoded it, read when it is merged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    train: SplitInfo
    val: SplitInfo
    val_log_prob: float
    val_log_prob_known: bool


class BuildProgress(BaseModel):
    """``progress.json``: parts ``0 .. merged-1`` are in ``train.bin``/``val.bin``; totals over them; where the
    split stands after them (None: re-read from the start, skipping what is merged)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    part_bytes: int
    """:data:`PART_BYTES` of the build: part numbers mean the same text only under the same value."""
    merged: int = 0
    train: SplitInfo = SplitInfo(documents=0, bytes=0, tokens=0)
    val: SplitInfo = SplitInfo(documents=0, bytes=0, tokens=0)
    val_log_prob: float = 0.0
    val_log_prob_known: bool = True
    state: dict[str, Any] | None = None

    def add(self, record: PartRecord, state: dict[str, Any] | None) -> BuildProgress:
        return BuildProgress(
            key=self.key,
            part_bytes=self.part_bytes,
            merged=self.merged + 1,
            train=_plus(self.train, record.train),
            val=_plus(self.val, record.val),
            val_log_prob=self.val_log_prob + record.val_log_prob,
            val_log_prob_known=self.val_log_prob_known and record.val_log_prob_known,
            state=state,
        )


def _plus(a: SplitInfo, b: SplitInfo) -> SplitInfo:
    return SplitInfo(documents=a.documents + b.documents, bytes=a.bytes + b.bytes, tokens=a.tokens + b.tokens)


@dataclass
class Part:
    """Consecutive pieces of the split stream, with the counts the reader knows and the splitter's state after."""

    index: int
    train: list[tuple[str, bool]] = field(default_factory=list)
    val: list[tuple[str, bool]] = field(default_factory=list)
    counts: dict[str, list[int]] = field(default_factory=lambda: {"train": [0, 0], "val": [0, 0]})
    val_log_prob: float = 0.0
    val_log_prob_known: bool = True
    state: dict[str, Any] | None = None
    nbytes: int = 0

    def add(self, piece: Piece) -> None:
        (self.val if piece.split == "val" else self.train).append((piece.text, piece.end))
        self.counts[piece.split][0] += piece.end
        self.counts[piece.split][1] += piece.nbytes
        self.nbytes += piece.nbytes
        if piece.split == "val":
            self.val_log_prob_known = self.val_log_prob_known and piece.log_prob is not None
            self.val_log_prob += piece.log_prob or 0.0

    def record(self, train_tokens: int, val_tokens: int) -> PartRecord:
        (train_docs, train_bytes), (val_docs, val_bytes) = self.counts["train"], self.counts["val"]
        return PartRecord(
            index=self.index,
            train=SplitInfo(documents=train_docs, bytes=train_bytes, tokens=train_tokens),
            val=SplitInfo(documents=val_docs, bytes=val_bytes, tokens=val_tokens),
            val_log_prob=self.val_log_prob,
            val_log_prob_known=self.val_log_prob_known,
        )


def parts(splitter: Splitter, first: int) -> Iterator[Part]:
    """The splitter's pieces cut into parts numbered from ``first``: a part closes after the piece that brings it
    to :data:`PART_BYTES` of text, so the cut depends on the text alone."""
    part = Part(first)
    for piece in splitter:
        part.add(piece)
        if part.nbytes >= PART_BYTES:
            part.state = splitter.state()
            yield part
            part = Part(part.index + 1)
    if part.nbytes:
        part.state = splitter.state()
        yield part


# --- encoding (in a worker process, or in this one) ---------------------------------------------------------------

_WORKER_TOKENIZER: LoadedTokenizer | None = None


def _init_worker(tokenizer_json: str) -> None:
    """A pool worker: one tokenizer thread (the pool supplies the parallelism), Ctrl-C left to the parent."""
    global _WORKER_TOKENIZER
    os.environ["RAYON_NUM_THREADS"] = "1"  # read when tokenizers starts its thread pool, at the first encode
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_TOKENIZER = describe(Tokenizer.from_str(tokenizer_json), "tokenizer")


def _cut(text: str) -> list[str]:
    """``text`` cut after a newline (or anywhere, lacking one) into pieces of at most ``PIECE_CHARS``."""
    pieces, start = [], 0
    while len(text) - start > PIECE_CHARS:
        cut = text.rfind("\n", start, start + PIECE_CHARS) + 1 or start + PIECE_CHARS
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:] if start else text)
    return pieces


def _encode(tokenizer: LoadedTokenizer, pieces: list[tuple[str, bool]], out: TokenFile) -> None:
    """Append the ids of ``pieces``, end-of-text after each that ends a document, in batches of BATCH_CHARS."""
    texts: list[str] = []
    ends: list[bool] = []
    chars = 0
    eos = [tokenizer.eos_id]

    def flush() -> None:
        encodings = tokenizer.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        ids = chain.from_iterable(chain(e.ids, eos) if end else e.ids for e, end in zip(encodings, ends))
        out.write(np.fromiter(ids, dtype=out.dtype))
        texts.clear()
        ends.clear()

    for text, end in pieces:
        cut = _cut(text)
        texts.extend(cut)
        ends.extend([False] * (len(cut) - 1) + [end])
        chars += len(text)
        if chars >= BATCH_CHARS:
            flush()
            chars = 0
    if texts:
        flush()


def part_path(parts_dir: Path, index: int, suffix: str) -> Path:
    return parts_dir / f"{index:08d}.{suffix}"


def encode_part(part: Part, parts_dir: Path, tokenizer: LoadedTokenizer | None = None) -> PartRecord:
    """Encode ``part`` into ``parts_dir`` (its two token files, then its record, each renamed into place whole)."""
    tokenizer = tokenizer or _WORKER_TOKENIZER
    assert tokenizer is not None, "encode_part runs in a pool worker or is given the tokenizer"
    dtype = token_dtype(tokenizer.vocab_size)
    tokens = {}
    for split, pieces in (("train", part.train), ("val", part.val)):
        final = part_path(parts_dir, part.index, f"{split}.bin")
        tmp = final.with_name(final.name + ".tmp")
        with TokenFile(tmp, dtype) as out:
            _encode(tokenizer, pieces, out)
        os.replace(tmp, final)
        tokens[split] = out.tokens
    record = part.record(tokens["train"], tokens["val"])
    _write_atomic(part_path(parts_dir, part.index, "json"), record.model_dump_json())
    return record


class _Done:
    """A part encoded already (in this process, or found on disk from an earlier build)."""

    def __init__(self, record: PartRecord):
        self.record = record

    def done(self) -> bool:
        return True

    def result(self) -> PartRecord:
        return self.record


# --- the build -----------------------------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_record(parts_dir: Path, index: int) -> PartRecord | None:
    """A part left complete by an earlier build (its record is written after its token files)."""
    path = part_path(parts_dir, index, "json")
    try:
        return PartRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None


def load_progress(folder: Path, key: str) -> BuildProgress:
    """The recorded progress of an earlier build in ``folder`` (or a fresh one)."""
    path = folder / PROGRESS_FILE
    if not path.exists():
        return BuildProgress(key=key, part_bytes=PART_BYTES)
    try:
        progress = BuildProgress.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise BenchError(
            f"{path}: unreadable build progress ({exc}); delete {folder} to prepare from scratch"
        ) from None
    if progress.key != key:
        raise BenchError(f"{path}: progress of another build (key {progress.key}); delete {folder}")
    return progress


def _open_merged(path: Path, length: int) -> BinaryIO:
    """``path`` opened for appending after its first ``length`` bytes (what progress.json vouches for)."""
    handle = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - the caller closes it (an ExitStack)
    size = handle.seek(0, os.SEEK_END)
    if size < length:
        handle.close()
        raise BenchError(f"{path}: {size:,} bytes, but the build progress records {length:,}; delete {path.parent}")
    handle.truncate(length)
    handle.seek(length)
    return handle


def default_workers(total_bytes: int) -> int:
    """Processes for a build of ``total_bytes``: ``$BENCH_PREPARE_WORKERS``, else one per core this process may
    use, but no more than there are parts; 0 (encode here, with the tokenizer's own threads) for a single part."""
    if env := os.environ.get("BENCH_PREPARE_WORKERS"):
        try:
            return max(int(env), 0)
        except ValueError:
            raise BenchError(f"BENCH_PREPARE_WORKERS: expected a number of processes, got {env!r}") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(cores, math.ceil(total_bytes / PART_BYTES))
    return workers if workers > 1 else 0


def _same_part_size(progress: BuildProgress, folder: Path, splitter: Splitter) -> BuildProgress:
    """Continue a build begun under another :data:`PART_BYTES` (an earlier version): its merged prefix stays
    valid (every piece is encoded on its own), but its unmerged parts are numbered the old way and are redone."""
    if progress.part_bytes == PART_BYTES:
        return progress
    if progress.merged and not splitter.resumable:
        raise BenchError(
            f"{folder}: begun by a version that cut parts of {progress.part_bytes:,} bytes (now {PART_BYTES:,}) "
            f"from a source that cannot continue from its state; delete {folder} to prepare from scratch"
        )
    for path in (folder / PARTS_DIR).iterdir():
        path.unlink()
    return progress.model_copy(update={"part_bytes": PART_BYTES})


def encode_splits(
    make_splitter: Callable[[dict[str, Any] | None], Splitter],
    tokenizer: LoadedTokenizer,
    folder: Path,
    key: str,
    workers: int,
    reporter: Reporter,
    total_bytes: int,
) -> BuildProgress:
    """Encode the split stream into ``folder``'s ``train.bin`` and ``val.bin``, continuing an earlier build there;
    returns the totals. ``workers`` processes encode (0: this process does, with the tokenizer's threads)."""
    progress = load_progress(folder, key)
    (folder / PARTS_DIR).mkdir(exist_ok=True)
    splitter = make_splitter(progress.state)
    progress = _same_part_size(progress, folder, splitter)
    first = progress.merged if progress.state is not None and splitter.resumable else 0
    resumed = f", resuming after {progress.merged} parts" if progress.merged else ""
    label = f"{workers} processes" if workers else "in this process"
    reporter.phase(f"tokenizing ({label}{resumed})", total_bytes, progress.train.bytes + progress.val.bytes)
    dtype = token_dtype(tokenizer.vocab_size)
    with ExitStack() as stack:
        train = stack.enter_context(_open_merged(folder / TRAIN_FILE, progress.train.tokens * dtype.itemsize))
        val = stack.enter_context(_open_merged(folder / VAL_FILE, progress.val.tokens * dtype.itemsize))
        pool = stack.enter_context(_pool(workers, tokenizer)) if workers else None
        try:
            stream = parts(splitter, first)
            return _encode_parts(stream, progress, folder, tokenizer, pool, workers, (train, val), reporter)
        except BrokenProcessPool:
            raise BenchError(
                f"a tokenizer worker process died (killed, or out of memory?) while preparing {folder.name}; the "
                f"completed parts are kept in {folder}: prepare again to continue (with fewer processes, "
                "BENCH_PREPARE_WORKERS, if memory is short)"
            ) from None


def _encode_parts(
    stream: Iterator[Part],
    progress: BuildProgress,
    folder: Path,
    tokenizer: LoadedTokenizer,
    pool: ProcessPoolExecutor | None,
    workers: int,
    outputs: tuple[BinaryIO, BinaryIO],
    reporter: Reporter,
) -> BuildProgress:
    """Encode the parts not done yet (at most ``2 * workers`` in flight, so reading stays ahead with bounded
    memory) and append each, oldest first, to the outputs as soon as it is ready."""
    parts_dir = folder / PARTS_DIR
    pending: deque[tuple[Part, Any]] = deque()
    in_flight = 2 * workers if workers else 1

    def merge_oldest() -> None:
        nonlocal progress
        part, handle = pending.popleft()
        record = handle.result()  # a worker that died (killed, out of memory) raises BrokenProcessPool here
        for split, out in zip(("train", "val"), outputs):
            with open(part_path(parts_dir, part.index, f"{split}.bin"), "rb") as source:
                shutil.copyfileobj(source, out, COPY_BUFFER)
            out.flush()
            os.fsync(out.fileno())
        progress = progress.add(record, part.state)
        _write_atomic(folder / PROGRESS_FILE, progress.model_dump_json())
        for suffix in ("train.bin", "val.bin", "json"):
            part_path(parts_dir, part.index, suffix).unlink(missing_ok=True)
        reporter.update(progress.train.bytes + progress.val.bytes, progress.train.tokens + progress.val.tokens)

    for part in stream:
        if part.index < progress.merged:
            continue  # re-read to find the place (a contiguous text split), already in the files
        if (record := _read_record(parts_dir, part.index)) is not None:
            pending.append((part, _Done(record)))
        elif pool is None:
            pending.append((part, _Done(encode_part(part, parts_dir, tokenizer))))
        else:
            work = replace(part, state=None)  # the worker needs the text, not the split's state
            pending.append((part, pool.submit(encode_part, work, parts_dir)))
        while pending and (len(pending) >= in_flight or pending[0][1].done()):
            merge_oldest()
    while pending:
        merge_oldest()
    if pool is not None:
        pool.shutdown(wait=True)
    return progress


@contextmanager
def _pool(workers: int, tokenizer: LoadedTokenizer) -> Iterator[ProcessPoolExecutor]:
    """``workers`` spawned encoding processes (spawn, not fork: the parent may hold tokenizer threads, Ray, torch),
    each loading the tokenizer once; stopped at once when the block ends, however it ends: SIGTERM too, which
    would otherwise end this process alone and leave the workers waiting for parts forever."""
    context = multiprocessing.get_context("spawn")
    with terminate_as_interrupt():
        pool = ProcessPoolExecutor(workers, context, _init_worker, (tokenizer.tokenizer.to_str(),))
        try:
            yield pool
        finally:
            _stop(pool)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down; after an error or Ctrl-C, stop its workers now rather than after their current part
    (what they finished is on disk and kept). The executor has no public way to do that before Python 3.14."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()
    pool.shutdown(wait=True)  # the pool's manager thread ends too: left running, it raced Python's exit handler


def finish(folder: Path) -> None:
    """Remove the build's bookkeeping from ``folder`` before it is published as a cache entry."""
    for path in (folder / PARTS_DIR).iterdir():
        path.unlink()
    (folder / PARTS_DIR).rmdir()
    (folder / PROGRESS_FILE).unlink(missing_ok=True)
