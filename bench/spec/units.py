"""Human units for numbers people type into YAML: ``40M`` parameters, ``10GB`` of text, ``45m`` of training.

Each parser accepts either a plain number or a string with a suffix, and raises ``ValueError`` with a message
that says what was given and what is allowed; Pydantic turns that into a field error naming the field.
The ``Annotated`` types at the bottom are what the spec models use.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_NUMBER = r"(?P<num>[0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"

_COUNT_SUFFIXES = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_BYTE_SUFFIXES = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
_DURATION_PARTS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def _split(text: str, suffixes: dict[str, int | float], what: str, example: str) -> tuple[float, str]:
    match = re.fullmatch(_NUMBER + r"\s*(?P<suffix>[A-Za-z]*)", text.strip())
    if not match or match["suffix"] not in suffixes:
        allowed = ", ".join(s for s in suffixes if s) or "none"
        raise ValueError(f"expected {what} like {example!r} (suffixes: {allowed}), got {text!r}")
    return float(match["num"].replace("_", "")), match["suffix"]


def _non_negative(value: float, text: object, what: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a non-negative finite number, got {text!r}")


def parse_count(value: object) -> int:
    """Parse a count such as ``40M``, ``1.5B``, ``250k``, ``3e17`` or ``40_000_000`` into an int."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count like '40M', got {value!r}")
    if isinstance(value, (int, float)):
        number, scale = float(value), 1
    elif isinstance(value, str):
        number, suffix = _split(value, _COUNT_SUFFIXES, "a count", "40M")
        scale = _COUNT_SUFFIXES[suffix]
    else:
        raise ValueError(f"expected a count like '40M', got {value!r}")
    _non_negative(number, value, "a count")
    return int(round(number * scale))


def parse_bytes(value: object) -> int:
    """Parse a size such as ``10GB`` (decimal), ``512MiB`` (binary) or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '10GB', got {value!r}")
    if isinstance(value, (int, float)):
        number, scale = float(value), 1
    elif isinstance(value, str):
        number, suffix = _split(value, _BYTE_SUFFIXES, "a size", "10GB")
        scale = _BYTE_SUFFIXES[suffix]
    else:
        raise ValueError(f"expected a size like '10GB', got {value!r}")
    _non_negative(number, value, "a size")
    return int(round(number * scale))


def parse_duration(value: object) -> float:
    """Parse a duration such as ``45m``, ``90s``, ``2h``, ``1h30m`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '45m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)\s*([hms])", text)
        if not parts or re.sub(r"[0-9]+(?:\.[0-9]+)?\s*[hms]\s*", "", text) or len({u for _, u in parts}) != len(parts):
            raise ValueError(f"expected a duration like '45m', '90s', '2h' or '1h30m', got {value!r}")
        seconds = sum(float(n) * _DURATION_PARTS[u] for n, u in parts)
    else:
        raise ValueError(f"expected a duration like '45m', got {value!r}")
    _non_negative(seconds, value, "a duration")
    return seconds


def format_count(n: float) -> str:
    """``40_000_000`` -> ``40M``: the inverse of :func:`parse_count` for display."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def format_bytes(n: float) -> str:
    """``10**10`` -> ``10GB`` (decimal units, as datasets are usually sized)."""
    for suffix, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{int(n)}B"


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m``; sub-minute values keep one decimal."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text


Count = Annotated[int, BeforeValidator(parse_count)]
"""A non-negative integer written as ``40M``, ``1.5B`` ..."""

ByteSize = Annotated[int, BeforeValidator(parse_bytes)]
"""A number of bytes written as ``10GB``, ``500MB``, ``1GiB`` ..."""

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A number of seconds written as ``45m``, ``90s``, ``2h`` ..."""
