"""The sensitivity atlas on the page: a sensitivity study read into arrays, its section, and the
table across workloads.

A sensitivity study (``kind: sensitivity``, :mod:`adamz.search.studies`) trains every
configuration of a space-filling design to the end on several seeds. :func:`atlas_input` reads
it (the thin layer: trials to arrays), :func:`study_atlas` runs the analysis of
:mod:`adamz.reports._atlas` on them, :func:`atlas_section` draws one study's atlas and
:func:`across_workloads_section` puts several side by side with the guideline that follows.

Accuracies are shown in percentage points throughout (a margin of 0.5 is half a point); a loss
in its own units. Variance shares are fractions of the variance of a single run's metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from plotly.subplots import make_subplots

from adamz.reports._atlas import (
    Curve,
    Factor,
    Grid,
    Importance,
    configurations_to_rank,
    controller_activity,
    curve_bins,
    grid_bins,
    guideline,
    importance,
    interaction_grid,
    safe_range,
    sensitivity_curve,
)
from adamz.reports._data import Section, StudyData, is_diverged, train_result

__all__ = [
    "ACCURACY_MARGIN",
    "LOSS_MARGIN",
    "AtlasInput",
    "StudyAtlas",
    "across_workloads_section",
    "atlas_input",
    "atlas_section",
    "default_margin",
    "is_sensitivity_study",
    "study_atlas",
]

ACCURACY_MARGIN = 0.5
"""Default safe-range margin for an accuracy: half a percentage point."""
LOSS_MARGIN = 0.01
"""Default safe-range margin for a loss, in the loss's own units."""
DEFAULT_PAIRS = (("lr", "patience"), ("patience", "stagnation_period"))
"""The pairs drawn when the importance could not rank pairs (too few runs)."""
TOP_PAIRS = 3


def is_sensitivity_study(data: StudyData) -> bool:
    return (data.definition or {}).get("kind") == "sensitivity"


def default_margin(metric: str) -> float:
    """The safe-range margin for ``metric``, in the page's units: points or the loss's."""
    return ACCURACY_MARGIN if metric.endswith("_accuracy") else LOSS_MARGIN


@dataclass
class AtlasInput:
    """A sensitivity study as arrays.

    Attributes:
        factors: the design's hyperparameters (those every configuration has).
        x: configurations x factors (a categorical's choice index).
        values: the study's metric, configurations x seeds, in the page's units (accuracy in
            points); a diverged configuration at the workload's chance value on every seed.
        trials: each configuration's trial number.
        diverged: whether its run diverged.
        overshoots, stagnations: the controller's adjustments in its first seed's run (NaN
            without a record).
        left_out: completed configurations without a value on every seed (not analysed).
    """

    name: str
    workload: str
    metric: str
    unit: str
    maximize: bool
    factors: list[Factor]
    x: np.ndarray
    values: np.ndarray
    trials: list[int]
    diverged: np.ndarray
    overshoots: np.ndarray
    stagnations: np.ndarray
    left_out: int = 0

    def column(self, name: str) -> np.ndarray:
        return self.x[:, [factor.name for factor in self.factors].index(name)]


def _factor(name: str, distribution: BaseDistribution) -> Factor:
    if isinstance(distribution, CategoricalDistribution):
        return Factor(name, choices=tuple(distribution.choices))
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    return Factor(
        name,
        low=float(distribution.low),
        high=float(distribution.high),
        log=distribution.log,
        integer=isinstance(distribution, IntDistribution),
    )


def _in_signature_order(data: StudyData) -> list[str]:
    """``data``'s parameters in the order of the optimizer's signature (the paper's order for
    AdamZ: the rate, then the controller's values), a pair's elements in turn; the storage
    returns them by name."""
    from adamz.training.optimizers import library_defaults  # the registry: only for this

    try:
        signature = list(library_defaults(data.optimizer or ""))
    except ValueError:
        return list(data.params)

    def position(name: str) -> tuple[int, str]:
        base = name.split("[")[0]
        return (signature.index(base) if base in signature else len(signature), name)

    return sorted(data.params, key=position)


