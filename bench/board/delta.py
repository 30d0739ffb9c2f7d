"""One entry against a reference entry: the difference in a metric and the speedup in time-to-target, with CIs.

``bench compare`` and the leaderboard's headline columns both state "B vs A" through these functions, so the
terminal and the page can never disagree. Differences are ``B - A`` (Welch's t-test, its 95% interval and
two-sided p-value); the speedup is ``mean TTT(A) / mean TTT(B)`` (above 1: B reaches the target sooner), with a
95% interval from the delta method on the log ratio (see :func:`bench.board.stats.ratio_ci`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.board import format as fmt
from bench.board.rank import Entry
from bench.board.stats import Difference, Ratio, ratio_ci, welch


def time_to_target(entry: Entry) -> list[float]:
    """Training seconds to the target of every scored run that reached it."""
    return [r.time_to_target_s for r in entry.scored if r.target_reached and r.time_to_target_s is not None]


@dataclass(frozen=True)
class Versus:
    """``b`` against the reference ``a``: the metric's difference, and the speedup (None unless both reached)."""

    difference: Difference
    speedup: Ratio | None


def versus(a: Entry, b: Entry, metric: str) -> Versus:
    """Compare ``b`` with the reference ``a`` on ``metric`` over their scored seeds (both must have one)."""
    ttt_a, ttt_b = time_to_target(a), time_to_target(b)
    speedup = ratio_ci(ttt_a, ttt_b) if ttt_a and ttt_b else None
    return Versus(welch(a.values(metric), b.values(metric)), speedup)


def difference_text(d: Difference, p: bool = True) -> str:
    """``'-0.052 [-0.081, -0.023] p=0.004'``; with one seed on either side, ``'-0.052 (untested, n=1)'``."""
    if d.p is None:
        return f"{fmt.signed(d.value)} (untested, n=1)"
    shown = f"{fmt.signed(d.value)} {fmt.interval(d.low, d.high)}"
    if not p:
        return shown
    value = fmt.p_value(d.p)
    return f"{shown} p{value if value.startswith('<') else '=' + value}"


def speedup_text(r: Ratio | None) -> str:
    """``'1.42x [1.10, 1.83]'``; ``'–'`` when either side never reached the target."""
    if r is None:
        return fmt.MISSING
    if r.low is None or r.high is None:
        return f"{r.value:.2f}x (n=1)"
    return f"{r.value:.2f}x {fmt.interval(r.low, r.high, 2)}"
