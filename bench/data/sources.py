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
from collections.abc import Iterator
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
    """The files named by ``source.paths``, relative to the workload's folder, globs expanded and sorted."""
    files: list[Path] = []
    for pattern in source.paths:
        full = workload_dir / Path(pattern).expanduser()
        if any(char in pattern for char in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())
            if not matches:
                raise BenchError(f"data.source.paths: {pattern!r} matches no files (looked for {full})")
            files.extend(matches)
        elif full.is_dir():
            raise BenchError(f"data.source.paths: {full} is a folder; name files or a glob such as '{pattern}/*.jsonl'")
        elif not full.is_file():
            raise BenchError(f"data.source.paths: {full} not found")
        else:
            files.append(full)
    return list(dict.fromkeys(files))


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


def _local_documents(source: LocalSource, workload_dir: Path) -> Iterator[str]:
    for path in resolve_files(source, workload_dir):
        kind = file_format(source, path)
        if kind == "text":
            yield from _text_documents(path, source.documents)
        elif kind == "jsonl":
            yield from _jsonl_documents(path, source.text_field)
        else:
            yield from _parquet_documents(path, source.text_field)


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


def _hub_documents(source: HubSource, workload_dir: Path) -> Iterator[str]:
    import datasets  # imported here: a second of start-up that only hub sources need

    try:
        dataset = datasets.load_dataset(
            hub_path(source, workload_dir), source.name, split=source.split, streaming=True, revision=source.revision
        )
        rows = iter(dataset)
    except Exception as exc:  # noqa: BLE001 - the library raises many unrelated types (HTTP, file, config, offline)
        raise _hub_error(source, exc) from None
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


# --- all sources -----------------------------------------------------------------------------------------------


def _synthetic_documents(source: SyntheticSource) -> Iterator[Document]:
    corpus = SyntheticCorpus(source.seed)
    start = 0
    while True:
        for doc in corpus.documents(start, SYNTHETIC_CHUNK):
            yield Document(doc.text, doc.log_prob)
        start += SYNTHETIC_CHUNK


def iter_documents(source: Source, workload_dir: Path) -> Iterator[Document]:
    """Every document of the source in a fixed order; empty and whitespace-only documents are skipped."""
    if isinstance(source, SyntheticSource):
        docs = _synthetic_documents(source)
    elif isinstance(source, LocalSource):
        docs = (Document(text) for text in _local_documents(source, workload_dir))
    else:
        docs = (Document(text) for text in _hub_documents(source, workload_dir))
    return (doc for doc in docs if doc.text and not doc.text.isspace())


def fingerprint(source: Source, workload_dir: Path) -> dict[str, Any]:
    """What identifies the source's content for the data cache, cheaply: the spec, plus for files their resolved
    path, size and modification time, and for the synthetic corpus the hash of the generator's code (so that a
    changed generator never reuses shards of the old corpus, without generating anything on a cache hit)."""
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
    if isinstance(source, LocalSource) and source.documents == "file":
        files = resolve_files(source, workload_dir)
        if len(files) == 1 and file_format(source, files[0]) == "text":
            yield from _split_contiguous(files[0], train_bytes, val_bytes)
            return
    threshold = min(2 * val_bytes * 2**64 // (train_bytes + val_bytes), 2**64)
    val_hashes: set[bytes] = set()
    need_train, need_val = train_bytes, val_bytes
    documents = total = 0
    for doc in iter_documents(source, workload_dir):
        data = doc.text.encode("utf-8")
        documents += 1
        total += len(data)
        digest = hashlib.blake2b(data, digest_size=8).digest()
        if digest in val_hashes:
            continue
        if need_val > 0 and int.from_bytes(digest, "little") < threshold:
            val_hashes.add(digest)
            need_val -= len(data)
            yield Piece("val", doc.text, len(data), True, doc.log_prob)
        elif need_train > 0:
            if len(data) <= need_train:
                need_train -= len(data)
                yield Piece("train", doc.text, len(data), True, doc.log_prob)
            else:
                text = data[:need_train].decode("utf-8", errors="ignore")  # drops only a character cut in two
                need_train = 0
                if text:
                    yield Piece("train", text, len(text.encode("utf-8")), True, None)
        if need_train <= 0 and need_val <= 0:
            return
    if documents == 0:
        raise BenchError(f"{describe_source(source)}: no documents (the source is empty)")
    short = "training" if need_train > 0 else "validation"
    got = train_bytes - need_train if need_train > 0 else val_bytes - need_val
    raise BenchError(
        f"{describe_source(source)} has {total:,} bytes of text in {documents:,} documents, not enough for "
        f"data.train_bytes={train_bytes:,} plus data.val_bytes={val_bytes:,}: the {short} split got only "
        f"{got:,} bytes. Lower the budgets or add data."
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
