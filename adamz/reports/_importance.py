"""Importance of each hyperparameter: PED-ANOVA and fANOVA, with a mean and a spread.

Both evaluators are Optuna's. PED-ANOVA is deterministic, so its spread comes from bootstrap
resamples of the completed trials; fANOVA's random forest takes a seed, so its spread comes from
repeating it over evaluator seeds (each on a subsample of at most ``fanova_max_trials`` trials,
with ``fanova_trees`` trees: fANOVA is the slow part of a report, and the page says so).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.importance import (
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)
from optuna.trial import FrozenTrial

from adamz.reports._data import Section, StudyData

__all__ = ["importance_section"]


MIN_TRIALS = 20
TRIALS_PER_PARAM = 3


def _importances(
    data: StudyData, trials: list[FrozenTrial], evaluator: BaseImportanceEvaluator
) -> dict[str, float]:
    """``evaluator`` run on ``trials`` (in a throw-away in-memory study)."""
    study = optuna.create_study(direction=data.study.direction)
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning, and PED-ANOVA's few-trials note
        return optuna.importance.get_param_importances(
            study, evaluator=evaluator, params=data.params
        )


def _repeat(
    data: StudyData,
    repeats: int,
    make: Callable[[int], tuple[list[FrozenTrial], BaseImportanceEvaluator]],
) -> dict[str, dict[str, float]]:
    runs = [_importances(data, *make(repeat)) for repeat in range(repeats)]
    return {
        name: {
            "mean": float(np.mean([run.get(name, 0.0) for run in runs])),
            "std": float(np.std([run.get(name, 0.0) for run in runs])),
        }
        for name in data.params
    }


def importance_section(
    data: StudyData,
    *,
    repeats: int = 5,
    fanova_trees: int = 16,
    fanova_max_trials: int = 300,
    seed: int = 0,
) -> Section:
    """PED-ANOVA and fANOVA importances (mean and standard deviation over ``repeats``).

    Numbers: ``{"ped_anova": {param: {"mean", "std"}}, "fanova": {...}, "settings": {...}}``;
    importances are normalised to sum to 1 in each repeat.
    """
    section = Section("Importance")
    if len(data.params) < 2:
        section.skipped.append(
            f"importance needs at least two parameters shared by all trials (found {len(data.params)})"
        )
        return section
    rng = np.random.default_rng(seed)
    trials = data.completed
    n = len(trials)

    def bootstrap(_: int) -> tuple[list[FrozenTrial], BaseImportanceEvaluator]:
        chosen = rng.integers(0, n, size=n)
        return [trials[i] for i in chosen], PedAnovaImportanceEvaluator()

    def fanova(repeat: int) -> tuple[list[FrozenTrial], BaseImportanceEvaluator]:
        chosen = rng.permutation(n)[:fanova_max_trials]
        evaluator = FanovaImportanceEvaluator(
            n_trees=fanova_trees, max_depth=16, seed=seed + repeat
        )
        return [trials[i] for i in sorted(chosen)], evaluator

    results: dict[str, dict[str, dict[str, float]]] = {}
    for key, make in (("ped_anova", bootstrap), ("fanova", fanova)):
        try:
            results[key] = _repeat(data, repeats, make)
        except (ValueError, RuntimeError) as exc:  # e.g. too few trials for the evaluator
            section.skipped.append(f"{key}: {exc}")
    section.numbers = {
        **results,
        "settings": {
            "repeats": repeats,
            "ped_anova_spread": "bootstrap of the completed trials",
            "fanova_spread": "evaluator seeds",
            "fanova_trees": fanova_trees,
            "fanova_max_depth": 16,
            "fanova_trials_per_repeat": min(n, fanova_max_trials),
        },
    }
    if not results:
        return section
    needed = trials_to_rank(len(data.params))
    section.numbers["ranked"] = n >= needed
    if n < needed:
        section.summary.append(
            f"Not enough trials to rank: {n} completed trials for {len(data.params)} "
            f"hyperparameters (ranking needs at least {needed}); the estimates are in "
            "report.json, but with so few trials the evaluators disagree run to run."
        )
        return section
    order = sorted(data.params, key=lambda name: -max(r[name]["mean"] for r in results.values()))
    figure = go.Figure()
    labels = {"ped_anova": "PED-ANOVA", "fanova": "fANOVA"}
    for key, result in results.items():
        figure.add_bar(
            name=labels[key],
            x=order,
            y=[result[name]["mean"] for name in order],
            error_y={"type": "data", "array": [result[name]["std"] for name in order]},
        )
    figure.update_layout(
        title=f"{data.name}: hyperparameter importance (mean ± sd over {repeats} repeats)",
        barmode="group",
        xaxis_title="hyperparameter",
        yaxis_title="importance (normalised)",
    )
    section.figures.append(figure)
    top = order[0]
    parts = [f"{labels[k]} {r[top]['mean']:.2f} ± {r[top]['std']:.2f}" for k, r in results.items()]
    section.summary.append(
        f"Most important: **{top}** ({', '.join(parts)}), from the {n} completed trials "
        "(pruned trials never finished training and are left out)."
    )
    if n > fanova_max_trials:
        section.summary.append(
            f"fANOVA ran on {fanova_max_trials} of {n} trials per repeat, {fanova_trees} trees."
        )
    return section


def trials_to_rank(params: int) -> int:
    """Completed trials an importance ranking needs: :data:`TRIALS_PER_PARAM` per parameter,
    and at least :data:`MIN_TRIALS`. Below it, PED-ANOVA's quantile split holds a handful of
    trials and fANOVA's forest a few leaves, and their orders change with the seed."""
    return max(MIN_TRIALS, TRIALS_PER_PARAM * params)


def ranked_params(section: Section, params: list[str]) -> list[str]:
    """``params`` from most to least important (PED-ANOVA mean, else fANOVA), or as given
    where the section refused to rank them (too few trials) or has no estimates."""
    if not section.numbers.get("ranked"):
        return list(params)
    for key in ("ped_anova", "fanova"):
        result = section.numbers.get(key)
        if result:
            return sorted(params, key=lambda name: -result[name]["mean"])
    return list(params)
