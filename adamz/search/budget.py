"""A study's budget of finished trials, and how close a set of workers keeps to it.

A worker asks for a trial only while the study's finished and running trials number fewer than
the budget. Workers that check at the same moment, as the budget's last place frees, can each
start one: with ``W`` workers the study finishes at most ``W - 1`` trials beyond its budget.
Keeping it exact would need a lock across hosts, which Optuna's public storage interface does
not offer (and the gRPC proxy could not carry). The objective then refuses most of those extra
trials (:meth:`~adamz.search.objective.TrialObjective.admit` counts the trials numbered before
each: the storage numbers trials in one order for every host), and the reports cut every study
to its first ``budget`` finished trials, so studies are compared at equal budgets whatever the
workers did.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = [
    "BUDGET_ATTR",
    "FINISHED",
    "NO_QUEUED_RUN",
    "QUEUED_ATTR",
    "SurplusTrialError",
    "count_states",
    "definition_budget",
    "set_budget",
    "study_budget",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""States that count against a study's budget."""
QUEUED_ATTR = "queued"
"""User attribute of a trial queued when its study was created (a reference point, a replicate
run, a design point), and of its retries: it was numbered when queued, not when it started."""
NO_QUEUED_RUN = "no queued run is left to take"
"""Why a replicate study refuses a trial it sampled: two workers asked at once for the last
queued run, and this one found none."""


class SurplusTrialError(RuntimeError):
    """A trial started after the budget was already taken by trials before it; it is not run."""


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    """Number of the study's trials in each state (0 for a state none is in).

    Optuna's caching layer (RDB storages) and the gRPC proxy's client keep finished trials, so
    a worker that asks before every trial reads only the unfinished ones again.
    """
    return Counter(trial.state for trial in study.get_trials(deepcopy=False))


BUDGET_ATTR = "budget"
"""Study user attribute: the study's budget, its file's from ``create`` on (the dashboard shows
it), then the one ``adamz-search budget`` sets."""


def study_budget(study: optuna.Study, file_budget: int) -> int:
    """The study's budget: its :data:`BUDGET_ATTR`, else its file's (a study created before
    ``create`` stored it)."""
    return int(study.user_attrs.get(BUDGET_ATTR) or file_budget)


def definition_budget(definition: dict[str, Any]) -> int:
    """The budget a stored definition sets (a search's ``budget``, a replicate study's runs x
    seeds), read unchecked: checking needs torch, which the supervisor does without."""
    if definition.get("kind") == "replicates":
        return len(definition["runs"]) * int(definition["seeds"])
    return int(definition["budget"])


def set_budget(study: optuna.Study, trials: int) -> None:
    """Change the study's budget for every worker, from the next trial each asks for.

    Raises:
        ValueError: ``trials`` is not a positive integer.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"Invalid budget: must be an integer >= 1, got {trials!r}.")
    study.set_user_attr(BUDGET_ATTR, trials)
