"""Sensitivity: the objective against each hyperparameter, with a smoothed trend and a band.

Optuna's ``plot_slice`` draws the points but no trend, so the trend is a small Gaussian kernel
smoother (Nadaraya–Watson) written here; the contour of the most important pair is Optuna's
``plot_contour``, titled by the axes it drew (it orders the pair by name).

Where there are too few completed trials to rank the hyperparameters (``trials_to_rank``, at
least 3 per hyperparameter), the section draws the trials alone: no trend (a smooth curve
through fewer points than the search has dimensions shows the kernel, not the objective), no
sensitivity score and no "most important pair".

Sensitivity score of a parameter: how far its smoothed trend moves (max − min, in the page's
unit: points for an accuracy, the objective's units otherwise) across the range the trials
cover, on the log scale for log-distributed parameters. A parameter the objective ignores
scores near 0.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import plotly.graph_objects as go
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.visualization import plot_contour
from plotly.subplots import make_subplots

from adamz.reports._data import Section, StudyData
from adamz.reports._importance import trials_to_rank
from adamz.reports._replicates import page_unit

__all__ = ["coarsen_contour", "kernel_trend", "sensitivity_section"]

BANDWIDTH = 0.15
"""Kernel width as a fraction of the parameter's observed range (on its sampling scale)."""
GRID_POINTS = 50
CONTOUR_GRID = 50
"""Points per axis of the contour's grid at most. Optuna's has one per distinct value tried: a
million mostly empty cells (12 MB of page, slow to draw) for 1,000 trials."""


