"""A running trial's heartbeat, kept as a trial system attribute, and finding dead workers' trials.

Optuna's own heartbeat lives in a table of its RDB storage, so it does not exist on the journal
storage or through the gRPC storage proxy. Here a worker writes the time of each beat into the
trial's system attribute :data:`HEARTBEAT_ATTR` with ``BaseStorage.set_trial_system_attr``: one
code path on SQLite, PostgreSQL, the journal and the gRPC proxy. A RUNNING trial whose last beat
(or, before its first, its start) is more than a grace period old is *stale*: its worker died.

Beats carry the beating host's clock, and any worker's stale check compares them with its own:
hosts' clocks must agree to well within the grace period (NTP does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

__all__ = ["HEARTBEAT_ATTR", "Heartbeat", "claim_stale_trials", "last_beat"]

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "heartbeat"
"""Trial system attribute: the Unix time of the trial's last heartbeat."""
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
"""Waits between attempts at a beat that failed with a storage error; the last repeats."""


def last_beat(trial: FrozenTrial) -> float:
    """The Unix time of ``trial``'s last beat, else of its start (0.0 if it has neither)."""
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    if beat is not None:
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start else 0.0


class Heartbeat:
    """Beats for one trial at a time, every ``interval`` seconds, from one thread.

    The thread lives as long as the worker: starting one per trial would cost a trial a few
    milliseconds. A beat that fails with a storage error (a dropped connection, a locked SQLite
    file) is logged and tried again after a short wait: one error never stops the beats. A beat
    that finds the trial finished (another worker failed it as stale while this one stalled)
    stops them and calls ``on_lost``, so that the worker stops training a trial nobody waits
    for.
    """

    def __init__(
        self,
        storage: BaseStorage,
        interval: float,
        *,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"Invalid heartbeat interval: must be > 0, got {interval}.")
        self.storage = storage
        self.interval = interval
        self.on_lost = on_lost
        self._changed = threading.Condition()  # held while a beat is written, too
        self._trial: int | None = None
        self._due = 0.0
        self._failures = 0
        self._thread: threading.Thread | None = None

    @contextmanager
    def beating(self, trial_id: int) -> Iterator[None]:
        """Beat for ``trial_id`` every interval while the block runs; none once it has ended.

        The first beat comes an interval after the start: until then the trial's start time
        stands for it (:func:`last_beat`), and a short trial writes no beat at all. On SQLite a
        second writer at the trial's start would make both wait for each other.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()
        with self._changed:
            self._trial, self._due, self._failures = trial_id, time.monotonic() + self.interval, 0
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:  # after a beat being written: none comes once it has ended
                self._trial = None
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._trial is None or time.monotonic() < self._due:
                    timeout = None if self._trial is None else self._due - time.monotonic()
                    self._changed.wait(timeout)
                self._beat(self._trial)

    def _beat(self, trial_id: int) -> None:
        try:
            self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            logger.warning("Trial %d is no longer running: its worker stops it.", trial_id)
            self._trial = None
            self.on_lost()
            return
        except Exception as exc:  # a storage error: the next beat may well succeed
            self._failures += 1
            wait = RETRY_DELAYS_S[min(self._failures, len(RETRY_DELAYS_S)) - 1]
            logger.warning(
                "Heartbeat of trial %d failed (%s: %s); trying again in %.1f s.",
                trial_id,
                type(exc).__name__,
                " ".join(str(exc).split())[:200],
                wait,
            )
            self._due = time.monotonic() + wait
            return
        self._failures = 0
        self._due = time.monotonic() + self.interval


def claim_stale_trials(
    study: optuna.Study, storage: BaseStorage, grace_period: float
) -> list[FrozenTrial]:
    """Fail the study's stale RUNNING trials; return those that this call failed.

    Each is failed with ``set_trial_state_values``, which checks that the trial is still running
    in the same write (a row lock on RDB storages, the log's order on the journal): of several
    workers failing one trial, exactly one gets it back, and only that one queues it again.
    """
    now = time.time()
    study_id = storage.get_study_id_from_name(study.study_name)
    claimed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - last_beat(trial) <= grace_period:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        claimed.append(storage.get_trial(trial_id))
    return claimed
