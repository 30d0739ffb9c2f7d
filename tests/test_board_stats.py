"""The board's statistics against hand-computed values and scipy, computed a different way than the code does."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from bench.board.stats import mean_ci, minimum_detectable_difference, ratio_ci, reproduction, welch


def test_mean_ci_matches_the_student_t_interval():
    # mean 2, s = 1, n = 3: half-width = t(0.975, 2) * 1 / sqrt(3) = 4.302653 * 0.577350 = 2.484138
    est = mean_ci([1.0, 2.0, 3.0])
    assert est.mean == pytest.approx(2.0)
    assert est.n == 3
    assert est.half_width == pytest.approx(2.484138, abs=1e-6)
    low, high = stats.t.interval(0.95, 2, loc=2.0, scale=1 / math.sqrt(3))
    assert (est.low, est.high) == (pytest.approx(low), pytest.approx(high))


def test_a_single_seed_has_no_interval():
    est = mean_ci([3.91])
    assert est.mean == 3.91 and est.half_width is None and est.low is None


def test_welch_matches_the_textbook_formula():
    a, b = [3.912, 3.905, 3.921], [3.861, 3.872, 3.866, 3.870]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    diff = np.mean(b) - np.mean(a)
    t = diff / math.sqrt(va + vb)
    p = 2 * stats.t.sf(abs(t), df)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)

    result = welch(a, b)
    assert result.value == pytest.approx(diff)
    assert result.p == pytest.approx(p, rel=1e-9)
    assert (result.low, result.high) == (pytest.approx(diff - half), pytest.approx(diff + half))
    assert result.significant is True


def test_welch_on_overlapping_seeds_is_not_significant():
    result = welch([1.0, 2.0, 3.0], [2.0, 3.0, 5.0])
    assert result.p == pytest.approx(0.284627, abs=1e-6)
    assert result.significant is False


def test_welch_without_spread_is_decided_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert welch([1.5, 1.5], [1.5, 1.5]).p == 1.0
        different = welch([1.5, 1.5], [1.4, 1.4])
    assert different.p == 0.0 and different.value == pytest.approx(-0.1)


def test_welch_with_one_seed_is_untested():
    result = welch([1.0], [2.0, 2.1])
    assert result.p is None and result.significant is None and result.value == pytest.approx(1.05)


def test_ratio_ci_is_the_delta_method_on_the_log_ratio():
    a, b = [2700.0, 2650.0, 2720.0], [2500.0, 2580.0, 2530.0]
    ma, mb = np.mean(a), np.mean(b)
    va = np.var(a, ddof=1) / (3 * ma**2)
    vb = np.var(b, ddof=1) / (3 * mb**2)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    spread = stats.t.ppf(0.975, df) * math.sqrt(va + vb)

    result = ratio_ci(a, b)
    assert result.value == pytest.approx(ma / mb)
    assert result.low == pytest.approx(ma / mb * math.exp(-spread))
    assert result.high == pytest.approx(ma / mb * math.exp(spread))
    assert result.low < result.value < result.high


def test_ratio_ci_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, covered = 2000, 0
    for _ in range(trials):
        a = rng.normal(100.0, 5.0, size=5)
        b = rng.normal(80.0, 4.0, size=5)
        r = ratio_ci(a, b)
        covered += r.low <= 100.0 / 80.0 <= r.high
    assert 0.92 < covered / trials < 0.975


def test_ratio_ci_needs_positive_values_and_two_seeds_for_an_interval():
    assert ratio_ci([10.0], [5.0, 5.5]).low is None
    with pytest.raises(ValueError, match="positive"):
        ratio_ci([0.0, 1.0], [1.0, 1.0])


def test_minimum_detectable_difference_matches_a_noncentral_t_power_calculation():
    # sd 1, 5 seeds a side: (t(0.975, 8) + t(0.8, 8)) * sqrt(2/5) = (2.306004 + 0.888890) * 0.632456 = 2.020628
    assert minimum_detectable_difference(1.0, 5) == pytest.approx(2.020628, abs=1e-5)
    # the approximation's power at that difference, by the noncentral t, is close to the 80% asked for
    for n in (3, 5, 10):
        df, delta = 2 * n - 2, minimum_detectable_difference(1.0, n) / math.sqrt(2 / n)
        critical = stats.t.ppf(0.975, df)
        power = stats.nct.sf(critical, df, delta) + stats.nct.cdf(-critical, df, delta)
        assert 0.75 < power < 0.82
    with pytest.raises(ValueError):
        minimum_detectable_difference(1.0, 1)


# --- reproduction: a claimed mean against re-runs on fresh seeds (bench verify) --------------------------------------


def test_reproduction_is_the_prediction_interval_for_a_mean_of_the_claimed_seeds():
    # re-runs 2.0, 2.1, 2.2: mean 2.1, s = 0.1; two claimed seeds: t(0.975, 2) * 0.1 * sqrt(1/3 + 1/2)
    half = 4.302653 * 0.1 * math.sqrt(1 / 3 + 1 / 2)
    test = reproduction([2.05, 2.25], [2.0, 2.1, 2.2])
    assert (test.claimed, test.rerun) == (pytest.approx(2.15), pytest.approx(2.1))
    assert (test.low, test.high) == (pytest.approx(2.1 - half, abs=1e-6), pytest.approx(2.1 + half, abs=1e-6))
    assert (test.n_claimed, test.n_reruns, test.confidence) == (2, 3, 0.95)
    assert test.reproduced is True
    outside = 2.1 + 1.01 * half
    assert reproduction([outside, outside], [2.0, 2.1, 2.2]).reproduced is False
    assert reproduction([outside], [2.0, 2.1, 2.2]).reproduced is True  # one seed varies more than a mean of two


def test_honest_claims_are_refused_about_as_often_as_alpha():
    rng = np.random.default_rng(0)
    refused = sum(
        not reproduction(rng.normal(3.0, 0.05, 3), rng.normal(3.0, 0.05, 3)).reproduced for _ in range(4000)
    )
    assert refused / 4000 == pytest.approx(0.05, abs=0.012)


def test_claims_better_than_the_code_by_a_few_spreads_are_refused():
    rng = np.random.default_rng(1)
    refused = sum(
        not reproduction(rng.normal(3.0 - 0.5, 0.05, 3), rng.normal(3.0, 0.05, 3)).reproduced for _ in range(500)
    )
    assert refused == 500
    # lion's published scores times 0.6, against re-runs of its own code: far outside
    assert reproduction([1.27, 1.28, 1.27], [2.12, 2.13, 2.12]).reproduced is False


def test_spreading_forged_values_does_not_help_unlike_in_welch():
    claimed, reruns = [1.0, 3.0, 5.0], [3.50, 3.51, 3.49]  # a better mean (3.0), with a spread the forger chose
    assert welch(reruns, claimed).significant is False  # Welch takes the claimed spread at its word
    assert reproduction(claimed, reruns).reproduced is False


def test_reproduction_needs_two_reruns_and_takes_a_single_claimed_seed():
    assert reproduction([3.0], [3.0]).reproduced is None
    assert reproduction([3.0], [3.0]).low is None
    assert reproduction([3.02], [3.0, 3.04]).reproduced is True


def test_reruns_without_spread_reproduce_only_the_same_value():
    assert reproduction([3.0, 3.0], [3.0, 3.0]).reproduced is True
    assert reproduction([2.999], [3.0, 3.0]).reproduced is False
