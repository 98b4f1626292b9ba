"""The verdict: the report's first section, answering "is AdamZ worth it here, at equal budget?"

It reads the seed replicates (a confirmation made by ``report --confirm K``, or a paper table),
never the search values, which are the maxima of the very draws that chose them:

1. the runs are grouped by the study they came from (a confirmation sends every optimizer's
   top candidates; a paper table's runs are each their own group), and each group's winner is
   its run with the best **validation** median over the fresh seeds (equal medians: the lower
   median validation loss, :data:`~adamz.reports._replicates.TIE_RULE`, said on the page);
2. each winner's **test** median, with its 95 % interval, its training time per run, and what
   its search spent: epochs trained, wall time, hyperparameters searched (the page says when
   the searches' epochs differ by more than :data:`COST_TOLERANCE`);
3. the reference (the AdamZ group, else the first) minus every other winner on the same seeds
   (:mod:`~adamz.reports._stats`): the Hodges-Lehmann shift with the 95 % interval of the
   signed-rank test, its p-value, and the equivalence test (TOST) at a margin stated on the
   page. Both p-values are adjusted (Benjamini-Hochberg) over **every** comparison of the
   report, all workloads and baselines together: with six baselines on three workloads, a
   raw p below 0.05 somewhere is likely by chance alone.

A winner is "better" where the adjusted p is below :data:`SIGNIFICANCE` and the interval
excludes 0; two winners are "equivalent" only where the adjusted TOST p is below it; anything
else is "not shown to differ, not shown equivalent" (a large p is not evidence of equality).

Two sections come before it on the page where the report holds what they need, their
p-values adjusted in the same family:

- **over search replicates** (:mod:`~adamz.reports._search_replicates`), where confirmations of
  several replicates of one comparison are reported together (``report --search-replicates
  R``): how often and by how much each winner beats the other across the replicates, whether
  the sign flips, the same comparison over every replicate's seeds pooled (its p-values
  adjusted over that section's comparisons, every workload together), each search's pooled
  result, and the attribution of AdamZ's difference from Adam to its controller and clipping;
- **the ablation** (:mod:`~adamz.reports._ablation`), where a confirmation holds the winners of
  AdamZ, adam-clip and Adam: AdamZ − Adam split into clipping and controller.

Without replicates the section says that there is no verdict yet and how to get one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adamz.reports._ablation import ADAM, CLIPPED, ablation_of, ablation_section
from adamz.reports._data import Section, StudyData
from adamz.reports._replicates import (
    EQUIVALENCE_MARGIN,
    MIN_SEEDS_FOR_INTERVAL,
    TIE_RULE,
    by_validation,
    describe_difference,
    format_interval,
    is_replicate_study,
    page_unit,
    paired_differences,
    paired_test,
    replicate_runs,
    selection_metric,
    summarize_run,
    validation_key,
    verdict_words,
)
from adamz.reports._search_replicates import (
    ReplicateDifference,
    ReplicateWinner,
    replicate_of,
    search_replicates_section,
)
from adamz.reports._stats import benjamini_hochberg

__all__ = [
    "COST_TOLERANCE",
    "DERIVED_MARGIN_SHARE",
    "RECOMMENDED_SEEDS",
    "SIGNIFICANCE",
    "margins",
    "plain_verdict",
    "verdict_section",
    "verdict_sections",
]

SIGNIFICANCE = 0.05
RECOMMENDED_SEEDS = 10
"""Seeds a confirmation should have: fewer can show only large differences once the p-values
are adjusted for a page's comparisons (below 6, none at all)."""
COST_TOLERANCE = 0.10
"""The searches' epochs may differ by this fraction of the fewest before the page says so."""


def verdict_section(datas: list[StudyData], *, margin: float | None = None) -> Section:
    """The seed-by-seed verdict over the replicate studies among ``datas``: the last of
    :func:`verdict_sections`.

    Raises:
        ValueError: ``margin`` is not positive.
    """
    return verdict_sections(datas, margin=margin)[-1]


