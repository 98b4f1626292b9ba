"""A study's budget of finished trials: counting them, and admitting a trial only if it has room.

Workers check the budget before they ask for a trial, but several can ask at the same moment as
the budget's last place frees; each trial is then admitted or refused as it starts. On SQLite
and PostgreSQL a worker admits its trial with :class:`Budget` in the transaction that writes
the trial's first heartbeat, under the study's row lock: admissions are serialised by the
database, and the budget is never overrun, whatever the hosts' clocks say. Elsewhere (Optuna's
journal storage, ``study.optimize``) :meth:`~adamz.search.objective.TrialObjective.run` checks
by the trials' start times instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy.orm import Session

__all__ = ["FINISHED", "NO_QUEUED_RUN", "Budget", "SurplusTrialError", "count_states"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""States that count against a study's budget."""
NO_QUEUED_RUN = "no queued run is left to take"
"""Why a replicate study refuses a trial it sampled: two workers asked at once for the last
queued run, and this one found none."""


class SurplusTrialError(RuntimeError):
    """A trial started after the budget was already taken by trials before it; it is not run."""


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    """Number of the study's trials in each state.

    A worker asks this before every trial. On an RDB storage it is one ``GROUP BY`` query on
    Optuna's trials table; Optuna's own ``get_n_trials`` loads every trial with its parameters
    and attributes, which costs tens of milliseconds a call once a study has a few hundred.
    """
    counts = dict.fromkeys(TrialState, 0)
    # A study opened on an RDBStorage holds it wrapped in Optuna's caching layer.
    storage = getattr(study._storage, "_backend", study._storage)
    if isinstance(storage, RDBStorage):
        with storage.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.select(models.TrialModel.state, sqlalchemy.func.count())
                .where(models.TrialModel.study_id == study._study_id)
                .group_by(models.TrialModel.state)
            )
            for state, count in rows:
                counts[TrialState[state.name] if hasattr(state, "name") else TrialState(state)] = (
                    count
                )
        return counts
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


@dataclass(frozen=True)
class Budget:
    """``trials`` finished trials for the study ``study_id``; admits a trial if it has room.

    A trial is *admitted* once its first heartbeat is written: the heartbeat row marks it. A
    trial has room if the study's finished trials and its admitted running trials, this one
    aside, number fewer than ``trials``. A trial that finishes moves from one count to the
    other; one that fails (an error, or stale after its worker died) leaves a place free.

    ``closed`` says why a trial has no room whatever the counts: a replicate study has places
    for its queued runs only, and a trial it sampled (its worker found no queued run left) has
    none.
    """

    study_id: int
    trials: int
    closed: str | None = None

    @property
    def refusal(self) -> str:
        """Why a trial without room is refused."""
        return self.closed or f"the budget of {self.trials} trials is already taken"

    def admits(self, session: Session, trial_id: int) -> bool:
        """Whether ``trial_id`` has room; the caller writes its heartbeat in ``session`` if so.

        Takes the study's row lock first, as Optuna does to number a new trial (on SQLite the
        transaction already holds the database's write lock: ``open_storage`` begins every
        transaction with ``BEGIN IMMEDIATE``). Two admissions therefore never overlap, and the
        second sees the first's heartbeat once it is committed.
        """
        if self.closed is not None:
            return False
        models.StudyModel.find_or_raise_by_id(self.study_id, session, for_update=True)
        trials, beats = models.TrialModel, models.TrialHeartbeatModel
        admitted = sqlalchemy.and_(
            trials.state == TrialState.RUNNING,
            sqlalchemy.exists().where(beats.trial_id == trials.trial_id),
        )
        taken = session.scalar(
            sqlalchemy.select(sqlalchemy.func.count())
            .select_from(trials)
            .where(
                trials.study_id == self.study_id,
                trials.trial_id != trial_id,
                sqlalchemy.or_(trials.state.in_(FINISHED), admitted),
            )
        )
        return int(taken or 0) < self.trials
