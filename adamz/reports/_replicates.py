"""Seed replicates: each configuration's value over seeds, with intervals and paired tests.

Used for replicate studies (:mod:`adamz.search.replicates`): the paper's tables and the seed
confirmation of ``report --confirm K``. Per run: the quartiles of the metric (a test metric)
over seeds, a distribution-free 95 % confidence interval of the median (``scipy.stats.
quantile_test``: order statistics of the binomial distribution, no assumption about the shape
of the spread), the validation median, the median training time, and the seeds that diverged
(counted at the workload's chance value, and named). Runs are ordered by their validation
median, never by a test value, and every run gets a Wilcoxon signed-rank test against the
first on the seeds both completed: the seeds are the same in every run, so it is paired.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from adamz.reports._data import Section, StudyData, is_diverged, run_metrics, train_result

__all__ = [
    "is_replicate_study",
    "median_interval",
    "paired_test",
    "replicate_runs",
    "replicates_section",
    "selection_metric",
]

CONFIDENCE = 0.95
MIN_SEEDS_FOR_INTERVAL = 6
"""Fewer seeds give no 95 % interval: not for a median (order statistics), and a bootstrap of
so few differences only repeats them."""


def is_replicate_study(data: StudyData) -> bool:
    return (data.definition or {}).get("kind") == "replicates"


def median_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free interval for the median (``scipy.stats.quantile_test``'s, from order
    statistics); NaN where there are too few values for ``confidence`` (n < 6 at 95 %)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    interval = stats.quantile_test(values, q=float(np.median(values)), p=0.5).confidence_interval(
        confidence
    )
    return float(interval.low), float(interval.high)


def selection_metric(data: StudyData) -> str:
    """The validation metric that ranks a replicate study's runs: its metric's ``val_`` twin."""
    metric = data.metric
    return "val_" + metric.split("_", 1)[1] if metric.startswith("test_") else metric


def _train_time(trial: FrozenTrial) -> float | None:
    result = train_result(trial)
    value = result.get("train_time_s") if result else None
    return float(value) if isinstance(value, int | float) else None


def replicate_runs(data: StudyData) -> dict[str, dict[str, Any]]:
    """Per run label: seeds, values (the study's metric), validation values and times of its
    finished trials, and its diverged seeds (also in ``values``, at the chance value)."""
    definition = data.definition or {}
    runs: dict[str, dict[str, Any]] = {
        run["label"]: {
            "run": run, "seeds": [], "values": [], "val_values": [], "times": [], "diverged": [],
        }
        for run in definition.get("runs", [])
    }  # fmt: skip
    val_metric = selection_metric(data)
    for trial in data.trials:
        label, seed = trial.params.get("run"), trial.params.get("seed")
        if label not in runs:
            continue
        entry = runs[label]
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            entry["seeds"].append(seed)
            entry["values"].append(float(trial.value))
            diverged = is_diverged(trial)
            val = float(trial.value) if diverged else run_metrics(trial).get(val_metric)
            entry["val_values"].append(math.nan if val is None else float(val))
            entry["times"].append(_train_time(trial))
            if diverged:
                entry["diverged"].append(seed)
        elif trial.state == TrialState.PRUNED:  # before chance values: a diverged seed
            entry["diverged"].append(seed)
    return runs


def summarize_run(entry: dict[str, Any]) -> dict[str, Any]:
    """One run's numbers over its seeds: test quartiles, interval, validation median, time."""
    values = np.array(entry["values"], dtype=float)
    val_values = np.array(entry["val_values"], dtype=float)
    times = [t for t in entry["times"] if t is not None]
    if len(values) == 0:
        return {"n": 0, "diverged": len(entry["diverged"])}
    low, high = median_interval(values)
    finite_val = val_values[np.isfinite(val_values)]
    return {
        "n": len(values),
        "diverged": len(entry["diverged"]),
        "q1": float(np.percentile(values, 25)),
        "median": float(np.median(values)),
        "q3": float(np.percentile(values, 75)),
        "mean": float(values.mean()),
        "ci95_median": [low, high],
        "val_median": float(np.median(finite_val)) if len(finite_val) else None,
        "median_train_time_s": float(np.median(times)) if times else None,
        "optimizer": entry["run"]["optimizer"],
        "hyperparameters": entry["run"]["hyperparameters"],
        "source": entry["run"].get("source"),
    }


def by_validation(summaries: dict[str, dict[str, Any]], *, maximize: bool) -> list[str]:
    """Labels of the runs with seeds, best validation median first (runs without one last)."""
    sign = 1.0 if maximize else -1.0
    ranked = [label for label in summaries if summaries[label]["n"]]
    return sorted(
        ranked,
        key=lambda label: (
            summaries[label]["val_median"] is None,
            -sign * (summaries[label]["val_median"] or 0.0),
        ),
    )


def replicates_section(data: StudyData) -> Section:
    """The table, a box plot over seeds, and paired tests against the first run by
    validation median."""
    section = Section("Seed replicates")
    runs = replicate_runs(data)
    sign = 1.0 if data.maximize else -1.0
    summaries = {label: summarize_run(entry) for label, entry in runs.items()}
    ranked = by_validation(summaries, maximize=data.maximize)
    if not ranked:
        section.skipped.append("no run has a finished seed yet")
        return section
    top = ranked[0]
    for label in ranked[1:]:
        summaries[label]["paired_vs_top"] = paired_test(runs[top], runs[label], sign)
    section.numbers = {"top_by_validation": top, "runs": summaries, "confidence": CONFIDENCE}
    metric, val_metric = data.metric, selection_metric(data)
    header = [
        "run", "seeds", f"{metric} Q1", "median", "Q3", "95 % CI of median",
        f"{val_metric} median", "train s", f"vs {top}",
    ]  # fmt: skip
    rows = [header]
    for label in ranked + [label for label in summaries if not summaries[label]["n"]]:
        summary = summaries[label]
        seeds = f"{summary['n']}" + (
            f" ({summary['diverged']} diverged)" if summary["diverged"] else ""
        )
        if not summary["n"]:
            rows.append([label, seeds, "", "", "", "", "", "", ""])
            continue
        paired = summary.get("paired_vs_top")
        versus = (
            "first"
            if label == top
            else f"{paired['median_difference']:+.4f}, p={paired['p_value']:.3g} (n={paired['n']})"
            if paired and paired["n"]
            else ""
        )
        time, val = summary["median_train_time_s"], summary["val_median"]
        rows.append(
            [
                label,
                seeds,
                f"{summary['q1']:.4f}",
                f"{summary['median']:.4f}",
                f"{summary['q3']:.4f}",
                format_interval(summary["ci95_median"]),
                f"{val:.4f}" if val is not None else "",
                f"{time:.2f}" if time is not None else "",
                versus,
            ]
        )
    section.tables.append(rows)
    figure = go.Figure()
    for label in ranked:
        figure.add_box(
            y=runs[label]["values"], name=label, boxpoints="all", jitter=0.4, pointpos=0,
            text=[f"seed {seed}" for seed in runs[label]["seeds"]],
        )  # fmt: skip
    figure.update_layout(
        title=f"{data.name}: {metric} over seeds (best validation median first)",
        xaxis_title="run",
        yaxis_title=metric,
        showlegend=False,
    )
    section.figures.append(figure)
    first = summaries[top]
    section.summary.append(
        f"Best validation median: **{top}**; its {metric}: median {first['median']:.4f}, 95 % CI "
        f"{format_interval(first['ci95_median'])}, {first['n']} seeds."
    )
    return section


def format_interval(interval: list[float] | tuple[float, float], digits: int = 4) -> str:
    """``[low, high]``, or why there is none (too few seeds for a 95 % interval)."""
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a (needs 6+ seeds)"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def paired_test(first: dict[str, Any], other: dict[str, Any], sign: float) -> dict[str, Any]:
    """``other`` against ``first`` on the seeds both finished (entries of :func:`replicate_runs`)."""
    by_seed = dict(zip(first["seeds"], first["values"], strict=True))
    pairs = [
        (by_seed[seed], value)
        for seed, value in zip(other["seeds"], other["values"], strict=True)
        if seed in by_seed
    ]
    return _paired(pairs, sign)


def _paired(pairs: list[tuple[float, float]], sign: float) -> dict[str, Any]:
    """Wilcoxon signed-rank test of first vs other on matched seeds (two-sided), with the
    smallest p-value that many seeds can give and a bootstrap interval of the median
    difference."""
    if not pairs:
        return {"n": 0}
    first, other = (np.array(column) for column in zip(*pairs, strict=True))
    differences = other - first
    if np.all(differences == 0):
        p_value = 1.0
    else:
        p_value = float(stats.wilcoxon(first, other, zero_method="zsplit").pvalue)
    interval: list[float] = [math.nan, math.nan]
    if len(pairs) >= MIN_SEEDS_FOR_INTERVAL and np.ptp(differences) > 0:
        bootstrap = stats.bootstrap(
            (differences,), np.median, confidence_level=CONFIDENCE, method="percentile",
            n_resamples=2000, rng=np.random.default_rng(0),
        )  # fmt: skip
        interval = [
            float(bootstrap.confidence_interval.low),
            float(bootstrap.confidence_interval.high),
        ]
    elif len(pairs) >= MIN_SEEDS_FOR_INTERVAL:
        interval = [float(differences[0])] * 2
    return {
        "n": len(pairs),
        "median_difference": float(np.median(differences)),
        "ci95_median_difference": interval,
        "better_seeds": int(np.sum(sign * differences > 0)),
        "p_value": p_value,
        "smallest_possible_p": smallest_possible_p(len(pairs)),
    }


def smallest_possible_p(n: int) -> float:
    """The smallest two-sided p-value a Wilcoxon signed-rank test can reach on ``n`` pairs:
    every difference of one sign, probability ``2 / 2**n`` (below 0.05 only from 6 pairs)."""
    return min(1.0, 2.0 / 2**n)