def verdict_sections(datas: list[StudyData], *, margin: float | None = None) -> list[Section]:
    """The verdict page over the replicate studies among ``datas`` (see the module docs), with
    the searches among them for the cost columns: the verdict over search replicates and the
    ablation where the data hold them, then the verdict seed by seed.

    ``margin`` is the equivalence margin in the page's unit (points of an accuracy, the
    metric's own units otherwise); None: the study file's ``margin``, else for an accuracy
    :data:`EQUIVALENCE_MARGIN`, else one derived from the seed spread (:func:`margins`). The
    page says which.

    Raises:
        ValueError: ``margin`` is not positive.
    """
    if margin is not None and not margin > 0:
        raise ValueError(f"Invalid margin: must be > 0, got {margin}.")
    section = Section("Verdict")
    replicates = [data for data in datas if is_replicate_study(data)]
    if not replicates:
        names = ", ".join(data.name for data in datas)
        section.summary.append(
            "No verdict yet: nothing was re-run on fresh seeds. A search's best value is the "
            "luckiest of its own draws, so it overstates what its configuration gives. Run "
            f"`adamz-search report {' '.join(data.name for data in datas)} --confirm 10` to "
            f"re-run the candidates of {names} on 10 fresh seeds and get one."
        )
        return [section]
    searches = {data.name: data for data in datas if not is_replicate_study(data)}
    chosen = margins(replicates, margin)
    verdicts = []
    for data in replicates:
        verdict = _verdict_of(data, *chosen[data.metric])
        if verdict is None:
            section.skipped.append(f"{data.name}: no run has a finished seed yet")
        else:
            verdicts.append(verdict)
    ablations = [ablation for ablation in map(ablation_of, verdicts) if ablation is not None]
    family = [
        comparison
        for verdict in verdicts
        for comparison in verdict["comparisons"].values()
        if comparison["n"]
    ] + [ablation["clipping"] for ablation in ablations if "skipped" not in ablation]
    _adjust(family)
    for verdict in verdicts:
        _write(verdict, section, searches, several=len(verdicts) > 1, count=len(family))
    if verdicts:
        section.notes.append(_rules(verdicts, count=len(family)))
    # each metric's own margin: a page may compare accuracies and a transformer's loss
    page_margin = {metric: value for metric, (value, _) in chosen.items()}
    over = search_replicates_section(
        _replicate_differences(verdicts, ablations),
        _replicate_winners(verdicts),
        margin=page_margin,
    )
    ablation = ablation_section(
        ablations,
        replicates={verdict["data"].name: _replicate(verdict) or 1 for verdict in verdicts},
        margin=page_margin,
        count=len(family),
    )
    shown = [part for part in (over, ablation) if part.summary or part.skipped]
    return [*shown, section]


def _replicate(verdict: dict[str, Any]) -> int | None:
    """The search replicate a confirmation's groups come from (None where they mix)."""
    numbers = {replicate_of(group)[1] for group in verdict["winners"]}
    return numbers.pop() if len(numbers) == 1 else None


def _replicate_differences(
    verdicts: list[dict[str, Any]], ablations: list[dict[str, Any]]
) -> list[ReplicateDifference]:
    """Every adjusted comparison of the page as one replicate's difference: the reference
    against each group, and each ablation's clipping (adam-clip − Adam)."""
    clippings = {
        ablation["data"].name: ablation for ablation in ablations if "skipped" not in ablation
    }
    differences = []
    for verdict in verdicts:
        replicate = _replicate(verdict)
        if replicate is None:
            continue
        data: StudyData = verdict["data"]
        searches = tuple(sorted(replicate_of(group)[0] for group in verdict["winners"]))
        pairs = [
            (verdict["reference"], group, comparison)
            for group, comparison in verdict["comparisons"].items()
        ]
        if data.name in clippings:
            ablation = clippings[data.name]
            groups = ablation["groups"]
            pairs.append((groups[CLIPPED], groups[ADAM], ablation["clipping"]))
        for first, second, comparison in pairs:
            if not comparison["n"]:
                continue
            differs, ahead = comparison["differs"], comparison["reference_better"]
            first_run, second_run = (verdict["winners"][group] for group in (first, second))
            differences.append(
                ReplicateDifference(
                    searches=searches,
                    confirmation_seeds=int((data.definition or {}).get("seeds", 0)),
                    replicate=replicate,
                    first=replicate_of(first)[0],
                    second=replicate_of(second)[0],
                    difference=float(comparison["difference"]),
                    first_better=bool(differs and ahead),
                    second_better=bool(differs and not ahead),
                    metric=data.metric,
                    maximize=data.maximize,
                    seed_differences=tuple(
                        paired_differences(
                            verdict["runs"][first_run], verdict["runs"][second_run]
                        ).tolist()
                    ),
                    first_optimizer=str(verdict["summaries"][first_run]["optimizer"]),
                    second_optimizer=str(verdict["summaries"][second_run]["optimizer"]),
                )
            )
    return differences