def atlas_input(data: StudyData) -> AtlasInput:
    """``data``'s completed configurations as arrays (see :class:`AtlasInput`).

    Raises:
        ValueError: the study is not a sensitivity study.
    """
    if not is_sensitivity_study(data):
        raise ValueError(f"Invalid study {data.name!r}: must be a sensitivity study.")
    seeds = int((data.definition or {})["seeds_per_trial"])
    factors = [_factor(name, data.distributions[name]) for name in _in_signature_order(data)]
    accuracy = data.metric.endswith("_accuracy")
    scale = 100.0 if accuracy else 1.0
    rows: list[list[float]] = []
    values: list[list[float]] = []
    trials: list[int] = []
    diverged: list[bool] = []
    counts: list[tuple[float, float]] = []
    left_out = 0
    for trial in data.completed:
        run = trial.user_attrs.get("run")
        run = run if isinstance(run, dict) else {}
        if is_diverged(trial):
            per_seed = [float(trial.value or 0.0)] * seeds  # the chance value, as it counted
        else:
            per_seed = [metrics.get(data.metric) for metrics in run.get("seed_metrics", [])]
            if len(per_seed) < seeds or not all(
                isinstance(v, int | float) and math.isfinite(v) for v in per_seed
            ):
                left_out += 1
                continue
        row = []
        for factor in factors:
            value = trial.params[factor.name]
            row.append(float(factor.choices.index(value) if factor.choices else value))
        rows.append(row)
        values.append([scale * float(v) for v in per_seed[:seeds]])
        trials.append(trial.number)
        diverged.append(is_diverged(trial))
        result = train_result(trial) or {}
        controller = result.get("controller") if isinstance(result, dict) else None
        if isinstance(controller, dict) and "overshoots" in controller:
            counts.append((float(controller["overshoots"]), float(controller["stagnations"])))
        else:
            counts.append((math.nan, math.nan))
    count_array = np.array(counts, dtype=float).reshape(-1, 2)
    return AtlasInput(
        name=data.name,
        workload=data.workload or data.name,
        metric=data.metric,
        unit="points" if accuracy else "loss",
        maximize=data.maximize,
        factors=factors,
        x=np.array(rows, dtype=float).reshape(-1, len(factors)),
        values=np.array(values, dtype=float).reshape(-1, seeds),
        trials=trials,
        diverged=np.array(diverged, dtype=bool),
        overshoots=count_array[:, 0],
        stagnations=count_array[:, 1],
        left_out=left_out,
    )


@dataclass
class StudyAtlas:
    """One study's atlas: its input and what the analysis found.

    ``importance`` is None where it could not be estimated (``skipped`` says why); likewise
    ``controller``.
    """

    input: AtlasInput
    margin: float
    importance: Importance | None
    curves: dict[str, Curve]
    safe: dict[str, dict[str, Any] | None]
    pairs: list[tuple[str, str]]
    grids: list[Grid]
    controller: dict[str, Any] | None
    controller_grids: list[Grid]
    skipped: list[str] = field(default_factory=list)

    @property
    def measurable(self) -> dict[str, bool | None]:
        """Per factor: whether its effect clears the noise floor (None: not estimated)."""
        if self.importance is None:
            return {factor.name: None for factor in self.input.factors}
        return dict(self.importance.measurable)


