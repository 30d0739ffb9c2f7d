"""Turning numbers into the short strings every leaderboard view shows, so Markdown, HTML and terminal agree."""

from __future__ import annotations

import math

from bench.board.stats import Estimate

MISSING = "–"


def si(value: float | None) -> str:
    """``39_812_352 -> '39.8M'``; counts of parameters, tokens and throughputs."""
    if value is None:
        return MISSING
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def estimate(value: Estimate | None, digits: int = 3) -> str:
    """``'3.412 ± 0.011'``; a single seed has no interval and shows the value alone."""
    if value is None:
        return MISSING
    if value.half_width is None:
        return f"{value.mean:.{digits}f}"
    return f"{value.mean:.{digits}f} ± {value.half_width:.{digits}f}"


def duration_estimate(value: Estimate) -> str:
    """Seconds as ``'45.2 ± 1.3 s'`` below two minutes and ``'12.3 ± 0.4 min'`` above."""
    scale, unit = (1.0, "s") if value.mean < 120 else (60.0, "min")
    shown = Estimate(value.mean / scale, None if value.half_width is None else value.half_width / scale, value.n)
    return f"{estimate(shown, 1)} {unit}"


def duration_range(low: float, high: float) -> str:
    """Seconds as ``'15–30 s'`` below two minutes and ``'40.0–45.0 min'`` above: a range, for a time known only
    between two evaluations (whole seconds are already finer than the evaluations that measure them)."""
    if high < 120:
        return f"{low:.0f}–{high:.0f} s"
    return f"{low / 60:.1f}–{high / 60:.1f} min"


def ratio_range(low: float, high: float) -> str:
    """``'1.2–3.3x'``, two significant digits each; ``'≥2.3x'`` when there is no upper bound."""
    if math.isinf(high):
        return f"≥{low:.2g}x"
    return f"{low:.2g}–{high:.2g}x"


def size(n_bytes: float | None) -> str:
    """``1_099_436_032 -> '1.1 GB'``: memory in decimal units, three significant digits."""
    if n_bytes is None:
        return MISSING
    for scale, suffix in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {suffix}"
    return f"{n_bytes:.0f} B"


def energy(kwh: float) -> str:
    """``0.454 -> '454 Wh'``, ``12.5 -> '12.5 kWh'``: small runs stay readable next to large ones."""
    return f"{kwh:.3g} kWh" if kwh >= 1 else f"{1000 * kwh:.3g} Wh"


def p_value(p: float | None) -> str:
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def signed(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:+.{digits}f}"


def interval(low: float | None, high: float | None, digits: int = 3) -> str:
    return MISSING if low is None or high is None else f"[{low:.{digits}f}, {high:.{digits}f}]"
