"""The sensitivity atlas's analysis, on plain arrays: which hyperparameters have an effect (over
the whole space, and where users stand), how large it is in the metric's units, how often runs
collapse, safe ranges, interactions, where AdamZ's controller acts, and one recommended
configuration across workloads.

Every function here takes arrays (configurations x hyperparameters, and the metric's values as
configurations x seeds) and returns plain numbers, so that tests feed synthetic data with
planted effects; :mod:`adamz.reports._atlas_report` reads a sensitivity study into these arrays
and draws them.

**Importance** is a Sobol analysis (SALib's ``sobol`` on its Saltelli sample) of a random
forest (scikit-learn's, the model Optuna's fANOVA fits) trained on the configurations' mean
values: each hyperparameter's first-order share of the variance, its total effect (with every
interaction it is in) and each pair's second-order share, all as shares of the variance of a
single run's metric. The forest makes the estimators work from given data (the design is Sobol
or random points, not a Saltelli design). SALib's own given-data estimators were tried first and
give less here: HDMR's fits diverge on bootstrap resamples of a few hundred configurations,
RBD-FAST gives first-order shares only, delta a moment-independent index rather than a variance
share; Optuna's fANOVA, through its public interface, gives first-order shares normalised to
sum to 1, which hides the noise.

**The test asks whether an effect exists.** :data:`NULL_COLUMNS` inert columns are drawn beside
the design and go through the same forest and Sobol analysis (and the same binning for the
effects in points): a hyperparameter has an effect when it beats the largest inert column in at
least :data:`CONFIDENCE` of the resamples. The earlier test, "its total effect's interval lies
above the noise floor's", asked whether the effect is larger than one run's seed noise, and
called a 20-point learning-rate curve "no measurable effect".

**Intervals** come from a Bayesian bootstrap: each resample weighs the configurations with
Dirichlet(1, ..., 1) weights instead of drawing them with replacement, so no configuration
enters a fit twice (a forest fitted on duplicates memorises them, and inert columns' shares
rose above the full data's estimate).

**Effects in points** (:func:`effects_in_points`): the spread of the bins' mean values, and of
the bins' 10th percentile of single runs (where collapses show), with the same null.

**The noise floor** is the share of the variance lying between the seeds of one configuration;
:func:`instability` says how much of it is collapses (runs far below their configuration's
median), which bin medians hide.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CONFIDENCE",
    "MIN_CONFIGURATIONS",
    "MIN_PER_BIN",
    "Curve",
    "Effect",
    "Factor",
    "Grid",
    "Importance",
    "Interval",
    "bin_index",
    "configurations_to_rank",
    "controller_activity",
    "curve_bins",
    "effects_in_points",
    "grid_bins",
    "importance",
    "instability",
    "interaction_grid",
    "noise_floor",
    "recommend",
    "safe_range",
    "sensitivity_curve",
    "unit_cube",
]

CONFIDENCE = 0.95
CONFIGURATIONS_PER_FACTOR = 10
"""Configurations per hyperparameter (and at least :data:`MIN_CONFIGURATIONS`) an importance
needs: fewer leave the forest a few leaves per hyperparameter, and its shares its seed's."""
MIN_CONFIGURATIONS = 50
TREES = 32
NULL_COLUMNS = 4
NULL_STREAM = 0x6E756C6C
"""Mixed into the seed of the inert columns and resamples: a design or sampler seeded with the
same number draws the same uniforms, and a column equal to a real one's would not be inert."""
"""Inert columns drawn beside the design to make the null (see :func:`importance`)."""
SALTELLI_BASE = 1024
"""Base points of the Saltelli sample the forest is evaluated on (x (2d + 2) points)."""
MIN_PER_BIN = 3
"""Configurations a bin needs for its median to count (a safe range never rests on fewer)."""


