"""Budget curves: expected best value after k trials, for one or several studies.

The expected best of k trials drawn from every trial a study's budget paid for (pruned ones at
their last reported value, diverged ones at chance: see :mod:`~adamz.reports._data`) is the
unbiased estimate over the k-subsets of those n trials, drawn without replacement
(:func:`~adamz.reports._stats.expected_maximum`, Dodge et al., Findings of EMNLP 2021), so no
Monte Carlo is needed; its band comes from bootstrap resamples of the trials. Comparing these
curves at equal k is comparing optimizers at equal tuning budget.

With search replicates (``NAME~r2``, ...: :mod:`~adamz.reports._search_replicates`), each
search's curve is instead the mean, over its replicates, of the best value each replicate had
found after k trials, in the order it ran them, with their range (smallest to largest) as the
band: a sampler such as TPE draws each trial from what came before, so a search's trials are
not the independent draws the expected maximum assumes, and only runs of the search itself
show what a budget buys and how much that varies. They are drawn against trials and against
the epochs trained (each replicate's best so far at each count of epochs: pruned trials cost
less).
"""

from __future__ import annotations

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from optuna.trial import TrialState

from adamz.reports._data import Section, StudyData, goodness
from adamz.reports._search_replicates import replicate_of
from adamz.reports._stats import expected_maximum

__all__ = ["budget_section"]

BAND = (5.0, 95.0)
MAX_BANDS = 3
"""More curves than this show their bands only when picked in the legend (they overlap)."""
PALETTE = plotly.colors.qualitative.Plotly
"""One colour per study, shared by its curve and its band."""
REPLICATES = "search_replicates"
"""The key of the curves over search replicates among the section's numbers."""


