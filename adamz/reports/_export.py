"""Export: the recommended configuration of a study (or a robust default across studies).

The file it writes is what ``AdamZ.from_config`` reads::

    format: adamz-config/1
    optimizer: adamz
    hyperparameters: {lr: 0.012, betas: [0.9, 0.999], ...}   # the optimizer's keyword arguments
    provenance: {studies: [...], trials: [...], value: ..., rule: ..., date: ..., ...}

Rule for one study: if a seed confirmation (``report --confirm K``) re-ran some of its trials,
the one with the best validation median over those fresh seeds; its test median is
``provenance.value`` and the 95 % interval of that median ``provenance.ci`` (``None`` below 6
seeds). Otherwise the flat-region rule: the candidates are the completed trials within 1 % of the best value (at most ten, best first);
each is scored by the mean value of its :data:`NEIGHBOURS` nearest completed trials (itself
included) in the search space scaled to [0, 1] (log scale for log parameters); the candidate
with the best neighbourhood wins. So a lucky spike among poor neighbours loses to a point in a
flat good region.

Rule for several studies (different workloads), which validates before it recommends:

1. candidates: each study's top :data:`VALIDATION_CANDIDATES` completed trials, ranked by
   their mean normalised rank across the studies (a candidate's value on another study is
   estimated by its nearest completed trial there; its rank is the fraction of that study's
   trials better than the estimate); the best :data:`VALIDATION_CANDIDATES` are kept. That
   estimate cannot see a learning rate that diverges on another workload, hence step 2;
2. every candidate, and the paper's defaults, is trained on every workload on fresh seeds
   (:func:`validation_spec`: a replicate study per workload, run by the workers);
3. :func:`validated_choice`: a candidate that diverged on any seed of any workload, or whose
   validation median falls more than :data:`MARGIN` below the paper defaults' on any
   workload, is never recommended; among the rest and the paper defaults, the smallest
   worst-case normalised regret wins (regret on a workload: the gap to the best validation
   median there, divided by the best's gap to chance). When that is the paper defaults,
   export says so and recommends them, with the evidence.

Every choice reads validation values only; the test medians are written beside them.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from adamz import __version__
from adamz.reports._confirm import confirmed_choice, fresh_seed_study
from adamz.reports._data import ReportError, StudyData, goodness, hyperparameters_of
from adamz.reports._html import plain_numbers
from adamz.reports._replicates import (
    is_replicate_study,
    page_unit,
    replicate_runs,
    selection_metric,
    summarize_run,
)
from adamz.reports._robustness import relative_gaps
from adamz.search.replicates import ReplicateSpec
from adamz.workloads import workload_of

__all__ = [
    "FORMAT",
    "MARGIN",
    "NEIGHBOURS",
    "PAPER_DEFAULTS",
    "VALIDATION_CANDIDATES",
    "VALIDATION_FIRST_SEED",
    "export_config",
    "recommend",
    "robust_candidates",
    "validated_choice",
    "validation_spec",
    "validation_table",
    "write_config",
]

FORMAT = "adamz-config/1"
NEIGHBOURS = 5
FLAT_TOLERANCE = 0.01
MAX_CANDIDATES = 10
VALIDATION_CANDIDATES = 5
"""Candidates a multi-study export validates on every workload."""
MARGIN = 0.01
"""Largest loss to the paper defaults' validation median, on any workload, that a recommended
configuration may have (in the metric's units: one point of accuracy)."""
PAPER_DEFAULTS = "paper defaults"
"""Label of the reference run: ``AdamZ.from_config("paper")``."""
VALIDATION_FIRST_SEED = 3000
"""Seeds of the export's validation runs start here (the searches use 0 on, confirmations
1000 on, held-out runs 2000 on)."""


def _scaled(data: StudyData, params: dict[str, Any]) -> np.ndarray:
    return np.array([_unit(data.distributions[name], params[name]) for name in data.params])


def _unit(distribution: BaseDistribution, value: Any) -> float:
    if isinstance(distribution, FloatDistribution | IntDistribution):
        low, high, x = float(distribution.low), float(distribution.high), float(value)
        if distribution.log:
            low, high, x = np.log(low), np.log(high), np.log(x)
        return (x - low) / (high - low) if high > low else 0.0
    assert isinstance(distribution, CategoricalDistribution)
    return float(distribution.choices.index(value)) if value in distribution.choices else -1.0


def _points(data: StudyData) -> np.ndarray:
    return np.array([_scaled(data, trial.params) for trial in data.completed])


def _neighbourhood_scores(data: StudyData, candidates: list[int]) -> np.ndarray:
    points = _points(data)
    better = goodness(data.values, maximize=data.maximize)
    k = min(NEIGHBOURS, len(points))
    scores = []
    for index in candidates:
        distances = np.linalg.norm(points - points[index], axis=1)
        scores.append(float(better[np.argsort(distances)[:k]].mean()))
    return np.array(scores)


def recommend(data: StudyData) -> dict[str, Any]:
    """The recommended trial of one study by the flat-region rule (see the module docs)."""
    order = np.argsort(-goodness(data.values, maximize=data.maximize), kind="stable")
    gaps = relative_gaps(data.values, maximize=data.maximize)
    candidates = [int(i) for i in order if gaps[i] <= FLAT_TOLERANCE][:MAX_CANDIDATES]
    scores = _neighbourhood_scores(data, candidates) if data.params else np.zeros(1)
    chosen = candidates[int(np.argmax(scores))]
    trial = data.completed[chosen]
    return {
        "trial": trial.number,
        "value": float(data.values[chosen]),
        "best_trial": data.completed[data.best_index].number,
        "best_value": float(data.values[data.best_index]),
        "neighbourhood_mean": float(scores.max()) * (1 if data.maximize else -1),
        "candidates": [data.completed[i].number for i in candidates],
        "index": chosen,
    }


def _estimate(data: StudyData, params: dict[str, Any]) -> float:
    """Value of the completed trial of ``data`` nearest to ``params``."""
    if set(params) != set(data.params):
        raise ReportError(
            f"Study {data.name!r} searches {sorted(data.params)}, not {sorted(params)}: a robust "
            "default needs studies over the same hyperparameters."
        )
    distances = np.linalg.norm(_points(data) - _scaled(data, params), axis=1)
    return float(data.values[int(np.argmin(distances))])


def export_config(
    datas: list[StudyData],
    *,
    validation: list[StudyData] | None = None,
    margin: float = MARGIN,
) -> dict[str, Any]:
    """The configuration to write for ``datas`` (one study, or a robust default of several).

    Args:
        datas: search studies of one optimizer.
        validation: for several studies, the finished :func:`validation_spec` studies, one per
            workload.
        margin: see :data:`MARGIN`.

    Raises:
        ReportError: a replicate study (it has nothing to choose: export the search it
            confirms), studies of several optimizers, or several studies without validation.
    """
    for data in datas:
        if is_replicate_study(data):
            sources = sorted(
                {
                    str(run["source"]["study"])
                    for run in (data.definition or {}).get("runs", [])
                    if isinstance(run.get("source"), dict) and run["source"].get("study")
                }
            )
            instead = (
                f"export the search it confirms ({', '.join(sources)}), which reads this "
                "confirmation"
                if sources
                else "export a search study"
            )
            raise ReportError(
                f"Study {data.name!r} is a replicate study of fixed configurations: it has "
                f"nothing to choose; {instead}."
            )
    optimizers = {data.optimizer for data in datas}
    if len(optimizers) > 1:
        raise ReportError(
            f"A robust default needs studies of one optimizer, got {sorted(map(str, optimizers))}."
        )
    optimizer = optimizers.pop()
    versions = {
        "adamz_search": __version__,
        "torch": str(torch.__version__),
        "trained_with": sorted(
            {
                f"adamz {w.get('adamz_version')}, torch {w.get('torch_version')}"
                for data in datas
                for trial in data.completed
                if isinstance(w := trial.user_attrs.get("worker"), dict)
            }
        ),
    }
    provenance: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "ci": None,  # a 95 % interval of the median, when a seed confirmation ran
    }
    if len(datas) == 1 and (confirmed := confirmed_choice(datas[0])) is not None:
        data = datas[0]
        hyperparameters = dict(confirmed.pop("hyperparameters"))
        interval = confirmed["ci95_median"]
        provenance.update(
            rule=f"best {confirmed['selected_on']} median over {confirmed['seeds']} fresh seeds "
            "among the confirmed trials (adamz-search report --confirm); value is its "
            f"{confirmed['metric']} median over those seeds",
            study=data.name,
            workload=data.workload,
            metric=confirmed["metric"],
            selected_on=confirmed["selected_on"],
            trial=confirmed["trial"],
            value=confirmed["median"],
            # a 95 % interval of a median needs 6 seeds or more (order statistics)
            ci=interval if all(math.isfinite(bound) for bound in interval) else None,
            confirmation=confirmed,
        )
    elif len(datas) == 1:
        data = datas[0]
        choice = recommend(data)
        hyperparameters = hyperparameters_of(data, choice.pop("index"))
        provenance.update(
            rule=f"best neighbourhood (mean of {NEIGHBOURS} nearest trials) among trials "
            f"within {FLAT_TOLERANCE:.0%} of the best",
            study=data.name,
            workload=data.workload,
            metric=(data.definition or {}).get("metric"),
            **choice,
        )
    else:
        if validation is None:
            raise ReportError(
                "A default for several studies is validated on every workload before it is "
                "recommended: pass the validation studies (adamz-search export runs them)."
            )
        choice = validated_choice(validation, margin=margin)
        hyperparameters = choice.pop("hyperparameters")
        provenance.update(
            rule=f"smallest worst-case normalised regret of the validation medians over "
            f"{len(validation)} workloads, among the paper defaults and the candidates that "
            "neither diverged nor fell behind the paper defaults by more than "
            f"{_in_page_unit(margin, selection_metric(validation[0]))} on any workload "
            "(candidates: the best mean normalised rank across the studies)",
            studies=[data.name for data in datas],
            **choice,
        )
    config: dict[str, Any] = {"format": FORMAT}
    if optimizer is not None:  # unknown for a study not created by adamz-search
        config["optimizer"] = optimizer
    config.update(hyperparameters=hyperparameters, provenance=provenance)
    return plain_numbers(config)


