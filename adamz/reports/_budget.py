"""Budget curves: expected best value after k trials, for one or several studies.

The expected best of k trials drawn from a study's completed trials has a closed form over the
sorted values (the "expected validation performance" of Dodge et al., 2019), so no Monte Carlo
is needed; its band comes from bootstrap resamples of the trials. Comparing these curves at equal
k is comparing optimizers at equal tuning budget.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from adamz.reports._data import Section, StudyData, goodness

__all__ = ["budget_section", "expected_best"]

BAND = (5.0, 95.0)


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
    """Expected best after k trials with a 90 % bootstrap band, one curve per study."""
    section = Section("Budget curves")
    rng = np.random.default_rng(seed)
    figure = go.Figure()
    for data in studies:
        better = goodness(data.values, maximize=data.maximize)
        n = len(better)
        ks = np.unique(np.geomspace(1, n, num=min(n, max_points)).round().astype(int))
        sign = 1.0 if data.maximize else -1.0
        curve = sign * expected_best(better, ks)
        samples = better[rng.integers(0, n, size=(resamples, n))]
        boot = sign * expected_best(samples, ks)
        low, high = np.percentile(boot, BAND, axis=0)
        order = np.argsort([t.number for t in data.completed])
        observed = sign * np.maximum.accumulate(better[order])
        section.numbers[data.name] = {
            "k": ks.tolist(),
            "expected_best": curve.tolist(),
            "band_low": np.minimum(low, high).tolist(),
            "band_high": np.maximum(low, high).tolist(),
            "best_so_far": observed.tolist(),
        }
        figure.add_scatter(
            x=np.concatenate([ks, ks[::-1]]), y=np.concatenate([high, low[::-1]]),
            fill="toself", line={"width": 0}, opacity=0.25, hoverinfo="skip",
            name=f"{data.name} 90 % band", legendgroup=data.name, showlegend=False,
        )  # fmt: skip
        figure.add_scatter(x=ks, y=curve, mode="lines", name=data.name, legendgroup=data.name)
        at = min(len(ks) - 1, int(np.searchsorted(ks, 10)))
        section.summary.append(
            f"{data.name}: expected best after {ks[at]} trials {curve[at]:.4g} "
            f"[{low[at]:.4g}, {high[at]:.4g}], after {n}: {curve[-1]:.4g}."
        )
    figure.update_layout(
        title="Expected best value after k trials (bootstrap 90 % band)",
        xaxis_title="trials k",
        xaxis_type="log",
        yaxis_title="expected best value",
    )
    section.figures.append(figure)
    return section
