"""The pages behind a recommendation: sweeps (a rate grid, one-at-a-time sweeps around a
configuration) and the non-inferiority test of a configuration against what users would use
instead.

A *sweep* is a replicate study whose runs carry ``family`` and ``varies``
(:mod:`adamz.search.replicates`): each family is one configuration, and each of its runs changes
one hyperparameter (``{}``: the family's centre). :func:`sweep_section` draws each varied
hyperparameter's curve (the median over seeds with its 95 % interval, in the page's units), the
share of runs that collapse, and the controller's activity beside it (overshoot and stagnation
adjustments per run); for a rate grid it names each family's chosen rate (the best validation
median, ties to the lower validation loss: :func:`adamz.reports._replicates.by_validation`).

A replicate study with ``noninferiority: {reference, margin}`` gets
:func:`noninferiority_section`: every other run minus the reference, seed by seed, as the
Hodges-Lehmann shift with its signed-rank interval, and the one-sided signed-rank test that
the run is no worse than the reference by more than the margin (it may be better by any
amount).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from adamz.reports._atlas import COLLAPSE_DROP
from adamz.reports._data import Section, StudyData, train_result
from adamz.reports._replicates import (
    by_validation,
    median_interval,
    page_unit,
    replicate_runs,
    summarize_run,
)
from adamz.reports._stats import (
    benjamini_hochberg,
    hodges_lehmann,
    hodges_lehmann_interval,
    noninferiority_test,
)

__all__ = [
    "is_sweep_study",
    "noninferiority_section",
    "sweep_section",
    "wants_noninferiority",
]

LEVEL = 0.05


def is_sweep_study(data: StudyData) -> bool:
    return any("family" in run for run in (data.definition or {}).get("runs", []))


def wants_noninferiority(data: StudyData) -> bool:
    return "noninferiority" in (data.definition or {})


def _controller_counts(data: StudyData) -> dict[str, list[tuple[float, float]]]:
    """Per run label: each finished seed's (overshoots, stagnations)."""
    found: dict[str, list[tuple[float, float]]] = {}
    for trial in data.completed:
        result = train_result(trial) or {}
        controller = result.get("controller")
        if isinstance(controller, dict) and "overshoots" in controller:
            found.setdefault(str(trial.params.get("run")), []).append(
                (float(controller["overshoots"]), float(controller["stagnations"]))
            )
    return found


def _sort_key(value: Any) -> tuple[int, float]:
    return (1, 0.0) if value is None else (0, float(value))


def _shown(value: Any) -> str:
    return "none" if value is None else f"{value:g}"


def sweep_section(data: StudyData) -> Section:
    """Each family's rate choice or one-at-a-time curves (see the module docs)."""
    section = Section("Sweeps")
    scale, unit = page_unit(data.metric)
    runs = replicate_runs(data)
    summaries = {label: summarize_run(entry) for label, entry in runs.items()}
    counts = _controller_counts(data)
    families: dict[str, list[dict[str, Any]]] = {}
    for run in (data.definition or {}).get("runs", []):
        if "family" in run:
            families.setdefault(run["family"], []).append(run)
    numbers: dict[str, Any] = {"metric": data.metric, "unit": unit, "families": {}}
    for family, members in families.items():
        varied = {name for run in members for name in run["varies"]}
        if varied == {"lr"}:
            section.title = "Rate grid"
            section.summary.append(_rate_choice(family, members, summaries, data, scale, unit))
            section.figures.append(_rate_figure(data, family, members, runs, scale, unit))
            numbers["families"][family] = {
                "chosen": by_validation(
                    {m["label"]: summaries[m["label"]] for m in members}, maximize=data.maximize
                )[:1],
                "runs": {m["label"]: summaries[m["label"]] for m in members},
            }
            continue
        centre = next((run for run in members if not run["varies"]), None)
        curves = _curves(members, runs, counts, scale, centre, maximize=data.maximize)
        numbers["families"][family] = {
            "centre": centre["hyperparameters"] if centre else None,
            "curves": curves,
        }
        section.summary.extend(_curve_lines(family, curves, unit, centre, data.maximize))
        section.figures.append(_sweep_figure(data.name, family, curves, unit, data.metric))
    section.numbers = numbers
    if not families:
        section.skipped.append("no run carries a family: not a sweep")
    return section