def robust_candidates(
    datas: list[StudyData], count: int = VALIDATION_CANDIDATES
) -> list[dict[str, Any]]:
    """The ``count`` configurations of ``datas`` with the best mean normalised rank across them.

    Each study's top ``count`` completed trials are candidates; a candidate's value on another
    study is its nearest completed trial's there.

    Raises:
        ReportError: the studies search different hyperparameters.
    """
    scored: list[dict[str, Any]] = []
    for data in datas:
        order = np.argsort(-goodness(data.values, maximize=data.maximize), kind="stable")
        for index in order[:count]:
            params = data.completed[int(index)].params
            ranks = []
            for other in datas:
                estimate = goodness(np.array([_estimate(other, params)]), maximize=other.maximize)
                ranks.append(
                    float(np.mean(goodness(other.values, maximize=other.maximize) > estimate[0]))
                )
            scored.append(
                {
                    "study": data.name,
                    "trial": data.completed[int(index)].number,
                    "mean_normalised_rank": float(np.mean(ranks)),
                    "hyperparameters": plain_numbers(hyperparameters_of(data, int(index))),
                }
            )
    scored.sort(key=lambda candidate: candidate["mean_normalised_rank"])
    unique: list[dict[str, Any]] = []
    for candidate in scored:
        if all(candidate["hyperparameters"] != kept["hyperparameters"] for kept in unique):
            unique.append(candidate)
    return unique[:count]


