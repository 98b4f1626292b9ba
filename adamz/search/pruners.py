"""Hyperband whose bracket depends on the trial's number alone: equal brackets for compared
studies.

Optuna's :class:`~optuna.pruners.HyperbandPruner` runs several successive-halving brackets, from
aggressive (the first rung after ``min_resource`` epochs) to patient, and puts each trial in
one by a hash of the study's name and the trial's number. Two studies compared at equal budget
then get different mixes of brackets: in the project's own searches one optimizer had 21 of 30
trials in one bracket and another 17, so equal trials were not equal compute.

:class:`EqualBracketsHyperbandPruner` keeps Optuna's brackets (the same
:class:`~optuna.pruners.SuccessiveHalvingPruner` per bracket, the same number of brackets and
the same share of trials for each, its budget ``ceil(n * eta**s / (s + 1))``) and assigns
them by the trial's number alone, in a fixed cycle of ``sum(budgets)`` trials in which each
bracket's turns are spread evenly. Trial ``k`` is in the same bracket in every study, whatever
its name, and every window of one cycle holds each bracket exactly its share. Within a bracket
it prunes as Optuna's Hyperband does: the bracket's successive-halving pruner sees only the
trials of that bracket.
"""

from __future__ import annotations

import math
from collections.abc import Container
from typing import Any, cast

import optuna
from optuna.pruners import BasePruner, SuccessiveHalvingPruner
from optuna.trial import FrozenTrial, TrialState

__all__ = ["EqualBracketsHyperbandPruner", "bracket_cycle"]


def bracket_cycle(budgets: list[int]) -> list[int]:
    """The brackets of one cycle of ``sum(budgets)`` trials, bracket ``s`` ``budgets[s]``
    times, each bracket's turns spread evenly over the cycle.

    Turn ``j`` of bracket ``s`` sits at ``(j + 1/2) / budgets[s]`` of the cycle; the turns are
    taken in that order (ties: the lower bracket first). ``[2, 4]`` gives ``[1, 0, 1, 1, 0, 1]``.

    Raises:
        ValueError: a budget is not a positive integer.
    """
    if not budgets or any(not isinstance(b, int) or b < 1 for b in budgets):
        raise ValueError(f"Invalid budgets: must be positive integers, got {budgets!r}.")
    turns = [
        ((turn + 0.5) / budget, bracket)
        for bracket, budget in enumerate(budgets)
        for turn in range(budget)
    ]
    return [bracket for _, bracket in sorted(turns)]


class EqualBracketsHyperbandPruner(BasePruner):
    """Optuna's Hyperband with each trial's bracket chosen by its number alone.

    Args:
        min_resource, max_resource, reduction_factor, bootstrap_count: as
            :class:`optuna.pruners.HyperbandPruner`'s (``max_resource="auto"`` waits, as
            Optuna's does, for a complete trial and takes its last step plus one).

    Raises:
        ValueError: an invalid argument (Optuna's own checks, and the rules named here).
    """

    def __init__(
        self,
        min_resource: int = 1,
        max_resource: str | int = "auto",
        reduction_factor: int = 3,
        bootstrap_count: int = 0,
    ) -> None:
        if not (isinstance(min_resource, int) and not isinstance(min_resource, bool)):
            raise ValueError(f"Invalid min_resource: must be an integer, got {min_resource!r}.")
        if max_resource != "auto" and not (
            isinstance(max_resource, int) and not isinstance(max_resource, bool)
        ):
            raise ValueError(
                f"Invalid max_resource: must be an integer or 'auto', got {max_resource!r}."
            )
        if bootstrap_count > 0 and max_resource == "auto":
            raise ValueError(
                f"Invalid bootstrap_count: must be 0 with max_resource 'auto', got {bootstrap_count}."
            )
        # Optuna's checks of the common arguments, made once here rather than at the first prune.
        SuccessiveHalvingPruner(
            min_resource=min_resource,
            reduction_factor=reduction_factor,
            bootstrap_count=bootstrap_count,
        )
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.reduction_factor = reduction_factor
        self.bootstrap_count = bootstrap_count
        self._pruners: list[SuccessiveHalvingPruner] = []
        self._cycle: list[int] = []
        if isinstance(max_resource, int):
            self._build(max_resource)

    @property
    def n_brackets(self) -> int | None:
        """The number of brackets (``None`` until ``max_resource="auto"`` is known)."""
        return len(self._pruners) or None

    def _build(self, max_resource: int) -> None:
        # Optuna's count: floor(log_eta(max_resource / min_resource)) + 1, and its budgets.
        count = math.floor(math.log(max_resource / self.min_resource, self.reduction_factor)) + 1
        budgets = [
            math.ceil(count * self.reduction_factor**bracket / (bracket + 1))
            for bracket in range(count)
        ]
        self._cycle = bracket_cycle(budgets)
        self._pruners = [
            SuccessiveHalvingPruner(
                min_resource=self.min_resource,
                reduction_factor=self.reduction_factor,
                min_early_stopping_rate=bracket,
                bootstrap_count=self.bootstrap_count,
            )
            for bracket in range(count)
        ]

    def bracket(self, number: int) -> int:
        """The bracket of trial ``number`` (0: the most aggressive), the same in every study.

        Raises:
            ValueError: ``max_resource`` is ``"auto"`` and not known yet.
        """
        if not self._cycle:
            raise ValueError(
                "Invalid max_resource: 'auto' is not known until a trial has completed."
            )
        return self._cycle[number % len(self._cycle)]

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` stops: its bracket's successive halving among its bracket's trials."""
        if not self._pruners:
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            steps = [t.last_step for t in complete if t.last_step is not None]
            if not steps:
                return False
            self._build(max(steps) + 1)
        bracket = self.bracket(trial.number)
        view = cast(optuna.study.Study, _BracketView(study, self, bracket))
        return self._pruners[bracket].prune(view, trial)


class _BracketView:
    """``study`` as one bracket's pruner sees it: its trials are that bracket's alone.

    A view rather than a :class:`optuna.study.Study`: a study can be constructed only from its
    storage, which Optuna keeps private. Everything else the successive-halving pruner reads
    or writes (the direction, a trial's rung attributes) is the study's own, passed through.
    """

    def __init__(
        self, study: optuna.study.Study, pruner: EqualBracketsHyperbandPruner, bracket: int
    ) -> None:
        self._study = study
        self._pruner = pruner
        self._bracket = bracket

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if self._pruner.bracket(t.number) == self._bracket]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)
