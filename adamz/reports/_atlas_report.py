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
from collections.abc import Mapping, Sequence
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
    CONFIDENCE,
    MIN_PER_BIN,
    Curve,
    Effect,
    Factor,
    Grid,
    Importance,
    bin_index,
    configurations_to_rank,
    controller_activity,
    curve_bins,
    effects_in_points,
    grid_bins,
    importance,
    instability,
    interaction_grid,
    recommend,
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
    "recommendation",
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
class Region:
    """One region of a sensitivity study's space and what the analysis found in it.

    The *whole* space answers "what matters anywhere"; the *good region* (the configurations
    whose rate lies in the workload's safe range for the rate) answers "what matters where a
    user who tuned the rate stands", which is the question a recommendation must answer: a
    controller value can matter little over the whole space, where bad rates dominate the
    variance, and decide several points among good rates.

    Attributes:
        rule: how the region is chosen, in words.
        mask: which configurations are in it.
        importance: forest shares against the null (None: too few configurations).
        effects: effects in points against the null (None: too few configurations).
        instability: collapses and seed spread (see :func:`instability`).
    """

    name: str
    rule: str
    mask: np.ndarray
    importance: Importance | None
    effects: dict[str, Effect] | None
    instability: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.mask.sum())

    def measurable(self, name: str) -> bool | None:
        """Whether either estimator finds ``name``'s effect against its null (None: neither
        could be estimated)."""
        verdicts = []
        if self.importance is not None:
            verdicts.append(self.importance.measurable[name])
        if self.effects is not None:
            verdicts.append(self.effects[name].measurable)
        return any(verdicts) if verdicts else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": self.rule,
            "configurations": self.size,
            "importance": self.importance.as_dict() if self.importance is not None else None,
            "effects_in_points": {n: e.as_dict() for n, e in self.effects.items()}
            if self.effects is not None
            else None,
            "instability": self.instability,
            "skipped": self.skipped,
        }


@dataclass
class StudyAtlas:
    """One study's atlas: its input and what the analysis found, over the whole space and in
    the good region (see :class:`Region`).

    ``importance`` is the whole space's (None where it could not be estimated; ``skipped``
    says why); likewise ``controller``.
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
    regions: list[Region] = field(default_factory=list)

    @property
    def whole(self) -> Region | None:
        return self.regions[0] if self.regions else None

    @property
    def good(self) -> Region | None:
        return self.regions[1] if len(self.regions) > 1 else None

    @property
    def measurable(self) -> dict[str, bool | None]:
        """Per factor: whether its effect exists where users stand (the good region, else the
        whole space), by either estimator (None: not estimated)."""
        region = self.good or self.whole
        if region is None:
            return {factor.name: None for factor in self.input.factors}
        return {factor.name: region.measurable(factor.name) for factor in self.input.factors}


def _region(
    name: str,
    rule: str,
    mask: np.ndarray,
    atlas_in: AtlasInput,
    *,
    resamples: int,
    seed: int,
) -> Region:
    """The analysis of the configurations in ``mask``."""
    x, values = atlas_in.x[mask], atlas_in.values[mask]
    skipped: list[str] = []
    found: Importance | None = None
    effects: dict[str, Effect] | None = None
    try:
        found = importance(x, values, atlas_in.factors, resamples=resamples, seed=seed)
    except ValueError as exc:
        skipped.append(f"importance: {str(exc).removeprefix('Invalid values: ').rstrip('.')}")
    try:
        effects = effects_in_points(
            x, values, atlas_in.factors, maximize=atlas_in.maximize, resamples=2 * resamples,
            seed=seed,
        )  # fmt: skip
    except ValueError as exc:
        skipped.append(f"effects: {str(exc).removeprefix('Invalid values: ').rstrip('.')}")
    return Region(
        name,
        rule,
        mask,
        found,
        effects,
        instability(values, atlas_in.diverged[mask], maximize=atlas_in.maximize),
        skipped,
    )


def study_atlas(
    data: StudyData, *, margin: float | None = None, resamples: int = 100, seed: int = 0
) -> StudyAtlas:
    """Run the atlas's analysis on sensitivity study ``data``: over the whole space, and in the
    good region (the rate within its safe range) where the study varies the rate.

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
    everything = np.ones(configurations, dtype=bool)
    regions = [
        _region("whole space", "every configuration", everything, atlas_in,
                resamples=resamples, seed=seed)
    ]  # fmt: skip
    rate = safe.get("lr")
    if rate is not None and "low" in rate and not rate["everywhere"]:
        column = atlas_in.column("lr")
        inside = (column >= rate["low"]) & (column <= rate["high"])
        regions.append(
            _region(
                "good region",
                f"lr in its safe range {_shown(rate['low'])} – {_shown(rate['high'])}",
                inside, atlas_in, resamples=resamples, seed=seed,
            )
        )  # fmt: skip
    found = regions[0].importance
    skipped += regions[0].skipped
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
        if len(regions) > 1:
            inside = regions[1].mask & known
            controller["good_region"] = {
                "configurations": int(inside.sum()),
                "never_fires": float(1 - fires[inside].mean()) if inside.any() else None,
                "mean_value_where_it_fires": _mean(per_configuration[inside & (fires > 0)]),
                "mean_value_where_it_never_fires": _mean(per_configuration[inside & (fires == 0)]),
            }
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
        atlas_in, margin, found, curves, safe, pairs, grids, controller, controller_grids,
        skipped, regions,
    )  # fmt: skip


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


