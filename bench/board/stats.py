"""Statistics over seeds: means with Student-t intervals, Welch's t-test, and a ratio of means with its interval.

Leaderboard entries have few seeds (typically 3), so every interval uses the t distribution rather than a normal
approximation, and nothing is bootstrapped: resampling three values gives only ten distinct resamples.
With a single seed there is no spread to estimate, so intervals and tests are ``None`` ("not tested"), never zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # a difference is significant when Welch's two-sided p-value is below this


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` seeds with the half-width of its confidence interval (``None`` when ``n < 2``)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


@dataclass(frozen=True)
class Difference:
    """``mean(b) - mean(a)`` with Welch's confidence interval and two-sided p-value (``None`` when untestable)."""

    value: float
    low: float | None
    high: float | None
    p: float | None

    @property
    def significant(self) -> bool | None:
        return None if self.p is None else self.p < ALPHA


@dataclass(frozen=True)
class Ratio:
    """``mean(a) / mean(b)`` with a confidence interval from the delta method (``None`` when untestable)."""

    value: float
    low: float | None
    high: float | None


def _array(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values to summarise")
    return x


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean and Student-t confidence interval: ``t_{n-1} * s / sqrt(n)``."""
    x = _array(values)
    n = x.size
    if n < 2:
        return Estimate(float(x.mean()), None, n)
    sem = float(stats.sem(x))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sem
    return Estimate(float(x.mean()), half, n)


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Welch's unequal-variance t-test of ``b`` against ``a`` (scipy), with the interval of the difference.

    Two groups without any spread (deterministic seeds) have a certain difference: p is 0 when the means differ
    and 1 when they are equal, which is what the test tends to in the limit, without scipy's precision warning.
    """
    xa, xb = _array(a), _array(b)
    diff = float(xb.mean() - xa.mean())
    if xa.size < 2 or xb.size < 2:
        return Difference(diff, None, None, None)
    if np.ptp(xa) == 0 and np.ptp(xb) == 0:
        return Difference(diff, diff, diff, 1.0 if diff == 0 else 0.0)
    result = stats.ttest_ind(xb, xa, equal_var=False)
    interval = result.confidence_interval(confidence)
    return Difference(diff, float(interval.low), float(interval.high), float(result.pvalue))


def ratio_ci(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Ratio:
    """``mean(a) / mean(b)`` for positive samples, with an interval from the delta method on the log ratio.

    ``Var(log mean) ~ s^2 / (n mean^2)`` for each independent group; the quantile is Student's t with
    Welch-Satterthwaite degrees of freedom, so that three seeds per side give honest (wide) intervals.
    The interval is ``ratio * exp(+-t * se)``: asymmetric, and never below zero.
    """
    xa, xb = _array(a), _array(b)
    if (xa <= 0).any() or (xb <= 0).any():
        raise ValueError("a ratio of means needs positive values")
    ratio = float(xa.mean() / xb.mean())
    if xa.size < 2 or xb.size < 2:
        return Ratio(ratio, None, None)
    va = float(xa.var(ddof=1) / (xa.size * xa.mean() ** 2))
    vb = float(xb.var(ddof=1) / (xb.size * xb.mean() ** 2))
    if va + vb == 0:
        return Ratio(ratio, ratio, ratio)
    df = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    spread = float(stats.t.ppf((1 + confidence) / 2, df)) * math.sqrt(va + vb)
    return Ratio(ratio, ratio * math.exp(-spread), ratio * math.exp(spread))


POWER = 0.80  # the chance of detecting a difference of the minimum detectable size (the noise floor)


def minimum_detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest difference of means a two-sided two-sample t-test at ``alpha`` detects with ``power``, for two
    groups of ``n`` seeds each with standard deviation ``sd``: ``(t_{1-alpha/2, 2n-2} + t_{power, 2n-2}) * sd *
    sqrt(2/n)`` (the usual approximation with t quantiles in place of the noncentral t).

    This is the board's noise floor: two entries closer than it are more likely tied than told apart, so a reader
    knows what a tie means before reading one.
    """
    if n < 2:
        raise ValueError("a spread needs at least two seeds")
    df = 2 * n - 2
    quantiles = float(stats.t.ppf(1 - alpha / 2, df)) + float(stats.t.ppf(power, df))
    return quantiles * sd * math.sqrt(2 / n)


@dataclass(frozen=True)
class Reproduction:
    """A claimed mean against what re-runs of the same configuration predict for it (:func:`reproduction`)."""

    claimed: float  # mean of the claimed seeds
    rerun: float  # mean of the re-runs
    low: float | None  # the re-runs' prediction interval for a mean of ``n_claimed`` seeds (None: untestable)
    high: float | None
    n_claimed: int
    n_reruns: int
    confidence: float

    @property
    def reproduced(self) -> bool | None:
        """Whether the claimed mean lies inside the prediction interval; None with fewer than two re-runs."""
        if self.low is None or self.high is None:
            return None
        if self.low == self.high:  # re-runs without any spread: only the same value reproduces them
            return math.isclose(self.claimed, self.rerun, rel_tol=1e-9, abs_tol=1e-12)
        return self.low <= self.claimed <= self.high


def reproduction(claimed: Sequence[float], reruns: Sequence[float], alpha: float = ALPHA) -> Reproduction:
    """Whether ``claimed`` seeds are what ``reruns`` of their configuration on fresh seeds predict: the claimed mean
    against the re-runs' two-sided ``1 - alpha`` prediction interval for the mean of ``m = len(claimed)`` new seeds,

        mean(reruns) ± t_{1-alpha/2, n-1} · s · sqrt(1/n + 1/m),

    with ``s`` the re-runs' standard deviation over their ``n`` seeds. When the claims come from the same
    distribution as the re-runs (normal seed noise), the claimed mean falls outside with probability ``alpha``.

    Why this and not Welch's test of claimed seeds against re-run seeds: Welch estimates the noise from the claimed
    seeds too, and those are the numbers in question. A forger who spreads forged values widely around a better mean
    makes Welch's test lose all power, while here only the re-runs, measured by the verifier, say how much seeds
    vary. It also tests a single claimed seed (``m = 1``), where Welch cannot. Two-sided: a claim far worse than
    its code is not reproduced either (a mistake, or other hardware).
    """
    xc, xr = _array(claimed), _array(reruns)
    confidence = 1 - alpha
    if xr.size < 2:
        return Reproduction(float(xc.mean()), float(xr.mean()), None, None, xc.size, xr.size, confidence)
    half = float(stats.t.ppf(1 - alpha / 2, xr.size - 1)) * float(xr.std(ddof=1)) * math.sqrt(1 / xr.size + 1 / xc.size)
    mean = float(xr.mean())
    return Reproduction(float(xc.mean()), mean, mean - half, mean + half, xc.size, xr.size, confidence)
