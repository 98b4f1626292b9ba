"""Robustness (how forgiving the optimizer is to mistuning) and tunability (gain over defaults)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from adamz.reports._data import Section, StudyData, goodness, hyperparameters_of
from adamz.reports._importance import trials_to_rank
from adamz.reports._replicates import page_unit

__all__ = [
    "REFERENCES",
    "TOLERANCES",
    "reference_trials",
    "relative_gaps",
    "robustness_section",
    "tunability_section",
]

TOLERANCES = (0.01, 0.05)
"""Relative distances to the best value counted as "within" (1 % and 5 %)."""


def relative_gaps(values: np.ndarray, *, maximize: bool) -> np.ndarray:
    """How much worse than the best each value is, relative to ``|best|`` (absolute if 0)."""
    better = goodness(values, maximize=maximize)
    best = better.max()
    scale = abs(best) if best != 0 else 1.0
    return (best - better) / scale


def robustness_section(data: StudyData) -> Section:
    """Fraction of completed trials within 1 % / 5 % of the best, and their gaps' ECDF; below
    the trials an importance ranking needs (``trials_to_rank``), the fractions in words and no
    curve (a distribution drawn from a handful of trials shows the handful)."""
    section = Section("Robustness")
    gaps = relative_gaps(data.values, maximize=data.maximize)
    fractions = {f"within_{round(t * 100)}pct": float(np.mean(gaps <= t)) for t in TOLERANCES}
    section.numbers = {**fractions, "trials": len(gaps), "median_gap": float(np.median(gaps))}
    needed = trials_to_rank(len(data.params))
    if len(gaps) < needed:
        section.skipped.append(
            f"the curve of distances to the best: too few completed trials ({len(gaps)}, it "
            f"needs {needed}, as a ranking does)"
        )
        section.summary.append(
            f"{round(fractions['within_1pct'] * len(gaps))} of the {len(gaps)} completed trials "
            f"are within 1 % of the best, {round(fractions['within_5pct'] * len(gaps))} within "
            "5 % (too few to say how forgiving the optimizer is)."
        )
        return section
    ordered = np.sort(gaps)
    figure = go.Figure()
    figure.add_scatter(
        x=ordered, y=np.arange(1, len(ordered) + 1) / len(ordered), mode="lines",
        line={"shape": "hv"}, name="trials",
    )  # fmt: skip
    for tolerance in TOLERANCES:
        figure.add_vline(x=tolerance, line_dash="dot", annotation_text=f"{tolerance:.0%}")
    figure.update_layout(
        title=f"{data.name}: distance to the best value (empirical CDF)",
        xaxis_title="relative gap to the best",
        yaxis_title="fraction of trials",
    )
    section.figures.append(figure)
    section.summary.append(
        f"{fractions['within_1pct']:.0%} of the {len(gaps)} completed trials are within 1 % of "
        f"the best, {fractions['within_5pct']:.0%} within 5 % (pruned trials, which never "
        "finished training, are left out here)."
    )
    return section


REFERENCES = ("library defaults", "paper settings")
"""The reference points a study queues first (``enqueued``; see ``adamz.search.studies``)."""


def reference_trials(data: StudyData) -> dict[str, FrozenTrial]:
    """The trial that ran each reference point, by name (studies made before the references
    were named queued one trial, ``enqueued: defaults``, which ran the paper settings). An
    attempt that failed (its worker stopped) gives way to its retry, which has its label."""
    found: dict[str, FrozenTrial] = {}
    for trial in data.trials:
        labels = trial.user_attrs.get("enqueued")
        if labels == "defaults":
            labels = ["paper settings"]
        if isinstance(labels, list):
            for label in map(str, labels):
                if label not in found or found[label].state == TrialState.FAIL:
                    found[label] = trial
    return found


def tunability_section(data: StudyData) -> Section:
    """Gain of the best trial over each reference point: the library defaults and the paper
    settings (one seed each, like every trial of the search)."""
    section = Section("Tunability")
    references = reference_trials(data)
    if not references:
        section.skipped.append(
            "no trial ran the library defaults or the paper settings (enqueue_defaults in the "
            "study file)"
        )
        return section
    best = data.completed[data.best_index]
    best_value = float(data.values[data.best_index])
    section.numbers = {"best_trial": best.number, "best_value": best_value, "references": {}}
    for label in REFERENCES:
        trial = references.get(label)
        if trial is None:
            continue
        if trial not in data.completed:
            section.skipped.append(f"the {label} trial #{trial.number} ended {trial.state.name}")
            continue
        value = float(data.values[data.completed.index(trial)])
        gain = (best_value - value) * (1 if data.maximize else -1)  # > 0: the best is better
        section.numbers["references"][label] = {
            "trial": trial.number,
            "value": value,
            "gain": gain,
            "hyperparameters": hyperparameters_of(data, data.completed.index(trial)),
        }
        if trial.number == best.number:
            section.summary.append(
                f"Tuning found nothing better than the {label}: trial #{trial.number} "
                f"({value:.4g}) is still the best of the {len(data.completed)} completed trials "
                "(one seed each)."
            )
            continue
        scale, unit = page_unit(data.metric)
        moved = "raised" if data.maximize else "lowered"
        shown = (
            f"{abs(best_value - value) * scale:.4g} {unit}"
            if scale != 1.0
            else f"{abs(best_value - value):.4g}"
        )
        section.summary.append(
            f"Tuning {moved} {data.metric} by {shown} from the {label} (trial #{trial.number}, "
            f"{value * scale:.4g}; best trial #{best.number}, {best_value * scale:.4g}; one seed "
            f"each; {'higher' if data.maximize else 'lower'} is better)."
        )
    return section
