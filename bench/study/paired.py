"""Paired comparisons of two arms of a study: loss at equal training time, and speedup in time to target.

Runs are paired on everything but the compared factor (for two submissions: same size, budget and seed; for two
sizes: same submission, budget and seed), so that what a grid point does to both arms cancels. Per pair:

* loss difference at equal time: each run's validation curve is interpolated linearly at the latest time both
  curves reach, and the candidate's loss minus the baseline's is taken (negative: the candidate is better);
* speedup: the baseline's time to target over the candidate's, for pairs where both reached the target
  (above 1: the candidate is faster). It is averaged on the log scale, i.e. as a geometric mean.

Across pairs (seeds, sizes and budgets together) the mean has a Student-t interval and a one-sample t-test against
zero (a paired t-test; scipy). It estimates the average effect over the study's grid; the breakdown by size or
budget shows whether the effect changes along the grid. Nothing is bootstrapped: a study has few pairs per group.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bench.board.format import p_value
from bench.board.stats import ALPHA, CONFIDENCE, mean_ci
from bench.results.schema import RunResult
from bench.study.expand import Match
from bench.study.spec import ComparisonSpec


@dataclass(frozen=True)
class Effect:
    """A mean over ``n`` pairs with its confidence interval and two-sided p-value (both None when ``n < 2``)."""

    value: float
    low: float | None
    high: float | None
    p: float | None
    n: int

    @property
    def significant(self) -> bool | None:
        return None if self.p is None else self.p < ALPHA


def paired_effect(differences: Sequence[float]) -> Effect:
    """Mean paired difference, Student-t interval, and the paired t-test's p-value.

    Differences without any spread (deterministic runs) are certain: p is 0 unless they are all zero, where it is 1,
    the limits the test tends to (scipy would warn and return NaN).
    """
    x = np.asarray(differences, dtype=float)
    estimate = mean_ci(x, CONFIDENCE)
    if x.size < 2:
        return Effect(estimate.mean, None, None, None, int(x.size))
    if np.ptp(x) == 0:
        return Effect(estimate.mean, estimate.mean, estimate.mean, 1.0 if estimate.mean == 0 else 0.0, int(x.size))
    p = float(stats.ttest_1samp(x, 0.0).pvalue)
    return Effect(estimate.mean, estimate.low, estimate.high, p, int(x.size))


def _exp(effect: Effect) -> Effect:
    """An effect estimated on log ratios, as a ratio (geometric mean and its interval)."""
    low = None if effect.low is None else math.exp(effect.low)
    high = None if effect.high is None else math.exp(effect.high)
    return Effect(math.exp(effect.value), low, high, effect.p, effect.n)


def curve(run: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """A run's validation loss over training seconds, final evaluation included, sorted by time."""
    points = {p.train_seconds: p.val_loss for p in run.curve}
    if run.final is not None:
        points[run.final.train_seconds] = run.final.val_loss
    times = sorted(points)
    return np.array(times), np.array([points[t] for t in times])


def loss_at_equal_time(baseline: RunResult, candidate: RunResult) -> tuple[float, float, float]:
    """``(t, baseline loss at t, candidate loss at t)`` at the latest training time both curves reach."""
    tb, lb = curve(baseline)
    tc, lc = curve(candidate)
    t = float(min(tb[-1], tc[-1]))
    return t, float(np.interp(t, tb, lb)), float(np.interp(t, tc, lc))


@dataclass(frozen=True)
class Pair:
    baseline: Match
    candidate: Match

    @property
    def loss_difference(self) -> float:
        _, base, cand = loss_at_equal_time(self.baseline.result, self.candidate.result)
        return cand - base

    @property
    def log_speedup(self) -> float | None:
        """``log(baseline time / candidate time)`` to target, None unless both reached it."""
        tb, tc = self.baseline.result.time_to_target_s, self.candidate.result.time_to_target_s
        if tb is None or tc is None or tb <= 0 or tc <= 0:
            return None
        return math.log(tb / tc)


@dataclass(frozen=True)
class Row:
    """The effects over a set of pairs: all of them, or one group of the breakdown (``label``)."""

    label: str
    loss: Effect
    speedup: Effect | None  # None where no pair has both runs at the target
    baseline_reached: int
    candidate_reached: int
    pairs: int


def _row(label: str, pairs: Sequence[Pair]) -> Row:
    logs = [s for p in pairs if (s := p.log_speedup) is not None]
    return Row(
        label=label,
        loss=paired_effect([p.loss_difference for p in pairs]),
        speedup=_exp(paired_effect(logs)) if logs else None,
        baseline_reached=sum(p.baseline.result.time_to_target_s is not None for p in pairs),
        candidate_reached=sum(p.candidate.result.time_to_target_s is not None for p in pairs),
        pairs=len(pairs),
    )


