"""Robustness (how forgiving the optimizer is to mistuning) and tunability (gain over defaults)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from adamz.reports._data import Section, StudyData, goodness

__all__ = ["TOLERANCES", "relative_gaps", "robustness_section", "tunability_section"]

TOLERANCES = (0.01, 0.05)
"""Relative distances to the best value counted as "within" (1 % and 5 %)."""


def relative_gaps(values: np.ndarray, *, maximize: bool) -> np.ndarray:
    """How much worse than the best each value is, relative to ``|best|`` (absolute if 0)."""
    better = goodness(values, maximize=maximize)
    best = better.max()
    scale = abs(best) if best != 0 else 1.0
    return (best - better) / scale


def robustness_section(data: StudyData) -> Section:
    """Fraction of completed trials within 1 % / 5 % of the best, and their gaps' ECDF."""
    section = Section("Robustness")
    gaps = relative_gaps(data.values, maximize=data.maximize)
    fractions = {f"within_{round(t * 100)}pct": float(np.mean(gaps <= t)) for t in TOLERANCES}
    section.numbers = {**fractions, "trials": len(gaps), "median_gap": float(np.median(gaps))}
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
        f"{fractions['within_1pct']:.0%} of {len(gaps)} trials are within 1 % of the best, "
        f"{fractions['within_5pct']:.0%} within 5 %."
    )
    return section


def tunability_section(data: StudyData) -> Section:
    """Gain of the best trial over the defaults trial (``user_attrs["enqueued"] == "defaults"``)."""
    section = Section("Tunability")
    defaults = [t for t in data.trials if t.user_attrs.get("enqueued") == "defaults"]
    if not defaults:
        section.skipped.append("no trial ran the defaults (enqueue_defaults in the study file)")
        return section
    trial = defaults[0]
    if trial not in data.completed:
        section.skipped.append(f"the defaults trial #{trial.number} ended {trial.state.name}")
        return section
    best = data.completed[data.best_index]
    best_value = float(data.values[data.best_index])
    defaults_value = float(data.values[data.completed.index(trial)])
    gain = (best_value - defaults_value) * (1 if data.maximize else -1)
    relative = gain / abs(defaults_value) if defaults_value else None
    section.numbers = {
        "defaults_trial": trial.number,
        "defaults_value": defaults_value,
        "best_trial": best.number,
        "best_value": best_value,
        "gain": gain,
        "relative_gain": relative,
    }
    shown = f" ({relative:+.1%})" if relative is not None else ""
    section.summary.append(
        f"Best trial #{best.number} ({best_value:.4g}) vs defaults #{trial.number} "
        f"({defaults_value:.4g}): gain {gain:+.4g}{shown}."
    )
    return section
