"""The verdict: the report's first section, answering "is AdamZ worth it here, at equal budget?"

It reads the seed replicates (a confirmation made by ``report --confirm K``, or a paper table),
never the search values, which are the maxima of the very draws that chose them:

1. the runs are grouped by the study they came from (a confirmation sends every optimizer's
   top candidates; a paper table's runs are each their own group), and each group's winner is
   its run with the best **validation** median over the fresh seeds;
2. each winner's **test** median, with its 95 % interval, and its training time per run;
3. the reference (the AdamZ group, else the first) against every other winner on the same
   seeds: the median paired test difference with a bootstrap 95 % interval, the Wilcoxon
   p-value, the smallest p-value that number of seeds can give, the p-value adjusted for the
   number of comparisons (Benjamini-Hochberg, ``scipy.stats.false_discovery_control``: with
   six baselines, a raw p below 0.05 somewhere is likely by chance alone), and whether the
   difference is inside the seed noise (adjusted p >= 0.05, or an interval that contains 0).

Without replicates the section says that there is no verdict yet and how to get one.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

from adamz.reports._data import Section, StudyData
from adamz.reports._replicates import (
    MIN_SEEDS_FOR_INTERVAL,
    by_validation,
    format_interval,
    is_replicate_study,
    paired_test,
    replicate_runs,
    selection_metric,
    summarize_run,
)

__all__ = ["SIGNIFICANCE", "verdict_section"]

SIGNIFICANCE = 0.05


def verdict_section(datas: list[StudyData]) -> Section:
    """The verdict over the replicate studies among ``datas`` (see the module docs)."""
    section = Section("Verdict")
    replicates = [data for data in datas if is_replicate_study(data)]
    if not replicates:
        searches = ", ".join(data.name for data in datas)
        section.summary.append(
            "No verdict yet: nothing was re-run on fresh seeds. A search's best value is the "
            "luckiest of its own draws, so it overstates what its configuration gives. Run "
            f"`adamz-search report {' '.join(data.name for data in datas)} --confirm 10` to "
            f"re-run the candidates of {searches} on 10 fresh seeds and get one."
        )
        return section
    for data in replicates:
        _verdict_of(data, section, several=len(replicates) > 1)
    return section


def _groups(data: StudyData) -> dict[str, list[str]]:
    """Run labels by the study they came from (each run alone when none says so)."""
    groups: dict[str, list[str]] = {}
    for run in (data.definition or {}).get("runs", []):
        source = run.get("source") or {}
        key = str(source.get("study") or run["label"])
        groups.setdefault(key, []).append(run["label"])
    return groups


def _verdict_of(data: StudyData, section: Section, *, several: bool) -> None:
    runs = replicate_runs(data)
    summaries = {label: summarize_run(entry) for label, entry in runs.items()}
    winners: dict[str, str] = {}
    candidates: dict[str, int] = {}
    for group, labels in _groups(data).items():
        ranked = by_validation(
            {label: summaries[label] for label in labels}, maximize=data.maximize
        )
        candidates[group] = len(labels)
        if ranked:
            winners[group] = ranked[0]
    if not winners:
        section.skipped.append(f"{data.name}: no run has a finished seed yet")
        return
    reference = next(
        (group for group, label in winners.items() if summaries[label]["optimizer"] == "adamz"),
        next(iter(winners)),
    )
    metric, val_metric = data.metric, selection_metric(data)
    points = metric.endswith("_accuracy")
    unit = " points" if points else ""
    scale = 100.0 if points else 1.0
    sign = 1.0 if data.maximize else -1.0
    counts = sorted(set(candidates.values()))
    if len(counts) > 1:
        section.summary.append(
            f"{data.name}: the groups sent unequal numbers of candidates ("
            + ", ".join(f"{group} {count}" for group, count in candidates.items())
            + "): a group picked from more candidates gets more chances at a lucky validation "
            "median, though never on the test values shown here."
        )
    table = [
        [
            "group", "candidates", f"winner (best {val_metric} median)", "seeds",
            f"{metric} median [95 % CI]", "train s per run", f"vs {reference}",
        ]
    ]  # fmt: skip
    reference_summary = summaries[winners[reference]]
    comparisons: dict[str, Any] = {
        group: _compare(
            paired_test(runs[winners[reference]], runs[label], sign),
            reference_summary,
            summaries[label],
            sign=sign,
        )
        for group, label in winners.items()
        if group != reference
    }
    _adjust(comparisons)
    prefix = f"{data.name}: " if several else ""
    for group, comparison in comparisons.items():
        section.summary.append(
            f"{prefix}**{reference}** vs {group}: "
            + _sentence(comparison, reference, group, metric, scale, unit, len(comparisons))
        )
    for group, label in winners.items():
        summary = summaries[label]
        versus = "reference"
        if group != reference:
            versus = _describe(comparisons[group], scale=scale, unit=unit, count=len(comparisons))
        time = summary["median_train_time_s"]
        table.append(
            [
                group,
                str(candidates[group]),
                label,
                f"{summary['n']}"
                + (f" ({summary['diverged']} diverged)" if summary["diverged"] else ""),
                f"{summary['median'] * scale:.2f} "
                + format_interval([v * scale for v in summary["ci95_median"]], digits=2),
                f"{time:.2f}" if time is not None else "",
                versus,
            ]
        )
    section.tables.append(table)
    section.numbers[data.name] = {
        "metric": metric,
        "selected_on": val_metric,
        "reference": reference,
        "candidates": candidates,
        "winners": {group: {"run": label, **summaries[label]} for group, label in winners.items()},
        "comparisons": comparisons,
    }


def _compare(
    paired: dict[str, Any], reference: dict[str, Any], other: dict[str, Any], *, sign: float
) -> dict[str, Any]:
    """The reference minus the other (``paired`` has other minus the reference)."""
    if not paired.get("n"):
        return {"n": 0}
    low, high = paired["ci95_median_difference"]
    difference = -paired["median_difference"]
    interval = [-high, -low]
    times = reference["median_train_time_s"], other["median_train_time_s"]
    return {
        "n": paired["n"],
        "difference": difference,
        "ci95_difference": interval,
        "p_value": paired["p_value"],
        "smallest_possible_p": paired["smallest_possible_p"],
        "reference_better": sign * difference > 0,
        "time_ratio": times[0] / times[1] if all(times) else None,
    }


def _adjust(comparisons: dict[str, Any]) -> None:
    """Add each comparison's p-value adjusted for their number, and the noise verdict."""
    tested = [group for group, comparison in comparisons.items() if comparison.get("n")]
    if not tested:
        return
    adjusted = stats.false_discovery_control([comparisons[g]["p_value"] for g in tested])
    for group, p_value in zip(tested, adjusted, strict=True):
        comparison = comparisons[group]
        low, high = comparison["ci95_difference"]
        comparison["adjusted_p_value"] = float(p_value)
        comparison["too_few_seeds"] = comparison["smallest_possible_p"] >= SIGNIFICANCE
        comparison["inside_seed_noise"] = bool(
            p_value >= SIGNIFICANCE or (math.isfinite(low) and low <= 0 <= high)
        )


