"""The statistics behind a verdict and a budget curve, each one matched to the next.

Paired seeds (:func:`paired_statistics`): the shift between two optimizers is the
**Hodges-Lehmann estimate**, the median of the Walsh averages ``(d_i + d_j) / 2, i <= j`` of
the paired differences; its confidence interval, its p-value and its equivalence test are all
the **Wilcoxon signed-rank test** read off those same Walsh averages, so they agree: 0 lies
outside the 95 % interval exactly when the two-sided p is below 0.05 (Hollander, Wolfe and
Chicken, *Nonparametric Statistical Methods*, 3rd ed., 2014, sections 3.1 to 3.3). The
statistic ``T+(theta)`` is the number of Walsh averages above ``theta`` (one half for each
equal to it); under the null hypothesis it has the signed-rank distribution, taken exactly up
to :data:`EXACT_UP_TO` pairs and from its normal approximation beyond.

Equivalence (:func:`equivalence_test`) is two one-sided signed-rank tests (TOST, Schuirmann
1987): the shift is above ``-margin`` and below ``+margin``. A difference that is not
significant is not shown equivalent; only this test says "equivalent".

Many comparisons (:func:`benjamini_hochberg`): SciPy's Benjamini-Hochberg adjustment.

Budget curves (:func:`expected_maximum`): the unbiased estimate of the expected best of ``k``
trials drawn without replacement from the ``n`` a study ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import special, stats

__all__ = [
    "EXACT_UP_TO",
    "PairedStatistics",
    "benjamini_hochberg",
    "equivalence_test",
    "expected_maximum",
    "hodges_lehmann",
    "hodges_lehmann_interval",
    "noninferiority_test",
    "paired_statistics",
    "signed_rank_p_value",
    "walsh_averages",
]

EXACT_UP_TO = 50
"""Pairs up to which the signed-rank distribution is exact (as SciPy's ``wilcoxon``)."""


def walsh_averages(differences: np.ndarray) -> np.ndarray:
    """The ``n (n + 1) / 2`` Walsh averages ``(d_i + d_j) / 2, i <= j`` of ``differences``,
    sorted."""
    d = np.asarray(differences, dtype=float)
    first, second = np.triu_indices(len(d))
    return np.sort((d[first] + d[second]) / 2)


def hodges_lehmann(differences: np.ndarray) -> float:
    """The Hodges-Lehmann estimate of the shift: the median of the Walsh averages.

    Raises:
        ValueError: ``differences`` is empty.
    """
    if len(differences) == 0:
        raise ValueError("Invalid differences: needs at least 1 value, got 0.")
    return float(np.median(walsh_averages(differences)))


@cache
def _null_cdf(n: int) -> np.ndarray:
    """P(T+ <= t) for t = 0 .. n (n + 1) / 2 under the null hypothesis, exactly: the share of
    the 2**n sign patterns of the ranks 1 .. n whose positive ranks sum to at most t.

    SciPy computes this distribution too, but keeps it private (``scipy.stats._wilcoxon``);
    counting subsets by their sum is a few lines and exact in integers.
    """
    counts = [1] + [0] * (n * (n + 1) // 2)
    for rank in range(1, n + 1):
        for total in range(len(counts) - 1, rank - 1, -1):
            counts[total] += counts[total - rank]
    return np.cumsum(np.array(counts, dtype=float)) / 2.0**n


def _lower_tail(statistic: float, n: int) -> float:
    """P(T+ <= statistic) under the null hypothesis (``statistic`` may be a half-integer)."""
    if n <= EXACT_UP_TO:
        return float(_null_cdf(n)[math.floor(statistic + 1e-9)])
    mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return float(stats.norm.cdf((statistic + 0.5 - mean) / sd))  # continuity-corrected


def _statistic(walsh: np.ndarray, theta: float) -> float:
    """T+(theta): Walsh averages above ``theta``, those equal to it (to rounding) counted half."""
    tolerance = 1e-9 * max(1.0, float(np.max(np.abs(walsh))), abs(theta))
    above = np.count_nonzero(walsh > theta + tolerance)
    equal = np.count_nonzero(np.abs(walsh - theta) <= tolerance)
    return above + equal / 2


def signed_rank_p_value(
    differences: np.ndarray, theta: float = 0.0, alternative: str = "two-sided"
) -> float:
    """The signed-rank test's p-value for the shift of ``differences`` against ``theta``:
    ``"two-sided"``, ``"greater"`` (the shift is above ``theta``) or ``"less"``.

    Raises:
        ValueError: ``differences`` is empty, or ``alternative`` is none of the three.
    """
    if len(differences) == 0:
        raise ValueError("Invalid differences: needs at least 1 value, got 0.")
    n = len(differences)
    walsh = walsh_averages(differences)
    statistic, total = _statistic(walsh, theta), len(walsh)
    below = _lower_tail(statistic, n)  # P(T+ <= t): small when the shift is below theta
    above = _lower_tail(total - statistic, n)  # P(T+ >= t), by the symmetry of T+
    if alternative == "greater":
        return min(1.0, above)
    if alternative == "less":
        return min(1.0, below)
    if alternative == "two-sided":
        return min(1.0, 2 * min(below, above))
    raise ValueError(
        f"Invalid alternative: must be 'two-sided', 'greater' or 'less', got {alternative!r}."
    )


def _critical_count(n: int, confidence: float) -> int:
    """The largest k with P(T+ <= k - 1) <= (1 - confidence) / 2 (0 where none is)."""
    tail = (1 - confidence) / 2
    if n <= EXACT_UP_TO:
        return int(np.count_nonzero(_null_cdf(n) <= tail + 1e-12))
    mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return max(0, math.floor(mean - 0.5 + sd * float(stats.norm.ppf(tail))) + 1)


def hodges_lehmann_interval(
    differences: np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """The confidence interval of the shift that the signed-rank test inverts: the k-th
    smallest and the k-th largest Walsh average, with k the test's critical count (its
    coverage is at least ``confidence``); NaN where no k reaches ``confidence`` (at 95 %,
    fewer than 6 pairs).

    Raises:
        ValueError: ``confidence`` is not between 0 and 1.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"Invalid confidence: must be between 0 and 1, got {confidence}.")
    k = _critical_count(len(differences), confidence) if len(differences) else 0
    if k == 0:
        return math.nan, math.nan
    walsh = walsh_averages(differences)
    return float(walsh[k - 1]), float(walsh[len(walsh) - k])


def equivalence_test(differences: np.ndarray, margin: float) -> float:
    """The p-value of two one-sided signed-rank tests (TOST) that the shift of
    ``differences`` lies inside ``(-margin, +margin)``: the larger of the two one-sided
    p-values. Below a level alpha, the shift is shown equivalent to 0 at that margin.

    Raises:
        ValueError: ``margin`` is not positive, or ``differences`` is empty.
    """
    if not margin > 0:
        raise ValueError(f"Invalid margin: must be > 0, got {margin}.")
    above_lower = signed_rank_p_value(differences, -margin, "greater")
    below_upper = signed_rank_p_value(differences, margin, "less")
    return max(above_lower, below_upper)


def noninferiority_test(differences: np.ndarray, margin: float) -> float:
    """The p-value of the one-sided signed-rank test that the shift of ``differences`` lies
    above ``-margin``: below a level alpha, the first side is shown to be no worse than the
    second by more than ``margin`` (it may be better by any amount).

    Raises:
        ValueError: ``margin`` is not positive, or ``differences`` is empty.
    """
    if not margin > 0:
        raise ValueError(f"Invalid margin: must be > 0, got {margin}.")
    return signed_rank_p_value(differences, -margin, "greater")


@dataclass(frozen=True)
class PairedStatistics:
    """Paired differences summarised by the signed-rank family (see the module docs).

    Attributes:
        n: pairs.
        estimate: the Hodges-Lehmann estimate of the shift.
        interval: its confidence interval (NaN where ``n`` is too small for it).
        p_value: the two-sided signed-rank p-value against a shift of 0.
        equivalence_p_value: the TOST p-value at ``margin`` (None without a margin).
        margin: the equivalence margin, in the differences' unit (None: not tested).
        smallest_possible_p: the smallest two-sided p-value ``n`` pairs can give.
    """

    n: int
    estimate: float
    interval: tuple[float, float]
    p_value: float
    equivalence_p_value: float | None
    margin: float | None
    smallest_possible_p: float


def paired_statistics(
    differences: np.ndarray, *, margin: float | None = None, confidence: float = 0.95
) -> PairedStatistics:
    """Estimate, interval, p-value and (with a ``margin``) equivalence test of paired
    ``differences``.

    Raises:
        ValueError: ``differences`` is empty, or ``margin`` is not positive.
    """
    d = np.asarray(differences, dtype=float)
    return PairedStatistics(
        n=len(d),
        estimate=hodges_lehmann(d),
        interval=hodges_lehmann_interval(d, confidence),
        p_value=signed_rank_p_value(d),
        equivalence_p_value=None if margin is None else equivalence_test(d, margin),
        margin=margin,
        smallest_possible_p=min(1.0, 2.0 / 2 ** len(d)),
    )


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """``p_values`` adjusted for their number (Benjamini-Hochberg, SciPy's
    ``false_discovery_control``), in the same order; empty for none."""
    if not p_values:
        return []
    return [float(p) for p in stats.false_discovery_control(np.asarray(p_values, dtype=float))]


def expected_maximum(values: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """The unbiased estimate of E[max of k trials], for each k in ``ks`` (1 <= k <= n): the
    mean of the maxima of all k-subsets of the ``n`` ``values``, drawn without replacement,

        E_k = sum_i  C(i - 1, k - 1) / C(n, k)  v_(i)        (v_(1) <= ... <= v_(n)),

    the weight being the share of k-subsets whose largest value is v_(i) (Dodge, Gururangan,
    Card, Schwartz and Smith, "Expected Validation Performance and Estimation of a Random
    Variable's Maximum", Findings of EMNLP 2021; their 2019 paper's draws with replacement are
    biased low). ``values`` may be 2-D (one sample per row); the result then has a row each.

    Raises:
        ValueError: a k is below 1 or above n.
    """
    ordered = np.sort(np.atleast_2d(np.asarray(values, dtype=float)), axis=-1)
    n = ordered.shape[-1]
    ks = np.asarray(ks, dtype=int)
    if ks.size and (ks.min() < 1 or ks.max() > n):
        raise ValueError(f"Invalid k: must be between 1 and n = {n}, got {ks.tolist()}.")
    i = np.arange(1, n + 1)[:, None]
    k = ks[None, :]
    # C(i - 1, k - 1) / C(n, k) in logarithms: the binomials overflow beyond n ~ 1000
    possible = i >= k
    log_weights = (
        special.gammaln(i) - special.gammaln(k) - special.gammaln(np.maximum(i - k + 1, 1))
    ) - (special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1))
    weights = np.where(possible, np.exp(np.where(possible, log_weights, 0.0)), 0.0)
    result: np.ndarray = ordered @ weights
    return result if np.ndim(values) > 1 else result[0]