def budget_section(
    studies: list[StudyData], *, resamples: int = 200, max_points: int = 100, seed: int = 0
) -> Section:
    """Expected best after k trials (k of the n drawn without replacement), with a 90 %
    bootstrap band, one curve per study, over every trial the budget paid for; and the best so
    far against the epochs spent.

    Studies with different numbers of finished trials are cut to the first ``n`` that finished
    in each (``n`` the smallest count), so every curve is at equal budget on one k axis.

    Where a search has replicates among ``studies``, the charts show each search's mean best
    so far over its replicates with their range, against trials and against epochs (see the
    module docs), and :data:`REPLICATES` holds those curves.
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
    better_way = "higher is better" if usable[0].maximize else "lower is better"
    expected = go.Figure()
    spent = go.Figure()
    show_bands = len(usable) <= MAX_BANDS
    replicated = any(replicate_of(data.name)[1] > 1 for data in usable)
    for position, data in enumerate(usable):
        colour = PALETTE[position % len(PALETTE)]
        better = goodness(data.finished_values[:n], maximize=data.maximize)
        sign = 1.0 if data.maximize else -1.0
        curve = sign * expected_maximum(better, ks)
        samples = better[rng.integers(0, n, size=(resamples, n))]
        boot = sign * expected_maximum(samples, ks)
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
        if replicated:
            continue  # the summary and the charts are those over replicates, below
        section.summary.append(
            f"{data.name}: expected best {metric} ({better_way}) after {n} trials {curve[-1]:.4g} "
            f"(90 % band {low[-1]:.4g} to {high[-1]:.4g}); {n} trials paid for, {pruned} "
            f"pruned, {diverged} diverged ({diverged / n:.0%} divergence rate), "
            f"{int(epochs[-1])} epochs trained."
        )
    if replicated:
        section.figures += _over_replicates(section, usable, ks, n, metric)
        return section
    if not show_bands:
        section.summary.append(
            f"The 90 % bands of the {len(usable)} curves are hidden so they do not overlap: "
            "click a study in the legend to show its band."
        )
    expected.update_layout(
        title=f"Expected best {metric} after k of the trials run (90 % bootstrap band; "
        f"{better_way})",
        xaxis_title="trials k (every trial the budget paid for)",
        yaxis_title=f"expected best {metric} ({better_way})",
    )
    spent.update_layout(
        title=f"Best {metric} so far against the epochs trained (pruned trials cost less; "
        "a marker where a trial improved it)",
        xaxis_title="epochs trained, all trials so far",
        yaxis_title=f"best {metric} so far ({better_way})",
    )
    section.figures += [expected, spent]
    return section


def _over_replicates(
    section: Section, usable: list[StudyData], ks: np.ndarray, n: int, metric: str
) -> list[go.Figure]:
    """Each search's mean best-so-far over its replicates, with their range, against trials
    and against the epochs trained; the curves go to ``section.numbers`` and a line per search
    to its summary."""
    searches: dict[str, list[StudyData]] = {}
    for data in usable:
        searches.setdefault(replicate_of(data.name)[0], []).append(data)
    by_trials, by_epochs = go.Figure(), go.Figure()
    numbers: dict[str, dict[str, object]] = {}
    for position, (search, replicates) in enumerate(searches.items()):
        colour = PALETTE[position % len(PALETTE)]
        runs = [section.numbers[data.name] for data in replicates]
        curves = np.array([run["best_so_far"] for run in runs])[:, ks - 1]
        spent = [np.asarray(run["cumulative_epochs"]) for run in runs]
        # Epochs where every replicate has a best so far: from the dearest first trial to the
        # cheapest whole budget; each replicate's is that of its last trial by then.
        grid = np.linspace(max(e[0] for e in spent), min(e[-1] for e in spent), num=len(ks))
        along = np.array(
            [
                np.asarray(run["best_so_far"])[np.searchsorted(e, grid, side="right") - 1]
                for run, e in zip(runs, spent, strict=True)
            ]
        )
        label = f"{search} ({len(replicates)} replicates)"
        lines: dict[str, np.ndarray] = {}
        for figure, x, values, key in (
            (by_trials, ks, curves, ""),
            (by_epochs, grid, along, "_by_epochs"),
        ):
            middle, bottom, top = values.mean(axis=0), values.min(axis=0), values.max(axis=0)
            lines |= {f"mean{key}": middle, f"low{key}": bottom, f"high{key}": top}
            figure.add_scatter(
                x=np.concatenate([x, x[::-1]]), y=np.concatenate([top, bottom[::-1]]),
                fill="toself", fillcolor=_translucent(colour), line={"width": 0}, mode="lines",
                hoverinfo="skip", name=f"{label}: range", legendgroup=search, showlegend=False,
            )  # fmt: skip
            figure.add_scatter(
                x=x, y=middle, mode="lines", name=label, legendgroup=search,
                line={"color": colour, "shape": "hv"},
            )  # fmt: skip
        numbers[search] = {
            "replicates": [data.name for data in replicates],
            "k": ks.tolist(),
            "epochs": grid.tolist(),
            **{key: value.tolist() for key, value in lines.items()},
        }
        epochs = [int(e[-1]) for e in spent]
        diverged = [int(run["diverged"]) for run in runs]
        section.summary.append(
            f"{search} over {len(replicates)} search replicates: best {metric} after {n} "
            f"trials, mean {lines['mean'][-1]:.4g} (range {lines['low'][-1]:.4g} to "
            f"{lines['high'][-1]:.4g} over replicates); each replicate trained "
            f"{_span(epochs)} epochs, and {_span(diverged)} of its {n} trials diverged."
        )
    section.numbers[REPLICATES] = numbers
    section.summary.append(
        "Each search's other sections describe its first replicate, the study itself; the "
        "other replicates count here and in the verdict."
    )
    by_trials.update_layout(
        title=f"Best {metric} after k trials, in the order each search ran them: the mean "
        "over search replicates (band: their range)",
        xaxis_title="trials k (every trial the budget paid for)",
        yaxis_title=f"best {metric} so far",
    )
    by_epochs.update_layout(
        title=f"Best {metric} against the epochs trained: the mean over search replicates "
        "(band: their range)",
        xaxis_title="epochs trained, all trials so far",
        yaxis_title=f"best {metric} so far",
    )
    return [by_trials, by_epochs]


def _span(values: list[int]) -> str:
    """``a to b``, or ``a`` where they are all equal."""
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)} to {max(values)}"


def _improvements(better: np.ndarray) -> np.ndarray:
    """Indices of the values better than every one before them (the first included)."""
    previous_best = np.concatenate([[-np.inf], np.maximum.accumulate(better)[:-1]])
    return np.flatnonzero(better > previous_best)


def _translucent(colour: str, alpha: float = 0.2) -> str:
    """``#rrggbb`` as an ``rgba`` fill of the same colour."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"