def _rate_choice(
    family: str,
    members: list[dict[str, Any]],
    summaries: dict[str, dict[str, Any]],
    data: StudyData,
    scale: float,
    unit: str,
) -> str:
    ranked = by_validation({m["label"]: summaries[m["label"]] for m in members}, maximize=True)
    if not ranked:
        return f"{family}: no rate has finished yet."
    best = summaries[ranked[0]]
    rate = best["hyperparameters"]["lr"]
    return (
        f"{family}: rate {rate:g} chosen on validation (median {data.metric} "
        f"{scale * best['val_median']:.2f} {unit} over {best['n']} seeds; "
        f"{len(members)} rates tried)."
    )


def _rate_figure(
    data: StudyData,
    family: str,
    members: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    scale: float,
    unit: str,
) -> go.Figure:
    """The validation median over the rate grid, with its interval."""
    points = sorted(members, key=lambda run: run["varies"]["lr"])
    medians, lows, highs = [], [], []
    for run in points:
        values = scale * np.array(runs[run["label"]]["val_values"], dtype=float)
        values = values[np.isfinite(values)]
        median = float(np.median(values)) if len(values) else float("nan")
        low, high = median_interval(values) if len(values) else (median, median)
        medians.append(median)
        lows.append(median - low if np.isfinite(low) else 0.0)
        highs.append(high - median if np.isfinite(high) else 0.0)
    figure = go.Figure(
        go.Scatter(
            x=[run["varies"]["lr"] for run in points],
            y=medians,
            mode="lines+markers",
            error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows},
            name=f"median validation {data.metric.removeprefix('val_')} ({unit}), 95 % interval",
        )
    )
    figure.update_layout(
        title=f"{data.name}: {family}, validation over the rate grid",
        xaxis={"type": "log", "title": "lr"},
        yaxis_title=f"{data.metric} ({unit})",
        showlegend=True,
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def _curves(
    members: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    counts: dict[str, list[tuple[float, float]]],
    scale: float,
    centre: dict[str, Any] | None,
    *,
    maximize: bool,
) -> dict[str, list[dict[str, Any]]]:
    """Per varied hyperparameter: its points in order, each with the median, its interval,
    the collapse share and the controller's mean adjustments per run; the centre joins each
    curve at its own value."""
    curves: dict[str, list[dict[str, Any]]] = {}
    names = [name for run in members for name in run["varies"]]
    for name in dict.fromkeys(names):
        points = [run for run in members if name in run["varies"]]
        entries = [(run["varies"][name], run["label"]) for run in points]
        if centre is not None:
            entries.append((centre["hyperparameters"].get(name), centre["label"]))
        curve = []
        for value, label in sorted(entries, key=lambda entry: _sort_key(entry[0])):
            values = scale * np.array(runs[label]["values"], dtype=float)
            if len(values) == 0:
                continue
            low, high = median_interval(values)
            median = float(np.median(values))
            events = np.array(counts.get(label, []), dtype=float).reshape(-1, 2)
            curve.append(
                {
                    "value": value,
                    "label": label,
                    "centre": centre is not None and label == centre["label"],
                    "seeds": len(values),
                    "median": median,
                    "ci95": [low, high],
                    "collapse_share": float(
                        np.mean(
                            ((median - values) if maximize else (values - median)) > COLLAPSE_DROP
                        )
                    ),
                    "diverged": len(runs[label]["diverged"]),
                    "overshoots_per_run": float(events[:, 0].mean()) if len(events) else None,
                    "stagnations_per_run": float(events[:, 1].mean()) if len(events) else None,
                }
            )
        curves[name] = curve
    return curves


def _curve_lines(
    family: str,
    curves: dict[str, list[dict[str, Any]]],
    unit: str,
    centre: dict[str, Any] | None,
    maximize: bool,
) -> list[str]:
    lines = []
    for name, curve in curves.items():
        if not curve:
            continue
        best = max(curve, key=lambda p: p["median"] if maximize else -p["median"])
        mid = next((p for p in curve if p["centre"]), None)
        spread = max(p["median"] for p in curve) - min(p["median"] for p in curve)
        text = (
            f"{family}, {name}: medians span {spread:.2f} {unit} over "
            f"{_shown(curve[0]['value'])} – {_shown(curve[-1]['value'])}; best at "
            f"{_shown(best['value'])} ({best['median']:.2f} [{best['ci95'][0]:.2f}, "
            f"{best['ci95'][1]:.2f}])"
        )
        if mid is not None:
            text += (
                f", the centre ({_shown(mid['value'])}) {mid['median']:.2f} "
                f"[{mid['ci95'][0]:.2f}, {mid['ci95'][1]:.2f}]"
            )
        collapses = [p for p in curve if p["collapse_share"] > 0]
        if collapses:
            worst = max(collapses, key=lambda p: p["collapse_share"])
            text += f"; collapses up to {worst['collapse_share']:.0%} of runs (at {_shown(worst['value'])})"
        lines.append(text + ".")
    return lines


def _sweep_figure(
    study: str, family: str, curves: dict[str, list[dict[str, Any]]], unit: str, metric: str
) -> go.Figure:
    names = [name for name, curve in curves.items() if curve]
    columns = min(3, len(names)) or 1
    rows = -(-len(names) // columns) or 1
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=names,
        specs=[[{"secondary_y": True}] * columns for _ in range(rows)],
    )
    for index, name in enumerate(names):
        curve = curves[name]
        row, col = index // columns + 1, index % columns + 1
        x = [_shown(p["value"]) for p in curve]
        first = index == 0
        figure.add_scatter(
            x=x,
            y=[p["median"] for p in curve],
            mode="lines+markers",
            marker={"color": ["#d62728" if p["centre"] else "#1f77b4" for p in curve], "size": 8},
            line={"color": "#1f77b4"},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [p["ci95"][1] - p["median"] for p in curve],
                "arrayminus": [p["median"] - p["ci95"][0] for p in curve],
            },
            name=f"median {metric} ({unit}), 95 % interval (red: the centre)",
            legendgroup="median",
            showlegend=first,
            row=row,
            col=col,
        )
        for key, colour, label in (
            ("overshoots_per_run", "#9467bd", "overshoot adjustments per run"),
            ("stagnations_per_run", "#8c564b", "stagnation adjustments per run"),
        ):
            figure.add_scatter(
                x=x,
                y=[p[key] for p in curve],
                mode="lines",
                line={"color": colour, "dash": "dot"},
                name=label,
                legendgroup=key,
                showlegend=first,
                row=row,
                col=col,
                secondary_y=True,
            )
        figure.update_xaxes(title_text=name, type="category", row=row, col=col)
        figure.update_yaxes(title_text=f"{metric} ({unit})", row=row, col=col)
        figure.update_yaxes(title_text="adjustments per run", row=row, col=col, secondary_y=True)
    figure.update_layout(
        title=f"{study}: one-at-a-time sweeps around {family}",
        height=320 * rows + 80,
        legend={"orientation": "h", "y": -0.12},
    )
    return figure


