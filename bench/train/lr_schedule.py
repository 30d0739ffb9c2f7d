"""Learning-rate multipliers as functions of budget progress ``p`` in [0, 1].

Under a fixed-time budget the number of steps is unknown until the clock runs out, so a schedule written in steps
would have to guess it. Writing it in progress (``ctx.progress()``: the spent fraction of the budget) makes the
same schedule end where the budget ends on any hardware. Warmup and decay lengths are fractions of the budget.

Every schedule returns a multiplier of the peak learning rate; warmup rises linearly from 0 at ``p=0``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal

from bench.errors import BenchError


def _warmup(p: float, warmup: float) -> float:
    return p / warmup if p < warmup else 1.0


def constant(p: float, *, warmup: float = 0.0) -> float:
    """Warmup, then the peak until the end."""
    return _warmup(min(max(p, 0.0), 1.0), warmup)


def cosine(p: float, *, warmup: float = 0.0, final: float = 0.1) -> float:
    """Warmup, then a half cosine from the peak down to ``final`` x peak at the end of the budget."""
    p = min(max(p, 0.0), 1.0)
    if p < warmup:
        return _warmup(p, warmup)
    q = (p - warmup) / (1.0 - warmup)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * q))


def wsd(
    p: float,
    *,
    warmup: float = 0.0,
    decay: float = 0.2,
    shape: Literal["linear", "1-sqrt"] = "linear",
    final: float = 0.0,
) -> float:
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM): the peak until the last ``decay`` fraction of the budget,
    then down to ``final`` x peak, either linearly or as ``1 - sqrt`` (Hägele et al. 2024, which found it better)."""
    p = min(max(p, 0.0), 1.0)
    if p < warmup:
        return _warmup(p, warmup)
    start = 1.0 - decay
    if p <= start:
        return 1.0
    q = (p - start) / decay
    fall = q if shape == "linear" else math.sqrt(q)
    return final + (1.0 - final) * (1.0 - fall)


_SCHEDULES: dict[str, Callable[..., float]] = {"constant": constant, "cosine": cosine, "wsd": wsd}


_BOUNDS = {"warmup": "[0, 1)", "final": "[0, 1]", "decay": "(0, 1]"}


def _check(name: str, options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key == "shape":
            if value not in ("linear", "1-sqrt"):
                raise BenchError(f"schedule '{name}': shape must be 'linear' or '1-sqrt', got {value!r}")
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        inside = number and {"warmup": 0 <= value < 1, "final": 0 <= value <= 1, "decay": 0 < value <= 1}[key]
        if not inside:
            raise BenchError(f"schedule '{name}': {key} must be a fraction in {_BOUNDS[key]}, got {value!r}")
    if name == "wsd":
        chosen = {**wsd.__kwdefaults__, **options}
        if chosen["warmup"] + chosen["decay"] > 1:
            raise BenchError(
                f"schedule 'wsd': warmup + decay must not exceed 1, got {chosen['warmup']} + {chosen['decay']}"
            )


def make_schedule(name: str, **options: Any) -> Callable[[float], float]:
    """The schedule ``name`` ('constant', 'cosine' or 'wsd') with its keyword ``options`` bound.

    Options: ``warmup`` (all), ``final`` (cosine, wsd), ``decay`` and ``shape`` ('linear' | '1-sqrt') (wsd).
    """
    if name not in _SCHEDULES:
        raise BenchError(f"unknown schedule {name!r}; choose one of {sorted(_SCHEDULES)}")
    accepted = set(_SCHEDULES[name].__kwdefaults__)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BenchError(f"schedule '{name}' has no option {unknown}; it accepts {sorted(accepted)}")
    _check(name, options)
    return functools.partial(_SCHEDULES[name], **options)
