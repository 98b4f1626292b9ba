"""The ablation: AdamZ's difference from Adam split into its clipping and its controller.

AdamZ is Adam with two changes, a global gradient-norm clipping and a loss-driven rate
controller; the registry's ablations take them apart: ``adam-clip`` is Adam after AdamZ's
clipping, ``adamz-no-controller`` AdamZ with its controller off (the same arithmetic as
``adam-clip``, through AdamZ's code). Where one confirmation holds the winners of an AdamZ, an
adam-clip and an Adam search (each tuned by its own search, all confirmed on the same seeds),
seed by seed, exactly::

    AdamZ − Adam  =  (adam-clip − Adam)  +  (AdamZ − adam-clip)
       whole             clipping              controller

Each of the three is summarised as the verdict summarises a difference
(:mod:`~adamz.reports._verdict`): the paired Hodges-Lehmann shift with the 95 % interval of the
signed-rank test and its p-value, adjusted (Benjamini-Hochberg) together with every other
comparison of the report; the whole and the controller are the verdict's own comparisons of
AdamZ with Adam and with adam-clip, and the clipping is one more. The Hodges-Lehmann estimate
is a median (of Walsh averages), not a mean, so the parts' shifts add up to the whole's exactly
where each paired difference is a constant shift of the seeds' values (the location-shift
model the estimator assumes) and otherwise only nearly: the table shows the gap. With an
``adamz-no-controller`` search in the report, AdamZ − adamz-no-controller measures the
controller a second time.

Where the controller never fired in any run of AdamZ's winner (no overshoot, no stagnation
adjustment in the ``result.controller`` records of its confirmation runs), that winner trained
as Adam with clipping, and the page says so.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import TrialState

from adamz.reports._data import Section, StudyData, train_result
from adamz.reports._replicates import (
    Margin,
    describe_difference,
    margin_of,
    page_unit,
    paired_test,
    verdict_words,
)
from adamz.training.optimizers import library_defaults

__all__ = [
    "ADAM",
    "ADAMZ",
    "CLIPPED",
    "WITHOUT_CONTROLLER",
    "ablation_of",
    "ablation_section",
    "controller_activity",
]

ADAMZ, CLIPPED, ADAM = "adamz", "adam-clip", "adam"
"""The optimizers whose winners the ablation needs, by their registry names."""
WITHOUT_CONTROLLER = "adamz-no-controller"
"""The optional one: AdamZ with its controller off."""


def controller_activity(data: StudyData, label: str) -> dict[str, Any]:
    """What AdamZ's controller did in the complete runs of run ``label`` of the replicate study
    ``data``: the runs with a controller record, those in which it fired (an overshoot or a
    stagnation adjustment), and its adjustments summed over them."""
    runs = fired = overshoots = stagnations = 0
    for trial in data.trials:
        if trial.params.get("run") != label or trial.state != TrialState.COMPLETE:
            continue
        result = train_result(trial)
        controller = result.get("controller") if result else None
        if not isinstance(controller, dict):
            continue
        runs += 1
        adjustments = (int(controller.get("overshoots", 0)), int(controller.get("stagnations", 0)))
        fired += sum(adjustments) > 0
        overshoots += adjustments[0]
        stagnations += adjustments[1]
    return {"runs": runs, "fired": fired, "overshoots": overshoots, "stagnations": stagnations}


def ablation_of(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """The ablation of one confirmation's verdict, before its p-values are adjusted; None where
    its winners are not one each of AdamZ, adam-clip and Adam with AdamZ as the reference.

    ``verdict`` is the verdict's own record of a confirmation: its ``data``, ``runs`` (of
    :func:`~adamz.reports._replicates.replicate_runs`), ``summaries``, ``winners`` and
    ``comparisons`` by group, ``reference`` group, ``margin`` (page unit) and ``scale``.
    The result holds the groups by optimizer, the three comparisons (``whole``, ``clipping``,
    ``controller``; the clipping one new, to be adjusted with the rest), ``without_controller``
    where the report has that search, the controller's activity in AdamZ's winner and that
    winner's ``max_grad_norm``; or, where a part cannot be computed, ``skipped`` with why.
    """
    winners, summaries = verdict["winners"], verdict["summaries"]
    groups: dict[str, list[str]] = {}
    for group, label in winners.items():
        groups.setdefault(str(summaries[label]["optimizer"]), []).append(group)
    if not all(name in groups for name in (ADAMZ, CLIPPED, ADAM)):
        return None
    data: StudyData = verdict["data"]
    ablation: dict[str, Any] = {"data": data}
    repeated = [
        f"{name} ({', '.join(groups[name])})"
        for name in (ADAMZ, CLIPPED, ADAM, WITHOUT_CONTROLLER)
        if len(groups.get(name, [])) > 1
    ]
    if repeated:
        ablation["skipped"] = (
            f"{data.name}: no ablation, as it needs one search of each and several searches "
            "ran " + "; ".join(repeated)
        )
        return ablation
    adamz, clipped, adam = (groups[name][0] for name in (ADAMZ, CLIPPED, ADAM))
    if verdict["reference"] != adamz:
        return None
    comparisons = verdict["comparisons"]
    clipping = paired_test(
        verdict["runs"][winners[clipped]],
        verdict["runs"][winners[adam]],
        margin=verdict["margin"] / verdict["scale"],
    )
    if clipping["n"]:
        sign = 1.0 if data.maximize else -1.0
        clipping["reference_better"] = bool(sign * clipping["difference"] > 0)
    parts = {"whole": comparisons[adam], "clipping": clipping, "controller": comparisons[clipped]}
    missing = [part for part, comparison in parts.items() if not comparison["n"]]
    if missing:
        ablation["skipped"] = (
            f"{data.name}: no ablation, as its winners share no seed for the " + ", ".join(missing)
        )
        return ablation
    winner = summaries[winners[adamz]]
    ablation.update(
        parts,
        groups={
            ADAMZ: adamz,
            CLIPPED: clipped,
            ADAM: adam,
            **(
                {WITHOUT_CONTROLLER: groups[WITHOUT_CONTROLLER][0]}
                if WITHOUT_CONTROLLER in groups
                else {}
            ),
        },
        winner=winners[adamz],
        controller_activity=controller_activity(data, winners[adamz]),
        max_grad_norm={**library_defaults(ADAMZ), **winner["hyperparameters"]}.get("max_grad_norm"),
        parts_sum=clipping["difference"] + comparisons[clipped]["difference"],
    )
    ablation["gap"] = ablation["parts_sum"] - comparisons[adam]["difference"]
    if WITHOUT_CONTROLLER in groups:
        without = comparisons[groups[WITHOUT_CONTROLLER][0]]
        if without["n"]:
            ablation["without_controller"] = without
    return ablation


def ablation_section(
    ablations: list[dict[str, Any]],
    *,
    replicates: dict[str, int],
    margin: Margin,
    count: int,
) -> Section:
    """The ablation table of ``ablations`` (of :func:`ablation_of`, their p-values adjusted
    over the ``count`` comparisons of the report), one row per confirmation, with its
    sentences; ``replicates``: each confirmation's search replicate (1 for the original
    searches). Empty where there is no ablation."""
    section = Section("Ablation: clipping and controller")
    rows = [ablation for ablation in ablations if "skipped" not in ablation]
    section.skipped += [ablation["skipped"] for ablation in ablations if "skipped" in ablation]
    if not rows:
        return section
    unit = page_unit(rows[0]["data"].metric)[1]
    adjusted = (
        f"p adjusted (Benjamini-Hochberg) with all {count} comparisons of this report"
        if count > 1
        else "p"
    )
    section.notes.append(
        "How to read it: AdamZ − Adam (the whole) splits, seed by seed exactly, into the "
        "clipping (adam-clip − Adam) and the controller (AdamZ − adam-clip), each winner "
        "picked on validation by its own search's confirmation and all trained on the same "
        f"seeds. Each part is the paired Hodges-Lehmann shift in {unit} with the 95 % "
        f"signed-rank interval and its {adjusted}, called as in the verdict. The "
        "Hodges-Lehmann shift is a median, not a mean: the parts add up to the whole exactly "
        "where each difference is a constant shift of the seeds' values (the model the "
        "estimator assumes), and otherwise miss it by the gap shown."
    )
    without = any("without_controller" in ablation for ablation in rows)
    several = any(replicates.get(ablation["data"].name, 1) > 1 for ablation in rows)
    table = [
        [
            "workload",
            *(["search replicate"] if several else []),
            f"whole: AdamZ − Adam, {unit}: Hodges-Lehmann [95 % CI], p",
            "clipping: adam-clip − Adam",
            "controller: AdamZ − adam-clip",
            "clipping + controller − whole",
            *(["controller: AdamZ − adamz-no-controller"] if without else []),
            "controller in AdamZ's winner",
        ]
    ]
    for ablation in rows:
        data: StudyData = ablation["data"]
        replicate = replicates.get(data.name, 1)
        where = str(data.workload) + (f", search replicate {replicate}" if several else "")
        section.summary.append(_sentence(ablation, where, margin=margin_of(margin, data.metric)))
        scale, _ = page_unit(data.metric)
        digits = 2 if scale == 100.0 else 4
        cells = [
            _cell(ablation[part], scale=scale, digits=digits, count=count)
            if part in ablation
            else ""
            for part in ("whole", "clipping", "controller", "without_controller")
        ]
        table.append(
            [
                str(data.workload),
                *([str(replicate)] if several else []),
                *cells[:3],
                f"{ablation['gap'] * scale:+.{digits}f}",
                *(cells[3:] if without else []),
                _activity(ablation),
            ]
        )
        section.numbers[data.name] = {
            "workload": data.workload,
            "replicate": replicate,
            "difference": "first minus second, in the metric's units: whole AdamZ − Adam, "
            "clipping adam-clip − Adam, controller AdamZ − adam-clip",
            **{
                key: ablation[key]
                for key in (
                    "groups", "winner", "whole", "clipping", "controller", "without_controller",
                    "parts_sum", "gap", "controller_activity", "max_grad_norm",
                )
                if key in ablation
            },
        }  # fmt: skip
    section.tables.append(table)
    return section


def _cell(comparison: dict[str, Any], *, scale: float, digits: int, count: int) -> str:
    """A part in a table cell: shift, interval and p, as the verdict's table has them."""
    text = describe_difference(comparison, scale=scale, digits=digits)
    return text + (f", adjusted {comparison['adjusted_p_value']:.2g}" if count > 1 else "")


