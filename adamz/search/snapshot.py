"""A study storage that a population's K trials read once per round, not once per trial.

Optuna's caching layer keeps a study's finished trials and reads every unfinished one again on
each ``get_all_trials``. A population worker has K trials unfinished at once, and it asks for K
trials (each sampling reads the study) and checks K trials for pruning every epoch (each check
reads the study): K reads of K running trials per round, which at K = 32 cost more than the
training (``benchmarks/population.py``). :class:`SnapshotStorage` reads the study once per
round (:meth:`~SnapshotStorage.invalidate`, then the first read) and serves the round's reads
from that snapshot.

Writes go straight through to the storage, and into the snapshot too, so the population's own
trials read back what they wrote (their parameters for the constant liar, their intermediate
values for the pruner). What other workers wrote since the round began shows at the next round:
a pruning check or a sampling sees the study as it was at most one epoch ago.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["SnapshotStorage"]


class SnapshotStorage(BaseStorage):
    """``storage`` for writes; ``study``'s trials, read once per round, for reads.

    ``study`` is the live study over ``storage`` (its reads go through Optuna's cache of
    finished trials). One study per instance, used from one thread.
    """

    def __init__(self, study: optuna.Study, storage: BaseStorage) -> None:
        self._study = study
        self._storage = storage
        self._trials: dict[int, FrozenTrial] | None = None  # by number; None: read again
        self._numbers: dict[int, int] = {}  # trial id -> number (fixed for a trial's life)

    def invalidate(self) -> None:
        """Read the study again at the next read: a new round begins."""
        self._trials = None

    def _snapshot(self) -> dict[int, FrozenTrial]:
        if self._trials is None:
            # Finished trials are Optuna's cached objects, never written to here; unfinished
            # ones are copies, which this round's writes update.
            self._trials = {
                trial.number: trial if trial.state.is_finished() else copy.deepcopy(trial)
                for trial in self._study.get_trials(deepcopy=False)
            }
        return self._trials

    def _number(self, trial_id: int) -> int:
        if trial_id not in self._numbers:
            self._numbers[trial_id] = self._storage.get_trial_number_from_id(trial_id)
        return self._numbers[trial_id]

    def _mirrored(self, trial_id: int) -> FrozenTrial | None:
        """The snapshot's copy of an unfinished trial, to write into; ``None`` if none."""
        if self._trials is None:
            return None
        trial = self._trials.get(self._number(trial_id))
        return None if trial is None or trial.state.is_finished() else trial

    def _read_back(self, trial_id: int) -> None:
        trial = self._storage.get_trial(trial_id)
        self._numbers[trial_id] = trial.number
        if self._trials is not None:
            self._trials[trial.number] = trial

    # Reads: from the snapshot.

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        trials = [
            trial
            for _, trial in sorted(self._snapshot().items())
            if states is None or trial.state in states
        ]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial = self._snapshot().get(self._number(trial_id))
        if trial is None:  # created by another worker since the round began
            return self._storage.get_trial(trial_id)
        return copy.deepcopy(trial)

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._number(trial_id)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    # Trial writes: through to the storage, and into the snapshot.

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = self._storage.create_new_trial(study_id, template_trial)
        if self._trials is not None and template_trial is None:
            # A new trial as every storage creates one: RUNNING, started now, nothing set. Built
            # here from its number rather than read back whole (a read of every relation).
            number = self._number(trial_id)
            self._trials[number] = FrozenTrial(
                number=number,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=trial_id,
            )
        elif self._trials is not None:
            self._read_back(trial_id)
        return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        taken = self._storage.set_trial_state_values(trial_id, state, values)
        trial = self._mirrored(trial_id)
        if taken and trial is not None:  # as the storage sets them
            trial.state = state
            if values is not None:
                trial.values = list(values)
            if state == TrialState.RUNNING:
                trial.datetime_start = datetime.now()
            if state.is_finished():
                trial.datetime_complete = datetime.now()
        elif not taken and self._trials is not None:
            self._read_back(trial_id)  # a queued trial another worker took first: as it is now
        return taken

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        self._storage.set_trial_param(trial_id, param_name, param_value_internal, distribution)
        if (trial := self._mirrored(trial_id)) is not None:
            trial.params[param_name] = distribution.to_external_repr(param_value_internal)
            trial.distributions[param_name] = distribution

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._storage.set_trial_intermediate_value(trial_id, step, intermediate_value)
        if (trial := self._mirrored(trial_id)) is not None:
            trial.intermediate_values[step] = intermediate_value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._storage.set_trial_user_attr(trial_id, key, value)
        if (trial := self._mirrored(trial_id)) is not None:
            trial.user_attrs[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._storage.set_trial_system_attr(trial_id, key, value)
        if (trial := self._mirrored(trial_id)) is not None:
            trial.system_attrs[key] = value

    # Studies: straight to the storage.

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return self._storage.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._storage.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._storage.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._storage.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._storage.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._storage.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._storage.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._storage.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._storage.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[Any]:  # Optuna's FrozenStudy, a name it does not export
        return self._storage.get_all_studies()