def kernel_trend(
    x: np.ndarray, y: np.ndarray, grid: np.ndarray, bandwidth: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-kernel weighted mean and standard deviation of ``y`` at each ``grid`` point."""
    weights = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / bandwidth) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    mean = weights @ y
    spread = np.sqrt(np.maximum(weights @ (y**2) - mean**2, 0.0))
    return mean, spread


def _is_log(distribution: object) -> bool:
    return isinstance(distribution, FloatDistribution | IntDistribution) and distribution.log


def sensitivity_section(
    data: StudyData, ranked: list[str] | None = None, ranked_by: str | None = None
) -> Section:
    """Slices with trends for every parameter, the sensitivity scores, the top pair's contour;
    the slices' points alone where the trials are too few to rank (see the module docs).

    ``ranked`` orders the parameters (most important first) by the estimator ``ranked_by``
    names; its first two form the contour, whose title names that estimator.
    """
    section = Section("Sensitivity")
    params = ranked or data.params
    numeric = [name for name in params if name in data.numeric_params()]
    for name in params:
        if name not in numeric:
            section.skipped.append(f"{name}: categorical, no trend")
    needed = trials_to_rank(len(data.params))
    trends = len(data.completed) >= needed
    scores: dict[str, float] = {}
    if numeric:
        columns = min(3, len(numeric))
        rows = -(-len(numeric) // columns)
        figure = make_subplots(rows=rows, cols=columns, subplot_titles=numeric)
        for index, name in enumerate(numeric):
            log = _is_log(data.distributions[name])
            x = data.param_column(name).astype(float)
            row, col = index // columns + 1, index % columns + 1
            if trends:
                scores[name] = _add_trend(figure, x, data, log=log, row=row, col=col)
            figure.add_scatter(
                x=x, y=data.values, mode="markers", marker={"size": 4, "color": "gray"},
                showlegend=False, row=row, col=col,
            )  # fmt: skip
            if log:
                figure.update_xaxes(type="log", row=row, col=col)
            figure.update_xaxes(title_text=name, row=row, col=col)
            figure.update_yaxes(title_text=data.metric, row=row, col=col)
        drawn = "kernel trend ± 1 sd" if trends else "too few to draw a trend"
        figure.update_layout(
            title=f"{data.name}: {data.metric} vs each hyperparameter ({drawn}, "
            f"{len(data.completed)} completed trials)",
            height=300 * rows,
        )
        section.figures.append(figure)
    scale, unit = page_unit(data.metric)
    section.numbers["scores"] = {name: score * scale for name, score in scores.items()}
    section.numbers["score_unit"] = unit
    section.numbers["trends"] = trends
    section.numbers["score_rule"] = (
        f"max - min of the Gaussian-kernel trend over the observed range, in {unit} "
        f"(bandwidth {BANDWIDTH} of the range, log scale for log parameters)"
    )
    if numeric and not trends:
        section.summary.append(
            f"Too few completed trials to say which hyperparameter the {data.metric} is most "
            f"sensitive to ({len(data.completed)}, ranking needs {needed}); the slices show "
            "every completed trial, without a trend."
        )
    elif scores:
        most = max(scores, key=lambda name: scores[name])
        moves = (
            f"{scores[most] * scale:.4g} {unit} of {data.metric}"
            if scale != 1.0
            else f"{scores[most]:.4g} in {data.metric}"
        )
        section.summary.append(
            f"Most sensitive: **{most}**: across the range tried, its trend moves {moves} "
            f"(from the {len(data.completed)} completed trials; pruned trials are left out)."
        )
    pair = [name for name in params if name in data.distributions][:2]
    if not trends:
        section.skipped.append(
            f"contour of the most important pair: too few completed trials to rank "
            f"({len(data.completed)}, ranking needs {needed})"
        )
    elif len(pair) == 2 and not any(
        isinstance(data.distributions[name], CategoricalDistribution) for name in pair
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plot_contour's ExperimentalWarning
            contour = plot_contour(data.study, params=pair)
        coarsen_contour(contour, maximize=data.maximize)
        # plot_contour puts the pair's names in alphabetical order on x and y: the title
        # follows its axes, not the ranking's order.
        x_name, y_name = contour.layout.xaxis.title.text, contour.layout.yaxis.title.text
        contour.update_layout(
            title=f"{data.name}: {data.metric} over {x_name} (x) × {y_name} (y), the top two by "
            f"{ranked_by or 'the order given'}"
        )
        section.figures.append(contour)
        section.numbers["contour_pair"] = pair
        section.numbers["contour_axes"] = {"x": x_name, "y": y_name}
    else:
        section.skipped.append("contour: needs two numeric parameters")
    return section


def _add_trend(
    figure: go.Figure, x: np.ndarray, data: StudyData, *, log: bool, row: int, col: int
) -> float:
    """Draw the kernel trend of ``data.values`` over ``x`` with its ±1 sd band in one slice;
    return its sensitivity score (the trend's max - min)."""
    scale = np.log10(x) if log else x
    low, high = float(scale.min()), float(scale.max())
    grid = np.linspace(low, high, GRID_POINTS)
    bandwidth = max(BANDWIDTH * (high - low), 1e-12)
    trend, spread = kernel_trend(scale, data.values, grid, bandwidth)
    band_low, band_high = trend - spread, trend + spread
    if data.metric.endswith("_accuracy"):  # a fraction: the band stays inside [0, 1]
        band_low, band_high = np.clip(band_low, 0, 1), np.clip(band_high, 0, 1)
    shown = 10**grid if log else grid
    figure.add_scatter(
        x=np.concatenate([shown, shown[::-1]]), y=np.concatenate([band_high, band_low[::-1]]),
        fill="toself", line={"width": 0}, fillcolor="rgba(31,119,180,0.2)", hoverinfo="skip",
        showlegend=False, row=row, col=col,
    )  # fmt: skip
    figure.add_scatter(
        x=shown, y=trend, mode="lines", line={"color": "#1f77b4"},
        showlegend=False, row=row, col=col,
    )  # fmt: skip
    return float(trend.max() - trend.min()) if high > low else 0.0


def coarsen_contour(figure: go.Figure, *, maximize: bool, points: int = CONTOUR_GRID) -> None:
    """Move the values of ``figure``'s contours (Optuna's ``plot_contour``) onto at most
    ``points`` evenly spaced points per axis (on the log scale for a log axis).

    Each point keeps the best value that falls nearest to it, as Optuna keeps the best of the
    trials sharing a point, so the best trial's value stays exact; the trials' markers are not
    moved. Plotly fills the empty points as before (``connectgaps``).
    """
    for trace in figure.data:
        if trace.type != "contour" or trace.z is None:
            continue
        z = np.asarray(trace.z, dtype=float)
        if z.shape[0] <= points and z.shape[1] <= points:
            continue
        x, columns = _coarse_axis(trace.x, log=figure.layout.xaxis.type == "log", points=points)
        y, rows = _coarse_axis(trace.y, log=figure.layout.yaxis.type == "log", points=points)
        coarse = np.full((len(y), len(x)), np.nan)
        row, column = np.nonzero(np.isfinite(z))
        keep_best = np.fmax if maximize else np.fmin  # NaN (empty) loses to any value
        keep_best.at(coarse, (rows[row], columns[column]), z[row, column])
        trace.update(x=x, y=y, z=coarse)


def _coarse_axis(values: Any, *, log: bool, points: int) -> tuple[np.ndarray, np.ndarray]:
    """``points`` evenly spaced values over the range of the sorted ``values`` and the index of
    the one nearest each of ``values``; ``values`` themselves if they are no more."""
    original = np.asarray(values, dtype=float)
    if len(original) <= points:
        return original, np.arange(len(original))
    scale = np.log10(original) if log else original
    grid = np.linspace(scale[0], scale[-1], points)
    nearest = np.rint((scale - scale[0]) / (grid[1] - grid[0])).astype(int)
    return (10**grid if log else grid), np.clip(nearest, 0, points - 1)