def _sentence(ablation: dict[str, Any], where: str, *, margin: float) -> str:
    """One confirmation's ablation in words: the whole as the sum of its parts, each part
    called, the gap where the shifts do not add up, and a controller that never fired."""
    scale, unit = page_unit(ablation["data"].metric)
    digits = 2 if scale == 100.0 else 4
    groups = ablation["groups"]
    whole, clipping, controller = (
        ablation[part]["difference"] * scale for part in ("whole", "clipping", "controller")
    )
    calls = [
        verdict_words(ablation[part], first=first, second=second, margin=margin, unit=unit)
        for part, first, second in (
            ("clipping", groups[CLIPPED], groups[ADAM]),
            ("controller", groups[ADAMZ], groups[CLIPPED]),
        )
    ]
    sentence = (
        f"{where}: **AdamZ − Adam {whole:+.{digits}f} {unit} = clipping "
        f"{clipping:+.{digits}f} + controller {controller:+.{digits}f}** ({groups[ADAMZ]}, "
        f"{groups[CLIPPED]} and {groups[ADAM]}); clipping: {calls[0]}; controller: {calls[1]}."
    )
    gap = ablation["gap"] * scale
    if not math.isclose(gap, 0.0, abs_tol=10.0 ** -(digits + 2)):
        sentence += (
            f" The parts' shifts miss the whole by {gap:+.{digits}f}: the seeds' differences "
            "are not one constant shift."
        )
    activity = ablation["controller_activity"]
    if activity["runs"] and not activity["fired"]:
        sentence += " " + _activity(ablation)
    return sentence


def _activity(ablation: dict[str, Any]) -> str:
    """What the controller did in AdamZ's winner, in words."""
    activity = ablation["controller_activity"]
    runs, fired = activity["runs"], activity["fired"]
    if not runs:
        return "no controller record"
    if fired:
        return (
            f"fired in {fired} of {runs} runs ({activity['overshoots']} overshoot and "
            f"{activity['stagnations']} stagnation adjustments)"
        )
    clipping = ablation["max_grad_norm"]
    trained_as = (
        f"Adam with clipping (max_grad_norm {clipping})"
        if clipping is not None
        else "Adam, unclipped (max_grad_norm none)"
    )
    return (
        f"The controller never fired in any of the {runs} runs of AdamZ's winner "
        f"({ablation['winner']}): that winner is {trained_as}, and its controller part compares "
        "two searches of that one algorithm."
    )
