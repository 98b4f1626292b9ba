"""Pruning and workers: intermediate curves, epochs saved by pruning, the workers' timeline."""

from __future__ import annotations

import warnings
from typing import Any

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import plot_intermediate_values, plot_timeline

from adamz.reports._data import Section, StudyData

__all__ = ["pruning_section", "shorten_hover"]

MAX_CURVES = 200
"""Intermediate-value curves drawn at most (a 1,000-curve chart is unreadable and slow)."""
MAX_LEGEND = 20
"""More curves than this get no legend (it would be longer than the chart)."""


def pruning_section(data: StudyData) -> Section:
    """Epochs saved by pruning (vs running every pruned trial to the longest run's last epoch),
    trials and busy time per worker, and Optuna's intermediate-values and timeline charts."""
    section = Section("Pruning and workers")
    # Epochs a trial ran = values it reported: our workers number epochs from 1, plain Optuna
    # studies often from 0, so the last step is not the count.
    steps = {t.number: len(t.intermediate_values) for t in data.trials if t.intermediate_values}
    if steps:
        full = (
            max(steps[t.number] for t in data.completed if t.number in steps)
            if any(t.number in steps for t in data.completed)
            else max(steps.values())
        )
        pruned = [t for t in data.trials if t.state == TrialState.PRUNED and t.number in steps]
        saved = sum(full - steps[t.number] for t in pruned)
        section.numbers["pruning"] = {
            "pruned_trials": len(pruned),
            "epochs_per_full_run": full,
            "epochs_saved": saved,
            "epochs_run": sum(steps.values()),
        }
        section.summary.append(
            f"{len(pruned)} trials pruned, saving {saved} of {saved + sum(steps.values())} epochs."
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Optuna's chart, on its own copy of the study's trials capped for readability.
            figure = plot_intermediate_values(data.study)
        if len(figure.data) > MAX_CURVES:
            figure.data = figure.data[:MAX_CURVES]
            section.skipped.append(f"intermediate values: first {MAX_CURVES} curves shown")
        figure.update_layout(
            title=f"{data.name}: {data.metric} after each epoch, one line per trial",
            xaxis_title="epoch",
            yaxis_title=data.metric,
            showlegend=len(figure.data) <= MAX_LEGEND,
        )
        section.figures.append(figure)
    else:
        section.skipped.append("no intermediate values reported: no pruning statistics")
    workers: dict[str, dict[str, float]] = {}
    for trial in data.trials:
        info = trial.user_attrs.get("worker")
        if not isinstance(info, dict) or trial.datetime_start is None:
            continue
        key = f"{info.get('host')}:{info.get('pid')}"
        end = trial.datetime_complete or trial.datetime_start
        entry = workers.setdefault(key, {"trials": 0, "busy_s": 0.0})
        entry["trials"] += 1
        entry["busy_s"] += (end - trial.datetime_start).total_seconds()
    if workers:
        section.numbers["workers"] = workers
        count = len(workers)
        section.summary.append(
            f"{count} worker process{'es' if count != 1 else ''} ran the trials."
        )
    else:
        section.skipped.append("the trials do not say which worker ran them")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timeline = plot_timeline(data.study)
    shorten_hover(timeline, data)
    timeline.update_layout(
        title=f"{data.name}: trials over time", xaxis_title="time", yaxis_title="trial"
    )
    section.figures.append(timeline)
    return section


def shorten_hover(timeline: go.Figure, data: StudyData) -> None:
    """Give each bar of Optuna's timeline a few lines of hover text (:func:`trial_hover`).

    Optuna's is the trial's JSON with every user attribute: for a trial of ours, its whole
    training record, 150 lines taller than the screen and about 1.5 kB of page per trial.
    """
    by_number = {trial.number: trial for trial in data.trials}
    for trace in timeline.data:
        if trace.type == "bar" and trace.y is not None:
            trace.text = [
                trial_hover(by_number[int(number)], data.metric) if int(number) in by_number else ""
                for number in trace.y
            ]


def trial_hover(trial: FrozenTrial, metric: str) -> str:
    """Trial number, state, value (or epochs reported), hyperparameters and worker, one a line."""
    head = f"trial {trial.number}: {trial.state.name.lower()}"
    if trial.value is not None:
        head += f", {metric} {trial.value:.4g}"
    elif trial.intermediate_values:
        head += f" after {len(trial.intermediate_values)} epochs"
    lines = [head, *(f"{name} {_short(value)}" for name, value in trial.params.items())]
    worker = trial.user_attrs.get("worker")
    if isinstance(worker, dict):
        lines.append(f"worker {worker.get('host')}:{worker.get('pid')}")
    return "<br>".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
