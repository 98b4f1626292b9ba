"""What every report section reads: one study's finished trials as arrays, and what is missing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from adamz.search import SearchSpace, StudySpec

__all__ = [
    "ReportError",
    "Section",
    "StudyData",
    "goodness",
    "hyperparameters_of",
    "load_study_data",
    "train_result",
]


class ReportError(ValueError):
    """A study that cannot be reported (empty, only failed trials, multi-objective)."""


@dataclass
class Section:
    """One part of the report: charts for the page, numbers for JSON, lines for Markdown.

    Attributes:
        title: the section's heading.
        figures: plotly figures, in page order.
        numbers: plain data (JSON-serialisable) behind the charts.
        summary: Markdown lines for the summary (and the dashboard note).
        skipped: why parts of the section were not computed, one line each.
        tables: tables of text for the page and the summary, each a header row then rows.
    """

    title: str
    figures: list[Any] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)


@dataclass
class StudyData:
    """A single-objective study's trials, ready for the sections.

    Attributes:
        study: the Optuna study.
        trials: every trial, in number order.
        completed: the COMPLETE trials with a finite value.
        values: their values, in the same order.
        params: the parameters every completed trial has, in first-seen order.
        distributions: their distributions (from the first completed trial).
        definition: the study file's definition stored by ``adamz-search create``, or None for
            a study made otherwise.
    """

    study: optuna.Study
    trials: list[FrozenTrial]
    completed: list[FrozenTrial]
    values: np.ndarray
    params: list[str]
    distributions: dict[str, BaseDistribution]
    definition: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def maximize(self) -> bool:
        return self.study.direction == optuna.study.StudyDirection.MAXIMIZE

    @property
    def best_index(self) -> int:
        """Index into :attr:`completed` of the best trial."""
        return int(np.argmax(goodness(self.values, maximize=self.maximize)))

    @property
    def workload(self) -> str | None:
        if self.definition is None:
            return None
        return str(self.definition.get("workload", {}).get("name"))

    @property
    def optimizer(self) -> str | None:
        return None if self.definition is None else str(self.definition.get("optimizer"))

    def numeric_params(self) -> list[str]:
        return [
            name
            for name in self.params
            if not isinstance(self.distributions[name], CategoricalDistribution)
        ]

    def param_column(self, name: str) -> np.ndarray:
        return np.array([trial.params[name] for trial in self.completed])


def goodness(values: np.ndarray, *, maximize: bool) -> np.ndarray:
    """Values turned so that larger is better (negated when the study minimises)."""
    return values if maximize else -values


def train_result(trial: FrozenTrial) -> dict[str, Any] | None:
    """The training record our workers store in ``user_attrs["run"]["result"]``, if any."""
    run = trial.user_attrs.get("run")
    result = run.get("result") if isinstance(run, dict) else None
    return result if isinstance(result, dict) else None


def hyperparameters_of(data: StudyData, index: int) -> dict[str, Any]:
    """The optimizer keyword arguments of completed trial ``index``."""
    trial = data.completed[index]
    result = train_result(trial)
    if result is not None and isinstance(result.get("hyperparameters"), dict):
        return dict(result["hyperparameters"])  # complete, defaults filled in by the run
    if data.definition is not None:
        spec = StudySpec.from_definition(data.definition, source=f"study {data.name}")
        return spec.space.hyperparameters(trial.params)
    # A plain Optuna study: its parameters, pairs (name[0], name[1]) joined as in our spaces.
    return SearchSpace("", {}, {}, {}).hyperparameters(trial.params)


def load_study_data(study: optuna.Study) -> StudyData:
    """Collect ``study``'s trials for reporting.

    Raises:
        ReportError: the study is multi-objective, has no trials, or has no completed trial
            with a finite value (the message gives the count of trials per state).
    """
    if len(study.directions) != 1:
        raise ReportError(
            f"Study {study.study_name!r} has {len(study.directions)} objectives: reports need one."
        )
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise ReportError(f"Study {study.study_name!r} has no trials yet: nothing to report.")
    completed = [
        trial
        for trial in trials
        if trial.state == TrialState.COMPLETE
        and trial.value is not None
        and math.isfinite(trial.value)
    ]
    if not completed:
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        states = ", ".join(f"{count} {state.lower()}" for state, count in sorted(counts.items()))
        raise ReportError(
            f"Study {study.study_name!r} has no completed trial with a finite value ({states}): "
            "nothing to report."
        )
    params = [name for name in completed[0].params if all(name in t.params for t in completed)]
    definition = study.user_attrs.get("definition")
    return StudyData(
        study=study,
        trials=trials,
        completed=completed,
        values=np.array([trial.value for trial in completed], dtype=float),
        params=params,
        distributions={name: completed[0].distributions[name] for name in params},
        definition=definition if isinstance(definition, dict) else None,
    )
