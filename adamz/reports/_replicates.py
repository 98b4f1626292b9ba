"""Seed replicates: each configuration's value over seeds, with intervals and paired tests.

Used for replicate studies (:mod:`adamz.search.replicates`): the paper's tables and the seed
confirmation of ``report --confirm K``. Per run: the quartiles of the metric over seeds, a
distribution-free 95 % confidence interval of the median (order statistics of the binomial
distribution, so it needs no assumption about the shape of the spread), the median training
time, and the runs that diverged (no metric: counted, not averaged in). Against the best run
(by median), every other run gets a Wilcoxon signed-rank test on the seeds both completed:
the seeds are the same in every run, so the comparison is paired.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from adamz.reports._data import Section, StudyData, train_result

__all__ = ["is_replicate_study", "median_interval", "replicate_runs", "replicates_section"]

CONFIDENCE = 0.95


def is_replicate_study(data: StudyData) -> bool:
    return (data.definition or {}).get("kind") == "replicates"


def median_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free interval for the median: order statistics ``x(j) .. x(n+1-j)``.

    ``j`` is the largest rank whose interval still covers the median with at least
    ``confidence`` (Binomial(n, 1/2)); with too few values (n < 6 at 95 %), the full range.
    """
    ordered = np.sort(values)
    n = len(ordered)
    if n == 0:
        return math.nan, math.nan
    j = 0
    for rank in range(1, n // 2 + 1):  # coverage of [x(rank), x(n+1-rank)]
        if 1 - 2 * stats.binom.cdf(rank - 1, n, 0.5) >= confidence:
            j = rank
    if j == 0:
        return float(ordered[0]), float(ordered[-1])
    return float(ordered[j - 1]), float(ordered[n - j])


def _train_time(trial: FrozenTrial) -> float | None:
    result = train_result(trial)
    value = result.get("train_time_s") if result else None
    return float(value) if isinstance(value, int | float) else None


def replicate_runs(data: StudyData) -> dict[str, dict[str, Any]]:
    """Per run label: seeds, values and times of its completed trials, and its diverged seeds."""
    definition = data.definition or {}
    runs: dict[str, dict[str, Any]] = {
        run["label"]: {"run": run, "seeds": [], "values": [], "times": [], "diverged": []}
        for run in definition.get("runs", [])
    }
    for trial in data.trials:
        label, seed = trial.params.get("run"), trial.params.get("seed")
        if label not in runs:
            continue
        entry = runs[label]
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            entry["seeds"].append(seed)
            entry["values"].append(float(trial.value))
            entry["times"].append(_train_time(trial))
        elif trial.state == TrialState.PRUNED:  # a replicate is never pruned: it diverged
            entry["diverged"].append(seed)
    return runs


def replicates_section(data: StudyData) -> Section:
    """The table, a box plot over seeds, and paired tests against the best run."""
    section = Section("Seed replicates")
    runs = replicate_runs(data)
    sign = 1.0 if data.maximize else -1.0
    summaries: dict[str, dict[str, Any]] = {}
    for label, entry in runs.items():
        values = np.array(entry["values"], dtype=float)
        times = [t for t in entry["times"] if t is not None]
        if len(values) == 0:
            summaries[label] = {"n": 0, "diverged": len(entry["diverged"])}
            continue
        low, high = median_interval(values)
        summaries[label] = {
            "n": len(values),
            "diverged": len(entry["diverged"]),
            "q1": float(np.percentile(values, 25)),
            "median": float(np.median(values)),
            "q3": float(np.percentile(values, 75)),
            "mean": float(values.mean()),
            "ci95_median": [low, high],
            "median_train_time_s": float(np.median(times)) if times else None,
            "optimizer": entry["run"]["optimizer"],
            "hyperparameters": entry["run"]["hyperparameters"],
            "source": entry["run"].get("source"),
        }
    ranked = [label for label in summaries if summaries[label]["n"]]
    if not ranked:
        section.skipped.append("no run has a completed seed yet")
        return section
    ranked.sort(key=lambda label: -sign * summaries[label]["median"])
    best = ranked[0]
    best_by_seed = dict(zip(runs[best]["seeds"], runs[best]["values"], strict=True))
    for label in ranked[1:]:
        pairs = [
            (best_by_seed[seed], value)
            for seed, value in zip(runs[label]["seeds"], runs[label]["values"], strict=True)
            if seed in best_by_seed
        ]
        summaries[label]["paired_vs_best"] = _paired(pairs, sign)
    section.numbers = {"best": best, "runs": summaries, "confidence": CONFIDENCE}
    metric = (data.definition or {}).get("metric", "value")
    header = ["run", "seeds", "Q1", "median", "Q3", "95 % CI of median", "train s", "vs best"]
    rows = [header]
    for label in ranked + [label for label in summaries if not summaries[label]["n"]]:
        s = summaries[label]
        seeds = f"{s['n']}" + (f" (+{s['diverged']} diverged)" if s["diverged"] else "")
        if not s["n"]:
            rows.append([label, seeds, "", "", "", "", "", ""])
            continue
        paired = s.get("paired_vs_best")
        versus = (
            "best"
            if label == best
            else f"{paired['median_difference']:+.4f}, p={paired['p_value']:.3g} (n={paired['n']})"
            if paired and paired["n"]
            else ""
        )
        time = s["median_train_time_s"]
        rows.append(
            [
                label,
                seeds,
                f"{s['q1']:.4f}",
                f"{s['median']:.4f}",
                f"{s['q3']:.4f}",
                f"[{s['ci95_median'][0]:.4f}, {s['ci95_median'][1]:.4f}]",
                f"{time:.2f}" if time is not None else "",
                versus,
            ]
        )
    section.tables.append(rows)
    figure = go.Figure()
    for label in ranked:
        figure.add_box(
            y=runs[label]["values"], name=label, boxpoints="all", jitter=0.4, pointpos=0,
            text=[f"seed {seed}" for seed in runs[label]["seeds"]],
        )  # fmt: skip
    figure.update_layout(
        title=f"{data.name}: {metric} over seeds (best median first)",
        yaxis_title=metric,
        showlegend=False,
    )
    section.figures.append(figure)
    top = summaries[best]
    section.summary.append(
        f"best median: **{best}** {top['median']:.4f} (95 % CI {top['ci95_median'][0]:.4f} to "
        f"{top['ci95_median'][1]:.4f}, {top['n']} seeds)."
    )
    return section


def _paired(pairs: list[tuple[float, float]], sign: float) -> dict[str, Any]:
    """Wilcoxon signed-rank test of best vs other on matched seeds (two-sided)."""
    if not pairs:
        return {"n": 0}
    best, other = (np.array(column) for column in zip(*pairs, strict=True))
    differences = sign * (other - best)  # negative: worse than the best
    if np.all(differences == 0):
        p_value = 1.0
    else:
        p_value = float(stats.wilcoxon(best, other, zero_method="zsplit").pvalue)
    return {
        "n": len(pairs),
        "median_difference": float(np.median(other - best)),
        "better_seeds": int(np.sum(differences > 0)),
        "p_value": p_value,
    }