RECOMMENDATION_RULE = (
    "lr: tune it (the preset keeps the paper's 0.01 as a start). Every other hyperparameter: "
    "where no workload's good region (lr within its safe range) shows an effect against the "
    "null, the paper's default; where one does, the value in the bin (a quarter of its range) "
    "whose largest shortfall against each workload's best bin is smallest"
)


def recommendation(atlases: Sequence[StudyAtlas]) -> dict[str, Any]:
    """One AdamZ configuration from ``atlases``, by :data:`RECOMMENDATION_RULE` (see
    :func:`adamz.reports._atlas.recommend`): ``hyperparameters`` (all of AdamZ's, pairs as
    lists), ``rule``, ``from`` (the workloads) and ``reasons`` per hyperparameter.

    Raises:
        ValueError: no atlas, or atlases over different hyperparameters.
    """
    if not atlases:
        raise ValueError("Invalid atlases: the recommendation needs at least one.")
    factors = atlases[0].input.factors
    names = [factor.name for factor in factors]
    if any([f.name for f in atlas.input.factors] != names for atlas in atlases):
        raise ValueError("Invalid atlases: they must vary the same hyperparameters.")
    workloads = {}
    for atlas in atlases:
        region = atlas.good or atlas.whole
        assert region is not None
        mask = region.mask
        workloads[atlas.input.workload] = (
            atlas.input.x[mask],
            atlas.input.values[mask].mean(axis=1),
            atlas.measurable,
        )
    defaults = _library_defaults(factors, "adamz")
    found = recommend(workloads, factors, defaults, maximize=atlases[0].input.maximize)
    from adamz.training.optimizers import library_defaults  # the registry: only for this

    hyperparameters = dict(library_defaults("adamz"))
    hyperparameters.pop("lr_controller", None)  # on: the ablation is another optimizer
    for name, value in found["values"].items():
        if name.endswith("]"):
            base, index = name[:-1].split("[")
            pair = list(hyperparameters[base])
            pair[int(index)] = value
            hyperparameters[base] = pair
        else:
            hyperparameters[name] = value
    hyperparameters = {
        k: list(v) if isinstance(v, tuple) else v for k, v in hyperparameters.items()
    }
    return {
        "hyperparameters": hyperparameters,
        "rule": RECOMMENDATION_RULE,
        "from": [atlas.input.workload for atlas in atlases],
        "reasons": found["reasons"],
    }


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


def _verdict(region: Region | None, name: str) -> str:
    if region is None:
        return "not estimated"
    found = region.measurable(name)
    return "not estimated" if found is None else "effect" if found else "no effect found"


def _points_text(region: Region | None, name: str, digits: int = 1) -> str:
    if region is None or region.effects is None:
        return ""
    effect = region.effects[name]
    return effect.mean_spread.text(digits)


def _share_text(region: Region | None, name: str) -> str:
    if region is None or region.importance is None:
        return ""
    return region.importance.total[name].text()


