"""The verdict's statistics against brute force: Walsh averages, the signed-rank distribution
from every sign pattern, the expected maximum from every k-subset."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from adamz.reports._stats import (
    EXACT_UP_TO,
    benjamini_hochberg,
    equivalence_test,
    expected_maximum,
    hodges_lehmann,
    hodges_lehmann_interval,
    paired_statistics,
    signed_rank_p_value,
)


def brute_force_interval(differences: np.ndarray, confidence: float) -> tuple[float, float]:
    """The interval from first principles: every Walsh average by two loops, the signed-rank
    statistic's null distribution from all 2**n sign patterns of the ranks, and the k-th
    smallest and largest average for the largest k with P(T+ <= k - 1) <= alpha / 2."""
    n = len(differences)
    walsh = sorted((differences[i] + differences[j]) / 2 for i in range(n) for j in range(i, n))
    sums = [
        sum(rank for rank, positive in zip(range(1, n + 1), signs, strict=True) if positive)
        for signs in itertools.product([False, True], repeat=n)
    ]
    tail = (1 - confidence) / 2
    k = max((t + 1 for t in range(len(walsh)) if np.mean(np.array(sums) <= t) <= tail), default=0)
    if k == 0:
        return math.nan, math.nan
    return walsh[k - 1], walsh[len(walsh) - k]


@pytest.mark.parametrize(
    ("n", "confidence", "ties"),
    [(6, 0.95, False), (8, 0.95, False), (11, 0.95, False), (10, 0.95, True), (9, 0.9, True)],
)
def test_the_interval_is_the_walsh_averages_order_statistics_that_the_signed_rank_test_inverts(
    n: int, confidence: float, ties: bool
) -> None:
    rng = np.random.default_rng(n)
    differences = rng.normal(0.002, 0.005, size=n)
    if ties:  # accuracies on 269 images move in steps of 1/269
        differences = np.round(differences * 269) / 269
    assert hodges_lehmann_interval(differences, confidence) == pytest.approx(
        brute_force_interval(differences, confidence), abs=1e-15
    )
    walsh = [(a + b) / 2 for i, a in enumerate(differences) for b in differences[i:]]
    assert hodges_lehmann(differences) == pytest.approx(np.median(walsh), abs=1e-15)


def test_five_pairs_have_no_95_percent_interval_and_six_have_the_extremes() -> None:
    low, high = hodges_lehmann_interval(np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert math.isnan(low)
    assert math.isnan(high)
    assert hodges_lehmann_interval(np.arange(1.0, 7.0)) == (1.0, 6.0)  # coverage 1 - 2/64


def test_p_values_are_scipys_exact_signed_rank_test_and_agree_with_the_interval() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        differences = rng.normal(0.4 * (trial % 3), 1.0, size=6 + trial % 15)
        for alternative in ("two-sided", "greater", "less"):
            expected = stats.wilcoxon(differences, method="exact", alternative=alternative)
            assert signed_rank_p_value(differences, alternative=alternative) == pytest.approx(
                expected.pvalue, rel=1e-12
            )
        low, high = hodges_lehmann_interval(differences)
        assert (signed_rank_p_value(differences) < 0.05) == (not low <= 0 <= high)


def test_beyond_the_exact_range_the_p_value_is_the_continuity_corrected_normal_one() -> None:
    differences = np.random.default_rng(1).normal(0.3, 1.0, size=EXACT_UP_TO + 30)
    expected = stats.wilcoxon(differences, method="approx", correction=True).pvalue
    assert signed_rank_p_value(differences) == pytest.approx(expected, rel=1e-9)
    low, high = hodges_lehmann_interval(differences)
    assert low < hodges_lehmann(differences) < high


def test_equal_samples_are_equivalent_at_a_quarter_point_and_samples_a_point_apart_are_not() -> (
    None
):
    identical = np.zeros(10)  # two identical samples: every paired difference is 0
    apart = np.full(10, 0.01)  # one point of accuracy apart on every seed
    assert equivalence_test(identical, 0.0025) == pytest.approx(2.0**-10)
    assert equivalence_test(apart, 0.0025) == 1.0
    assert paired_statistics(identical, margin=0.0025).p_value == 1.0  # and no difference
    assert paired_statistics(apart, margin=0.0025).p_value == pytest.approx(2 / 1024)


@pytest.mark.parametrize("margin", [0.0, -1.0])
def test_a_margin_that_is_not_positive_is_refused(margin: float) -> None:
    with pytest.raises(ValueError, match=rf"Invalid margin: must be > 0, got {margin}\."):
        equivalence_test(np.zeros(6), margin)


def test_benjamini_hochberg_is_scipys_over_the_whole_family() -> None:
    p_values = [0.01, 0.04, 0.03, 0.2]
    assert benjamini_hochberg(p_values) == pytest.approx(
        list(stats.false_discovery_control(p_values))
    )
    assert benjamini_hochberg([]) == []


def test_the_expected_maximum_is_the_mean_best_of_every_k_subset() -> None:
    values = np.array([0.91, 0.87, 0.95, 0.87, 0.60, 0.93])  # 6 trials, one tie
    ks = np.arange(1, 7)
    exact = [np.mean([max(subset) for subset in itertools.combinations(values, k)]) for k in ks]
    assert expected_maximum(values, ks) == pytest.approx(exact, abs=1e-12)
    rows = expected_maximum(np.stack([values, values[::-1] - 1]), ks)
    assert rows[1] == pytest.approx(np.array(exact) - 1, abs=1e-12)


def test_the_expected_maximum_stays_finite_for_thousands_of_trials() -> None:
    n, ks = 3000, np.array([1, 1500, 3000])
    values = np.linspace(0.0, 1.0, n)  # the i-th of n at (i - 1) / (n - 1)
    rank = ks * (n + 1) / (ks + 1)  # the expected rank of the best of k
    assert expected_maximum(values, ks) == pytest.approx((rank - 1) / (n - 1), abs=1e-9)


def test_k_beyond_the_trials_run_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Invalid k: must be between 1 and n = 3, got \[1, 4\]"):
        expected_maximum(np.array([1.0, 2.0, 3.0]), np.array([1, 4]))