def _describe(comparison: dict[str, Any], *, scale: float, unit: str, count: int) -> str:
    """One comparison in a table cell; the adjusted p-value where ``count`` makes it differ."""
    if not comparison.get("n"):
        return "no shared seeds"
    adjusted = f", adjusted {comparison['adjusted_p_value']:.2g}" if count > 1 else ""
    return (
        f"{comparison['difference'] * scale:+.2f}{unit}, p = {comparison['p_value']:.2g}"
        f"{adjusted} (n = {comparison['n']})"
    )


def _sentence(
    comparison: dict[str, Any],
    reference: str,
    other: str,
    metric: str,
    scale: float,
    unit: str,
    count: int,
) -> str:
    """One comparison in words; the adjusted p-value only where ``count`` comparisons make it
    differ, the smallest possible p only where it is out of reach of 0.05."""
    if not comparison.get("n"):
        return "no seeds in common, no comparison."
    low, high = comparison["ci95_difference"]
    interval = (
        f"95 % CI {low * scale:+.2f} to {high * scale:+.2f}"
        if math.isfinite(low)
        else f"no 95 % CI below {MIN_SEEDS_FOR_INTERVAL} seeds"
    )
    verdict = (
        "too few seeds to tell it from the seed noise"
        if comparison["too_few_seeds"]
        else "inside the seed noise"
        if comparison["inside_seed_noise"]
        else f"{reference if comparison['reference_better'] else other} better, beyond the seed noise"
    )
    floor = ""
    if comparison["smallest_possible_p"] >= SIGNIFICANCE:
        floor = (
            f" With {comparison['n']} seeds no test can reach p < {SIGNIFICANCE} (smallest "
            f"possible p {comparison['smallest_possible_p']:.2g})."
        )
    time = ""
    if comparison["time_ratio"] is not None:
        time = f"; {comparison['time_ratio'] - 1:+.0%} training time per run"
    adjusted = ""
    if count > 1:
        adjusted = f" ({comparison['adjusted_p_value']:.2g} adjusted for the {count} comparisons)"
    return (
        f"{comparison['difference'] * scale:+.2f}{unit} of {metric} ({interval}), "
        f"p = {comparison['p_value']:.2g} over {comparison['n']} paired seeds{adjusted}: "
        f"{verdict}{time}." + floor
    )
