"""What every report section reads: one study's trials as arrays, and what is missing.

Two views of a study, because they answer different questions:

- **the budget**: every trial the budget paid for, in the order they finished: a COMPLETE
  trial at its value, a PRUNED one as one draw at its last reported value, a diverged one
  (``run.diverged``) at the workload's chance value; trials that FAILED (faults: a crash, a
  refused surplus) cost no budget and do not count. Budget curves, the cost axis and the
  divergence rate read this view (:attr:`StudyData.finished`);
- **the response surface**: the COMPLETE trials with a finite value, which are the only ones
  whose value belongs to a fully trained configuration. Importance, sensitivity, robustness
  and export read this view (:attr:`StudyData.completed`), and say so with the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from adamz.search import SearchSpace, StudySpec
from adamz.search.records import TrialRun
from adamz.search.study_attrs import is_diverged, stored_definition

__all__ = [
    "ReportError",
    "Section",
    "StudyData",
    "goodness",
    "hyperparameters_of",
    "is_diverged",
    "load_study_data",
    "run_metrics",
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
        notes: footnotes, shown after the tables and charts (how to read them, the tests'
            details).
    """

    title: str
    figures: list[Any] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class StudyData:
    """A single-objective study's trials, ready for the sections.

    Attributes:
        study: the Optuna study.
        storage: its storage.
        trials: every trial, in number order.
        completed: the COMPLETE trials with a finite value.
        values: their values, in the same order.
        finished: the trials the budget paid for (see the module docs), in the order they
            finished.
        finished_values: their values for the budget: a pruned trial's last reported value.
        finished_epochs: epochs each of them trained (values it reported).
        params: the parameters every completed trial has, in first-seen order.
        distributions: their distributions (from the first completed trial).
        definition: the study file's definition stored by ``adamz-search create``, or None for
            a study made otherwise.
    """

    study: optuna.Study
    storage: BaseStorage
    trials: list[FrozenTrial]
    completed: list[FrozenTrial]
    values: np.ndarray
    params: list[str]
    distributions: dict[str, BaseDistribution]
    definition: dict[str, Any] | None
    finished: list[FrozenTrial] = field(default_factory=list)
    finished_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    finished_epochs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

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
    def metric(self) -> str:
        """What the values measure: the study file's metric, or ``"value"`` for a plain study."""
        return str((self.definition or {}).get("metric", "value"))

    @property
    def diverged(self) -> list[FrozenTrial]:
        """The finished trials whose loss diverged."""
        return [trial for trial in self.finished if is_diverged(trial)]

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


def run_metrics(trial: FrozenTrial) -> dict[str, float]:
    """Every metric our workers recorded for ``trial`` (``run.metrics``: validation and test,
    the mean over its seeds); empty for a trial that recorded none."""
    run = TrialRun.of(trial)
    return dict(run.metrics) if run is not None and isinstance(run.metrics, dict) else {}


def train_result(trial: FrozenTrial) -> dict[str, Any] | None:
    """The training record our workers store in ``run.result``, if any."""
    run = TrialRun.of(trial)
    return run.result if run is not None and isinstance(run.result, dict) else None


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


def load_study_data(study: optuna.Study, storage: BaseStorage) -> StudyData:
    """Collect ``study``'s trials for reporting (``storage``: the study's, which also holds
    its stored definition).


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
    definition = stored_definition(study.study_name, storage)
    values = np.array([trial.value for trial in completed], dtype=float)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    finished, finished_values = _budget_view(trials, definition, values, maximize=maximize)
    return StudyData(
        study=study,
        storage=storage,
        trials=trials,
        completed=completed,
        values=values,
        params=params,
        distributions={name: completed[0].distributions[name] for name in params},
        definition=definition,
        finished=finished,
        finished_values=finished_values,
        finished_epochs=np.array([len(t.intermediate_values) for t in finished], dtype=int),
    )


def _budget_view(
    trials: list[FrozenTrial],
    definition: dict[str, Any] | None,
    completed_values: np.ndarray,
    *,
    maximize: bool,
) -> tuple[list[FrozenTrial], np.ndarray]:
    """The trials the budget paid for, in finishing order, and their values for the budget."""
    worst = _diverged_value(definition, completed_values, maximize=maximize)
    finished: list[FrozenTrial] = []
    values: list[float] = []
    for trial in trials:
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            value = float(trial.value)
            value = value if math.isfinite(value) else worst
        elif trial.state == TrialState.PRUNED:
            if is_diverged(trial):
                value = worst
            elif trial.intermediate_values:
                value = float(trial.intermediate_values[max(trial.intermediate_values)])
            else:
                continue  # pruned before it reported anything: nothing was learned or shown
        else:
            continue
        finished.append(trial)
        values.append(value)
    order = sorted(
        range(len(finished)),
        key=lambda i: (
            finished[i].datetime_complete or finished[i].datetime_start,
            finished[i].number,
        ),
    )
    return [finished[i] for i in order], np.array([values[i] for i in order], dtype=float)


def _diverged_value(
    definition: dict[str, Any] | None, completed_values: np.ndarray, *, maximize: bool
) -> float:
    """What a diverged trial counts as: the workload's chance value for its metric, or, for a
    study of unknown workload, the worst value the study saw."""
    from adamz.workloads import WORKLOADS  # the reports need the registry only here

    workload = WORKLOADS.get(str((definition or {}).get("workload", {}).get("name")))
    metric = (definition or {}).get("metric")
    if workload is not None and isinstance(metric, str):
        return workload.chance_value(metric)
    finite = completed_values[np.isfinite(completed_values)]
    return float(finite.min() if maximize else finite.max())
