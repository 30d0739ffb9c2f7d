"""One entry against a reference entry: the difference in a metric and the speedup in time-to-target, with CIs.

``bench compare`` and the leaderboard's headline columns both state "B vs A" through these functions, so the
terminal and the page can never disagree. Differences are ``B - A`` (Welch's t-test, its 95% interval and
two-sided p-value); the speedup is ``mean TTT(A) / mean TTT(B)`` (above 1: B reaches the target sooner).

Time-to-target is measured only at evaluations (every 15 s on ``tiny``: four per run). The harness interpolates
the crossing between the last evaluation above the target and the first at it, but the true crossing can lie
anywhere between those two, so the interpolated value's precision (and its seed interval of a few tenths of a
second) is not what the data resolve. Every time-to-target and speedup is therefore stated as a range: the wider
of the seeds' 95% interval of the interpolated mean, and the range the evaluation spacing leaves open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean

from bench.board import format as fmt
from bench.board.rank import Entry
from bench.board.stats import Difference, Ratio, mean_ci, ratio_ci, welch
from bench.results.schema import RunResult


def time_to_target(entry: Entry) -> list[float]:
    """Interpolated training seconds to the target of every scored run that reached it."""
    return [r.time_to_target_s for r in entry.scored if r.target_reached and r.time_to_target_s is not None]


def crossing(run: RunResult) -> tuple[float, float] | None:
    """The training seconds of the evaluations between which a run reached the target: the last one before the
    (interpolated) crossing and the first at or after it; 0 is the start of training. None if never reached."""
    if not run.scored or not run.target_reached or run.time_to_target_s is None:
        return None
    when = run.time_to_target_s
    times = {p.train_seconds for p in run.curve} | ({run.final.train_seconds} if run.final else set())
    after = [t for t in times if t >= when]
    before = [t for t in times if t < when]
    return (max(before) if before else 0.0), (min(after) if after else when)


def crossings(entry: Entry) -> list[tuple[float, float]]:
    return [c for r in entry.scored if (c := crossing(r)) is not None]


def time_to_target_range(entry: Entry) -> tuple[float, float] | None:
    """Where the mean time-to-target of the entry's runs that reached the target lies, at the resolution its
    evaluations give: the wider of the 95% interval of the interpolated mean (kept within the earliest and latest
    evaluation that bracket a crossing) and ``[mean of the last evaluations before the target, mean of the first
    evaluations at it]``. None when no run reached the target."""
    between = crossings(entry)
    if not between:
        return None
    low, high = fmean(lo for lo, _ in between), fmean(hi for _, hi in between)
    estimate = mean_ci(time_to_target(entry))
    if estimate.low is not None and estimate.high is not None:  # a mean lies within its runs' own bounds
        low = min(low, max(estimate.low, min(lo for lo, _ in between)))
        high = max(high, min(estimate.high, max(hi for _, hi in between)))
    return low, high


def speedup(a: Entry, b: Entry) -> Ratio | None:
    """``mean TTT(a) / mean TTT(b)`` (interpolated), with the wider of its 95% delta-method interval and the range
    the two entries' evaluation spacing allows: ``a``'s earliest possible mean over ``b``'s latest, and ``a``'s
    latest over ``b``'s earliest (infinite when ``b`` reached the target before its first evaluation). None
    unless both reached the target."""
    ttt_a, ttt_b = time_to_target(a), time_to_target(b)
    between_a, between_b = crossings(a), crossings(b)
    if not ttt_a or not ttt_b or not between_a or not between_b:
        return None
    interpolated = ratio_ci(ttt_a, ttt_b)
    earliest_b = fmean(lo for lo, _ in between_b)
    low = fmean(lo for lo, _ in between_a) / fmean(hi for _, hi in between_b)
    high = fmean(hi for _, hi in between_a) / earliest_b if earliest_b > 0 else math.inf
    if interpolated.low is not None and interpolated.high is not None:
        low, high = min(low, interpolated.low), max(high, interpolated.high)
    return Ratio(interpolated.value, low, high)


@dataclass(frozen=True)
class Versus:
    """``b`` against the reference ``a``: the metric's difference, and the speedup (None unless both reached)."""

    difference: Difference
    speedup: Ratio | None


def versus(a: Entry, b: Entry, metric: str) -> Versus:
    """Compare ``b`` with the reference ``a`` on ``metric`` over their scored seeds (both must have one)."""
    return Versus(welch(a.values(metric), b.values(metric)), speedup(a, b))


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
    """``'1.2–3.3x'``, ``'≥2.3x'`` (no upper bound); ``'–'`` when either side never reached the target."""
    if r is None or r.low is None or r.high is None:
        return fmt.MISSING
    return fmt.ratio_range(r.low, r.high)


def time_to_target_text(entry: Entry) -> str:
    """``'15–30 s'``, with ``' (4/5)'`` when not every scored run reached the target; ``'not reached (0/5)'``."""
    total = len(entry.scored)
    span = time_to_target_range(entry)
    if span is None:
        return f"not reached (0/{total})" if total else fmt.MISSING
    reached = len(crossings(entry))
    shown = fmt.duration_range(*span)
    return shown if reached == total else f"{shown} ({reached}/{total})"
