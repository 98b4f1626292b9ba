"""A read cache over one study's storage: the study read once per round, not once per call.

A worker reads the study for every sampling, every pruning check (Hyperband builds a study
object, which reads the study's id and directions, per check) and every budget count: with K
trials of a population running, K reads of every trial per round, which at K = 32 cost more
than the training (``benchmarks/population.py``).

:class:`RoundCache` reads the study's trials once per round (:meth:`RoundCache.new_round`,
then the first read), and serves the round's reads from that read. A finished trial never
changes (a storage refuses to update one), so it is read once: a round reads the unfinished
trials, then, one by one, those that finished since the last round and any new ones it has
not seen (trial numbers run without gaps; a new trial that another worker created and finished
between two rounds shows once a later trial does). It never writes anything itself: every
write goes to the storage, and the trial it wrote to is read again from the storage the next
time it is read (so a population's trials see their own parameters and intermediate values
at once). What other workers wrote since the round began shows at the next round: a sampling
or a pruning check sees the study as it was at most one round ago, as it would with a slower
database. A study's id, name and directions never change and are read once.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["RoundCache"]


STALE_READS = 3
"""Trials written to since the round's read that are read again one by one; with more, the
unfinished trials are read again at once."""
_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


class RoundCache(BaseStorage):
    """``storage``, with the trials of study ``study_id`` read once per round.

    One instance serves one thread; other studies' reads go straight to ``storage``.
    """

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self.storage = storage
        self.study_id = study_id
        self._trials: dict[int, FrozenTrial] = {}  # by number; finished ones kept for good
        self._read = False  # whether this round's read was made
        self._stale: set[int] = set()  # ids of trials written to since they were read
        self._numbers: dict[int, int] = {}  # trial id -> number (fixed for a trial's life)
        self._ids: dict[int, int] = {}  # trial number -> id
        self._study_ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._directions: dict[int, list[StudyDirection]] = {}

    def new_round(self) -> None:
        """Read the study again at its next read."""
        self._read = False
        self._stale.clear()

    def _round(self) -> dict[int, FrozenTrial]:
        if not self._read or len(self._stale) > STALE_READS:
            self._refresh()
        for trial_id in self._stale:
            self._store(self.storage.get_trial(trial_id))
        self._stale.clear()
        return self._trials

    def _refresh(self) -> None:
        """Read what may have changed since the last round."""
        self._stale.clear()
        if not self._trials:
            for trial in self.storage.get_all_trials(self.study_id, deepcopy=False):
                self._store(trial)
            self._read = True
            return
        unfinished = self.storage.get_all_trials(self.study_id, deepcopy=False, states=_UNFINISHED)
        seen = {trial.number for trial in unfinished}
        for trial in unfinished:
            self._store(trial)
        finished = [
            n for n, t in self._trials.items() if not t.state.is_finished() and n not in seen
        ]
        new = [n for n in range(max(self._trials) + 1) if n not in self._trials]
        for number in finished + new:
            self._store(self.storage.get_trial(self._id_of(number)))
        self._read = True

    def _store(self, trial: FrozenTrial) -> None:
        self._trials[trial.number] = trial

    def _id_of(self, number: int) -> int:
        if number not in self._ids:
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
            self._ids[number], self._numbers[trial_id] = trial_id, number
        return self._ids[number]

    def _written(self, trial_id: int) -> None:
        self._stale.add(trial_id)

    # Reads of the study's trials: from the round's read.

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if study_id != self.study_id:
            return self.storage.get_all_trials(study_id, deepcopy, states)
        trials = [
            trial
            for _, trial in sorted(self._round().items())
            if states is None or trial.state in states
        ]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        number = self.get_trial_number_from_id(trial_id)
        trials = self._round()
        if number not in trials:  # created by another worker since the round's read
            self._store(self.storage.get_trial(trial_id))
        return copy.deepcopy(trials[number])

    def get_trial_number_from_id(self, trial_id: int) -> int:
        if trial_id not in self._numbers:
            number = self.storage.get_trial_number_from_id(trial_id)
            self._numbers[trial_id], self._ids[number] = number, trial_id
        return self._numbers[trial_id]

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        if study_id != self.study_id:
            return self.storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        return self._id_of(trial_number)

    # What never changes: read once.

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name not in self._study_ids:
            self._study_ids[study_name] = self.storage.get_study_id_from_name(study_name)
        return self._study_ids[study_name]

    def get_study_name_from_id(self, study_id: int) -> str:
        if study_id not in self._names:
            self._names[study_id] = self.storage.get_study_name_from_id(study_id)
        return self._names[study_id]

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        if study_id not in self._directions:
            self._directions[study_id] = self.storage.get_study_directions(study_id)
        return list(self._directions[study_id])

    # Trial writes: to the storage; the trial is read again at its next read.

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = self.storage.create_new_trial(study_id, template_trial)
        if study_id == self.study_id:
            self._written(trial_id)
        return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            return self.storage.set_trial_state_values(trial_id, state, values)
        finally:  # taken or not (another worker took a queued trial first): read it again
            self._written(trial_id)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self.storage.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self._written(trial_id)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self.storage.set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._written(trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(trial_id, key, value)
        self._written(trial_id)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.storage.set_trial_system_attr(trial_id, key, value)
        self._written(trial_id)

    # The study's own record: straight to the storage.

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self.storage.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.storage.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.storage.set_study_system_attr(study_id, key, value)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.storage.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[Any]:  # Optuna's FrozenStudy, a name it does not export
        return self.storage.get_all_studies()