def _region_answer(region: Region, names: list[str], units: str) -> str:
    """One sentence: what has an effect in ``region``, largest first, in points."""
    found = [name for name in names if region.measurable(name)]
    if region.effects is not None:
        effects = region.effects
        found.sort(key=lambda name: -effects[name].mean_spread.estimate)
    if not found:
        return "no hyperparameter shows an effect against the null"
    parts = []
    for name in found:
        text = f"**{name}**"
        if region.effects is not None:
            effect = region.effects[name]
            text += (
                f" ({effect.mean_spread.text(1)} {units} between its best and worst quarter, "
                f"best {effect.best_bin})"
            )
        parts.append(text)
    return f"{_listed(parts)} {'has an effect' if len(found) == 1 else 'have an effect'}"


def _instability_text(region: Region, units: str) -> str:
    found = region.instability
    if not found.get("configurations"):
        return ""
    return (
        f"{found['collapse_share']:.1%} of runs collapse (more than {found['collapse_drop']:g} "
        f"{units} below their configuration's median, or diverged), in "
        f"{found['configurations_with_a_collapse']:.0%} of configurations; the seeds' standard "
        f"deviation is {found['seed_sd_median']:.2f} {units} at the median configuration and "
        f"{found['seed_sd_p90']:.2f} at the 90th percentile, and the 5 % least stable "
        f"configurations hold {found['least_stable_share']:.0%} of the variance between seeds"
    )


