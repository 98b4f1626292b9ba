"""Seed replicates: each configuration's value over seeds, with intervals and paired tests.

Used for replicate studies (:mod:`adamz.search.replicates`): the paper's tables and the seed
confirmation of ``report --confirm K``. Per run: the quartiles of the metric (a test metric)
over seeds, a distribution-free 95 % confidence interval of the median (``scipy.stats.
quantile_test``: order statistics of the binomial distribution, no assumption about the shape
of the spread), the validation median, the median validation loss, the median training time,
and the seeds that diverged (counted at the workload's chance value, and named). Runs are
ordered by their validation median, never by a test value (:data:`TIE_RULE` for equal
medians), and the first is compared with every other run on the seeds both completed: the
seeds are the same in every run, so the comparison is paired (:mod:`~adamz.reports._stats`).

Accuracies are shown in points (percent) on every table, and a difference is always the
first run (the reference) minus the run of its row, as each table's header says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from adamz.reports._data import Section, StudyData, is_diverged, run_metrics, train_result
from adamz.reports._stats import paired_statistics

__all__ = [
    "CONFIDENCE",
    "EQUIVALENCE_MARGIN",
    "MIN_SEEDS_FOR_INTERVAL",
    "TIE_RULE",
    "Margin",
    "by_validation",
    "format_interval",
    "is_replicate_study",
    "margin_of",
    "margin_words",
    "median_interval",
    "page_unit",
    "paired_differences",
    "paired_test",
    "replicate_runs",
    "replicates_section",
    "selection_metric",
    "summarize_run",
    "validation_key",
    "verdict_words",
]

CONFIDENCE = 0.95
MIN_SEEDS_FOR_INTERVAL = 6
"""Fewer seeds give no 95 % interval: not for a median, nor for a paired shift (both are order
statistics, and 5 seeds cannot reach 95 % coverage)."""
EQUIVALENCE_MARGIN = 0.25
"""Default equivalence margin, in the page's unit (:func:`page_unit`): 0.25 points of
accuracy, about one validation image in 400."""
TIE_RULE = (
    "equal validation medians go to the lower median validation loss, then to the run listed first"
)
"""How the run with the best validation median is chosen when several share it."""


def page_unit(metric: str) -> tuple[float, str]:
    """The factor from ``metric``'s values to the page's unit, and the unit's name: points
    (percent) for an accuracy, the metric itself otherwise."""
    return (100.0, "points") if metric.endswith("accuracy") else (1.0, metric)


Margin = float | Mapping[str, float]
"""An equivalence margin in the page's unit: one for every metric, or one per metric's name
(a page that compares accuracies and a loss tests each at its own)."""


def margin_of(margin: Margin, metric: str) -> float:
    """``metric``'s margin of ``margin``; :data:`EQUIVALENCE_MARGIN` for a metric it lacks."""
    if isinstance(margin, Mapping):
        return float(margin.get(metric, EQUIVALENCE_MARGIN))
    return float(margin)