def _replicate_winners(verdicts: list[dict[str, Any]]) -> list[ReplicateWinner]:
    """Every group's winner of every confirmation of one search replicate."""
    winners = []
    for verdict in verdicts:
        replicate = _replicate(verdict)
        if replicate is None:
            continue
        data: StudyData = verdict["data"]
        searches = tuple(sorted(replicate_of(group)[0] for group in verdict["winners"]))
        for group, label in verdict["winners"].items():
            summary = verdict["summaries"][label]
            winners.append(
                ReplicateWinner(
                    searches=searches,
                    replicate=replicate,
                    search=replicate_of(group)[0],
                    optimizer=str(summary["optimizer"]),
                    median=float(summary["median"]),
                    metric=data.metric,
                    maximize=data.maximize,
                )
            )
    return winners


def _groups(data: StudyData) -> dict[str, list[str]]:
    """Run labels by the study they came from (each run alone when none says so)."""
    groups: dict[str, list[str]] = {}
    for run in (data.definition or {}).get("runs", []):
        source = run.get("source") or {}
        key = str(source.get("study") or run["label"])
        groups.setdefault(key, []).append(run["label"])
    return groups


DERIVED_MARGIN_SHARE = 0.5
"""Where no margin is given for a metric other than an accuracy, the equivalence margin is this
share of the confirmed runs' median seed standard deviation: two optimizers count as equivalent
when they differ by less than half the spread between one configuration's seeds."""


def margins(datas: list[StudyData], given: float | None) -> dict[str, tuple[float, str]]:
    """The equivalence margin of each metric of the replicate studies ``datas``, in the page's
    unit, and where it came from, in words: ``given`` (``report --margin``), else the study
    file's ``margin`` (copied into its confirmation), else :data:`EQUIVALENCE_MARGIN` for an
    accuracy, else :data:`DERIVED_MARGIN_SHARE` of the median, over the confirmed runs with 2
    seeds or more, of their test values' standard deviation over seeds."""
    chosen: dict[str, tuple[float, str]] = {}
    for metric in dict.fromkeys(data.metric for data in datas):
        alike = [data for data in datas if data.metric == metric]
        scale, unit = page_unit(metric)
        stated = next(
            (d.definition["margin"] for d in alike if d.definition and "margin" in d.definition),
            None,
        )
        if given is not None:
            chosen[metric] = (given, "given with report --margin")
        elif stated is not None:
            chosen[metric] = (float(stated), f"set in the study file (margin: {stated:g})")
        elif scale == 100.0:
            chosen[metric] = (
                EQUIVALENCE_MARGIN,
                "the default for an accuracy, about one validation example in 400 (set another "
                "with margin: in the study file or report --margin)",
            )
        else:
            spreads = [
                float(np.std(entry["values"], ddof=1))
                for data in alike
                for entry in replicate_runs(data).values()
                if len(entry["values"]) >= 2
            ]
            spread = float(np.median(spreads)) if spreads else math.nan
            derived = float(f"{DERIVED_MARGIN_SHARE * spread:.2g}") if spread > 0 else math.nan
            if not derived > 0:
                derived = EQUIVALENCE_MARGIN  # no spread to derive from: said below
            chosen[metric] = (
                derived,
                f"derived: {DERIVED_MARGIN_SHARE:g} x the confirmed runs' median seed standard "
                f"deviation of {metric} ({spread:.3g} {unit}), as none was given (set one with "
                "margin: in the study file or report --margin)",
            )
    return chosen


