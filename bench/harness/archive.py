"""What a ``torch.save`` archive of a model carries, read without unpickling it.

A model that is not the shared GPT leaves its box as a ``torch.save`` archive: a zip whose ``data.pkl`` is the
pickled object graph and whose ``data/N`` entries are the raw bytes of every tensor storage that graph references,
each once (shared and tied tensors share a storage), at any depth (a model hiding a second network in a list of
lists still stores its weights there). Unpickling would run code; :func:`census` instead reads the pickle's opcodes
(``pickletools``) for the persistent ids torch writes for storages, ``('storage', torch.<Dtype>Storage, key,
location, numel)``, and checks each against the zip entry's size. The result is the trusted count of everything the
model can carry into its scoring process: elements and bytes by dtype, and the size of what it carries outside
tensors (the pickle itself), which a model could otherwise use to smuggle weights past the count.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass, field

import torch

MAX_PICKLE_BYTES = 1 << 20
"""A model's pickle (its structure: module classes, attribute names, small Python values) is kilobytes; one of more
than this carries data outside its tensors, which the size limit could not count."""

_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_INTS = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG"}
_PUTS = {"BINPUT", "LONG_BINPUT", "PUT"}
_GETS = {"BINGET", "LONG_BINGET", "GET"}


class ArchiveError(ValueError):
    """The archive is not a torch.save archive whose storages can be counted."""


@dataclass(frozen=True)
class Census:
    elements: int
    bytes: int
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    pickle_bytes: int = 0
    storages: int = 0


_STORAGE_DTYPES = {
    "Float": torch.float32, "Double": torch.float64, "Half": torch.float16, "BFloat16": torch.bfloat16,
    "Long": torch.int64, "Int": torch.int32, "Short": torch.int16, "Char": torch.int8, "Byte": torch.uint8,
    "Bool": torch.bool, "ComplexFloat": torch.complex64, "ComplexDouble": torch.complex128, "Untyped": torch.uint8,
    "QInt8": torch.qint8, "QUInt8": torch.quint8, "QInt32": torch.qint32,
}
"""The storage types torch.save names (``torch.FloatStorage`` ...) and their element types; an untyped storage
counts its bytes."""


def _dtype_of(storage_type: str) -> torch.dtype:
    """``torch.FloatStorage`` -> ``torch.float32``."""
    name = storage_type.split(".")[-1].removesuffix("Storage")
    if name not in _STORAGE_DTYPES:
        raise ArchiveError(f"unknown storage type {storage_type!r}")
    return _STORAGE_DTYPES[name]


def census(data: bytes) -> Census:
    """Count the storages of a ``torch.save`` archive (see the module docstring); raises :class:`ArchiveError`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"not a torch.save archive: {exc}") from None
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise ArchiveError("a torch.save archive holds exactly one data.pkl")
    prefix = pickles[0].removesuffix("data.pkl")
    info = archive.getinfo(pickles[0])
    if info.file_size > MAX_PICKLE_BYTES:
        raise ArchiveError(f"the model carries {info.file_size:,} bytes of pickled objects besides its tensors "
                           f"(at most {MAX_PICKLE_BYTES:,}): data outside tensors would escape the size count")
    storages = _storage_ids(archive.read(pickles[0]))
    elements = total = 0
    by_dtype: dict[str, int] = {}
    for key, (storage_type, numel) in sorted(storages.items()):
        dtype = _dtype_of(storage_type)
        size = numel * torch.empty((), dtype=dtype).element_size()
        entry = f"{prefix}data/{key}"
        if entry not in names or archive.getinfo(entry).file_size != size:
            raise ArchiveError(f"storage {key} claims {numel:,} elements of {dtype} but its data is "
                               f"{archive.getinfo(entry).file_size if entry in names else 'missing'}")
        elements += numel
        total += size
        by_dtype[str(dtype).removeprefix("torch.")] = by_dtype.get(str(dtype).removeprefix("torch."), 0) + size
    stored = {n for n in names if n.startswith(f"{prefix}data/")}
    extra = stored - {f"{prefix}data/{key}" for key in storages}
    if extra:
        raise ArchiveError(f"the archive holds data no tensor references ({len(extra)} entries)")
    return Census(elements, total, by_dtype, info.file_size, len(storages))


def _storage_ids(pickle: bytes) -> dict[str, tuple[str, int]]:
    """``{key: (storage type, numel)}`` from the persistent ids in a torch.save pickle, by reading its opcodes."""
    memo: dict[int, object] = {}
    marks: list[int] = []
    stack: list[object] = []
    found: dict[str, tuple[str, int]] = {}
    try:
        for op, arg, _ in pickletools.genops(pickle):
            name = op.name
            if name in _STRINGS or name in _INTS:
                stack.append(arg)
            elif name == "GLOBAL":
                stack.append(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL":
                module, attr = (stack.pop(), stack.pop())[::-1] if len(stack) >= 2 else ("?", "?")
                stack.append(f"{module}.{attr}")
            elif name == "MARK":
                marks.append(len(stack))
            elif name == "TUPLE":
                start = marks.pop() if marks else 0
                items = tuple(stack[start:])
                del stack[start:]
                stack.append(items)
            elif name in _PUTS or name == "MEMOIZE":
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1] if stack else None
            elif name in _GETS:
                stack.append(memo.get(int(arg)))
            elif name == "BINPERSID":
                pid = stack.pop() if stack else None
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                    raise ArchiveError(f"a persistent id that is not a storage: {pid!r}")
                _, storage_type, key, _, numel = pid
                if not isinstance(key, str) or not isinstance(numel, int) or not isinstance(storage_type, str):
                    raise ArchiveError(f"a storage id of an unexpected shape: {pid!r}")
                found[key] = (storage_type, numel)
                stack.append(None)
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                size = int(name[-1])
                items = tuple(stack[-size:])
                del stack[-size:]
                stack.append(items)
            elif name == "STOP":
                break
            else:  # the rest of the graph is not needed to count storages: only its effect on the stack is
                before = op.stack_before
                if pickletools.markobject in before:
                    del stack[marks.pop() if marks else 0:]
                else:
                    del stack[len(stack) - min(len(before), len(stack)):]
                stack.extend([None] * len(op.stack_after))
    except ArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle
        raise ArchiveError(f"the archive's pickle does not read: {exc}") from None
    return found