def noninferiority_section(data: StudyData) -> Section:
    """Every run against the definition's reference: Hodges-Lehmann shift, signed-rank
    interval, and the one-sided non-inferiority test at the margin (Benjamini-Hochberg over the
    page's tests)."""
    section = Section("Non-inferiority")
    rule = (data.definition or {})["noninferiority"]
    reference, margin = rule["reference"], float(rule["margin"])
    scale, unit = page_unit(data.metric)
    runs = replicate_runs(data)
    base = dict(zip(runs[reference]["seeds"], runs[reference]["values"], strict=True))
    rates = {
        run["label"]: run["hyperparameters"].get("lr")
        for run in (data.definition or {}).get("runs", [])
    }
    rows = [
        [
            "run",
            "lr",
            f"median {data.metric}, {unit} [95 % CI]",
            f"run − {reference}, {unit}: Hodges-Lehmann [95 % CI]",
            f"no worse than {reference} by more than {margin:g} {unit}: p (adjusted)",
            "verdict",
        ]
    ]
    results: dict[str, dict[str, Any]] = {}
    for label, entry in runs.items():
        if label == reference:
            continue
        paired = [
            scale * (value - base[seed])
            for seed, value in zip(entry["seeds"], entry["values"], strict=True)
            if seed in base
        ]
        if not paired:
            continue
        d = np.array(paired)
        low, high = hodges_lehmann_interval(d)
        if not data.maximize:
            d = -d  # "no worse" points the same way whatever the metric's direction
        results[label] = {
            "n": len(d),
            "estimate": hodges_lehmann(np.array(paired)),
            "interval": [low, high],
            "p": noninferiority_test(d, margin),
        }
    reference_values = scale * np.array(runs[reference]["values"], dtype=float)
    if len(reference_values):
        low, high = median_interval(reference_values)
        rows.append(
            [
                f"{reference} (the reference)",
                _shown(rates.get(reference)),
                f"{np.median(reference_values):.2f} [{low:.2f}, {high:.2f}]",
                "",
                "",
                "",
            ]
        )
    adjusted = benjamini_hochberg([r["p"] for r in results.values()]) if results else []
    for (label, found), p_adjusted in zip(results.items(), adjusted, strict=True):
        found["p_adjusted"] = p_adjusted
        found["noninferior"] = p_adjusted < LEVEL
        values = scale * np.array(runs[label]["values"], dtype=float)
        low, high = median_interval(values)
        rows.append(
            [
                label,
                _shown(rates.get(label)),
                f"{np.median(values):.2f} [{low:.2f}, {high:.2f}]",
                f"{found['estimate']:+.2f} [{found['interval'][0]:+.2f}, {found['interval'][1]:+.2f}]",
                f"{found['p']:.3g} ({p_adjusted:.3g})",
                "no worse (shown)" if found["noninferior"] else "not shown",
            ]
        )
        verdict = (
            "is shown to be no worse than"
            if found["noninferior"]
            else "is **not** shown to be no worse than"
        )
        section.summary.append(
            f"{label} {verdict} {reference} by more than {margin:g} {unit}: "
            f"{found['estimate']:+.2f} {unit} [{found['interval'][0]:+.2f}, "
            f"{found['interval'][1]:+.2f}] over {found['n']} paired seeds, one-sided p "
            f"{found['p']:.3g} (adjusted {p_adjusted:.3g})."
        )
    section.tables.append(rows)
    if results:
        section.figures.append(_noninferiority_figure(data.name, reference, margin, unit, results))
    section.numbers = {
        "reference": reference,
        "margin": margin,
        "unit": unit,
        "difference": f"run minus {reference}",
        "runs": results,
        "level": LEVEL,
    }
    return section