def _verdict_of(data: StudyData, margin: float, margin_source: str) -> dict[str, Any] | None:
    """Winners and comparisons of one replicate study (p-values not yet adjusted)."""
    runs = replicate_runs(data)
    summaries = {label: summarize_run(entry) for label, entry in runs.items()}
    winners: dict[str, str] = {}
    candidates: dict[str, int] = {}
    ties: dict[str, dict[str, Any]] = {}
    for group, labels in _groups(data).items():
        ranked = by_validation(
            {label: summaries[label] for label in labels}, maximize=data.maximize
        )
        candidates[group] = len(labels)
        if ranked:
            winners[group] = ranked[0]
            tie = _tie(ranked, summaries, maximize=data.maximize)
            if tie:
                ties[group] = tie
    if not winners:
        return None
    reference = next(
        (group for group, label in winners.items() if summaries[label]["optimizer"] == "adamz"),
        next(iter(winners)),
    )
    scale, unit = page_unit(data.metric)
    sign = 1.0 if data.maximize else -1.0
    reference_summary = summaries[winners[reference]]
    comparisons: dict[str, Any] = {}
    for group, label in winners.items():
        if group == reference:
            continue
        paired = paired_test(runs[winners[reference]], runs[label], margin=margin / scale)
        comparison: dict[str, Any] = {"n": paired["n"]}
        if paired["n"]:
            times = (
                reference_summary["median_train_time_s"],
                summaries[label]["median_train_time_s"],
            )
            comparison.update(
                paired,
                reference_better=bool(sign * paired["difference"] > 0),
                time_ratio=times[0] / times[1] if all(times) else None,
            )
        comparisons[group] = comparison
    return {
        "data": data,
        "runs": runs,
        "reference": reference,
        "winners": winners,
        "candidates": candidates,
        "summaries": summaries,
        "comparisons": comparisons,
        "ties": ties,
        "scale": scale,
        "unit": unit,
        "margin": margin,
        "margin_source": margin_source,
    }


def _tie(
    ranked: list[str], summaries: dict[str, dict[str, Any]], *, maximize: bool
) -> dict[str, Any] | None:
    """How the winner was told from the runs with its validation median, if any had it."""
    first = validation_key(summaries[ranked[0]], maximize=maximize)
    tied = [
        label
        for label in ranked[1:]
        if validation_key(summaries[label], maximize=maximize)[:2] == first[:2]
    ]
    if first[0] or not tied:
        return None
    return {
        "val_median": summaries[ranked[0]]["val_median"],
        "runs": [ranked[0], *tied],
        "val_loss_medians": [summaries[label]["val_loss_median"] for label in [ranked[0], *tied]],
    }


def _adjust(family: list[dict[str, Any]]) -> None:
    """Adjust the p-values of every comparison of the report together, and call each one."""
    adjusted = benjamini_hochberg([comparison["p_value"] for comparison in family])
    equivalence = benjamini_hochberg([comparison["equivalence_p_value"] for comparison in family])
    for comparison, p_value, equivalence_p in zip(family, adjusted, equivalence, strict=True):
        low, high = comparison["ci95_difference"]
        comparison["adjusted_p_value"] = p_value
        comparison["adjusted_equivalence_p_value"] = equivalence_p
        comparison["too_few_seeds"] = comparison["smallest_possible_p"] >= SIGNIFICANCE
        comparison["differs"] = bool(
            p_value < SIGNIFICANCE and math.isfinite(low) and not low <= 0 <= high
        )
        comparison["equivalent"] = bool(equivalence_p < SIGNIFICANCE)


def _rules(verdicts: list[dict[str, Any]], *, count: int) -> str:
    """How to read it (a footnote): selection, ties, what is subtracted, the tests, the
    margin."""
    adjusted = (
        f"adjusted (Benjamini-Hochberg) over all {count} comparisons of this report"
        if count > 1
        else "not adjusted (one comparison)"
    )
    p = "adjusted p" if count > 1 else "p"
    directions = "; ".join(
        sorted(
            {
                f"{verdict['data'].metric}: "
                + ("higher is better" if verdict["data"].maximize else "lower is better")
                for verdict in verdicts
            }
        )
    )
    within = "; ".join(
        sorted({f"±{verdict['margin']:g} {verdict['unit']}" for verdict in verdicts})
    )
    return (
        f"How to read it ({directions}): each group's winner is its run with the best "
        "validation median over "
        f"the fresh seeds ({TIE_RULE}); its test numbers are shown, never used to choose. A "
        "difference is the reference minus the row, seed by seed: the Hodges-Lehmann shift "
        "with the 95 % interval of the Wilcoxon signed-rank test, and that test's p-value, "
        f"{adjusted}. Better: {p} < {SIGNIFICANCE} and an interval without 0. Equivalent: "
        "the equivalence test (two one-sided signed-rank tests, TOST) puts the shift within "
        f"the margin ({within}), {p} < {SIGNIFICANCE}. Otherwise: not shown to differ, not "
        "shown equivalent."
    )