def validation_spec(
    data: StudyData,
    candidates: list[dict[str, Any]],
    seeds: int,
    *,
    name: str,
    first_seed: int = VALIDATION_FIRST_SEED,
) -> ReplicateSpec:
    """A replicate study training ``candidates`` and the paper defaults on ``data``'s workload.

    Raises:
        ReportError: ``data`` was not made by ``adamz-search`` (its workload is unknown), or
            ``seeds`` is below 2.
    """
    if seeds < 2:
        raise ReportError(f"Invalid --seeds {seeds}: needs at least 2 seeds to compare.")
    runs: list[dict[str, Any]] = [
        {
            "label": f"{candidate['study']} #{candidate['trial']}",
            "optimizer": data.optimizer,
            "hyperparameters": candidate["hyperparameters"],
            "source": {
                "study": candidate["study"],
                "trial": candidate["trial"],
                "mean_normalised_rank": candidate["mean_normalised_rank"],
            },
        }
        for candidate in candidates
    ]
    runs.append({"label": PAPER_DEFAULTS, "config": "paper"})
    return fresh_seed_study(
        data,
        runs,
        name=name,
        description=f"validation of {len(candidates)} candidate defaults on {data.workload}",
        seeds=seeds,
        first_seed=first_seed,
    )


def validated_choice(validation: list[StudyData], *, margin: float = MARGIN) -> dict[str, Any]:
    """The recommendation from validation studies (see the module docs, rule for several).

    Returns ``hyperparameters``, ``recommended`` (a label), ``paper_defaults_recommended``, and
    ``table``: per candidate and workload the validation and test medians, diverged seeds and
    regret, the worst-case regret and why a candidate was excluded.
    """
    table: dict[str, dict[str, Any]] = {}
    settings: dict[str, dict[str, Any]] = {}
    metrics = {str(data.workload): selection_metric(data) for data in validation}
    for data in validation:
        workload = str(data.workload)
        runs = replicate_runs(data)
        summaries = {label: summarize_run(entry) for label, entry in runs.items()}
        sign = 1.0 if data.maximize else -1.0
        medians = {
            label: summary["val_median"]
            for label, summary in summaries.items()
            if summary["n"] and summary["val_median"] is not None
        }
        if PAPER_DEFAULTS not in medians:
            raise ReportError(f"{data.name}: the paper defaults have no finished seed yet.")
        best = max(medians.values(), key=lambda value: sign * value)
        entry = (data.definition or {}).get("workload", workload)
        chance = workload_of(entry).chance_value(selection_metric(data))
        if not math.isfinite(chance):  # a metric of the user's without a chance value
            chance = min(medians.values(), key=lambda value: sign * value)  # the worst here
        for label, summary in summaries.items():
            settings.setdefault(label, {"hyperparameters": runs[label]["run"]["hyperparameters"]})
            median = medians.get(label)
            regret = (
                sign * (best - median) / (sign * (best - chance))
                if median is not None and sign * (best - chance) > 0
                else None
            )
            table.setdefault(label, {})[workload] = {
                "val_median": median,
                "test_median": summary.get("median"),
                "seeds": summary["n"],
                "diverged": summary["diverged"],
                "regret": regret,
                "vs_paper_defaults": None
                if median is None
                else sign * (median - medians[PAPER_DEFAULTS]),
            }
    for row in table.values():
        regrets = [cell["regret"] for cell in row.values()]
        worst = max(regrets) if regrets and None not in regrets else None
        reasons = []
        for workload, cell in row.items():
            if cell["diverged"]:
                reasons.append(f"diverged on {cell['diverged']} seeds of {workload}")
            if cell["vs_paper_defaults"] is not None and cell["vs_paper_defaults"] < -margin:
                behind = _in_page_unit(-cell["vs_paper_defaults"], metrics[workload], ".4g")
                reasons.append(f"{behind} behind the paper defaults on {workload}")
            if cell["val_median"] is None:
                reasons.append(f"no finished seed on {workload}")
        if len(row) < len(validation):
            reasons.append("not run on every workload")
        row["worst_regret"] = worst
        row["excluded"] = "; ".join(reasons) or None
    eligible = [
        label
        for label, row in table.items()
        if label == PAPER_DEFAULTS or (row["excluded"] is None and row["worst_regret"] is not None)
    ]
    winner = min(
        eligible,
        key=lambda label: (
            table[label]["worst_regret"] if table[label]["worst_regret"] is not None else math.inf,
            label != PAPER_DEFAULTS,  # a tie goes to the defaults: no evidence to move
        ),
    )
    return {
        "recommended": winner,
        "paper_defaults_recommended": winner == PAPER_DEFAULTS,
        "hyperparameters": dict(settings[winner]["hyperparameters"]),
        "margin": margin,
        "validation_studies": [data.name for data in validation],
        "table": table,
    }


