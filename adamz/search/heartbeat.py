"""Running trials' heartbeats, kept as trial system attributes, and finding dead workers' trials.

Optuna's own heartbeat lives in a table of its RDB storage, so it does not exist on the journal
storage or through the gRPC storage proxy. Here a worker writes a beat into each of its running
trials' system attribute :data:`HEARTBEAT_ATTR` with ``BaseStorage.set_trial_system_attr``, one
code path on SQLite, PostgreSQL, the journal and the gRPC proxy, and records in a study system
attribute of its own when it last reached the storage (:func:`worker_contacts`; ``status``
shows them).

A beat's value is the beating host's clock, but no host compares it with its own clock: a trial
is *stale* when a watcher has seen its beat stay the same for longer than the grace period, on
the watcher's own monotonic clock (:class:`StaleWatch`). Hosts in different time zones or with
skewed clocks agree on that. A watcher whose own storage calls failed meanwhile (an outage, when
nobody could beat) starts watching again from the outage's end.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from adamz.search.outage import Outage, StorageUnreachable, is_unreachable

__all__ = ["HEARTBEAT_ATTR", "WORKER_ATTR_PREFIX", "Heartbeat", "StaleWatch", "worker_contacts"]

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "heartbeat"
"""Trial system attribute: the beating host's Unix time at the trial's last beat (a value that
changes at each beat; no other host reads it as a time)."""
WORKER_ATTR_PREFIX = "worker:"
"""Study system attributes ``worker:HOST:PID``: when that worker last reached the storage."""
RETRY_S = 1.0
"""Wait before a beat that failed with a storage error is tried again."""


def worker_contacts(system_attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The workers that have beaten for a study, by ``HOST:PID``: ``last_contact`` (Unix time
    on that worker's host), ``state`` (``running``, ``riding out an outage`` or ``exited``)."""
    return {
        key.removeprefix(WORKER_ATTR_PREFIX): value
        for key, value in system_attrs.items()
        if key.startswith(WORKER_ATTR_PREFIX) and isinstance(value, dict)
    }


class Heartbeat:
    """Beats for a worker's running trials, every ``interval`` seconds, from one thread.

    The thread lives as long as the worker: starting one per trial would cost a trial a few
    milliseconds. A beat that cannot reach the storage is tried again every :data:`RETRY_S`
    until it can (the worker's :class:`~adamz.search.outage.Outage` logs the outage once). A
    beat that finds its trial finished (another worker failed it as stale while this one
    stalled) stops beating for it and calls ``on_lost(trial_id)``, so that the worker stops
    training a trial nobody waits for.
    """

    def __init__(
        self,
        storage: BaseStorage,
        study_id: int,
        interval: float,
        outage: Outage,
        *,
        on_lost: Callable[[int], None] = lambda trial_id: None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"Invalid heartbeat interval: must be > 0, got {interval}.")
        self.storage = storage
        self.study_id = study_id
        self.interval = interval
        self.outage = outage
        self.on_lost = on_lost
        self._changed = threading.Condition()  # held while beats are written, too
        self._trials: set[int] = set()
        self._due = time.monotonic() + interval
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    @contextmanager
    def beating(self, trial_ids: Iterable[int]) -> Iterator[None]:
        """Beat for ``trial_ids`` every interval while the block runs; none once it has ended.

        The first beat comes an interval after the start: until then the trial's state stands
        for it (a watcher starts watching when it first sees the trial running). On SQLite a
        second writer at the trial's start would make both wait for each other.
        """
        ids = set(trial_ids)
        with self._changed:
            self._trials |= ids
        try:
            yield
        finally:
            with self._changed:  # after a beat being written: none comes once it has ended
                self._trials -= ids

    def stop(self, state: str = "exited") -> None:
        """Stop beating, and record this worker's last contact with ``state``."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join(timeout=10)  # its last beat's write first: one writer of the record
        try:
            self._contact(state)
        except Exception as exc:  # the worker is leaving: its record is only informative
            logger.debug("Last contact not recorded: %s", exc)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopped and time.monotonic() < self._due:
                    self._changed.wait(self._due - time.monotonic())
                if self._stopped:
                    return
                self._due = time.monotonic() + self._beat(sorted(self._trials))

    def _beat(self, trial_ids: list[int]) -> float:
        """One beat for each of ``trial_ids``; seconds until the next."""
        try:
            for trial_id in trial_ids:
                try:
                    self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                except UpdateFinishedTrialError:
                    logger.warning("Trial %d is no longer running: its worker stops it.", trial_id)
                    self._trials.discard(trial_id)
                    self.on_lost(trial_id)
            self._contact("riding out an outage" if self.outage.ongoing else "running")
        except Exception as exc:
            if not (isinstance(exc, StorageUnreachable) or is_unreachable(exc)):
                logger.warning(
                    "Heartbeat failed (%s: %s); trying again.",
                    type(exc).__name__,
                    " ".join(str(exc).split())[:200],
                )
            else:
                self.outage.failed(exc)
            return RETRY_S
        self.outage.reached()
        return self.interval

    def _contact(self, state: str) -> None:
        key = f"{WORKER_ATTR_PREFIX}{socket.gethostname()}:{os.getpid()}"
        self.storage.set_study_system_attr(
            self.study_id, key, {"last_contact": time.time(), "state": state}
        )


class StaleWatch:
    """Finds a study's stale RUNNING trials, on this worker's own clock (see the module docs):
    it notes, per running trial, its beat value and when it first saw that value."""

    def __init__(self, grace_period: float, outage: Outage) -> None:
        self.grace_period = grace_period
        self.outage = outage
        self._seen: dict[int, tuple[Any, float]] = {}  # trial number -> (beat, first seen)
        self._outages = outage.count

    def claim(self, study: optuna.Study, storage: BaseStorage) -> list[FrozenTrial]:
        """Fail the study's stale RUNNING trials; return those that this call failed.

        Each is failed with ``set_trial_state_values``, which checks that the trial is still
        running in the same write (a row lock on RDB storages, the log's order on the
        journal): of several workers failing one trial, exactly one gets it back, and only that
        one queues it again.
        """
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        study_id = storage.get_study_id_from_name(study.study_name)
        now = time.monotonic()
        if self.outage.count != self._outages or self.outage.ongoing:
            self._outages = self.outage.count
            self._seen.clear()
        seen: dict[int, tuple[Any, float]] = {}
        for trial in running:
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            before = self._seen.get(trial.number)
            first_seen = before[1] if before is not None and before[0] == beat else now
            seen[trial.number] = (beat, first_seen)
        self._seen = seen
        claimed = []
        for trial in running:
            if now - seen[trial.number][1] <= self.grace_period:
                continue
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            try:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue
            claimed.append(storage.get_trial(trial_id))
        return claimed