@dataclass(frozen=True)
class Comparison:
    spec: ComparisonSpec
    target: str  # the target the time is measured to, e.g. 'val_bpb <= 1'
    overall: Row | None  # None when no pair of runs has both sides scored
    breakdown: tuple[Row, ...]

    def arm(self, name: str) -> str:
        return name if self.spec.by == "submission" else f"size {name}"

    @property
    def verdict(self) -> str:
        """The result in plain English, saying outright when a difference is not significant."""
        base, cand = self.arm(self.spec.baseline), self.arm(self.spec.candidate)
        row = self.overall
        if row is None:
            return f"No pair of scored runs of {cand} and {base}: nothing to compare."
        return " ".join([_loss_sentence(row, base, cand), _speed_sentence(row, base, cand, self.target)])


def _significance(effect: Effect, what: str) -> str:
    if effect.p is None:
        return f"A single pair gives no interval and no test: this is NOT evidence of a {what}."
    if effect.significant:
        return f"The {what} is significant at the {ALPHA:.0%} level."
    return f"This {what} is NOT significant at the {ALPHA:.0%} level: the study cannot tell the two apart."


def _loss_sentence(row: Row, base: str, cand: str) -> str:
    e = row.loss
    side = "lower" if e.value < 0 else "higher" if e.value > 0 else "no different"
    ci = "" if e.low is None else f", {CONFIDENCE:.0%} CI {e.low:+.4f} to {e.high:+.4f}, p = {p_value(e.p)}"
    amount = f"{abs(e.value):.4f} nats {side} than" if e.value else "the same as"
    return (
        f"At equal training time, {cand} reaches a validation loss {amount} {base} "
        f"(mean paired difference {e.value:+.4f} over {e.n} pair{'s' * (e.n != 1)}{ci}). "
        + _significance(e, "loss difference")
    )


def _speed_sentence(row: Row, base: str, cand: str, target: str) -> str:
    reached = (
        f"{cand} reached the target ({target}) in {row.candidate_reached}/{row.pairs} runs, {base} in "
        f"{row.baseline_reached}/{row.pairs}"
    )
    e = row.speedup
    if e is None:
        return f"Time to target: {reached}; no pair where both did, so no speedup is estimated."
    ci = "" if e.low is None else f", {CONFIDENCE:.0%} CI {e.low:.2f}x to {e.high:.2f}x, p = {p_value(e.p)}"
    return (
        f"Time to target: {reached}; where both did, {cand} got there {e.value:.2f}x as fast as {base} "
        f"(geometric mean over {e.n} pair{'s' * (e.n != 1)}{ci}). " + _significance(e, "speedup")
    )


def _pair_key(by: str) -> Callable[[Match], tuple]:
    if by == "submission":
        return lambda m: (m.cell.size, m.cell.wall_clock, m.cell.train_bytes, m.seed)
    return lambda m: (m.cell.submission, m.cell.wall_clock, m.cell.train_bytes, m.seed)


def compare(matches: Sequence[Match], spec: ComparisonSpec) -> Comparison:
    """Pair the scored runs of the two arms of ``spec`` and estimate both effects, overall and broken down."""
    arm = (lambda m: m.cell.submission) if spec.by == "submission" else (lambda m: m.cell.size)
    key = _pair_key(spec.by)
    sides: dict[str, dict[tuple, Match]] = {spec.baseline: {}, spec.candidate: {}}
    for m in matches:
        if m.scored and arm(m) in sides:
            sides[arm(m)][key(m)] = m
    base, cand = sides[spec.baseline], sides[spec.candidate]
    pairs = [Pair(base[k], cand[k]) for k in base if k in cand]
    if not pairs:
        return Comparison(spec, "", None, ())
    t = pairs[0].baseline.cell.workload.target
    target = f"{t.metric} {'<=' if t.direction == 'minimize' else '>='} {t.value:g}"
    other: tuple[str, Callable[[Pair], str]] = (
        ("size", lambda p: p.baseline.cell.size)
        if spec.by == "submission"
        else ("submission", lambda p: p.baseline.cell.submission)
    )
    groups = [other, ("budget", lambda p: p.baseline.cell.budget)]
    breakdown = []
    for name, label in groups:
        by_label: dict[str, list[Pair]] = defaultdict(list)
        for p in pairs:
            by_label[label(p)].append(p)
        if len(by_label) > 1:
            breakdown += [_row(f"{name} {value}", group) for value, group in by_label.items()]
    return Comparison(spec, target, _row("all pairs", pairs), tuple(breakdown))
