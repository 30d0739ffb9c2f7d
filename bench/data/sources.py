"""Where the documents come from, and which of them are training and which validation text.

A source turns a workload's ``data.source`` into :class:`Document` s: the built-in synthetic corpus, local text,
JSONL or parquet files, or a Hugging Face dataset streamed so that only what the budget needs is read.
:func:`split_documents` then assigns documents to the two splits (see its docstring for the rule) and enforces
the byte budgets. Every order here is deterministic: files are read in the order given, glob matches sorted.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import inspect
import json
import os
import re
import stat
from collections.abc import Iterator
from itertools import islice
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from bench.data.synthetic import SyntheticCorpus
from bench.errors import BenchError
from bench.spec.workload import HubSource, LocalSource, Source, SyntheticSource

SYNTHETIC_CHUNK = 8192
"""Synthetic documents generated per call: the corpus generates this many in lockstep, ~1.7x faster per byte
than chunks of 1024."""

PARQUET_BATCH = 1024
"""Rows read from a parquet file at a time: bounded memory whatever the file size."""

TEXT_BLOCK = 8 * 2**20
"""Bytes read at a time from a single plain-text stream."""

_SUFFIX_FORMAT = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}


@dataclass(frozen=True, slots=True)
class Document:
    text: str
    log_prob: float | None = None
    """Natural log-probability of ``text`` under the process that generated it; known only for synthetic text."""


def describe_source(source: Source) -> str:
    """A short name for messages: ``local files data/*.jsonl``."""
    if isinstance(source, SyntheticSource):
        return f"synthetic corpus (seed {source.seed})"
    if isinstance(source, LocalSource):
        return "local files " + ", ".join(source.paths)
    return f"hub dataset {source.path}" + (f" ({source.name})" if source.name else "") + f" split {source.split}"


# --- local files -----------------------------------------------------------------------------------------------


def resolve_files(source: LocalSource, workload_dir: Path) -> list[Path]:
    """The files named by ``source.paths``, relative to the workload's folder, globs expanded and sorted. Each
    must be a regular file (links followed): a FIFO or a device would be read differently every time, or block."""
    files: list[Path] = []
    for pattern in source.paths:
        full = workload_dir / Path(pattern).expanduser()
        if any(char in pattern for char in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True) if not Path(p).is_dir())
            if not matches:
                raise BenchError(f"data.source.paths: {pattern!r} matches no files (looked for {full})")
            files.extend(matches)
        elif full.is_dir():
            raise BenchError(f"data.source.paths: {full} is a folder; name files or a glob such as '{pattern}/*.jsonl'")
        else:
            files.append(full)
    for path in files:
        require_regular_file(path, "data.source.paths")
    return list(dict.fromkeys(files))


def require_regular_file(path: Path, field: str) -> None:
    """Raise a :class:`BenchError` naming ``field`` and ``path`` unless it is a regular file (links followed).

    Data and tokenizer files are read whole, hashed and read again: a FIFO would block or give other bytes each
    time, a device would never end. A message says which it is instead of 'not found'."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise BenchError(f"{field}: {path} not found") from None
    if stat.S_ISREG(mode):
        return
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kind = next((name for test, name in kinds if test(mode)), f"file type {stat.S_IFMT(mode):#o}")
    raise BenchError(f"{field}: {path} is not a regular file: {kind}")


def file_format(source: LocalSource, path: Path) -> str:
    if source.format is not None:
        return source.format
    try:
        return _SUFFIX_FORMAT[path.suffix.lower()]
    except KeyError:
        raise BenchError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; set data.source.format "
            "to text, jsonl or parquet"
        ) from None


def _text_documents(path: Path, documents: str) -> Iterator[str]:
    try:
        # newline="" keeps the text as it is in the file ("\r\n" stays) while still splitting lines on any ending.
        with open(path, encoding="utf-8", newline="") as handle:
            if documents == "file":
                yield handle.read()
            elif documents == "line":
                for line in handle:
                    yield line.rstrip("\r\n")
            else:
                paragraph: list[str] = []
                for line in handle:
                    if line.strip():
                        paragraph.append(line)
                    elif paragraph:
                        yield "".join(paragraph).rstrip("\r\n")
                        paragraph = []
                if paragraph:
                    yield "".join(paragraph).rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text ({exc.reason}); convert it or use another file") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from None


def _jsonl_documents(path: Path, field: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BenchError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
                if not isinstance(record, dict) or field not in record:
                    fields = ", ".join(record) if isinstance(record, dict) else f"a JSON {type(record).__name__}"
                    raise BenchError(
                        f"{path}:{lineno}: no field {field!r} (found: {fields}); set data.source.text_field"
                    )
                text = record[field]
                if text is None:
                    continue
                if not isinstance(text, str):
                    raise BenchError(f"{path}:{lineno}: field {field!r} holds {type(text).__name__}, not text")
                yield text
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from None


def _parquet_documents(path: Path, field: str) -> Iterator[str]:
    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise BenchError(f"{path}: not a readable parquet file: {exc}") from None
    schema = table.schema_arrow
    if field not in schema.names:
        raise BenchError(
            f"{path}: no column {field!r} (columns: {', '.join(schema.names)}); set data.source.text_field"
        )
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise BenchError(f"{path}: column {field!r} has type {kind}, not text")
    try:
        for batch in table.iter_batches(batch_size=PARQUET_BATCH, columns=[field]):
            yield from (text for text in batch.column(0).to_pylist() if text is not None)
    except (pa.ArrowException, OSError) as exc:
        raise BenchError(f"{path}: cannot read parquet data: {exc}") from None


# --- Hugging Face hub ------------------------------------------------------------------------------------------


def hub_path(source: HubSource, workload_dir: Path) -> str:
    """A folder next to the workload (or an absolute one) is read as a local dataset; anything else is a hub id."""
    folder = workload_dir / Path(source.path).expanduser()
    return str(folder) if folder.is_dir() else source.path


def _hub_error(source: HubSource, exc: Exception) -> BenchError:
    revision = f", revision {source.revision}" if source.revision else ""
    return BenchError(
        f"cannot read {describe_source(source)}{revision}: {type(exc).__name__}: {exc}\n"
        f"Without network access, pre-download it where there is (`hf download {source.path} --repo-type dataset`, "
        "then copy the Hugging Face cache, HF_HOME) or run `bench prepare` there and copy the data cache "
        "(BENCH_CACHE)."
    )


def _hub_documents(source: HubSource, workload_dir: Path, reader: DocumentReader) -> Iterator[str]:
    """Rows of the streamed dataset from ``reader``'s position; after each row the position is the dataset's own
    ``state_dict`` (shard and row within it), so a resumed read skips whole shards instead of re-downloading them."""
    import datasets  # imported here: a second of start-up that only hub sources need

    path = hub_path(source, workload_dir)
    revision = None if Path(path).is_dir() else (reader.revision or source.revision)
    try:
        dataset = datasets.load_dataset(path, source.name, split=source.split, streaming=True, revision=revision)
        if reader.start.get("state") is not None:
            dataset.load_state_dict(reader.start["state"])
        rows = iter(dataset)
    except Exception as exc:  # noqa: BLE001 - the library raises many unrelated types (HTTP, file, config, offline)
        raise _hub_error(source, exc) from None
    reader.dataset = dataset  # its state_dict is the position: taken when asked for, not copied after every row
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - a connection lost mid-stream surfaces here
            raise _hub_error(source, exc) from None
        if source.text_field not in row:
            raise BenchError(
                f"{describe_source(source)}: no field {source.text_field!r} (fields: {', '.join(row)}); "
                "set data.source.text_field"
            )
        text = row[source.text_field]
        if text is not None:
            yield text


def resolve_revision(source: HubSource, workload_dir: Path, cache_root: Path) -> str | None:
    """The commit that ``source.revision`` (a branch, tag or commit) names, or None when it cannot be known.

    Asked of the Hub unless offline; then the Hugging Face cache's own ``refs`` (what an offline read would use);
    then the commit recorded the last time this cache resolved it. A local dataset folder has no revision (its
    files identify it). Every commit found is recorded under ``cache_root/hub-revisions``, so an offline run keys
    the data as the online one did.
    """
    if Path(hub_path(source, workload_dir)).is_dir():
        return None
    if re.fullmatch(r"[0-9a-f]{40}", source.revision):
        return source.revision
    record = cache_root / "hub-revisions" / (
        hashlib.sha256(json.dumps([source.path, source.revision]).encode()).hexdigest()[:32] + ".json"
    )
    commit = _hub_commit(source) or _hf_cache_commit(source) or _recorded_commit(record)
    if commit is not None:
        _record_commit(record, source, commit)
    return commit


def _hub_commit(source: HubSource) -> str | None:
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return None
    try:
        return HfApi().dataset_info(source.path, revision=source.revision, timeout=10).sha
    except Exception:  # noqa: BLE001 - no network, unknown repository, rate limit: all mean "not known online"
        return None


def _recorded_commit(record: Path) -> str | None:
    try:
        return json.loads(record.read_text(encoding="utf-8"))["commit"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _hf_cache_commit(source: HubSource) -> str | None:
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"datasets--{source.path.replace('/', '--')}" / "refs" / source.revision
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _record_commit(record: Path, source: HubSource, commit: str) -> None:
    if _recorded_commit(record) == commit:
        return
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"path": source.path, "revision": source.revision, "commit": commit}) + "\n")
        os.replace(tmp, record)
    except OSError:
        pass  # only a convenience for later offline runs; the data itself is keyed by the commit either way


# --- all sources -----------------------------------------------------------------------------------------------


class DocumentReader:
    """Every document of a source in a fixed order (empty and whitespace-only documents skipped), and after each
    document its :attr:`position`: a JSON-able dict from which a new reader continues with the next document.

    Positions: the synthetic corpus's next document index; for local files the file and the documents read in
    it (earlier files are not opened again); for a streamed dataset its ``IterableDataset.state_dict``.
    """

    def __init__(self, source: Source, workload_dir: Path, start: dict[str, Any] | None = None,
                 revision: str | None = None):
        self.source = source
        self.workload_dir = workload_dir
        self.start: dict[str, Any] = dict(start or {})
        self.revision = revision
        """For a hub source, the resolved commit to read (else ``source.revision``)."""
        self.dataset: Any = None
        """The streamed Hub dataset being read, whose ``state_dict`` is the position."""
        self._position: dict[str, Any] = dict(self.start)

    @property
    def position(self) -> dict[str, Any]:
        """Where the next document starts: pass it as ``start`` to a new reader to continue from there."""
        if self.dataset is not None:
            return {"state": self.dataset.state_dict()}
        return self._position

    def __iter__(self) -> Iterator[Document]:
        if isinstance(self.source, SyntheticSource):
            docs = self._synthetic(self.source)
        elif isinstance(self.source, LocalSource):
            docs = (Document(text) for text in self._local(self.source))
        else:
            docs = (Document(text) for text in _hub_documents(self.source, self.workload_dir, self))
        return (doc for doc in docs if doc.text and not doc.text.isspace())

    def _synthetic(self, source: SyntheticSource) -> Iterator[Document]:
        corpus = SyntheticCorpus(source.seed)
        start = self.start.get("next", 0)
        while True:
            for offset, doc in enumerate(corpus.documents(start, SYNTHETIC_CHUNK), 1):
                self._position = {"next": start + offset}
                yield Document(doc.text, doc.log_prob)
            start += SYNTHETIC_CHUNK

    def _local(self, source: LocalSource) -> Iterator[str]:
        first, skip = self.start.get("file", 0), self.start.get("document", 0)
        files = resolve_files(source, self.workload_dir)
        for index, path in enumerate(files[first:], first):
            kind = file_format(source, path)
            if kind == "text":
                texts = _text_documents(path, source.documents)
            elif kind == "jsonl":
                texts = _jsonl_documents(path, source.text_field)
            else:
                texts = _parquet_documents(path, source.text_field)
            for count, text in enumerate(islice(texts, skip if index == first else 0, None),
                                         (skip if index == first else 0) + 1):
                self._position = {"file": index, "document": count}
                yield text


def fingerprint(source: Source, workload_dir: Path, commit: str | None = None) -> dict[str, Any]:
    """What identifies the source's content for the data cache, cheaply: the spec, plus for files their resolved
    path, size and modification time, for the synthetic corpus the hash of the generator's code (so that a
    changed generator never reuses shards of the old corpus, without generating anything on a cache hit), and for
    a hub dataset the commit its revision resolved to (:func:`resolve_revision`), when known."""
    identity: dict[str, Any] = {"spec": source.model_dump(mode="json")}
    if isinstance(source, SyntheticSource):
        digest = hashlib.sha256()
        for path in sorted(Path(inspect.getfile(SyntheticCorpus)).parent.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        identity["generator"] = digest.hexdigest()
    elif isinstance(source, LocalSource):
        identity["files"] = [_file_identity(p) for p in resolve_files(source, workload_dir)]
    else:
        folder = Path(hub_path(source, workload_dir))
        if folder.is_dir():
            identity["files"] = [_file_identity(p) for p in sorted(folder.rglob("*")) if p.is_file()]
        else:
            identity["commit"] = commit
    return identity


def _file_identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


# --- the train/validation split --------------------------------------------------------------------------------

Split = Literal["train", "val"]


class Piece(NamedTuple):
    """Text assigned to a split. ``end`` marks the end of a document, after which an end-of-text token follows;
    only a single plain-text stream is cut into several pieces. ``log_prob`` is the document's, when known."""

    split: Split
    text: str
    nbytes: int
    end: bool
    log_prob: float | None


def split_documents(source: Source, workload_dir: Path, train_bytes: int, val_bytes: int) -> Iterator[Piece]:
    """Assign the source's documents to validation and training, stopping once both budgets are met.

    A document is a validation candidate iff the blake2b hash of its text falls below a threshold that makes
    candidates twice the validation share of the budgets, ``2 * val_bytes / (train_bytes + val_bytes)``.
    Candidates become validation text until ``val_bytes`` are collected (the last document whole, so that its
    log-probability stays exact), which typically happens about halfway through the text read; every other
    document is training text until ``train_bytes`` are collected (the last document cut to fit). Because the
    validation split fills first, nothing is thrown away but copies of validation documents (skipped, so no
    validation text is ever trained on), and the source is read only as far as the budgets need. The split is a
    pure function of the source and the two budgets.

    A single plain-text file read as one document (``documents: file``) is split contiguously instead: the last
    ``val_bytes`` are validation text and training text is read from the start.
    """
    return iter(Splitter(source, workload_dir, train_bytes, val_bytes))


class Splitter:
    """:func:`split_documents` that can stop and continue: after any piece, :meth:`state` is a JSON-able dict
    from which ``Splitter(..., state=it)`` yields exactly the pieces that would have followed.

    The state is the reader's position plus the split's own: the budgets still to fill, the counts for the
    "not enough text" message and the hashes of the validation documents (so that their copies are still skipped).
    A single text file split contiguously cannot be continued (``state`` is None): it is read again from the
    start, which is only a file read.
    """

    def __init__(self, source: Source, workload_dir: Path, train_bytes: int, val_bytes: int,
                 state: dict[str, Any] | None = None, revision: str | None = None):
        self.source, self.workload_dir = source, workload_dir
        self.train_bytes, self.val_bytes = train_bytes, val_bytes
        self._contiguous: Path | None = None
        if isinstance(source, LocalSource) and source.documents == "file":
            files = resolve_files(source, workload_dir)
            if len(files) == 1 and file_format(source, files[0]) == "text":
                self._contiguous = files[0]
        state = state if self._contiguous is None else None
        self._need_train = state["need_train"] if state else train_bytes
        self._need_val = state["need_val"] if state else val_bytes
        self._documents = state["documents"] if state else 0
        self._total = state["total"] if state else 0
        self._val_hashes = {bytes.fromhex(h) for h in state["val_hashes"]} if state else set()
        self._reader = DocumentReader(source, workload_dir, state["reader"] if state else None, revision)

    @property
    def resumable(self) -> bool:
        return self._contiguous is None

    def state(self) -> dict[str, Any] | None:
        """Where the split stands after the last piece yielded (None for a contiguous text file)."""
        if self._contiguous is not None:
            return None
        return {
            "reader": self._reader.position,
            "need_train": self._need_train,
            "need_val": self._need_val,
            "documents": self._documents,
            "total": self._total,
            "val_hashes": sorted(h.hex() for h in self._val_hashes),
        }

    def __iter__(self) -> Iterator[Piece]:
        if self._contiguous is not None:
            yield from _split_contiguous(self._contiguous, self.train_bytes, self.val_bytes)
            return
        if self._need_train <= 0 and self._need_val <= 0:
            return
        threshold = min(2 * self.val_bytes * 2**64 // (self.train_bytes + self.val_bytes), 2**64)
        for doc in self._reader:
            data = doc.text.encode("utf-8")
            self._documents += 1
            self._total += len(data)
            digest = hashlib.blake2b(data, digest_size=8).digest()
            if digest in self._val_hashes:
                continue
            if self._need_val > 0 and int.from_bytes(digest, "little") < threshold:
                self._val_hashes.add(digest)
                self._need_val -= len(data)
                yield Piece("val", doc.text, len(data), True, doc.log_prob)
            elif self._need_train > 0:
                if len(data) <= self._need_train:
                    self._need_train -= len(data)
                    yield Piece("train", doc.text, len(data), True, doc.log_prob)
                else:
                    text = data[: self._need_train].decode("utf-8", errors="ignore")  # drops only a cut character
                    self._need_train = 0
                    if text:
                        yield Piece("train", text, len(text.encode("utf-8")), True, None)
            if self._need_train <= 0 and self._need_val <= 0:
                return
        self._short()

    def _short(self) -> None:
        if self._documents == 0:
            raise BenchError(f"{describe_source(self.source)}: no documents (the source is empty)")
        need_train, need_val = self._need_train, self._need_val
        short = "training" if need_train > 0 else "validation"
        got = self.train_bytes - need_train if need_train > 0 else self.val_bytes - need_val
        raise BenchError(
            f"{describe_source(self.source)} has {self._total:,} bytes of text in {self._documents:,} documents, "
            f"not enough for data.train_bytes={self.train_bytes:,} plus data.val_bytes={self.val_bytes:,}: the "
            f"{short} split got only {got:,} bytes. Lower the budgets or add data."
        )


def _char_boundary(handle: BinaryIO, position: int, forward: bool) -> int:
    """The nearest UTF-8 character start at or after (or before) ``position``."""
    handle.seek(max(position - 3, 0))
    window = handle.read(7)
    offset = position - max(position - 3, 0)
    step = 1 if forward else -1
    while 0 < offset < len(window) and window[offset] & 0xC0 == 0x80:  # a continuation byte 10xxxxxx
        offset += step
    return max(position - 3, 0) + offset


def _split_contiguous(path: Path, train_bytes: int, val_bytes: int) -> Iterator[Piece]:
    """Validation is the file's tail, training its head, each one document; the head is streamed in pieces
    cut after a newline, so the file never has to fit in memory."""
    size = path.stat().st_size
    if size == 0:
        raise BenchError(f"{path}: no documents (the file is empty)")
    if train_bytes + val_bytes > size:
        raise BenchError(
            f"{path} has {size:,} bytes of text, not enough for data.train_bytes={train_bytes:,} plus "
            f"data.val_bytes={val_bytes:,}; lower the budgets or add data"
        )
    try:
        with open(path, "rb") as handle:
            val_start = _char_boundary(handle, size - val_bytes, forward=True)
            train_end = _char_boundary(handle, train_bytes, forward=False)
            handle.seek(val_start)
            data = handle.read()
            yield Piece("val", data.decode("utf-8"), len(data), True, None)
            handle.seek(0)
            decoder = codecs.getincrementaldecoder("utf-8")()
            remaining, carry = train_end, ""
            while remaining > 0:
                block = handle.read(min(TEXT_BLOCK, remaining))
                if not block:
                    raise BenchError(f"{path}: the file shrank while it was being read")
                remaining -= len(block)
                text = carry + decoder.decode(block, final=remaining == 0)
                cut = len(text) if remaining == 0 else (text.rfind("\n") + 1 or len(text))
                text, carry = text[:cut], text[cut:]
                yield Piece("train", text, len(text.encode("utf-8")), remaining == 0, None)
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text ({exc.reason}); convert it or use another file") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read: {exc}") from None
