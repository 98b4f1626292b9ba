"""Budget curves: expected best value after k trials, for one or several studies.

The expected best of k trials drawn from every trial a study's budget paid for (pruned ones at
their last reported value, diverged ones at chance: see :mod:`~adamz.reports._data`) has a
closed form over the sorted values (the "expected validation performance" of Dodge et al., 2019), so no Monte Carlo
is needed; its band comes from bootstrap resamples of the trials. Comparing these curves at equal
k is comparing optimizers at equal tuning budget.
"""

from __future__ import annotations

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from optuna.trial import TrialState

from adamz.reports._data import Section, StudyData, goodness

__all__ = ["budget_section", "expected_best"]

BAND = (5.0, 95.0)
MAX_BANDS = 3
"""More curves than this show their bands only when picked in the legend (they overlap)."""
PALETTE = plotly.colors.qualitative.Plotly
"""One colour per study, shared by its curve and its band."""


def expected_best(values: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """E[max of k draws with replacement from ``values``], for each k (rows: leading axes).

    ``values`` may be 2-D (one sample per row); the result then has one row per sample.
    """
    ordered = np.sort(np.atleast_2d(values), axis=-1)
    n = ordered.shape[-1]
    fractions = np.arange(n + 1) / n
    # P(max is the i-th smallest) = (i/n)^k - ((i-1)/n)^k
    weights = fractions[1:, None] ** ks[None, :] - fractions[:-1, None] ** ks[None, :]
    result: np.ndarray = ordered @ weights
    return result if np.ndim(values) > 1 else result[0]


def budget_section(
    studies: list[StudyData], *, resamples: int = 200, max_points: int = 100, seed: int = 0
) -> Section:
    """Expected best after k trials, with a 90 % bootstrap band, one curve per study, over
    every trial the budget paid for; and the best so far against the epochs spent.

    Studies with different numbers of finished trials are cut to the first ``n`` that finished
    in each (``n`` the smallest count), so every curve is at equal budget on one k axis.
    """
    section = Section("Budget curves")
    rng = np.random.default_rng(seed)
    usable = [data for data in studies if len(data.finished)]
    if not usable:
        section.skipped.append("no study has a finished trial yet")
        return section
    n = min(len(data.finished) for data in usable)
    if any(len(data.finished) != n for data in usable):
        section.summary.append(
            f"Cut to the first {n} finished trials of each study (the smallest count), so the "
            "curves compare equal budgets: "
            + ", ".join(f"{data.name} had {len(data.finished)}" for data in usable)
            + "."
        )
    ks = np.unique(np.linspace(1, n, num=min(n, max_points)).round().astype(int))
    metric = usable[0].metric
    expected = go.Figure()
    spent = go.Figure()
    show_bands = len(usable) <= MAX_BANDS
    for position, data in enumerate(usable):
        colour = PALETTE[position % len(PALETTE)]
        better = goodness(data.finished_values[:n], maximize=data.maximize)
        sign = 1.0 if data.maximize else -1.0
        curve = sign * expected_best(better, ks)
        samples = better[rng.integers(0, n, size=(resamples, n))]
        boot = sign * expected_best(samples, ks)
        low, high = np.percentile(boot, BAND, axis=0)
        low, high = np.minimum(low, high), np.maximum(low, high)
        best_so_far = sign * np.maximum.accumulate(better)
        epochs = np.cumsum(data.finished_epochs[:n])
        trials = data.finished[:n]
        diverged = sum(1 for trial in data.diverged if trial in trials)
        pruned = sum(1 for trial in trials if trial.state == TrialState.PRUNED)
        section.numbers[data.name] = {
            "metric": data.metric,
            "finished_trials": n,
            "pruned": pruned,
            "diverged": diverged,
            "divergence_rate": diverged / n,
            "k": ks.tolist(),
            "expected_best": curve.tolist(),
            "band_low": low.tolist(),
            "band_high": high.tolist(),
            "best_so_far": best_so_far.tolist(),
            "cumulative_epochs": epochs.tolist(),
        }
        expected.add_scatter(
            x=np.concatenate([ks, ks[::-1]]), y=np.concatenate([high, low[::-1]]),
            fill="toself", fillcolor=_translucent(colour), line={"width": 0}, mode="lines",
            hoverinfo="skip", name=f"{data.name} 90 % band", legendgroup=data.name,
            showlegend=False, visible=True if show_bands else "legendonly",
        )  # fmt: skip
        expected.add_scatter(
            x=ks, y=curve, mode="lines", name=data.name, legendgroup=data.name,
            line={"color": colour},
        )  # fmt: skip
        # The steps of the curve are exact from its corners: the trials that improved the best,
        # and the last one (thousands of points otherwise, all but a few on flat stretches).
        corners = np.union1d(_improvements(better), [n - 1])
        spent.add_scatter(
            x=epochs[corners], y=best_so_far[corners], mode="lines+markers", name=data.name,
            line={"color": colour, "shape": "hv"}, marker={"size": 4},
        )  # fmt: skip
        section.summary.append(
            f"{data.name}: expected best {metric} after {n} trials {curve[-1]:.4g} "
            f"(90 % band {low[-1]:.4g} to {high[-1]:.4g}); {n} trials paid for, {pruned} "
            f"pruned, {diverged} diverged ({diverged / n:.0%} divergence rate), "
            f"{int(epochs[-1])} epochs trained."
        )
    if not show_bands:
        section.summary.append(
            f"The 90 % bands of the {len(usable)} curves are hidden so they do not overlap: "
            "click a study in the legend to show its band."
        )
    expected.update_layout(
        title=f"Expected best {metric} after k trials (90 % bootstrap band)",
        xaxis_title="trials k (every trial the budget paid for)",
        yaxis_title=f"expected best {metric}",
    )
    spent.update_layout(
        title=f"Best {metric} so far against the epochs trained (pruned trials cost less; "
        "a marker where a trial improved it)",
        xaxis_title="epochs trained, all trials so far",
        yaxis_title=f"best {metric} so far",
    )
    section.figures += [expected, spent]
    return section


def _improvements(better: np.ndarray) -> np.ndarray:
    """Indices of the values better than every one before them (the first included)."""
    previous_best = np.concatenate([[-np.inf], np.maximum.accumulate(better)[:-1]])
    return np.flatnonzero(better > previous_best)


def _translucent(colour: str, alpha: float = 0.2) -> str:
    """``#rrggbb`` as an ``rgba`` fill of the same colour."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"