def _in_page_unit(value: float, metric: str, spec: str = "g") -> str:
    """``value`` of ``metric`` in the unit of ``--margin`` and the report's pages: ``1 points
    of val_accuracy``, ``0.01 in val_loss``."""
    scale, unit = page_unit(metric)
    if scale == 1.0:
        return f"{value:{spec}} in {metric}"
    return f"{value * scale:{spec}} {unit} of {metric}"


def validation_table(choice: dict[str, Any]) -> str:
    """The per-workload validation table of :func:`validated_choice` as Markdown."""
    table = choice["table"]
    workloads = sorted({w for row in table.values() for w in row if isinstance(row[w], dict)})
    header = [
        "candidate",
        *(f"{w}: val / test median" for w in workloads),
        "worst regret",
        "status",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.items():
        cells = []
        for workload in workloads:
            cell = row.get(workload)
            if not isinstance(cell, dict) or cell["val_median"] is None:
                cells.append("")
                continue
            diverged = f" ({cell['diverged']} diverged)" if cell["diverged"] else ""
            cells.append(f"{cell['val_median']:.4f} / {cell['test_median']:.4f}{diverged}")
        worst = row["worst_regret"]
        status = (
            "**recommended**"
            if label == choice["recommended"]
            else f"excluded: {row['excluded']}"
            if row["excluded"]
            else ""
        )
        lines.append(
            "| "
            + " | ".join([label, *cells, f"{worst:.3f}" if worst is not None else "", status])
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_config(config: dict[str, Any], fmt: str) -> str:
    """``config`` as YAML or JSON text."""
    if fmt == "json":
        return json.dumps(config, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(config, sort_keys=False)
    raise ValueError(f"Unknown format {fmt!r}: must be yaml or json.")


def save_config(config: dict[str, Any], fmt: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(write_config(config, fmt))