def _noninferiority_figure(
    study: str, reference: str, margin: float, unit: str, results: dict[str, dict[str, Any]]
) -> go.Figure:
    """Each run's shift against the reference with its interval, beside the margin."""
    labels = list(results)
    estimates = [results[label]["estimate"] for label in labels]
    figure = go.Figure(
        go.Scatter(
            x=estimates,
            y=labels,
            mode="markers",
            marker={"size": 10},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [
                    results[k]["interval"][1] - e for k, e in zip(labels, estimates, strict=True)
                ],
                "arrayminus": [
                    e - results[k]["interval"][0] for k, e in zip(labels, estimates, strict=True)
                ],
            },
            name=f"run − {reference}: Hodges-Lehmann shift, 95 % interval",
        )
    )
    figure.add_vline(x=-margin, line_dash="dash", line_color="#d62728")
    figure.add_vline(x=0, line_color="gray")
    figure.add_scatter(
        x=[None], y=[None], mode="lines", line={"dash": "dash", "color": "#d62728"},
        name=f"the margin: {margin:g} {unit} worse than {reference}",
    )  # fmt: skip
    figure.update_layout(
        title=f"{study}: each run against {reference}",
        xaxis_title=f"run − {reference} ({unit})",
        yaxis_title="run",
        legend={"orientation": "h", "y": -0.3},
    )
    return figure