def study_atlas(
    data: StudyData, *, margin: float | None = None, resamples: int = 100, seed: int = 0
) -> StudyAtlas:
    """Run the atlas's analysis on sensitivity study ``data``.

    Args:
        margin: the safe range's margin in the page's units (None: :func:`default_margin`).
        resamples: bootstrap resamples of the importance's intervals.

    Raises:
        ValueError: not a sensitivity study, or ``margin`` < 0.
    """
    atlas_in = atlas_input(data)
    margin = default_margin(data.metric) if margin is None else margin
    if not margin >= 0:
        raise ValueError(f"Invalid margin: must be >= 0, got {margin}.")
    skipped: list[str] = []
    if atlas_in.left_out:
        skipped.append(
            f"{atlas_in.left_out} completed configurations lack a value on some seed: left out"
        )
    configurations = len(atlas_in.trials)
    found: Importance | None = None
    try:
        found = importance(
            atlas_in.x, atlas_in.values, atlas_in.factors, resamples=resamples, seed=seed
        )
    except ValueError as exc:
        skipped.append(f"importance: {str(exc).removeprefix('Invalid values: ').rstrip('.')}")
    per_configuration = atlas_in.values.mean(axis=1)
    curves: dict[str, Curve] = {}
    safe: dict[str, dict[str, Any] | None] = {}
    bins = curve_bins(configurations)
    for factor in atlas_in.factors:
        curve = sensitivity_curve(atlas_in.column(factor.name), per_configuration, factor, bins)
        curves[factor.name] = curve
        try:
            safe[factor.name] = safe_range(curve, margin, maximize=atlas_in.maximize)
        except ValueError:
            safe[factor.name] = None
    pairs = _pairs(atlas_in.factors, found)
    side = grid_bins(configurations)
    by_name = {factor.name: factor for factor in atlas_in.factors}
    grids = [
        interaction_grid(
            np.column_stack([atlas_in.column(a), atlas_in.column(b)]),
            per_configuration,
            (by_name[a], by_name[b]),
            side,
        )
        for a, b in pairs
    ]
    controller: dict[str, Any] | None = None
    controller_grids: list[Grid] = []
    try:
        controller = controller_activity(
            atlas_in.overshoots, atlas_in.stagnations, per_configuration, maximize=atlas_in.maximize
        )
    except ValueError:
        skipped.append("controller: no configuration has the controller's record (not AdamZ?)")
    if controller is not None:
        fires = (atlas_in.overshoots + atlas_in.stagnations > 0).astype(float)
        known = np.isfinite(atlas_in.overshoots + atlas_in.stagnations)
        for a, b in _controller_pairs(atlas_in.factors, pairs):
            controller_grids.append(
                interaction_grid(
                    np.column_stack([atlas_in.column(a), atlas_in.column(b)])[known],
                    fires[known],
                    (by_name[a], by_name[b]),
                    side,
                    statistic=np.mean,
                )
            )
    return StudyAtlas(
        atlas_in, margin, found, curves, safe, pairs, grids, controller, controller_grids, skipped
    )


def _pairs(factors: Sequence[Factor], found: Importance | None) -> list[tuple[str, str]]:
    """The pairs to draw: the strongest by second-order share, else :data:`DEFAULT_PAIRS`."""
    if found is not None and found.pairs:
        return sorted(found.pairs, key=lambda pair: -found.pairs[pair].estimate)[:TOP_PAIRS]
    return _controller_pairs(factors, [])