def margin_words(margin: Margin) -> str:
    """``margin`` as a page says it: "±0.25 points", or each metric's where there are several."""
    if not isinstance(margin, Mapping):
        return f"±{margin:g} points (the metric's unit for a loss)"
    return ", ".join(
        f"±{value:g} {page_unit(metric)[1]}"
        + (f" of {metric}" if metric.endswith("accuracy") else "")
        for metric, value in margin.items()
    )


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
    """Per run label: seeds, values (the study's metric), validation values, validation losses
    and times of its finished trials, and its diverged seeds (also in ``values``, at the chance
    value, with an infinite validation loss)."""
    definition = data.definition or {}
    runs: dict[str, dict[str, Any]] = {
        run["label"]: {
            "run": run, "seeds": [], "values": [], "val_values": [], "val_losses": [],
            "times": [], "diverged": [],
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
            metrics = run_metrics(trial)
            val = float(trial.value) if diverged else metrics.get(val_metric)
            entry["val_values"].append(math.nan if val is None else float(val))
            loss = math.inf if diverged else metrics.get("val_loss")
            entry["val_losses"].append(math.nan if loss is None else float(loss))
            entry["times"].append(_train_time(trial))
            if diverged:
                entry["diverged"].append(seed)
        elif trial.state == TrialState.PRUNED:  # before chance values: a diverged seed
            entry["diverged"].append(seed)
    return runs


def summarize_run(entry: dict[str, Any]) -> dict[str, Any]:
    """One run's numbers over its seeds: test quartiles, interval, validation median, median
    validation loss (None where no seed recorded one), time."""
    values = np.array(entry["values"], dtype=float)
    val_values = np.array(entry["val_values"], dtype=float)
    val_losses = np.array(entry.get("val_losses", []), dtype=float)
    val_losses = val_losses[~np.isnan(val_losses)]
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
        "val_loss_median": float(np.median(val_losses)) if len(val_losses) else None,
        "median_train_time_s": float(np.median(times)) if times else None,
        "optimizer": entry["run"]["optimizer"],
        "hyperparameters": entry["run"]["hyperparameters"],
        "source": entry["run"].get("source"),
    }


def validation_key(summary: dict[str, Any], *, maximize: bool) -> tuple[bool, float, float]:
    """Sort key of a run summary, smallest best: its validation median, then (:data:`TIE_RULE`)
    its median validation loss; runs without a validation median last.

    The medians are compared to 10 decimals: the same accuracy reached by two runs can differ
    in its last bits when it is the mean of two middle seeds.
    """
    sign = 1.0 if maximize else -1.0
    median, loss = summary.get("val_median"), summary.get("val_loss_median")
    return (
        median is None,
        -sign * round(median, 10) if median is not None else 0.0,
        loss if loss is not None else math.inf,
    )


def by_validation(summaries: dict[str, dict[str, Any]], *, maximize: bool) -> list[str]:
    """Labels of the runs with seeds, best validation median first (:func:`validation_key`;
    runs without one last, equal keys in the order given)."""
    ranked = [label for label in summaries if summaries[label]["n"]]
    return sorted(ranked, key=lambda label: validation_key(summaries[label], maximize=maximize))


def replicates_section(data: StudyData) -> Section:
    """The table, a box plot over seeds, and the first run by validation median compared
    with every other, seed by seed."""
    section = Section("Seed replicates")
    runs = replicate_runs(data)
    summaries = {label: summarize_run(entry) for label, entry in runs.items()}
    ranked = by_validation(summaries, maximize=data.maximize)
    if not ranked:
        section.skipped.append("no run has a finished seed yet")
        return section
    # The verdict's reference where there is one (AdamZ's best run), so that the page has one
    # reference and one sign; else the best run by validation median.
    adamz = [label for label in ranked if summaries[label]["optimizer"] == "adamz"]
    mixed = bool(adamz) and len(adamz) < len(ranked)
    top = adamz[0] if mixed else ranked[0]
    why = (
        "AdamZ's best validation median, the verdict's reference"
        if mixed
        else ("the best validation median")
    )
    for label in ranked:
        if label != top:
            summaries[label]["paired_vs_top"] = paired_test(runs[top], runs[label])
    section.numbers = {
        "top_by_validation": top,
        "runs": summaries,
        "confidence": CONFIDENCE,
        "difference": f"{top} minus the run (Hodges-Lehmann shift of the paired seeds)",
        "tie_rule": TIE_RULE,
    }
    metric, val_metric = data.metric, selection_metric(data)
    scale, unit = page_unit(metric)
    digits = 2 if scale == 100.0 else 4

    def shown(value: float) -> str:
        return f"{value * scale:.{digits}f}"

    header = [
        "run", "seeds", f"{metric} Q1, {unit}", "median", "Q3", "95 % CI of median",
        f"{val_metric} median, {page_unit(val_metric)[1]}", "train s",
        f"{top} (reference) − this run, {unit} of {metric}: Hodges-Lehmann [95 % CI], p",
    ]  # fmt: skip
    rows = [header]
    shown_order = [top] + [label for label in ranked if label != top]
    for label in shown_order + [label for label in summaries if not summaries[label]["n"]]:
        summary = summaries[label]
        seeds = f"{summary['n']}" + (
            f" ({summary['diverged']} diverged)" if summary["diverged"] else ""
        )
        if not summary["n"]:
            rows.append([label, seeds, "", "", "", "", "", "", ""])
            continue
        paired = summary.get("paired_vs_top")
        versus = (
            "first (reference)"
            if label == top
            else describe_difference(paired, scale=scale, digits=digits)
            if paired
            else ""
        )
        time, val = summary["median_train_time_s"], summary["val_median"]
        rows.append(
            [
                label,
                seeds,
                shown(summary["q1"]),
                shown(summary["median"]),
                shown(summary["q3"]),
                format_interval([v * scale for v in summary["ci95_median"]], digits=digits),
                f"{val * page_unit(val_metric)[0]:.{digits}f}" if val is not None else "",
                f"{time:.2f}" if time is not None else "",
                versus,
            ]
        )
    section.tables.append(rows)
    figure = go.Figure()
    for label in ranked:
        figure.add_box(
            y=[value * scale for value in runs[label]["values"]], name=label, boxpoints="all",
            jitter=0.4, pointpos=0, text=[f"seed {seed}" for seed in runs[label]["seeds"]],
        )  # fmt: skip
    figure.update_layout(
        title=f"{data.name}: {metric} over seeds (best validation median first)",
        xaxis_title="run",
        yaxis_title=f"{metric}, {unit}",
        showlegend=False,
    )
    section.figures.append(figure)
    first = summaries[top]
    section.summary.append(
        f"Reference: **{top}**, {why} (where medians tie, {TIE_RULE}); its {metric}: "
        f"median {shown(first['median'])} {unit}, 95 % CI "
        f"{format_interval([v * scale for v in first['ci95_median']], digits=digits)}, "
        f"{first['n']} seeds. Differences are {top} minus the other run."
    )
    return section


def format_interval(interval: list[float] | tuple[float, float], digits: int = 4) -> str:
    """``[low, high]``, or why there is none (too few seeds for a 95 % interval)."""
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"n/a (needs {MIN_SEEDS_FOR_INTERVAL}+ seeds)"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def describe_difference(paired: dict[str, Any], *, scale: float, digits: int) -> str:
    """A paired comparison (:func:`paired_test`) in a table cell: the shift, its interval, p."""
    if not paired.get("n"):
        return "no shared seeds"
    low, high = paired["ci95_difference"]
    interval = (
        f"[{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"
        if math.isfinite(low)
        else f"[no CI below {MIN_SEEDS_FOR_INTERVAL} seeds]"
    )
    return (
        f"{paired['difference'] * scale:+.{digits}f} {interval}, p = {paired['p_value']:.2g} "
        f"(n = {paired['n']})"
    )


def verdict_words(
    comparison: dict[str, Any], *, first: str, second: str, margin: float, unit: str
) -> str:
    """A paired comparison of ``first`` minus ``second`` called in words, from its adjusted
    tests (``differs``, ``equivalent``, ``reference_better``: the verdict's): which one is
    better, equivalence within ``±margin unit``, or neither."""
    within = f"±{margin:g} {unit}"
    if comparison["differs"]:
        better = first if comparison["reference_better"] else second
        if comparison["equivalent"]:
            return f"{better} better, by less than the {within} margin"
        return f"{better} better"
    if comparison["equivalent"]:
        return f"equivalent within {within}"
    return "not shown to differ, not shown equivalent"


def paired_differences(first: dict[str, Any], other: dict[str, Any]) -> np.ndarray:
    """``first`` minus ``other`` on each seed both finished (entries of
    :func:`replicate_runs`), in ``other``'s order of seeds."""
    by_seed = dict(zip(first["seeds"], first["values"], strict=True))
    return np.array(
        [
            by_seed[seed] - value
            for seed, value in zip(other["seeds"], other["values"], strict=True)
            if seed in by_seed
        ],
        dtype=float,
    )


def paired_test(
    first: dict[str, Any], other: dict[str, Any], *, margin: float | None = None
) -> dict[str, Any]:
    """``first`` minus ``other`` on the seeds both finished (entries of
    :func:`replicate_runs`): the Hodges-Lehmann shift with its 95 % interval, the signed-rank
    p-value, the smallest p-value that many seeds can give, and, with a ``margin`` (in the
    metric's units), the TOST p-value of equivalence within it.

    Raises:
        ValueError: ``margin`` is not positive.
    """
    differences = paired_differences(first, other)
    if not len(differences):
        return {"n": 0}
    paired = paired_statistics(differences, margin=margin, confidence=CONFIDENCE)
    return {
        "n": paired.n,
        "difference": paired.estimate,
        "ci95_difference": list(paired.interval),
        "p_value": paired.p_value,
        "smallest_possible_p": paired.smallest_possible_p,
        **(
            {"margin": margin, "equivalence_p_value": paired.equivalence_p_value}
            if margin is not None
            else {}
        ),
    }


def smallest_possible_p(n: int) -> float:
    """The smallest two-sided p-value a Wilcoxon signed-rank test can reach on ``n`` pairs:
    every difference of one sign, probability ``2 / 2**n`` (below 0.05 only from 6 pairs)."""
    return min(1.0, 2.0 / 2**n)