@dataclass(frozen=True)
class Factor:
    """One hyperparameter of the design: a numeric range (``log`` scale or linear, ``integer``
    or not) or, with ``choices``, a categorical whose values the arrays hold as choice indices."""

    name: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def scale(self, values: np.ndarray) -> np.ndarray:
        """``values`` on the factor's sampling scale (log10 for a log factor)."""
        values = np.asarray(values, dtype=float)
        return np.log10(values) if self.log and self.choices is None else values

    def unscale(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        return 10**values if self.log and self.choices is None else values

    def label(self, index: int) -> str:
        """How choice ``index`` of a categorical reads (``null``: "none")."""
        assert self.choices is not None
        choice = self.choices[index]
        return (
            "none"
            if choice is None
            else f"{choice:g}"
            if isinstance(choice, float)
            else str(choice)
        )


@dataclass(frozen=True)
class Interval:
    """An estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}

    def text(self, digits: int = 2) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Importance:
    """Variance shares of one metric, each with its interval, against a null (see the module
    docs).

    Attributes:
        first_order, total: per hyperparameter.
        pairs: per pair ``(a, b)`` (names in the factors' order): its second-order share.
        noise: the noise floor: the share between the seeds of one configuration.
        null: the largest total-effect share among :data:`NULL_COLUMNS` inert columns put
            through the same forest and Sobol analysis: what a hyperparameter that does nothing
            gets.
        support: per hyperparameter, the share of resamples in which its total effect exceeds
            that resample's null.
        measurable: per hyperparameter, whether ``support`` reaches :data:`CONFIDENCE`: the
            effect exists, however small it is against the seed noise of one run.
        resamples: Bayesian-bootstrap resamples the intervals come from.
        surrogate_r2: the forest's out-of-bag R² on the configurations' mean values: how much
            of their variance the shares can speak for.
    """

    first_order: dict[str, Interval]
    total: dict[str, Interval]
    pairs: dict[tuple[str, str], Interval]
    noise: Interval
    null: Interval
    support: dict[str, float]
    measurable: dict[str, bool]
    resamples: int
    surrogate_r2: float

    def ranked(self) -> list[str]:
        """The measurable hyperparameters, largest total effect first."""
        return sorted(
            (name for name, yes in self.measurable.items() if yes),
            key=lambda name: -self.total[name].estimate,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_order": {name: value.as_dict() for name, value in self.first_order.items()},
            "total": {name: value.as_dict() for name, value in self.total.items()},
            "pairs": {f"{a} x {b}": value.as_dict() for (a, b), value in self.pairs.items()},
            "noise_floor": self.noise.as_dict(),
            "null": self.null.as_dict(),
            "support": dict(self.support),
            "measurable": dict(self.measurable),
            "ranked": self.ranked(),
            "resamples": self.resamples,
            "confidence": CONFIDENCE,
            "surrogate_oob_r2": self.surrogate_r2,
            "estimator": f"SALib Sobol analysis of a random forest ({TREES} trees) fitted to the "
            "configurations' mean values, as shares of one run's variance; null: the largest "
            f"share of {NULL_COLUMNS} inert columns through the same analysis; intervals: "
            "Bayesian bootstrap over configurations (weights, no duplicates)",
        }


def unit_cube(x: np.ndarray, factors: Sequence[Factor]) -> np.ndarray:
    """``x`` (configurations x factors) mapped into [0, 1] per factor, on its sampling scale;
    a categorical's choice indices spread evenly over [0, 1]."""
    columns = []
    for column, factor in zip(np.asarray(x, dtype=float).T, factors, strict=True):
        if factor.choices is not None:
            columns.append(column / max(len(factor.choices) - 1, 1))
        else:
            low, high = factor.scale(np.array([factor.low, factor.high]))
            columns.append((factor.scale(column) - low) / (high - low))
    return np.column_stack(columns)


def noise_floor(values: np.ndarray) -> float:
    """The share of the variance of single runs that lies between the seeds of one
    configuration: mean over configurations of the variance over seeds, over the variance of
    all runs (both unbiased). Near 1 when the hyperparameters do nothing, near 0 when the seeds
    agree.

    Args:
        values: configurations x seeds, at least 2 seeds.

    Raises:
        ValueError: fewer than 2 seeds or 2 configurations.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] < 2 or values.shape[0] < 2:
        raise ValueError(
            f"Invalid values: the noise floor needs configurations x seeds with at least 2 of "
            f"each, got shape {values.shape}."
        )
    total = float(np.var(values, ddof=1))
    if total == 0:
        return 0.0
    return float(np.mean(np.var(values, axis=1, ddof=1)) / total)


def _sobol_shares(
    unit: np.ndarray,
    means: np.ndarray,
    weights: np.ndarray,
    run_variance: float,
    points: np.ndarray,
    seed: int,
    *,
    score: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """First-order and total shares per column, pair shares (a matrix, upper triangle) and,
    with ``score``, the out-of-bag R² (else NaN), of a forest fitted to ``means`` with
    ``weights``, as shares of ``run_variance``."""
    from SALib.analyze import sobol  # heavy (pandas, matplotlib): only where the atlas runs
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(
        n_estimators=TREES, min_samples_leaf=2, oob_score=score, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the out-of-bag score's note on few trees
        forest.fit(unit, means, sample_weight=weights)
    predicted = forest.predict(points)
    names = [str(i) for i in range(unit.shape[1])]
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = sobol.analyze(
            problem, predicted, calc_second_order=True, num_resamples=2, seed=seed
        )
    scale = float(np.var(predicted)) / run_variance
    pairs = np.nan_to_num(np.asarray(result["S2"], dtype=float)) * scale
    first = np.asarray(result["S1"], dtype=float) * scale
    total = np.asarray(result["ST"], dtype=float) * scale
    return first, total, pairs, float(forest.oob_score_) if score else math.nan


def _weighted_variance(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """The variance of all runs and the mean variance between the seeds of one configuration,
    each configuration (with all its seeds) weighted by ``weights`` (which sum to 1)."""
    seeds = values.shape[1]
    mean = float(np.sum(weights[:, None] * values) / seeds)
    total = float(np.sum(weights[:, None] * (values - mean) ** 2) / seeds)
    within = float(np.sum(weights * np.var(values, axis=1, ddof=1)))
    return total, within


def configurations_to_rank(factors: int) -> int:
    """Configurations an importance over ``factors`` hyperparameters needs (see
    :data:`CONFIGURATIONS_PER_FACTOR`)."""
    return max(MIN_CONFIGURATIONS, CONFIGURATIONS_PER_FACTOR * factors)


def _interval(estimate: float, draws: Sequence[float]) -> Interval:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(np.asarray(draws, dtype=float), [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def importance(
    x: np.ndarray,
    values: np.ndarray,
    factors: Sequence[Factor],
    *,
    resamples: int = 100,
    seed: int = 0,
) -> Importance:
    """First-order and total-effect shares of every factor, pair shares, the noise floor and
    the null, each with an interval over Bayesian-bootstrap weights of the configurations (see
    the module docs).

    Args:
        x: configurations x factors (a categorical's choice indices).
        values: the metric, configurations x seeds (at least 2 seeds).
        resamples: bootstrap resamples of the configurations.

    Raises:
        ValueError: fewer configurations than :data:`CONFIGURATIONS_PER_FACTOR` per factor
            (and :data:`MIN_CONFIGURATIONS`), fewer than 2 seeds, a metric that does not vary,
            or ``resamples`` < 1.
    """
    from SALib.sample import sobol as saltelli

    values = np.asarray(values, dtype=float)
    configurations = values.shape[0]
    needed = configurations_to_rank(len(factors))
    if configurations < needed:
        raise ValueError(
            f"Invalid values: importance needs at least {needed} configurations "
            f"({CONFIGURATIONS_PER_FACTOR} per hyperparameter), got {configurations}."
        )
    if resamples < 1:
        raise ValueError(f"Invalid resamples: must be >= 1, got {resamples}.")
    floor = noise_floor(values)  # checks the shape
    if float(np.var(values)) == 0:
        raise ValueError("Invalid values: the metric is the same in every run, nothing to share.")
    names = [factor.name for factor in factors]
    rng = np.random.default_rng([seed, NULL_STREAM])  # not a sampler's stream
    # The null: inert columns drawn beside the design, fitted and analysed with it. A forest
    # splits on any column a little (it fits the seeds' noise too), so "larger than an inert
    # column's share" is the question "does this effect exist", asked at the estimator's own
    # resolution.
    unit = np.column_stack([unit_cube(x, factors), rng.random((configurations, NULL_COLUMNS))])
    columns = unit.shape[1]
    problem = {"num_vars": columns, "names": list(map(str, range(columns)))}
    problem["bounds"] = [[0.0, 1.0]] * columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's note on the balance of Sobol points
        points = saltelli.sample(problem, SALTELLI_BASE, calc_second_order=True, seed=seed)
    means = values.mean(axis=1)
    even = np.full(configurations, 1.0 / configurations)
    first, total, pairs, r2 = _sobol_shares(
        unit, means, even, float(np.var(values, ddof=1)), points, seed, score=True
    )
    # Bayesian bootstrap: each resample weighs the configurations (Dirichlet(1, ..., 1)) instead
    # of drawing them with replacement, so that no configuration enters a fit twice: a forest
    # fitted on duplicates memorises them, and its shares of inert columns then rise above the
    # full data's (intervals that miss their own estimate).
    draws = []
    for _ in range(resamples):
        weights = rng.dirichlet(np.ones(configurations))
        variance, within = _weighted_variance(values, weights)
        if variance == 0:
            continue
        shares = _sobol_shares(unit, means, weights, variance, points, int(rng.integers(2**31)))
        draws.append((*shares[:3], within / variance))
    if not draws:
        raise ValueError("Invalid values: no bootstrap resample of them varies.")
    real = len(names)
    null_draws = [float(draw[1][real:].max()) for draw in draws]
    support = {
        name: float(
            np.mean([draw[1][i] > null for draw, null in zip(draws, null_draws, strict=True)])
        )
        for i, name in enumerate(names)
    }
    return Importance(
        first_order={
            name: _interval(first[i], [draw[0][i] for draw in draws])
            for i, name in enumerate(names)
        },
        total={
            name: _interval(total[i], [draw[1][i] for draw in draws])
            for i, name in enumerate(names)
        },
        pairs={
            (a, names[j]): _interval(pairs[i, j], [draw[2][i, j] for draw in draws])
            for i, a in enumerate(names)
            for j in range(i + 1, real)
        },
        noise=_interval(floor, [draw[3] for draw in draws]),
        null=_interval(float(total[real:].max()), null_draws),
        support=support,
        measurable={name: support[name] >= CONFIDENCE for name in names},
        resamples=len(draws),
        surrogate_r2=r2,
    )


EFFECT_BINS = 4
"""Equal-count bins per numeric factor for its effect in points (a categorical: its choices)."""
TAIL = 10
"""The lower tail's percentile: the effect on the worst runs, where collapses show."""
COLLAPSE_DROP = 5.0
"""A run collapsed when it lies more than this many points (or loss units) worse than its
configuration's median over seeds, or diverged."""


@dataclass(frozen=True)
class Effect:
    """One factor's effect in the metric's own units (points of accuracy), against the null.

    Attributes:
        mean_spread: the largest minus the smallest mean over the factor's bins (of the
            configurations' seed means).
        tail_spread: the same for each bin's :data:`TAIL`-th percentile of single runs (for a
            minimised metric, the 100 - TAIL-th): how much the worst runs move.
        null: the largest ``mean_spread`` of the inert columns, binned the same way.
        support: the share of resamples in which ``mean_spread`` exceeds that resample's null.
        measurable: ``support`` reaches :data:`CONFIDENCE`.
        best_bin: the label of the bin with the best mean.
    """

    mean_spread: Interval
    tail_spread: Interval
    null: Interval
    support: float
    measurable: bool
    best_bin: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean_spread": self.mean_spread.as_dict(),
            "tail_spread": self.tail_spread.as_dict(),
            "null": self.null.as_dict(),
            "support": self.support,
            "measurable": self.measurable,
            "best_bin": self.best_bin,
        }


def _effect_bins(column: np.ndarray, factor: Factor | None) -> tuple[np.ndarray, list[str]]:
    """Each configuration's bin (equal counts; a categorical's choice) and the bins' labels."""
    if factor is not None and factor.choices is not None:
        labels = [factor.label(i) for i in range(len(factor.choices))]
        return column.astype(int), labels
    edges = np.quantile(column, np.linspace(0, 1, EFFECT_BINS + 1))
    index = np.clip(np.searchsorted(edges, column, side="right") - 1, 0, EFFECT_BINS - 1)
    labels = [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
    return index, labels


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def _spreads(
    index: np.ndarray,
    bins: int,
    values: np.ndarray,
    weights: np.ndarray,
    *,
    maximize: bool,
) -> tuple[float, float, int]:
    """The spread of the bins' weighted means and of their lower tails, and the best bin."""
    means = np.full(bins, np.nan)
    tails = np.full(bins, np.nan)
    seeds = values.shape[1]
    for b in range(bins):
        inside = index == b
        if weights[inside].sum() <= 0:
            continue
        w = weights[inside]
        means[b] = float(np.sum(w * values[inside].mean(axis=1)) / w.sum())
        runs = values[inside].ravel()
        tails[b] = _weighted_quantile(
            runs, np.repeat(w, seeds), TAIL / 100 if maximize else 1 - TAIL / 100
        )
    best = int(np.nanargmax(means if maximize else -means))
    return (
        float(np.nanmax(means) - np.nanmin(means)),
        float(np.nanmax(tails) - np.nanmin(tails)),
        best,
    )


def effects_in_points(
    x: np.ndarray,
    values: np.ndarray,
    factors: Sequence[Factor],
    *,
    maximize: bool,
    resamples: int = 200,
    seed: int = 0,
) -> dict[str, Effect]:
    """Each factor's effect in the metric's units, with Bayesian-bootstrap intervals and a null
    of :data:`NULL_COLUMNS` inert columns binned the same way (see :class:`Effect`).

    A spread of bin means is never zero: the other factors and the seeds move each bin's mean.
    The inert columns show how far they move it, so the question asked is the one the null
    answers: does this factor move the metric more than a column that does nothing?

    Raises:
        ValueError: fewer than :data:`MIN_PER_BIN` configurations per bin, or ``resamples`` < 1.
    """
    values = np.asarray(values, dtype=float)
    configurations = values.shape[0]
    if configurations < MIN_PER_BIN * EFFECT_BINS:
        raise ValueError(
            f"Invalid values: effects need at least {MIN_PER_BIN * EFFECT_BINS} configurations, "
            f"got {configurations}."
        )
    if resamples < 1:
        raise ValueError(f"Invalid resamples: must be >= 1, got {resamples}.")
    rng = np.random.default_rng([seed, NULL_STREAM])  # not a sampler's stream
    binned = [_effect_bins(np.asarray(x, dtype=float)[:, i], f) for i, f in enumerate(factors)]
    inert = [
        _effect_bins(np.asarray(rng.random((configurations,))), None) for _ in range(NULL_COLUMNS)
    ]
    even = np.ones(configurations)

    def spreads(weights: np.ndarray) -> list[tuple[float, float, int]]:
        return [
            _spreads(index, len(labels), values, weights, maximize=maximize)
            for index, labels in binned + inert
        ]

    point = spreads(even)
    draws = [spreads(rng.dirichlet(np.ones(configurations))) for _ in range(resamples)]
    real = len(factors)
    nulls = [max(draw[real + k][0] for k in range(NULL_COLUMNS)) for draw in draws]
    found: dict[str, Effect] = {}
    for i, factor in enumerate(factors):
        support = float(
            np.mean([draw[i][0] > null for draw, null in zip(draws, nulls, strict=True)])
        )
        found[factor.name] = Effect(
            mean_spread=_interval(point[i][0], [draw[i][0] for draw in draws]),
            tail_spread=_interval(point[i][1], [draw[i][1] for draw in draws]),
            null=_interval(max(point[real + k][0] for k in range(NULL_COLUMNS)), nulls),
            support=support,
            measurable=support >= CONFIDENCE,
            best_bin=binned[i][1][point[i][2]],
        )
    return found


def instability(
    values: np.ndarray, diverged: np.ndarray | None = None, *, maximize: bool
) -> dict[str, Any]:
    """How often runs collapse, and how far seeds spread, over ``values`` (configurations x
    seeds, in the page's units).

    A run *collapses* when it lies more than :data:`COLLAPSE_DROP` worse than its
    configuration's median over seeds, or its configuration diverged. Medians alone hide this:
    where outcomes are bimodal, a median can be good while one run in five fails.

    Returns ``collapse_share`` (of runs), ``configurations_with_a_collapse`` (share),
    ``seed_sd_median`` and ``seed_sd_p90`` (the standard deviation over one configuration's
    seeds), and ``least_stable_share``: the share of the within-configuration variance held by
    the 5 % least stable configurations.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0:
        return {"configurations": 0}
    median = np.median(values, axis=1, keepdims=True)
    worse = (median - values) if maximize else (values - median)
    collapsed = worse > COLLAPSE_DROP
    if diverged is not None:
        collapsed |= np.asarray(diverged, dtype=bool)[:, None]
    variance = np.var(values, axis=1, ddof=1)
    sd = np.sqrt(variance)
    top = max(1, round(0.05 * len(variance)))
    held = float(np.sort(variance)[-top:].sum() / variance.sum()) if variance.sum() > 0 else 0.0
    return {
        "configurations": int(values.shape[0]),
        "collapse_share": float(collapsed.mean()),
        "configurations_with_a_collapse": float(collapsed.any(axis=1).mean()),
        "seed_sd_median": float(np.median(sd)),
        "seed_sd_p90": float(np.percentile(sd, 90)),
        "least_stable_share": held,
        "collapse_drop": COLLAPSE_DROP,
    }


@dataclass(frozen=True)
class Curve:
    """The metric over one factor's bins (the other factors varying).

    Attributes:
        edges: bin edges on the factor's own scale (empty for a categorical).
        labels: how each bin reads.
        centers: each bin's middle on the factor's own scale (geometric for a log factor; the
            choice index for a categorical).
        median, q1, q3: of the configurations' values in each bin (NaN below
            :data:`MIN_PER_BIN` configurations).
        median_low, median_high: the median's 95 % interval (order statistics, no assumption
            on the spread's shape; NaN below 6 configurations).
        counts: configurations per bin.
    """

    factor: Factor
    edges: np.ndarray
    labels: list[str]
    centers: np.ndarray
    median: np.ndarray
    q1: np.ndarray
    q3: np.ndarray
    median_low: np.ndarray
    median_high: np.ndarray
    counts: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {
            "bins": self.labels,
            "edges": self.edges.tolist(),
            "median": self.median.tolist(),
            "median_ci95": [self.median_low.tolist(), self.median_high.tolist()],
            "q1": self.q1.tolist(),
            "q3": self.q3.tolist(),
            "counts": self.counts.tolist(),
        }


def curve_bins(configurations: int) -> int:
    """Bins per numeric factor for ``configurations``: about 20 configurations a bin, 2 to 10."""
    return min(10, max(2, configurations // 20))


def grid_bins(configurations: int) -> int:
    """Bins per axis of a pair's grid: about 8 configurations a cell, 2 to 6 a side."""
    return min(6, max(2, int(math.sqrt(configurations / 8))))


def _edges(factor: Factor, bins: int) -> np.ndarray:
    """Bin edges on the factor's own scale, evenly spaced on its sampling scale; an integer
    factor gets no more bins than it has values."""
    if factor.integer:
        bins = min(bins, int(factor.high - factor.low) + 1)
    low, high = factor.scale(np.array([factor.low, factor.high]))
    return factor.unscale(np.linspace(low, high, bins + 1))


def bin_index(x: np.ndarray, factor: Factor, bins: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each value's bin, the edges (empty for a categorical) and the bins' labels."""
    x = np.asarray(x, dtype=float)
    if factor.choices is not None:
        labels = [factor.label(i) for i in range(len(factor.choices))]
        return x.astype(int), np.zeros(0), labels
    edges = _edges(factor, bins)
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
    return index, edges, labels


def sensitivity_curve(x: np.ndarray, y: np.ndarray, factor: Factor, bins: int) -> Curve:
    """The median and quartiles of ``y`` (one value per configuration) in each of ``bins`` bins
    of ``x`` (log-spaced for a log factor; one bin per choice for a categorical)."""
    y = np.asarray(y, dtype=float)
    index, edges, labels = bin_index(x, factor, bins)
    count = len(labels)
    median, q1, q3, low, high = (np.full(count, np.nan) for _ in range(5))
    counts = np.bincount(index, minlength=count)
    for b in range(count):
        inside = y[index == b]
        if len(inside) >= MIN_PER_BIN:
            q1[b], median[b], q3[b] = np.percentile(inside, [25, 50, 75])
            low[b], high[b] = _median_interval(inside)
    if factor.choices is not None:
        centers = np.arange(count, dtype=float)
    else:
        scaled = factor.scale(edges)
        centers = factor.unscale((scaled[:-1] + scaled[1:]) / 2)
    return Curve(factor, edges, labels, centers, median, q1, q3, low, high, counts)


def _median_interval(values: np.ndarray) -> tuple[float, float]:
    """The median's interval from order statistics (``scipy.stats.quantile_test``); NaN where
    too few values give one at :data:`CONFIDENCE`."""
    from scipy import stats

    if len(values) < 6 or float(np.ptp(values)) == 0:
        median = float(np.median(values))
        return (median, median) if len(values) >= 6 else (math.nan, math.nan)
    test = stats.quantile_test(values, q=float(np.median(values)), p=0.5)
    interval = test.confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high)


def safe_range(curve: Curve, margin: float, *, maximize: bool) -> dict[str, Any]:
    """The bins whose median stays within ``margin`` of the best bin's (in the metric's units).

    A bin whose median is further off stays in if its median's 95 % interval still reaches
    within the margin: with the other hyperparameters varying, a bin's median carries their
    noise, and a range narrowed by that noise alone would tell a reader to avoid values that
    are not shown to be worse.

    For a numeric factor, the safe range is the unbroken run of such bins around the best one
    (a bin too thin to have a median breaks it), as ``low`` and ``high`` on the factor's scale;
    for a categorical, the choices within the margin. ``within`` flags every bin within it.

    Raises:
        ValueError: ``margin`` < 0, or no bin has a median.
    """
    if not margin >= 0:
        raise ValueError(f"Invalid margin: must be >= 0, got {margin}.")
    better = curve.median if maximize else -curve.median
    if not np.isfinite(better).any():
        raise ValueError(
            f"Invalid curve: no bin of {curve.factor.name} has {MIN_PER_BIN} configurations."
        )
    best = int(np.nanargmax(better))
    reach = curve.median_high if maximize else -curve.median_low  # the interval's better end
    reach = np.where(np.isfinite(reach), np.fmax(reach, better), better)
    within = np.isfinite(better) & (reach >= better[best] - margin)
    result: dict[str, Any] = {
        "best_bin": curve.labels[best],
        "best_median": float(curve.median[best]),
        "within": within.tolist(),
        "margin": margin,
    }
    if curve.factor.choices is not None:
        result["choices"] = [curve.factor.choices[i] for i in np.flatnonzero(within)]
        result["labels"] = [curve.labels[i] for i in np.flatnonzero(within)]
        result["everywhere"] = bool(within.all())
        return result
    first = last = best
    while first > 0 and within[first - 1]:
        first -= 1
    while last < len(within) - 1 and within[last + 1]:
        last += 1
    result.update(
        low=float(curve.edges[first]),
        high=float(curve.edges[last + 1]),
        everywhere=bool(first == 0 and last == len(within) - 1),
    )
    return result


@dataclass(frozen=True)
class Grid:
    """A statistic of the metric (its median) over two factors' bins: ``median[i, j]`` for bin
    ``i`` of the first and ``j`` of the second (NaN in a cell with no configuration), and the
    counts."""

    factors: tuple[Factor, Factor]
    labels: tuple[list[str], list[str]]
    median: np.ndarray
    counts: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {
            "pair": [factor.name for factor in self.factors],
            "rows": self.labels[0],
            "columns": self.labels[1],
            "median": self.median.tolist(),
            "counts": self.counts.tolist(),
        }


def interaction_grid(
    x: np.ndarray,
    y: np.ndarray,
    factors: tuple[Factor, Factor],
    bins: int,
    statistic: Callable[[np.ndarray], Any] = np.median,
) -> Grid:
    """``statistic`` (the median) of ``y`` in each cell of two factors' bins, and the count per
    cell.

    Args:
        x: configurations x 2, the two factors' values.
        y: one value per configuration: the metric, or 1 where the controller fired and 0
            where it did not (with ``statistic=np.mean``: the share where it fires).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    rows, _, row_labels = bin_index(x[:, 0], factors[0], bins)
    columns, _, column_labels = bin_index(x[:, 1], factors[1], bins)
    median = np.full((len(row_labels), len(column_labels)), np.nan)
    counts = np.zeros_like(median, dtype=int)
    np.add.at(counts, (rows, columns), 1)
    for i, j in zip(*np.nonzero(counts), strict=True):
        median[i, j] = statistic(y[(rows == i) & (columns == j)])
    return Grid(factors, (row_labels, column_labels), median, counts)


def controller_activity(
    overshoots: np.ndarray, stagnations: np.ndarray, values: np.ndarray, *, maximize: bool
) -> dict[str, Any]:
    """Where AdamZ's controller acts, per configuration (one run's counts each).

    Returns ``never_fires`` (the share of configurations with no adjustment at all: there AdamZ
    is Adam, with clipping where it clips), the same among the best tenth by ``values``
    (``never_fires_in_best_tenth``), the median value where it fires and where it never does,
    and the mean adjustments per run. Configurations without a record (NaN) are left out.

    Raises:
        ValueError: no configuration has a record.
    """
    overshoots = np.asarray(overshoots, dtype=float)
    stagnations = np.asarray(stagnations, dtype=float)
    values = np.asarray(values, dtype=float)
    known = np.isfinite(overshoots) & np.isfinite(stagnations)
    if not known.any():
        raise ValueError("Invalid records: no configuration has the controller's counts.")
    fires = (overshoots + stagnations)[known] > 0
    kept = values[known]
    order = np.argsort(-kept if maximize else kept, kind="stable")
    best = order[: max(1, len(order) // 10)]

    def median(mask: np.ndarray) -> float | None:
        return float(np.median(kept[mask])) if mask.any() else None

    return {
        "configurations": int(known.sum()),
        "never_fires": float(1 - fires.mean()),
        "never_fires_in_best_tenth": float(1 - fires[best].mean()),
        "best_tenth": len(best),
        "median_value_where_it_fires": median(fires),
        "median_value_where_it_never_fires": median(~fires),
        "mean_overshoots": float(overshoots[known].mean()),
        "mean_stagnations": float(stagnations[known].mean()),
    }


def recommend(
    workloads: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, bool | None]]],
    factors: Sequence[Factor],
    defaults: Mapping[str, Any],
    *,
    maximize: bool,
    fixed: Sequence[str] = ("lr",),
) -> dict[str, Any]:
    """One configuration for every workload, by the rule the atlas page states.

    For each factor not in ``fixed`` (the rate, which a user tunes): where no workload finds
    its effect (``measurable`` not True anywhere), its default; otherwise split its range into
    :data:`EFFECT_BINS` equal bins on its sampling scale (a categorical: its choices), and take
    the bin whose largest shortfall against each workload's best bin is smallest (max-min
    regret over the workloads, on the mean of the configurations in the good region). The value
    is the default where the bin holds it, else the bin's middle (geometric on a log scale),
    to two significant digits.

    Args:
        workloads: per workload, the good region's ``x`` (configurations x factors), the
            configurations' mean values, and per factor whether its effect exists there.
        defaults: per factor name, its default (``lr_bounds[0]`` for a pair's element).

    Returns:
        ``values`` (factor -> value) and ``reasons`` (factor -> one line each).
    """
    values: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for index, factor in enumerate(factors):
        if factor.name in fixed:
            continue
        default = defaults.get(factor.name)
        found = [name for name, (_, _, m) in workloads.items() if m.get(factor.name) is True]
        if not found:
            values[factor.name] = default
            reasons[factor.name] = "no workload finds an effect: the default"
            continue
        if factor.choices is not None:
            bins = len(factor.choices)
            edges = None
        else:
            bins = EFFECT_BINS
            low, high = factor.scale(np.array([factor.low, factor.high]))
            edges = np.linspace(low, high, bins + 1)
        regret = np.zeros(bins)
        for x, y, _ in workloads.values():
            column = np.asarray(x, dtype=float)[:, index]
            if edges is None:
                where = column.astype(int)
            else:
                where = np.clip(
                    np.searchsorted(edges, factor.scale(column), "right") - 1, 0, bins - 1
                )
            means = np.array(
                [y[where == b].mean() if (where == b).any() else np.nan for b in range(bins)]
            )
            best = np.nanmax(means) if maximize else np.nanmin(means)
            shortfall = (best - means) if maximize else (means - best)
            regret = np.fmax(regret, np.nan_to_num(shortfall, nan=np.inf))
        chosen = int(np.argmin(regret))
        if edges is None:
            assert factor.choices is not None
            value = factor.choices[chosen]
        else:
            inside = default is not None and not isinstance(default, bool)
            if inside:
                scaled = float(factor.scale(np.array([default]))[0])
                inside = edges[chosen] <= scaled <= edges[chosen + 1]
            if inside:
                value = default
            else:
                middle = float(
                    factor.unscale(np.array([(edges[chosen] + edges[chosen + 1]) / 2]))[0]
                )
                value = round(middle) if factor.integer else float(f"{middle:.2g}")
        values[factor.name] = value
        reasons[factor.name] = (
            f"an effect on {_joined(found)}: the bin with the smallest largest shortfall "
            f"({float(regret[chosen]):.2f} below the best bin on some workload)"
        )
    return {"values": values, "reasons": reasons}


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
