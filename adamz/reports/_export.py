"""Export: the recommended configuration of a study (or a robust default across studies).

The file it writes is what ``AdamZ.from_config`` reads::

    format: adamz-config/1
    optimizer: adamz
    hyperparameters: {lr: 0.012, betas: [0.9, 0.999], ...}   # the optimizer's keyword arguments
    provenance: {studies: [...], trials: [...], value: ..., rule: ..., date: ..., ...}

Rule for one study: if a seed confirmation (``report --confirm K``) re-ran some of its trials,
the one with the best median over those fresh seeds, with the interval of that median as
``provenance.ci``. Otherwise the flat-region rule: the candidates are the completed trials within 1 % of the best value (at most ten, best first);
each is scored by the mean value of its :data:`NEIGHBOURS` nearest completed trials (itself
included) in the search space scaled to [0, 1] (log scale for log parameters); the candidate
with the best neighbourhood wins. So a lucky spike among poor neighbours loses to a point in a
flat good region.

Rule for several studies (different workloads): every study's recommended configuration is a
candidate; its value on each study is estimated by its nearest completed trial there; its rank
there is the fraction of that study's trials better than that estimate; the candidate with the
lowest mean rank wins, and its estimated loss vs each study's own best is reported.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from adamz import __version__
from adamz.reports._confirm import confirmed_choice
from adamz.reports._data import ReportError, StudyData, goodness, hyperparameters_of
from adamz.reports._html import plain_numbers
from adamz.reports._robustness import relative_gaps

__all__ = ["FORMAT", "NEIGHBOURS", "export_config", "recommend", "write_config"]

FORMAT = "adamz-config/1"
NEIGHBOURS = 5
FLAT_TOLERANCE = 0.01
MAX_CANDIDATES = 10


def _scaled(data: StudyData, params: dict[str, Any]) -> np.ndarray:
    return np.array([_unit(data.distributions[name], params[name]) for name in data.params])


def _unit(distribution: BaseDistribution, value: Any) -> float:
    if isinstance(distribution, FloatDistribution | IntDistribution):
        low, high, x = float(distribution.low), float(distribution.high), float(value)
        if distribution.log:
            low, high, x = np.log(low), np.log(high), np.log(x)
        return (x - low) / (high - low) if high > low else 0.0
    assert isinstance(distribution, CategoricalDistribution)
    return float(distribution.choices.index(value)) if value in distribution.choices else -1.0


def _points(data: StudyData) -> np.ndarray:
    return np.array([_scaled(data, trial.params) for trial in data.completed])


def _neighbourhood_scores(data: StudyData, candidates: list[int]) -> np.ndarray:
    points = _points(data)
    better = goodness(data.values, maximize=data.maximize)
    k = min(NEIGHBOURS, len(points))
    scores = []
    for index in candidates:
        distances = np.linalg.norm(points - points[index], axis=1)
        scores.append(float(better[np.argsort(distances)[:k]].mean()))
    return np.array(scores)


def recommend(data: StudyData) -> dict[str, Any]:
    """The recommended trial of one study by the flat-region rule (see the module docs)."""
    order = np.argsort(-goodness(data.values, maximize=data.maximize), kind="stable")
    gaps = relative_gaps(data.values, maximize=data.maximize)
    candidates = [int(i) for i in order if gaps[i] <= FLAT_TOLERANCE][:MAX_CANDIDATES]
    scores = _neighbourhood_scores(data, candidates) if data.params else np.zeros(1)
    chosen = candidates[int(np.argmax(scores))]
    trial = data.completed[chosen]
    return {
        "trial": trial.number,
        "value": float(data.values[chosen]),
        "best_trial": data.completed[data.best_index].number,
        "best_value": float(data.values[data.best_index]),
        "neighbourhood_mean": float(scores.max()) * (1 if data.maximize else -1),
        "candidates": [data.completed[i].number for i in candidates],
        "index": chosen,
    }


def _estimate(data: StudyData, params: dict[str, Any]) -> float:
    """Value of the completed trial of ``data`` nearest to ``params``."""
    if set(params) != set(data.params):
        raise ReportError(
            f"Study {data.name!r} searches {sorted(data.params)}, not {sorted(params)}: a robust "
            "default needs studies over the same hyperparameters."
        )
    distances = np.linalg.norm(_points(data) - _scaled(data, params), axis=1)
    return float(data.values[int(np.argmin(distances))])


def export_config(datas: list[StudyData]) -> dict[str, Any]:
    """The configuration to write for ``datas`` (one study, or a robust default of several)."""
    optimizers = {data.optimizer for data in datas}
    if len(optimizers) > 1:
        raise ReportError(
            f"A robust default needs studies of one optimizer, got {sorted(map(str, optimizers))}."
        )
    optimizer = optimizers.pop()
    versions = {
        "adamz_search": __version__,
        "torch": str(torch.__version__),
        "trained_with": sorted(
            {
                f"adamz {w.get('adamz_version')}, torch {w.get('torch_version')}"
                for data in datas
                for trial in data.completed
                if isinstance(w := trial.user_attrs.get("worker"), dict)
            }
        ),
    }
    provenance: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "ci": None,  # a 95 % interval of the median, when a seed confirmation ran
    }
    if len(datas) == 1 and (confirmed := confirmed_choice(datas[0])) is not None:
        data = datas[0]
        hyperparameters = dict(confirmed.pop("hyperparameters"))
        provenance.update(
            rule=f"best median over {confirmed['seeds']} fresh seeds among the confirmed "
            "trials (adamz-search report --confirm)",
            study=data.name,
            workload=data.workload,
            metric=(data.definition or {}).get("metric"),
            trial=confirmed["trial"],
            value=confirmed["median"],
            ci=confirmed["ci95_median"],
            confirmation=confirmed,
        )
    elif len(datas) == 1:
        data = datas[0]
        choice = recommend(data)
        hyperparameters = hyperparameters_of(data, choice.pop("index"))
        provenance.update(
            rule=f"best neighbourhood (mean of {NEIGHBOURS} nearest trials) among trials "
            f"within {FLAT_TOLERANCE:.0%} of the best",
            study=data.name,
            workload=data.workload,
            metric=(data.definition or {}).get("metric"),
            **choice,
        )
    else:
        choices = [recommend(data) for data in datas]
        candidates = [
            data.completed[c["index"]].params for data, c in zip(datas, choices, strict=True)
        ]
        ranks = []
        for params in candidates:
            per_study = []
            for data in datas:
                estimate = goodness(np.array([_estimate(data, params)]), maximize=data.maximize)
                per_study.append(
                    float(np.mean(goodness(data.values, maximize=data.maximize) > estimate[0]))
                )
            ranks.append(float(np.mean(per_study)))
        winner = int(np.argmin(ranks))
        params = candidates[winner]
        hyperparameters = hyperparameters_of(datas[winner], choices[winner]["index"])
        provenance.update(
            rule="best mean normalised rank across the studies (value estimated by the nearest "
            "trial), among each study's recommended configuration",
            study=datas[winner].name,
            trial=choices[winner]["trial"],
            mean_normalised_rank=ranks[winner],
            per_study={
                data.name: {
                    "workload": data.workload,
                    "estimated_value": _estimate(data, params),
                    "own_best": float(data.values[data.best_index]),
                    "loss_vs_own_best": float(
                        goodness(
                            np.array([data.values[data.best_index] - _estimate(data, params)]),
                            maximize=data.maximize,
                        )[0]
                    ),
                }
                for data in datas
            },
        )
    config: dict[str, Any] = {"format": FORMAT}
    if optimizer is not None:  # unknown for a study not created by adamz-search
        config["optimizer"] = optimizer
    config.update(hyperparameters=hyperparameters, provenance=provenance)
    return plain_numbers(config)


def write_config(config: dict[str, Any], fmt: str) -> str:
    """``config`` as YAML or JSON text."""
    if fmt == "json":
        return json.dumps(config, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(config, sort_keys=False)
    raise ValueError(f"Unknown format {fmt!r}: must be yaml or json.")


def save_config(config: dict[str, Any], fmt: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(write_config(config, fmt))
