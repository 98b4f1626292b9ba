"""AdamZ's controller: how often overshoot and stagnation fired in good vs bad trials."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from adamz.reports._data import Section, StudyData, goodness, train_result

__all__ = ["controller_section"]

COUNTS = ("overshoots", "stagnations")


def _controller(trial: Any) -> dict[str, Any] | None:
    result = train_result(trial)
    if result is not None and isinstance(result.get("controller"), dict):
        return result["controller"]
    return None


def controller_section(data: StudyData) -> Section:
    """Mean controller counts in the better and worse halves, and the best trial's rate.

    Good trials: at least as good as the median completed value; bad: the rest. Skipped for a
    study whose trials carry no controller record (other optimizers, plain Optuna studies).
    """
    section = Section("AdamZ controller")
    records = [_controller(trial) for trial in data.completed]
    have = [i for i, record in enumerate(records) if record is not None]
    if not have:
        section.skipped.append("this study's trials did not run AdamZ: no controller to show")
        return section
    better = goodness(data.values[have], maximize=data.maximize)
    median = float(np.median(better))
    groups: dict[str, dict[str, float]] = {"good": {}, "bad": {}}
    for label, mask in (("good", better >= median), ("bad", better < median)):
        chosen = [records[have[i]] for i in np.flatnonzero(mask)]
        groups[label]["trials"] = len(chosen)
        for count in COUNTS:
            values = [float(r[count]) for r in chosen if r is not None and count in r]
            groups[label][f"mean_{count}"] = float(np.mean(values)) if values else float("nan")
    section.numbers["groups"] = groups
    figure = go.Figure()
    for label in ("good", "bad"):
        figure.add_bar(
            name=f"{label} trials ({groups[label]['trials']:.0f})",
            x=list(COUNTS),
            y=[groups[label][f"mean_{count}"] for count in COUNTS],
        )
    figure.update_layout(
        title=f"{data.name}: controller adjustments per run, better vs worse half",
        barmode="group",
        xaxis_title="adjustment",
        yaxis_title="mean count per trial",
    )
    section.figures.append(figure)
    best = records[data.best_index]
    if best is not None and best.get("lr_at_epoch_end"):
        trajectory = [float(lr) for lr in best["lr_at_epoch_end"]]
        section.numbers["best_trial_lr_at_epoch_end"] = trajectory
        lr_figure = go.Figure(
            go.Scatter(x=list(range(1, len(trajectory) + 1)), y=trajectory, mode="lines+markers")
        )  # epochs counted from 1, as the intermediate values count them
        lr_figure.update_layout(
            title=f"{data.name}: learning rate of the best trial at each epoch end",
            xaxis_title="epoch",
            yaxis_title="lr",
            yaxis_type="log",
        )
        section.figures.append(lr_figure)
    section.summary.append(
        "Overshoots per run: good {:.3g}, bad {:.3g}; stagnations: good {:.3g}, bad {:.3g}.".format(
            groups["good"]["mean_overshoots"],
            groups["bad"]["mean_overshoots"],
            groups["good"]["mean_stagnations"],
            groups["bad"]["mean_stagnations"],
        )
    )
    return section
