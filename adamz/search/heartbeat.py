"""A running trial's heartbeat, written so that it does not slow the trial down.

Optuna's RDB storages detect a dead worker by its trial's heartbeat: a RUNNING trial whose last
beat is older than the grace period is failed by ``fail_stale_trials``, and the storage's
``RetryHeartbeatStaleTrialCallback`` queues it again. Optuna's own ``study.optimize`` starts a
thread per trial that writes the first beat at once, while the trial itself writes its
parameters and attributes. On SQLite the two writers take turns on one lock, and each turn
waits for Python's GIL switch interval: about 10 ms per trial, measured, or 10 % of a
one-epoch digits trial. :class:`Heartbeat` writes the first beat in line, before the trial
starts, and leaves only the later beats (one per interval) to a thread. The first beat also
carries the trial's start record (who runs it) and admits the trial against the study's budget
(:class:`~adamz.search.budget.Budget`), in the same transaction on SQLite and PostgreSQL: on
PostgreSQL each commit is a few milliseconds. :func:`fail_unbeaten_trials` finds the trials
whose worker died before their first beat, which Optuna's stale check cannot see.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy.dialects import postgresql, sqlite

from adamz.search.budget import Budget, SurplusTrialError
from adamz.search.errors import error_message

__all__ = ["Heartbeat", "fail_unbeaten_trials"]


class Heartbeat:
    """Beats for one trial at a time on ``storage``, every ``storage``'s heartbeat interval.

    On a storage without heartbeats (Optuna's journal storage, or an RDB storage opened without
    an interval) :meth:`beating` only writes the attributes it is given.
    """

    def __init__(self, storage: BaseStorage) -> None:
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self._storage = storage
        self.interval: float | None = interval

    @contextmanager
    def beating(
        self,
        trial_id: int,
        user_attrs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
    ) -> Iterator[bool]:
        """Record ``user_attrs`` and a beat for ``trial_id`` now, then a beat every interval.

        The first beat is written before the block runs: a trial never runs without one, so a
        worker killed at any point inside the block leaves a trial that goes stale. With a
        ``budget``, the first beat admits the trial (:class:`~adamz.search.budget.Budget`).

        Yields:
            whether ``budget`` was checked; it is not on a storage without heartbeats or where
            the first beat cannot be one transaction, and the caller checks it another way.

        Raises:
            SurplusTrialError: ``budget`` has no room for the trial. Its ``user_attrs`` are
                written with ``surplus`` and ``error``, and no beat, and it is failed, in one
                transaction; the block does not run.
        """
        if self.interval is None:
            self._set_user_attrs(trial_id, user_attrs or {})
            yield False
            return
        checked = self._first_beat(trial_id, user_attrs or {}, budget)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._beat,
            args=(trial_id, self.interval, stop),
            name=f"heartbeat-{trial_id}",
            daemon=True,
        )
        thread.start()
        try:
            yield checked
        finally:
            stop.set()
            thread.join()

    def _beat(self, trial_id: int, interval: float, stop: threading.Event) -> None:
        while not stop.wait(interval):
            self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    def _set_user_attrs(self, trial_id: int, user_attrs: Mapping[str, Any]) -> None:
        for key, value in user_attrs.items():  # Optuna's writes: one transaction each
            self._storage.set_trial_user_attr(trial_id, key, value)

    def _first_beat(
        self, trial_id: int, user_attrs: Mapping[str, Any], budget: Budget | None
    ) -> bool:
        """The first beat and ``user_attrs``, in one transaction on SQLite and PostgreSQL, if
        ``budget`` admits the trial; whether ``budget`` was checked (see :meth:`beating`).

        Optuna writes each attribute and each beat in a transaction of its own, and reads the
        trial before each write to check that it is still running. A trial's first beat comes
        right after it was asked for: no other worker can have finished it (without a beat it
        cannot go stale), so two upserts and one commit do the same.
        """
        # A study opened on an RDBStorage holds it wrapped in Optuna's caching layer, which
        # passes attribute and heartbeat writes straight through.
        rdb = getattr(self._storage, "_backend", self._storage)
        if not isinstance(rdb, RDBStorage) or rdb.engine.name not in _UPSERTS:
            # Another database, or a journal storage: Optuna's own writes.
            self._set_user_attrs(trial_id, user_attrs)
            self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            return False
        insert = _UPSERTS[rdb.engine.name]
        attrs, beats = models.TrialUserAttributeModel, models.TrialHeartbeatModel
        refusal: SurplusTrialError | None = None
        with _create_scoped_session(rdb.scoped_session, True) as session:
            if budget is not None and not budget.admits(session, trial_id):
                refusal = SurplusTrialError(budget.refusal)
                user_attrs = {**user_attrs, "surplus": True, "error": error_message(refusal)}
                # Failed here, not later by its worker: a trial left RUNNING without a heartbeat
                # (its worker killed in between) would never go stale, and would hold up every
                # worker waiting for the running trials to finish.
                trials = models.TrialModel
                session.execute(
                    sqlalchemy.update(trials)
                    .where(trials.trial_id == trial_id, trials.state == TrialState.RUNNING)
                    .values(
                        state=TrialState.FAIL,
                        # The column Optuna keeps in naive UTC (its model converts on access).
                        _datetime_complete_utc=datetime.now(UTC).replace(tzinfo=None),
                    )
                )
            if user_attrs:
                rows = insert(attrs).values(
                    [
                        {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                        for key, value in user_attrs.items()
                    ]
                )
                session.execute(
                    rows.on_conflict_do_update(  # a retried trial inherits its origin's attrs
                        index_elements=[attrs.trial_id, attrs.key],
                        set_={"value_json": rows.excluded.value_json},
                    )
                )
            if refusal is None:
                beat = insert(beats).values(trial_id=trial_id, heartbeat=sqlalchemy.func.now())
                session.execute(
                    beat.on_conflict_do_update(
                        index_elements=[beats.trial_id], set_={"heartbeat": sqlalchemy.func.now()}
                    )
                )
        if refusal is not None:
            raise refusal  # once the refusal is committed
        return budget is not None


def fail_unbeaten_trials(study: optuna.Study) -> list[int]:
    """Fail, and queue again, the running trials whose worker died before their first beat.

    Optuna's stale check (``fail_stale_trials``) passes over a running trial without a
    heartbeat: in ``study.optimize`` a thread writes the first beat as the trial starts. A
    worker killed between ``study.ask()`` and its first beat leaves such a trial, RUNNING for
    good, and workers waiting for the running trials to finish would wait for it forever. A
    trial without a beat a grace period after it started is that trial: a live worker writes
    its first beat as soon as ``study.ask()`` returns, once the sampler has sampled (a GP
    sampler's fit on a long study can take seconds: keep the grace period well above that).
    Start times come from the workers' clocks, which only need to agree to well within the
    grace period.

    Returns:
        the ids of the trials this call failed; each is queued again by the storage's
        stale-trial callback. None on a storage without heartbeats.
    """
    rdb = getattr(study._storage, "_backend", study._storage)
    if not isinstance(rdb, RDBStorage) or rdb.heartbeat_interval is None:
        return []
    grace_period = rdb.grace_period or 2 * rdb.heartbeat_interval  # Optuna's default
    started_before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=grace_period)
    trials, beats = models.TrialModel, models.TrialHeartbeatModel
    with rdb.engine.connect() as connection:
        unbeaten = connection.scalars(
            sqlalchemy.select(trials.trial_id).where(
                trials.study_id == study._study_id,
                trials.state == TrialState.RUNNING,
                trials._datetime_start_utc < started_before,  # naive UTC, as Optuna stores it
                ~sqlalchemy.exists().where(beats.trial_id == trials.trial_id),
            )
        ).all()
    failed = []
    callback = rdb.get_heartbeat_stale_trial_callback()
    for trial_id in unbeaten:
        try:  # checked and written under the trial's row lock: one worker fails it
            rdb.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        failed.append(trial_id)
        if callback is not None:
            callback(study, rdb.get_trial(trial_id))
    return failed


_UPSERTS: dict[str, Callable[[Any], Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}
"""SQLAlchemy's ``INSERT ... ON CONFLICT DO UPDATE``, for the databases that have it."""