def atlas_section(atlas: StudyAtlas, optimizer: str | None = "adamz") -> Section:
    """One study's atlas: the answer where users stand first, then the whole space, the table
    (shares against the null, effects in points, safe ranges), the collapses, the strongest
    interactions, and where the controller fires."""
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
    whole, good = atlas.whole, atlas.good
    size = f"{configurations} configurations x {seeds} seeds"
    # 1. The answer: where users stand, then the whole space.
    if found is None:
        section.summary.append(
            f"**Not enough configurations to rank** ({size}; the importance needs "
            f"{configurations_to_rank(len(names))}): the effects in points, curves, safe "
            "ranges and the controller's activity below are shown as they are."
        )
    if good is not None:
        section.summary.append(
            f"Where users stand ({good.rule}: {good.size} of {configurations} configurations): "
            f"{_region_answer(good, names, units)}; the others: no effect found against the null."
        )
    if whole is not None:
        section.summary.append(
            f"Over the whole space ({size}): {_region_answer(whole, names, units)}."
        )
    section.summary.append(
        "An effect is found when it clears a null made the same way: inert columns drawn "
        "beside the design and put through the same analysis (the forest's Sobol share, or "
        f"the spread of the bins' means), in at least {CONFIDENCE * 100:.0f} % of Bayesian-bootstrap "
        "resamples. That asks whether an effect exists, not whether it is larger than one "
        "run's seed noise."
    )
    for region in (good, whole):
        if region is not None and region.instability.get("configurations"):
            section.summary.append(f"Collapses, {region.name}: {_instability_text(region, units)}.")
    if atlas.controller is not None:
        activity = atlas.controller
        line = (
            f"The controller never fires in {activity['never_fires']:.0%} of the space and in "
            f"{activity['never_fires_in_best_tenth']:.0%} of its best tenth "
            f"({_counted(activity['best_tenth'], 'configuration')}): there AdamZ is Adam (with "
            "clipping where max_grad_norm is set)."
        )
        inside = activity.get("good_region")
        if (
            inside
            and inside.get("mean_value_where_it_fires") is not None
            and inside.get("mean_value_where_it_never_fires") is not None
        ):
            line += (
                f" In the good region it never fires in {inside['never_fires']:.0%} of "
                f"configurations; their mean is {inside['mean_value_where_it_never_fires']:.2f}, "
                f"against {inside['mean_value_where_it_fires']:.2f} where it fires."
            )
        section.summary.append(line)
    safe_text = ", ".join(
        f"{name} {_range_text(atlas.safe[name])}" for name in names if atlas.safe[name] is not None
    )
    section.summary.append(
        f"Safe ranges over the whole space (the unbroken run of bins around the best one whose "
        f"median {atlas_in.metric} is within {atlas.margin:g} {units} of the best bin's, or "
        f"whose median's 95 % interval still reaches within it: not shown to be worse): "
        f"{safe_text}."
    )
    if atlas_in.diverged.any():
        section.summary.append(
            f"{int(atlas_in.diverged.sum())} of {configurations} configurations diverged; they "
            "count at the workload's chance value."
        )
    # 2. The table and the numbers.
    header = [
        "hyperparameter",
        "whole space: total-effect share [95 % CI]",
        f"whole space: effect, {units} [95 % CI]",
        "whole space",
    ]
    if good is not None:
        header += [
            "good region: total-effect share [95 % CI]",
            f"good region: effect, {units} [95 % CI]",
            f"good region: effect on the worst 10 % of runs, {units}",
            "good region",
            "good region: best quarter",
        ]
    header += [f"safe range (within {atlas.margin:g} {units} of the best bin)"]
    rows = [header]
    order = sorted(
        names,
        key=lambda n: (
            -(
                (good or whole).effects[n].mean_spread.estimate  # type: ignore[union-attr]
                if (good or whole) is not None and (good or whole).effects is not None  # type: ignore[union-attr]
                else 0
            )
        ),
    )
    for name in order:
        row = [name, _share_text(whole, name), _points_text(whole, name), _verdict(whole, name)]
        if good is not None:
            effect = good.effects[name] if good.effects is not None else None
            row += [
                _share_text(good, name),
                _points_text(good, name),
                effect.tail_spread.text(1) if effect is not None else "",
                _verdict(good, name),
                effect.best_bin if effect is not None else "",
            ]
        row.append(_range_text(atlas.safe[name]))
        rows.append(row)

    def nulls(region: Region | None) -> list[str]:
        return [
            region.importance.null.text() if region and region.importance else "",
            region.effects[names[0]].null.text(1) if region and region.effects else "",
            "",
        ]

    null_row = ["null (the largest inert column's)", *nulls(whole)]
    if good is not None:
        null_row += [*nulls(good)[:2], "", "", ""]
    rows.append([*null_row, ""])
    if found is not None:
        noise_row = ["noise floor (between seeds)", found.noise.text(), "", ""]
        rows.append(noise_row + [""] * (len(header) - len(noise_row)))
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
        "regions": [_region_numbers(region) for region in atlas.regions],
        "measurable_where_users_stand": atlas.measurable,
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
    }
    # 3. The figures.
    if whole is not None and whole.effects is not None:
        section.figures.append(_effects_figure(atlas, units))
    if found is not None:
        section.figures.append(_importance_figure(atlas))
    section.figures.append(_curves_figure(atlas, metric_label))
    for grid in atlas.grids:
        pair = (grid.factors[0].name, grid.factors[1].name)
        section.figures.append(
            _heatmap(grid, f"{atlas_in.name}: median {metric_label}, {pair[0]} x {pair[1]}",
                     metric_label)
        )  # fmt: skip
    for grid in atlas.controller_grids:
        section.figures.append(
            _heatmap(
                grid,
                f"{atlas_in.name}: share of configurations where the controller fires, "
                f"{grid.factors[0].name} x {grid.factors[1].name}",
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
    """Total-effect shares over the whole space and the good region, against their nulls."""
    figure = go.Figure()
    colours = {"whole space": "#1f77b4", "good region": "#ff7f0e"}
    order: list[str] = []
    for region in atlas.regions:
        found = region.importance
        if found is None:
            continue
        order = order or sorted(found.total, key=lambda name: -found.total[name].estimate)
        figure.add_bar(
            name=f"{region.name}: total-effect share",
            x=order,
            y=[found.total[name].estimate for name in order],
            marker_color=colours.get(region.name),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [found.total[name].high - found.total[name].estimate for name in order],
                "arrayminus": [
                    found.total[name].estimate - found.total[name].low for name in order
                ],
            },
        )
        figure.add_scatter(
            name=f"{region.name}: null (largest inert column, 95 % upper end)",
            x=order,
            y=[found.null.high] * len(order),
            mode="lines",
            line={"dash": "dash", "color": colours.get(region.name)},
        )
    figure.update_layout(
        title=f"{atlas.input.name}: share of the variance of one run's {atlas.input.metric}",
        barmode="group",
        xaxis_title="hyperparameter",
        yaxis_title="share of one run's variance",
        legend={"orientation": "h", "y": -0.3},
    )
    return figure


def _effects_figure(atlas: StudyAtlas, units: str) -> go.Figure:
    """Each hyperparameter's effect in the metric's units, whole space and good region, with
    the null: what an inert column's bins spread by."""
    figure = go.Figure()
    colours = {"whole space": "#1f77b4", "good region": "#ff7f0e"}
    effects_ref = next(
        (r.effects for r in (atlas.good, atlas.whole) if r is not None and r.effects is not None),
        None,
    )
    if effects_ref is None:
        return figure
    order = sorted(effects_ref, key=lambda name: -effects_ref[name].mean_spread.estimate)
    for region in atlas.regions:
        effects = region.effects
        if effects is None:
            continue
        figure.add_bar(
            name=f"{region.name} ({region.size} configurations)",
            x=order,
            y=[effects[name].mean_spread.estimate for name in order],
            marker_color=colours.get(region.name),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [
                    effects[n].mean_spread.high - effects[n].mean_spread.estimate for n in order
                ],
                "arrayminus": [
                    effects[n].mean_spread.estimate - effects[n].mean_spread.low for n in order
                ],
            },
        )
        figure.add_scatter(
            name=f"{region.name}: null (largest inert column, 95 % upper end)",
            x=order,
            y=[effects[order[0]].null.high] * len(order),
            mode="lines",
            line={"dash": "dash", "color": colours.get(region.name)},
        )
    figure.update_layout(
        title=f"{atlas.input.name}: best minus worst quarter's mean {atlas.input.metric}",
        barmode="group",
        xaxis_title="hyperparameter",
        yaxis_title=f"effect ({units}), 95 % interval",
        legend={"orientation": "h", "y": -0.3},
    )
    return figure