def _controller_pairs(
    factors: Sequence[Factor], fallback: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Where to show the controller: :data:`DEFAULT_PAIRS` (its window and the rate), else
    ``fallback``'s first two, else the first two factors."""
    names = [factor.name for factor in factors]
    chosen = [pair for pair in DEFAULT_PAIRS if pair[0] in names and pair[1] in names]
    if chosen:
        return chosen
    return fallback[:2] or ([(names[0], names[1])] if len(names) > 1 else [])


def _library_defaults(factors: Sequence[Factor], optimizer: str | None) -> dict[str, Any]:
    """Each factor's library default (a pair's element for ``lr_bounds[0]``), where known."""
    from adamz.training.optimizers import library_defaults  # the registry: only for this

    try:
        defaults = library_defaults(optimizer or "")
    except ValueError:
        return {}
    found: dict[str, Any] = {}
    for factor in factors:
        if factor.name.endswith("]"):
            base, index = factor.name[:-1].split("[")
            if base in defaults:
                found[factor.name] = defaults[base][int(index)]
        elif factor.name in defaults:
            found[factor.name] = defaults[factor.name]
    return found


def _shown(value: float) -> str:
    return f"{value:.3g}"


def _range_text(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "too few configurations"
    if "choices" in entry:
        return "any" if entry["everywhere"] else ", ".join(entry["labels"])
    if entry["everywhere"]:
        return "the whole range"
    return f"{_shown(entry['low'])} – {_shown(entry['high'])}"


def _effect_text(atlas: StudyAtlas, name: str) -> str:
    if atlas.importance is None:
        return "not estimated"
    total = atlas.importance.total[name]
    if not atlas.importance.measurable[name]:
        return f"no measurable effect ({total.text()})"
    return total.text()


def atlas_section(atlas: StudyAtlas, optimizer: str | None = "adamz") -> Section:
    """One study's atlas: the answer first, then importance, curves and safe ranges, the
    strongest interactions, and where the controller fires."""
    atlas_in = atlas.input
    section = Section("Sensitivity atlas", skipped=list(atlas.skipped))
    configurations, seeds = atlas_in.values.shape
    if configurations == 0:
        section.skipped.append("no configuration has finished on every seed yet")
        return section
    units = _units(atlas_in)
    metric_label = f"{atlas_in.metric} ({'points' if atlas_in.unit == 'points' else 'loss'})"
    found = atlas.importance
    names = [factor.name for factor in atlas_in.factors]
    safe_for_guideline = {name: entry for name, entry in atlas.safe.items() if entry is not None}
    advice = guideline(
        {atlas_in.workload: {"measurable": atlas.measurable, "safe": safe_for_guideline}},
        atlas_in.factors,
        _library_defaults(atlas_in.factors, optimizer),
    )
    # 1. The answer.
    size = f"{configurations} configurations x {seeds} seeds"
    if found is None:
        section.summary.append(
            f"**Not enough configurations to rank** ({size}; the importance needs "
            f"{configurations_to_rank(len(names))}): the curves, safe ranges and the "
            "controller's activity below are shown as they are."
        )
    else:
        ranked = found.ranked()
        inert = [name for name in names if name not in ranked]
        noise = found.noise.text()
        if ranked:
            effects = ", ".join(f"{name} {found.total[name].text()}" for name in ranked)
            verb = "matters" if len(ranked) == 1 else "matter"
            answer = (
                f"**{_listed(ranked)}** {verb} beyond the seeds' noise (total effect, {effects})"
            )
        else:
            answer = "**No hyperparameter** matters beyond the seeds' noise"
        if inert:
            answer += f"; {_listed(inert)}: no measurable effect"
        section.summary.append(
            f"{answer}. Noise floor: {noise} of the variance lies between the seeds of one "
            f"configuration ({size}; the forest behind the shares explains "
            f"{found.surrogate_r2:.0%} of the configurations' mean values out of bag)."
        )
    section.summary.append(f"Guideline: {advice['text']}")
    if atlas.controller is not None:
        activity = atlas.controller
        section.summary.append(
            f"The controller never fires in {activity['never_fires']:.0%} of the space and in "
            f"{activity['never_fires_in_best_tenth']:.0%} of its best tenth "
            f"({_counted(activity['best_tenth'], 'configuration')}): there AdamZ is Adam (with "
            "clipping where max_grad_norm is set)."
        )
    safe_text = ", ".join(
        f"{name} {_range_text(atlas.safe[name])}" for name in names if atlas.safe[name] is not None
    )
    section.summary.append(
        f"Safe ranges (the bins whose median {atlas_in.metric} is within {atlas.margin:g} "
        f"{units} of the best bin's, or not shown to be further: its 95 % interval reaches "
        f"within): {safe_text}."
    )
    if atlas_in.diverged.any():
        section.summary.append(
            f"{int(atlas_in.diverged.sum())} of {configurations} configurations diverged; they "
            "count at the workload's chance value."
        )
    # 2. The table and the numbers.
    header = [
        "hyperparameter",
        "first-order share [95 % CI]",
        "total-effect share [95 % CI]",
        "verdict",
        f"safe range (within {atlas.margin:g} {units} of the best bin)",
        "best bin",
    ]
    rows = [header]
    ranked_names = found.ranked() if found is not None else []
    for name in sorted(names, key=lambda n: -found.total[n].estimate if found else 0):
        entry = atlas.safe[name]
        verdict = (
            "not estimated"
            if found is None
            else f"rank {ranked_names.index(name) + 1}"
            if name in ranked_names
            else "no measurable effect"
        )
        rows.append(
            [
                name,
                found.first_order[name].text() if found else "",
                found.total[name].text() if found else "",
                verdict,
                _range_text(entry),
                "" if entry is None else entry["best_bin"],
            ]
        )
    if found is not None:
        rows.append(["noise floor (between seeds)", "", found.noise.text(), "", "", ""])
    section.tables.append(rows)
    section.numbers = {
        "workload": atlas_in.workload,
        "metric": atlas_in.metric,
        "unit": atlas_in.unit,
        "configurations": configurations,
        "seeds": seeds,
        "diverged": int(atlas_in.diverged.sum()),
        "left_out": atlas_in.left_out,
        "factors": [_factor_dict(factor) for factor in atlas_in.factors],
        "importance": found.as_dict() if found is not None else None,
        "curves": {name: curve.as_dict() for name, curve in atlas.curves.items()},
        "safe_ranges": atlas.safe,
        "margin": atlas.margin,
        "interactions": [grid.as_dict() for grid in atlas.grids],
        "controller": {
            **(atlas.controller or {}),
            "where_it_fires": [grid.as_dict() for grid in atlas.controller_grids],
            "per_configuration": {
                "trial": atlas_in.trials,
                "overshoots": atlas_in.overshoots.tolist(),
                "stagnations": atlas_in.stagnations.tolist(),
            },
        }
        if atlas.controller is not None
        else None,
        "guideline": advice,
    }
    # 3. The figures.
    if found is not None:
        section.figures.append(_importance_figure(atlas))
    section.figures.append(_curves_figure(atlas, metric_label))
    for grid in atlas.grids:
        pair = (grid.factors[0].name, grid.factors[1].name)
        share = (
            f", second-order share {found.pairs[pair].text()}"
            if found is not None and pair in found.pairs
            else ""
        )
        section.figures.append(
            _heatmap(
                grid,
                f"{atlas_in.name}: median {metric_label} over {pair[0]} x {pair[1]} (number: "
                f"configurations in the cell{share})",
                metric_label,
            )
        )
    for grid in atlas.controller_grids:
        section.figures.append(
            _heatmap(
                grid,
                f"{atlas_in.name}: share of configurations where the controller fires, over "
                f"{grid.factors[0].name} x {grid.factors[1].name} (number: configurations)",
                "share where it fires",
                zrange=(0.0, 1.0),
            )
        )
    return section


def _counted(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _units(atlas_in: AtlasInput) -> str:
    return "points" if atlas_in.unit == "points" else f"{atlas_in.metric} units"


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _factor_dict(factor: Factor) -> dict[str, Any]:
    if factor.choices is not None:
        return {"name": factor.name, "choices": list(factor.choices)}
    return {
        "name": factor.name,
        "low": factor.low,
        "high": factor.high,
        "log": factor.log,
        "integer": factor.integer,
    }


def _importance_figure(atlas: StudyAtlas) -> go.Figure:
    found = atlas.importance
    assert found is not None
    order = sorted(found.total, key=lambda name: -found.total[name].estimate)
    figure = go.Figure()
    for label, shares in (("first-order", found.first_order), ("total effect", found.total)):
        figure.add_bar(
            name=label,
            x=order,
            y=[shares[name].estimate for name in order],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [shares[name].high - shares[name].estimate for name in order],
                "arrayminus": [shares[name].estimate - shares[name].low for name in order],
            },
        )
    figure.add_hrect(
        y0=found.noise.low,
        y1=found.noise.high,
        fillcolor="gray",
        opacity=0.3,
        line_width=0,
        annotation_text=f"noise floor {found.noise.estimate:.2f}",
        annotation_position="top right",
    )
    figure.update_layout(
        title=f"{atlas.input.name}: share of the variance of one run's {atlas.input.metric}, "
        f"per hyperparameter (95 % bootstrap intervals over configurations; gray: between "
        f"seeds)",
        barmode="group",
        xaxis_title="hyperparameter",
        yaxis_title="share of variance",
    )
    return figure


def _curves_figure(atlas: StudyAtlas, metric_label: str) -> go.Figure:
    factors = atlas.input.factors
    columns = min(3, len(factors))
    rows = -(-len(factors) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[f.name for f in factors])
    for index, factor in enumerate(factors):
        curve = atlas.curves[factor.name]
        entry = atlas.safe[factor.name]
        within = np.array(entry["within"]) if entry is not None else np.zeros(len(curve.labels))
        row, col = index // columns + 1, index % columns + 1
        x: Any = curve.labels if factor.choices is not None else curve.centers
        if factor.choices is None:
            figure.add_scatter(
                x=np.concatenate([curve.centers, curve.centers[::-1]]),
                y=np.concatenate([curve.q3, curve.q1[::-1]]),
                fill="toself", line={"width": 0}, fillcolor="rgba(31,119,180,0.2)",
                hoverinfo="skip", showlegend=False, row=row, col=col,
            )  # fmt: skip
        figure.add_scatter(
            x=x,
            y=curve.median,
            mode="lines+markers",
            line={"color": "#1f77b4"},
            marker={"color": ["#2ca02c" if w else "#1f77b4" for w in within], "size": 8},
            error_y=None
            if factor.choices is None
            else {
                "type": "data",
                "symmetric": False,
                "array": curve.q3 - curve.median,
                "arrayminus": curve.median - curve.q1,
            },
            customdata=np.column_stack([curve.labels, curve.counts]),
            hovertemplate="bin %{customdata[0]}: median %{y:.4g}, "
            "%{customdata[1]} configurations<extra></extra>",
            showlegend=False,
            row=row,
            col=col,
        )
        if factor.log and factor.choices is None:
            figure.update_xaxes(type="log", row=row, col=col)
        figure.update_xaxes(title_text=factor.name, row=row, col=col)
        figure.update_yaxes(title_text=metric_label, row=row, col=col)
    figure.update_layout(
        title=f"{atlas.input.name}: {metric_label} over each hyperparameter's bins, the others "
        f"varying (median and quartiles of the configurations in a bin; green: within "
        f"{atlas.margin:g} of the best bin's median)",
        height=300 * rows,
    )
    return figure


def _heatmap(
    grid: Grid, title: str, value_label: str, zrange: tuple[float, float] | None = None
) -> go.Figure:
    figure = go.Figure(
        go.Heatmap(
            z=grid.median,
            x=grid.labels[1],
            y=grid.labels[0],
            text=grid.counts,
            texttemplate="%{text}",
            colorbar={"title": {"text": value_label}},
            zmin=None if zrange is None else zrange[0],
            zmax=None if zrange is None else zrange[1],
            hovertemplate=f"{grid.factors[0].name} %{{y}}, {grid.factors[1].name} %{{x}}: "
            "%{z:.4g} (%{text} configurations)<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        xaxis_title=f"{grid.factors[1].name} (bin)",
        yaxis_title=f"{grid.factors[0].name} (bin)",
    )
    return figure


def across_workloads_section(
    atlases: Sequence[StudyAtlas], optimizer: str | None = "adamz"
) -> Section:
    """Each hyperparameter's importance and safe range on each workload, side by side, and the
    guideline that the intervals support across all of them."""
    section = Section("Across workloads")
    labels = _labels(atlases)
    factors: dict[str, Factor] = {}
    for atlas in atlases:
        for factor in atlas.input.factors:
            factors.setdefault(factor.name, factor)
    header = ["hyperparameter"]
    for label in labels:
        header += [f"{label}: total-effect share [95 % CI]", f"{label}: safe range"]
    rows = [header]
    for name in factors:
        row = [name]
        for atlas in atlases:
            if name not in atlas.curves:
                row += ["not in the design", ""]
                continue
            row += [_effect_text(atlas, name), _range_text(atlas.safe[name])]
        rows.append(row)
    noise_row = ["noise floor (between seeds)"]
    for atlas in atlases:
        noise_row += [atlas.importance.noise.text() if atlas.importance else "not estimated", ""]
    rows.append(noise_row)
    section.tables.append(rows)
    advice = guideline(
        {
            label: {
                "measurable": atlas.measurable,
                "safe": {n: e for n, e in atlas.safe.items() if e is not None},
            }
            for label, atlas in zip(labels, atlases, strict=True)
        },
        list(factors.values()),
        _library_defaults(list(factors.values()), optimizer),
    )
    section.summary.append(f"**Guideline**: {advice['text']}")
    section.summary.append(
        "A hyperparameter is tuned if its total effect clears the seeds' noise on some workload; "
        "it is left at a value only if it clears it on none and that value lies in its safe "
        "range on every one (its library default where it does). Safe ranges: the bins whose "
        "median is within "
        + ", ".join(dict.fromkeys(f"{atlas.margin:g} {_units(atlas.input)}" for atlas in atlases))
        + " of the best bin's."
    )
    section.numbers = {
        "workloads": labels,
        "studies": [atlas.input.name for atlas in atlases],
        "per_workload": {
            label: {
                "measurable": atlas.measurable,
                "total": {name: value.as_dict() for name, value in atlas.importance.total.items()}
                if atlas.importance
                else None,
                "noise_floor": atlas.importance.noise.as_dict() if atlas.importance else None,
                "safe_ranges": atlas.safe,
                "margin": atlas.margin,
                "unit": atlas.input.unit,
            }
            for label, atlas in zip(labels, atlases, strict=True)
        },
        "guideline": advice,
    }
    return section


def _labels(atlases: Sequence[StudyAtlas]) -> list[str]:
    """Each atlas's column label: its workload, or its study where two share a workload."""
    workloads = [atlas.input.workload for atlas in atlases]
    if len(set(workloads)) == len(workloads):
        return workloads
    return [atlas.input.name for atlas in atlases]