_SHOWN = {"adamz": "AdamZ", "adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
"""How the plain verdict names the optimizers it can (the others by their registry names)."""


def _names(verdict: dict[str, Any]) -> dict[str, str]:
    """What the plain verdict calls each group: its optimizer, or the group's name where two
    groups share one."""
    optimizers = {
        group: str(verdict["summaries"][label]["optimizer"])
        for group, label in verdict["winners"].items()
    }
    if len(set(optimizers.values())) < len(optimizers):
        return {group: group for group in optimizers}
    return {group: _SHOWN.get(name, name) for group, name in optimizers.items()}


def _workload_name(data: StudyData) -> str:
    """The workload as a reader knows it: a user's class name without its module path."""
    name = str(data.workload or data.name)
    return name.rsplit(":", 1)[-1]


def plain_verdict(verdict: dict[str, Any], group: str) -> str:
    """One comparison as a sentence a person can act on: what the data say, the difference
    and its interval in the page's unit, and the time it costs."""
    data: StudyData = verdict["data"]
    comparison = verdict["comparisons"][group]
    names = _names(verdict)
    first, second = names[verdict["reference"]], names[group]
    where = f"On {_workload_name(data)}"
    if not comparison["n"]:
        return f"{where}, {first} and {second} share no seeds: no comparison."
    scale, unit = verdict["scale"], verdict["unit"]
    digits = 2 if scale == 100.0 else 4
    difference = comparison["difference"] * scale
    ahead, behind = (first, second) if comparison["reference_better"] else (second, first)
    if comparison["differs"]:
        claim = f"{ahead} beats {behind}"
    elif comparison["equivalent"]:
        claim = f"{first} and {second} are equivalent within ±{verdict['margin']:g} {unit}"
    elif difference == 0:
        claim = f"no evidence that {first} and {second} differ"
    else:
        claim = f"no evidence that {ahead} beats {behind}"
    low, high = comparison["ci95_difference"]
    interval = (
        f"interval {low * scale:+.{digits}f} to {high * scale:+.{digits}f}"
        if math.isfinite(low)
        else f"no interval below {MIN_SEEDS_FOR_INTERVAL} seeds"
    )
    better = "higher" if data.maximize else "lower"
    sentence = (
        f"{where}, {claim}: {first} − {second} = {difference:+.{digits}f} "
        f"{_in_units(unit, data.metric)} ({better} is better), {interval}"
    )
    ratio = comparison.get("time_ratio")
    if ratio is not None and round(abs(ratio - 1), 2) == 0:
        sentence += f"; {first} costs the same training time per run"
    elif ratio is not None:
        more = "more" if ratio >= 1 else "less"
        sentence += f"; {first} costs {abs(ratio - 1):.0%} {more} training time per run"
    return sentence.replace("%", " %").replace("  %", " %") + "."


def _in_units(unit: str, metric: str) -> str:
    """``points of test_accuracy``, or the metric alone where it is its own unit."""
    return metric if unit == metric else f"{unit} of {metric}"


def _hyperparameters(values: dict[str, Any]) -> str:
    """A configuration in one cell: ``name value`` pairs, numbers to 4 significant digits."""

    def shown(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, list | tuple):
            return "(" + ", ".join(shown(item) for item in value) + ")"
        return str(value)

    return ", ".join(f"{name} {shown(value)}" for name, value in values.items())


def _write(
    verdict: dict[str, Any],
    section: Section,
    searches: dict[str, StudyData],
    *,
    several: bool,
    count: int,
) -> None:
    """The sentences, the tables and the numbers of one replicate study's verdict: the plain
    answer first, then the winners' configurations, then the statistics, the details last."""
    data: StudyData = verdict["data"]
    reference, winners, candidates = verdict["reference"], verdict["winners"], verdict["candidates"]
    summaries, comparisons = verdict["summaries"], verdict["comparisons"]
    scale, unit = verdict["scale"], verdict["unit"]
    digits = 2 if scale == 100.0 else 4
    metric, val_metric = data.metric, selection_metric(data)
    prefix = f"{data.name}: " if several else ""
    for group in comparisons:
        section.summary.append(f"**{plain_verdict(verdict, group)}**")
    section.summary.append(
        f"{prefix}{'the' if prefix else 'The'} equivalence margin is ±{verdict['margin']:g} "
        f"{_in_units(unit, metric)}: {verdict['margin_source']}."
    )
    seeds = min(summaries[label]["n"] for label in winners.values())
    if 0 < seeds < MIN_SEEDS_FOR_INTERVAL:
        section.summary.append(
            f"{prefix}{'with' if prefix else 'With'} {seeds} seeds per run this confirmation "
            f"cannot show a difference or an equivalence (no test on {seeds} paired seeds "
            f"reaches p < {SIGNIFICANCE}) and gives no 95 % intervals below "
            f"{MIN_SEEDS_FOR_INTERVAL}: confirm on 10 or more (--confirm 10)."
        )
    elif 0 < seeds < RECOMMENDED_SEEDS:
        section.summary.append(
            f"{prefix}{'with' if prefix else 'With'} {seeds} seeds per run only a large "
            "difference can be shown once the p-values are adjusted for every comparison: "
            f"confirm on {RECOMMENDED_SEEDS} or more (--confirm {RECOMMENDED_SEEDS})."
        )
    counts = sorted(set(candidates.values()))
    if len(counts) > 1:
        section.notes.append(
            f"{prefix}{'the' if prefix else 'The'} groups sent unequal numbers of candidates ("
            + ", ".join(f"{group} {count}" for group, count in candidates.items())
            + "): a group picked from more candidates gets more chances at a lucky validation "
            "median, though never on the test values shown here."
        )
    for group, tie in verdict["ties"].items():
        losses = ", ".join(
            f"{label} {loss:.4g}" if loss is not None else f"{label} none"
            for label, loss in zip(tie["runs"], tie["val_loss_medians"], strict=True)
        )
        section.notes.append(
            f"{prefix}{group}: {len(tie['runs'])} runs tie on the {val_metric} median "
            f"({tie['val_median'] * page_unit(val_metric)[0]:.{digits}f}); the lowest median "
            f"val_loss picked {tie['runs'][0]} ({losses})."
        )
    costs = {group: _search_cost(searches[group]) for group in winners if group in searches}
    epochs = [cost["epochs"] for cost in costs.values() if cost["epochs"]]
    if epochs and max(epochs) > (1 + COST_TOLERANCE) * min(epochs):
        section.notes.append(
            f"{prefix}{'the' if prefix else 'The'} searches did not spend equal epochs ("
            + ", ".join(f"{group} {cost['epochs']}" for group, cost in costs.items())
            + f"; the most {max(epochs) / min(epochs) - 1:.0%} above the fewest): equal "
            "numbers of trials, unequal compute, as the pruner stopped their trials at "
            "different epochs."
        )
    for group, comparison in comparisons.items():
        section.notes.append(
            f"{prefix}{reference} − {group}: "
            + _sentence(comparison, verdict, group, metric, count)
        )
    configurations = [
        [
            "group", "optimizer", f"winner (best {val_metric} median)",
            f"{metric} median [95 % CI], {unit}", "hyperparameters",
        ]
    ]  # fmt: skip
    for group, label in winners.items():
        summary = summaries[label]
        configurations.append(
            [
                group + (" (reference)" if group == reference else ""),
                str(summary["optimizer"]),
                label,
                f"{summary['median'] * scale:.{digits}f} "
                + format_interval([v * scale for v in summary["ci95_median"]], digits=digits),
                _hyperparameters(summary["hyperparameters"]),
            ]
        )
    section.tables.append(configurations)
    table = [
        [
            "group", "hyperparameters searched", "search: epochs", "search: wall time",
            "candidates", f"winner (best {val_metric} median)", "seeds",
            f"{metric} median [95 % CI], {unit}", "train s per run",
            f"{reference} (reference) − this row, {unit} of {metric}: Hodges-Lehmann "
            "[95 % CI], p",
            "verdict",
        ]
    ]  # fmt: skip
    for group, label in winners.items():
        summary, cost = summaries[label], costs.get(group)
        versus, call = "", "reference"
        if group != reference:
            comparison = comparisons[group]
            versus = describe_difference(comparison, scale=scale, digits=digits)
            if comparison["n"] and count > 1:
                versus += f", adjusted {comparison['adjusted_p_value']:.2g}"
            call = _call(comparison, verdict, group) if comparison["n"] else ""
        time = summary["median_train_time_s"]
        table.append(
            [
                group + (" (reference)" if group == reference else ""),
                str(cost["hyperparameters"]) if cost else "",
                str(cost["epochs"]) if cost else "",
                _duration(cost["wall_time_s"]) if cost else "",
                str(candidates[group]),
                label,
                f"{summary['n']}"
                + (f" ({summary['diverged']} diverged)" if summary["diverged"] else ""),
                f"{summary['median'] * scale:.{digits}f} "
                + format_interval([v * scale for v in summary["ci95_median"]], digits=digits),
                f"{time:.2f}" if time is not None else "",
                versus,
                call,
            ]
        )
    section.tables.append(table)
    section.numbers[data.name] = {
        "metric": metric,
        "selected_on": val_metric,
        "tie_rule": TIE_RULE,
        "reference": reference,
        "difference": "the reference minus the group, in the metric's units",
        "margin": verdict["margin"] / scale,
        "margin_source": verdict["margin_source"],
        "plain": [plain_verdict(verdict, group) for group in comparisons],
        "candidates": candidates,
        "ties": verdict["ties"],
        "search_cost": costs,
        "winners": {group: {"run": label, **summaries[label]} for group, label in winners.items()},
        "comparisons": {
            group: {
                **comparison,
                **({"verdict": _call(comparison, verdict, group)} if comparison["n"] else {}),
            }
            for group, comparison in comparisons.items()
        },
    }


def _search_cost(data: StudyData) -> dict[str, Any]:
    """What a search spent: the epochs of every trial its budget paid for, the wall time from
    its first trial's start to its last one's end, and how many hyperparameters it searched."""
    starts = [trial.datetime_start for trial in data.finished if trial.datetime_start]
    ends = [trial.datetime_complete for trial in data.finished if trial.datetime_complete]
    return {
        "trials": len(data.finished),
        "epochs": int(np.sum(data.finished_epochs)),
        "wall_time_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "hyperparameters": len({name for trial in data.trials for name in trial.params}),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _call(comparison: dict[str, Any], verdict: dict[str, Any], other: str) -> str:
    """One comparison's verdict in words (see the module docs)."""
    return verdict_words(
        comparison,
        first=verdict["reference"],
        second=other,
        margin=verdict["margin"],
        unit=verdict["unit"],
    )


def _sentence(
    comparison: dict[str, Any], verdict: dict[str, Any], other: str, metric: str, count: int
) -> str:
    """One comparison in words; the adjusted p-values only where ``count`` comparisons make
    them differ, the smallest possible p only where it is out of reach of 0.05."""
    if not comparison["n"]:
        return "no seeds in common, no comparison."
    scale, unit = verdict["scale"], verdict["unit"]
    digits = 2 if scale == 100.0 else 4
    low, high = comparison["ci95_difference"]
    interval = (
        f"95 % CI {low * scale:+.{digits}f} to {high * scale:+.{digits}f}"
        if math.isfinite(low)
        else f"no 95 % CI below {MIN_SEEDS_FOR_INTERVAL} seeds"
    )
    adjusted, adjusted_equivalence = "", ""
    if count > 1:
        adjusted = f" ({comparison['adjusted_p_value']:.2g} adjusted for the {count} comparisons)"
        adjusted_equivalence = f", adjusted {comparison['adjusted_equivalence_p_value']:.2g}"
    time = ""
    if comparison["time_ratio"] is not None:
        time = f"; {comparison['time_ratio'] - 1:+.0%} training time per run"
    return (
        f"{comparison['difference'] * scale:+.{digits}f} {unit} of {metric} (Hodges-Lehmann, "
        f"{interval}), p = {comparison['p_value']:.2g} over {comparison['n']} paired "
        f"seeds{adjusted}; equivalence within ±{verdict['margin']:g} {unit}: TOST p = "
        f"{comparison['equivalence_p_value']:.2g}{adjusted_equivalence}: "
        f"{_call(comparison, verdict, other)}{time}."
    )