def _curves_figure(atlas: StudyAtlas, metric_label: str) -> go.Figure:
    """Each hyperparameter's bins: the whole space's median and quartiles (the others
    varying), and the good region's mean, which is where a user who tuned the rate stands."""
    factors = atlas.input.factors
    columns = min(3, len(factors))
    rows = -(-len(factors) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[f.name for f in factors])
    per_configuration = atlas.input.values.mean(axis=1)
    good = atlas.good
    for index, factor in enumerate(factors):
        curve = atlas.curves[factor.name]
        entry = atlas.safe[factor.name]
        within = np.array(entry["within"]) if entry is not None else np.zeros(len(curve.labels))
        row, col = index // columns + 1, index % columns + 1
        first = index == 0  # one legend entry per kind of line
        x: Any = curve.labels if factor.choices is not None else curve.centers
        if factor.choices is None:
            figure.add_scatter(
                x=np.concatenate([curve.centers, curve.centers[::-1]]),
                y=np.concatenate([curve.q3, curve.q1[::-1]]),
                fill="toself", line={"width": 0}, fillcolor="rgba(31,119,180,0.2)",
                hoverinfo="skip", name="whole space: quartiles", legendgroup="q",
                showlegend=first, row=row, col=col,
            )  # fmt: skip
        figure.add_scatter(
            x=x,
            y=curve.median,
            mode="lines+markers",
            line={"color": "#1f77b4"},
            marker={"color": ["#2ca02c" if w else "#1f77b4" for w in within], "size": 8},
            customdata=np.column_stack([curve.labels, curve.counts]),
            hovertemplate="bin %{customdata[0]}: median %{y:.4g}, "
            "%{customdata[1]} configurations<extra></extra>",
            name="whole space: median (green: in the safe range)",
            legendgroup="m",
            showlegend=first,
            row=row,
            col=col,
        )
        if good is not None:
            index_in, _, _ = bin_index(atlas.input.column(factor.name), factor, len(curve.labels))
            means = [
                float(per_configuration[good.mask & (index_in == b)].mean())
                if (good.mask & (index_in == b)).sum() >= MIN_PER_BIN
                else None
                for b in range(len(curve.labels))
            ]
            figure.add_scatter(
                x=x, y=means, mode="lines+markers", line={"color": "#ff7f0e", "dash": "dot"},
                name=f"good region ({good.rule}): mean", legendgroup="g", showlegend=first,
                row=row, col=col,
            )  # fmt: skip
        if factor.log and factor.choices is None:
            figure.update_xaxes(type="log", row=row, col=col)
        figure.update_xaxes(title_text=factor.name, row=row, col=col)
        figure.update_yaxes(title_text=metric_label, row=row, col=col)
    figure.update_layout(
        title=f"{atlas.input.name}: {metric_label} over each hyperparameter's bins",
        height=300 * rows + 80,
        legend={"orientation": "h", "y": -0.08},
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


def _preset_hyperparameters(name: str) -> dict[str, Any] | None:
    """The hyperparameters of AdamZ's shipped preset ``name`` (None where there is none)."""
    import yaml

    from adamz.optim.adamz import preset_path  # the presets ship with the optimizer

    try:
        content = yaml.safe_load(preset_path(name).read_text())
    except (ValueError, OSError):
        return None
    return dict(content["hyperparameters"])


def guideline_text(found: dict[str, Any], paper: Mapping[str, Any]) -> str:
    """The recommendation as one sentence: what to tune, what to set, what to leave."""
    values = found["hyperparameters"]
    changed = [
        f"{name} {_value_text(values[name])}"
        for name in values
        if name != "lr" and values[name] != paper.get(name)
    ]
    kept = [
        name
        for name in found["reasons"]
        if values.get(name.split("[")[0]) == paper.get(name.split("[")[0])
    ]
    text = f"On {_listed(found['from'])}: tune lr"
    if changed:
        text += f"; set {_listed(changed)}"
    if kept:
        text += f"; leave {_listed(kept)} at the paper's values"
    return text + "."


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(_value_text(v) for v in value) + ")"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def across_workloads_section(
    atlases: Sequence[StudyAtlas], optimizer: str | None = "adamz"
) -> Section:
    """Each hyperparameter's effect where users stand on each workload, side by side, and the
    one recommended configuration that follows (:func:`recommendation`)."""
    section = Section("Across workloads")
    labels = _labels(atlases)
    factors: dict[str, Factor] = {}
    for atlas in atlases:
        for factor in atlas.input.factors:
            factors.setdefault(factor.name, factor)
    header = ["hyperparameter"]
    for label, atlas in zip(labels, atlases, strict=True):
        units = _units(atlas.input)
        header += [f"{label}: effect where users stand, {units} [95 % CI]", f"{label}: verdict"]
    rows = [header]
    for name in factors:
        row = [name]
        for atlas in atlases:
            if name not in atlas.curves:
                row += ["not in the design", ""]
                continue
            region = atlas.good or atlas.whole
            row += [_points_text(region, name), _verdict(region, name)]
        rows.append(row)
    section.tables.append(rows)
    found: dict[str, Any] | None = None
    try:
        found = recommendation(atlases)
    except ValueError as exc:
        section.skipped.append(f"recommendation: {exc}")
    numbers: dict[str, Any] = {
        "workloads": labels,
        "studies": [atlas.input.name for atlas in atlases],
        "per_workload": {
            label: {
                "where_users_stand": _region_numbers(atlas.good or atlas.whole),
                "measurable_where_users_stand": atlas.measurable,
                "safe_ranges": atlas.safe,
                "margin": atlas.margin,
                "unit": atlas.input.unit,
            }
            for label, atlas in zip(labels, atlases, strict=True)
        },
    }
    if found is not None and optimizer == "adamz":
        paper = _preset_hyperparameters("paper") or {}
        shipped = _preset_hyperparameters("recommended")
        section.summary.append(f"**Guideline**: {guideline_text(found, paper)}")
        same = shipped is not None and _comparable(shipped) == _comparable(found["hyperparameters"])
        section.summary.append(
            'This is the shipped `recommended` preset (`AdamZ.from_config("recommended", params)`).'
            if same
            else "The shipped `recommended` preset differs from what the rule gives on these "
            f"studies ({_config_text(found['hyperparameters'])})."
        )
        section.summary.append(f"The rule: {found['rule']}.")
        numbers["recommendation"] = found | {"same_as_shipped_preset": same}
    section.numbers = numbers
    return section


def _region_numbers(region: Region | None) -> dict[str, Any] | None:
    return None if region is None else region.as_dict()


def _comparable(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters without the rate (tuned), pairs as lists, numbers as floats."""

    def plain(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return (
            float(value)
            if isinstance(value, int | float) and not isinstance(value, bool)
            else value
        )

    return {k: plain(v) for k, v in hyperparameters.items() if k not in ("lr", "lr_controller")}


def _config_text(hyperparameters: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_value_text(v)}" for k, v in hyperparameters.items())


def _labels(atlases: Sequence[StudyAtlas]) -> list[str]:
    """Each atlas's column label: its workload, or its study where two share a workload."""
    workloads = [atlas.input.workload for atlas in atlases]
    if len(set(workloads)) == len(workloads):
        return workloads
    return [atlas.input.name for atlas in atlases]
