"""Importance of each hyperparameter: PED-ANOVA and fANOVA, with a mean, a spread and a null.

Both evaluators are Optuna's. Each also sees :data:`NULL_PARAMS` inert parameters, drawn
uniformly beside the trials' own: an evaluator gives any parameter some importance, and the
largest inert one's (the *null*) shows how much a parameter that does nothing gets. Where the
two evaluators put different parameters first, the page says there is no stable ranking
instead of naming a winner. PED-ANOVA is deterministic, so its spread comes from bootstrap
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
from optuna.distributions import FloatDistribution
from optuna.importance import (
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)
from optuna.trial import FrozenTrial

from adamz.reports._data import Section, StudyData

__all__ = ["importance_section", "ranked_estimator", "ranked_params"]


MIN_TRIALS = 20
TRIALS_PER_PARAM = 3
NULL_PARAMS = 4
NULL_STREAM = 0x6E756C6C
"""Mixed into the inert parameters' seed (see :func:`_with_nulls`)."""
LABELS = {"ped_anova": "PED-ANOVA", "fanova": "fANOVA"}


def _with_nulls(trials: list[FrozenTrial], seed: int) -> tuple[list[FrozenTrial], list[str]]:
    """``trials`` each with :data:`NULL_PARAMS` inert parameters (uniform on [0, 1], one draw
    per trial) and their names."""
    # A stream of its own: a sampler seeded with ``seed`` draws the same uniforms, and an
    # inert column equal to a real one's quantiles would not be inert.
    rng = np.random.default_rng([seed, NULL_STREAM])
    names = [f"(null {i})" for i in range(NULL_PARAMS)]
    inert = FloatDistribution(0.0, 1.0)
    extended = []
    for trial in trials:
        draws = rng.random(NULL_PARAMS)
        extended.append(
            optuna.trial.create_trial(
                params={**trial.params, **dict(zip(names, draws.tolist(), strict=True))},
                distributions={**trial.distributions, **dict.fromkeys(names, inert)},
                value=trial.value,
                state=trial.state,
            )
        )
    return extended, names


def _importances(
    data: StudyData,
    trials: list[FrozenTrial],
    evaluator: BaseImportanceEvaluator,
    params: list[str],
) -> dict[str, float]:
    """``evaluator`` run on ``trials`` over ``params`` (in a throw-away in-memory study)."""
    study = optuna.create_study(direction=data.study.direction)
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning, and PED-ANOVA's few-trials note
        return optuna.importance.get_param_importances(study, evaluator=evaluator, params=params)


def _repeat(
    data: StudyData,
    repeats: int,
    make: Callable[[int], tuple[list[FrozenTrial], BaseImportanceEvaluator]],
    nulls: list[str],
) -> dict[str, dict[str, float]]:
    """Mean and sd over ``repeats`` of each parameter's importance, and of the null's (the
    largest inert parameter's, under ``"(null)"``)."""
    runs = [_importances(data, *make(repeat), [*data.params, *nulls]) for repeat in range(repeats)]
    per_run = {name: [run.get(name, 0.0) for run in runs] for name in data.params}
    per_run["(null)"] = [max(run.get(name, 0.0) for name in nulls) for run in runs]
    return {
        name: {"mean": float(np.mean(values)), "std": float(np.std(values))}
        for name, values in per_run.items()
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
    trials, nulls = _with_nulls(data.completed, seed)
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
            results[key] = _repeat(data, repeats, make, nulls)
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
            "null": f"the largest of {NULL_PARAMS} inert parameters drawn beside the trials'",
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
    colours = {"ped_anova": "#1f77b4", "fanova": "#ff7f0e"}
    for key, result in results.items():
        figure.add_bar(
            name=LABELS[key],
            x=order,
            y=[result[name]["mean"] for name in order],
            marker_color=colours[key],
            error_y={"type": "data", "array": [result[name]["std"] for name in order]},
        )
        figure.add_scatter(
            name=f"{LABELS[key]}: null (largest inert parameter, mean)",
            x=order,
            y=[result["(null)"]["mean"]] * len(order),
            mode="lines",
            line={"dash": "dash", "color": colours[key]},
        )
    figure.update_layout(
        title=f"{data.name}: hyperparameter importance (mean ± sd over {repeats} repeats)",
        barmode="group",
        xaxis_title="hyperparameter",
        yaxis_title="importance (normalised, inert parameters included)",
        legend={"orientation": "h", "y": -0.3},
    )
    section.figures.append(figure)
    tops = {key: max(data.params, key=lambda name: r[name]["mean"]) for key, r in results.items()}
    above = {
        key: [
            name
            for name in data.params
            if r[name]["mean"] > r["(null)"]["mean"] + r["(null)"]["std"]
        ]
        for key, r in results.items()
    }
    section.numbers["above_null"] = above
    stable = len(set(tops.values())) == 1
    section.numbers["stable_ranking"] = stable
    section.numbers["ranked_by"] = next(iter(results))
    if stable:
        top = next(iter(tops.values()))
        parts = [
            f"{LABELS[k]} {r[top]['mean']:.2f} ± {r[top]['std']:.2f}" for k, r in results.items()
        ]
        section.summary.append(
            f"Most important: **{top}** ({', '.join(parts)}), from the {n} completed trials "
            "(pruned trials never finished training and are left out)."
        )
    else:
        parts = [
            f"{LABELS[k]} puts {tops[k]} first ({r[tops[k]]['mean']:.2f} ± {r[tops[k]]['std']:.2f})"
            for k, r in results.items()
        ]
        section.summary.append(
            f"No stable ranking: {'; '.join(parts)}, from the {n} completed trials. The "
            f"sensitivity contour below shows the top two by {LABELS[next(iter(results))]}."
        )
    for key, names in above.items():
        inert = [name for name in data.params if name not in names]
        if inert:
            section.summary.append(
                f"{LABELS[key]}: {', '.join(inert)} not above the null (the largest inert "
                "parameter's importance plus its spread)."
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
    """``params`` from most to least important by the estimator the section names
    (``ranked_by``: PED-ANOVA's mean, else fANOVA's), or as given where the section refused
    to rank them (too few trials) or has no estimates."""
    if not section.numbers.get("ranked"):
        return list(params)
    named = section.numbers.get("ranked_by")
    if named in section.numbers:
        result = section.numbers[named]
        return sorted(params, key=lambda name: -result[name]["mean"])
    for key in ("ped_anova", "fanova"):
        result = section.numbers.get(key)
        if result:
            return sorted(params, key=lambda name: -result[name]["mean"])
    return list(params)


def ranked_estimator(section: Section) -> str | None:
    """The name of the estimator :func:`ranked_params` orders by (None: none ranked)."""
    if not section.numbers.get("ranked"):
        return None
    return LABELS.get(section.numbers.get("ranked_by", ""))
