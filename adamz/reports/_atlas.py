"""The sensitivity atlas's analysis, on plain arrays: which hyperparameters matter beyond the
seeds' noise, their safe ranges, their interactions, where AdamZ's controller acts, and the
guideline across workloads.

Every function here takes arrays (configurations x hyperparameters, and the metric's values as
configurations x seeds) and returns plain numbers, so that tests feed synthetic data;
:mod:`adamz.reports._atlas_report` reads a sensitivity study into these arrays and draws them.

**Importance** is a Sobol analysis (SALib's ``sobol`` on its Saltelli sample) of a random
forest (scikit-learn's, the model Optuna's fANOVA fits) trained on the configurations' values:
each hyperparameter's first-order share of the variance, its total effect (with every
interaction it is in) and each pair's second-order share. The forest makes the estimators work
from given data (the design is Sobol or random points, not a Saltelli design), at any size of
design. SALib's own given-data estimators were tried first and give less here: HDMR fits 16
coefficients per pair, which a design of a few hundred configurations over 9 hyperparameters
cannot carry (its fits diverge on bootstrap resamples), RBD-FAST gives first-order shares
only, delta a moment-independent index rather than a variance share; Optuna's fANOVA, through
its public interface, gives first-order shares normalised to sum to 1, which hides the noise.
A forest smooths: its shares err low, never high, so the atlas under-claims.

Every share, and the noise floor, is a share of the same variance: that of a single run's metric
(the forest's variance over the Saltelli sample, split by SALib, over the runs' variance). The
intervals are percentile intervals over
bootstrap resamples of the *configurations* (each with all its seeds), which is what a new
design of the same size would vary.

**The noise floor** is the share of that variance lying between the seeds of one
configuration: the mean over configurations of the variance over seeds, over the variance of
all runs. Re-running a configuration with another seed moves the metric by that much; a
hyperparameter whose total effect cannot be told apart from it (their intervals overlap) is
reported as having no measurable effect, and is not ranked.
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
    "Factor",
    "Grid",
    "Importance",
    "Interval",
    "bin_index",
    "configurations_to_rank",
    "controller_activity",
    "curve_bins",
    "grid_bins",
    "guideline",
    "importance",
    "interaction_grid",
    "noise_floor",
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
    """Variance shares of one metric, each with its interval (see the module docs).

    Attributes:
        first_order, total: per hyperparameter.
        pairs: per pair ``(a, b)`` (names in the factors' order): its second-order share.
        noise: the noise floor.
        measurable: per hyperparameter, whether its total effect's interval lies above the
            noise floor's.
        resamples: bootstrap resamples the intervals come from.
        surrogate_r2: the forest's out-of-bag R² on the configurations' mean values: how much
            of their variance the shares can speak for.
    """

    first_order: dict[str, Interval]
    total: dict[str, Interval]
    pairs: dict[tuple[str, str], Interval]
    noise: Interval
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
            "measurable": dict(self.measurable),
            "ranked": self.ranked(),
            "resamples": self.resamples,
            "confidence": CONFIDENCE,
            "surrogate_oob_r2": self.surrogate_r2,
            "estimator": f"SALib Sobol analysis of a random forest ({TREES} trees) fitted to the "
            "configurations' mean values, as shares of one run's variance; intervals: "
            "percentile bootstrap over configurations",
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
    unit: np.ndarray, means: np.ndarray, run_variance: float, points: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """First-order and total shares per factor, pair shares (a matrix, upper triangle) and the
    out-of-bag R², of a forest fitted to ``means``, as shares of ``run_variance``."""
    from SALib.analyze import sobol  # heavy (pandas, matplotlib): only where the atlas runs
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(
        n_estimators=TREES, min_samples_leaf=2, oob_score=True, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the out-of-bag score's note on few trees
        forest.fit(unit, means)
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
    return first, total, pairs, float(forest.oob_score_)


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
    """First-order and total-effect shares of every factor, pair shares and the noise floor,
    each with a bootstrap interval over configurations (see the module docs).

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
    unit = unit_cube(x, factors)
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's note on the balance of Sobol points
        points = saltelli.sample(problem, SALTELLI_BASE, calc_second_order=True, seed=seed)
    first, total, pairs, r2 = _sobol_shares(
        unit, values.mean(axis=1), float(np.var(values, ddof=1)), points, seed
    )
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        chosen = rng.integers(0, configurations, size=configurations)
        resample = values[chosen]
        variance = float(np.var(resample, ddof=1))
        if variance == 0:
            continue  # every chosen configuration scored alike: nothing to share
        shares = _sobol_shares(
            unit[chosen], resample.mean(axis=1), variance, points, int(rng.integers(2**31))
        )
        draws.append((*shares[:3], noise_floor(resample)))
    if not draws:
        raise ValueError("Invalid values: no bootstrap resample of them varies.")
    noise = _interval(floor, [draw[3] for draw in draws])
    total_shares = {
        name: _interval(total[i], [draw[1][i] for draw in draws]) for i, name in enumerate(names)
    }
    return Importance(
        first_order={
            name: _interval(first[i], [draw[0][i] for draw in draws])
            for i, name in enumerate(names)
        },
        total=total_shares,
        pairs={
            (a, names[j]): _interval(pairs[i, j], [draw[2][i, j] for draw in draws])
            for i, a in enumerate(names)
            for j in range(i + 1, len(names))
        },
        noise=noise,
        measurable={name: total_shares[name].low > noise.high for name in names},
        resamples=len(draws),
        surrogate_r2=r2,
    )


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


def guideline(
    workloads: Mapping[str, Mapping[str, Any]],
    factors: Sequence[Factor],
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    """What to tune and what to leave, as far as every workload's intervals support it.

    Args:
        workloads: per workload, ``measurable`` (per factor: True, False, or None where the
            importance could not be estimated) and ``safe`` (per factor: a
            :func:`safe_range` result, or None).
        factors: the factors, in the order to state them.
        defaults: the optimizer's library defaults, per factor name.

    Returns:
        ``tune`` (measurable on some workload), ``leave`` (name -> the value to leave it at:
        measurably inert on every workload and safe on every one), ``per_workload`` (inert
        everywhere, but no one value is safe on every workload), ``undetermined`` (the
        importance is missing somewhere and no workload found it measurable), and ``text``:
        the guideline in one sentence.
    """
    tune: list[str] = []
    leave: dict[str, Any] = {}
    per_workload: list[str] = []
    undetermined: list[str] = []
    for factor in factors:
        verdicts = [entry["measurable"].get(factor.name) for entry in workloads.values()]
        if any(verdict is True for verdict in verdicts):
            tune.append(factor.name)
        elif any(verdict is None for verdict in verdicts):
            undetermined.append(factor.name)
        else:
            ranges = [entry["safe"].get(factor.name) for entry in workloads.values()]
            value = _safe_everywhere(factor, ranges, defaults.get(factor.name))
            if value is _NONE_SAFE:
                per_workload.append(factor.name)
            else:
                leave[factor.name] = value
    names = ", ".join(workloads)
    parts = []
    if tune:
        parts.append(f"tune {_joined(tune)}")
    if leave:
        parts.append("leave " + _joined([f"{name} at {_shown(v)}" for name, v in leave.items()]))
    if per_workload:
        parts.append(f"set {_joined(per_workload)} per workload (no one value is safe on all)")
    if undetermined:
        parts.append(f"too few configurations to say for {_joined(undetermined)}")
    text = f"On {names}: " + "; ".join(parts) + "." if parts else f"On {names}: nothing to say."
    return {
        "tune": tune,
        "leave": leave,
        "per_workload": per_workload,
        "undetermined": undetermined,
        "text": text,
    }


_NONE_SAFE = object()


def _safe_everywhere(factor: Factor, ranges: list[Any], default: Any) -> Any:
    """The value to leave ``factor`` at: its default if every workload's safe range holds it,
    else the middle of their common range (geometric for a log factor), else ``_NONE_SAFE``."""
    if any(entry is None for entry in ranges):
        return _NONE_SAFE
    if factor.choices is not None:
        common = [c for c in factor.choices if all(c in entry["choices"] for entry in ranges)]
        if not common:
            return _NONE_SAFE
        return default if default in common else common[0]
    low = max(entry["low"] for entry in ranges)
    high = min(entry["high"] for entry in ranges)
    if low > high:
        return _NONE_SAFE
    if (
        isinstance(default, int | float)
        and not isinstance(default, bool)
        and low <= default <= high
    ):
        return default
    middle = float(factor.unscale(np.mean(factor.scale(np.array([low, high])))))
    return round(middle) if factor.integer else float(f"{middle:.2g}")


def _shown(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
