"""Riding out a storage outage: a worker's storage calls wait for the database to come back.

A database restart (a failover, an upgrade, a managed database's maintenance window), a proxy
that restarts, or a SQLite file held locked by another process make every storage call fail
for a while. :class:`PatientStorage` retries each call that failed because the storage could
not be reached, with capped exponential backoff and jitter, for up to ``patience`` seconds
from the first failure of the outage; past it, the call raises :class:`StorageUnreachable`,
which a worker turns into one line and an exit code of its own
(:data:`~adamz.search.worker.UNREACHABLE_CODE`). Any other error (an integrity error, a
finished trial) is raised at once, as before: only the storage being unreachable is waited
for (:func:`is_unreachable`).

One :class:`Outage` per worker tracks whether the storage is reachable, for every thread
(the trial loop, the heartbeat): it logs once when an outage begins and once when it ends,
and counts outages (a stale-trial check must not judge heartbeats that nobody could write).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy.exc
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

__all__ = [
    "STORAGE_PATIENCE_S",
    "Outage",
    "PatientStorage",
    "StorageUnreachable",
    "impatient",
    "is_unreachable",
    "patiently",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

STORAGE_PATIENCE_S = 300.0
"""Seconds a worker waits for an unreachable storage before it gives up (``--storage-patience``)."""
BACKOFF_FIRST_S = 0.2
BACKOFF_CAP_S = 5.0
"""The longest wait between two attempts: a storage that is back is seen within it."""
STOP_CHECK_S = 0.1
"""How often a wait between two attempts looks whether it should give up (a stop)."""

# Words of the errors a database driver raises when the server is down or going away, or a
# SQLite file is locked; anything else (a constraint, a bad value) is the caller's fault.
_UNREACHABLE_WORDS = (
    "could not connect",
    "connection refused",
    "connection reset",
    "connection timed out",
    "server closed the connection",
    "terminating connection",
    "the database system is",  # ... shutting down, starting up, in recovery mode
    "connection is closed",
    "connection already closed",
    "consuming input failed",
    "ssl syscall",
    "no connection to the server",
    "database is locked",
    "unable to open database file",
    "broken pipe",
    "storage unreachable",  # the proxy's own word for its database being down (StorageUnreachable)
)


class StorageUnreachable(RuntimeError):
    """The storage could not be reached for longer than the worker's patience
    (``past_patience``), or a call gave up sooner (a stop, an :func:`impatient` block)."""

    def __init__(self, url: str, seconds: float, *, past_patience: bool = True) -> None:
        super().__init__(f"storage unreachable for {seconds:.0f} s at {url}")
        self.past_patience = past_patience


_impatience = threading.local()


@contextmanager
def impatient() -> Iterator[None]:
    """A block whose :class:`PatientStorage` calls (in this thread) raise
    :class:`StorageUnreachable` at their first unreachable attempt: a round's pruning checks
    wait for a later round rather than holding up the training."""
    previous = getattr(_impatience, "on", False)
    _impatience.on = True
    try:
        yield
    finally:
        _impatience.on = previous


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the storage cannot be
    reached, rather than that the call was wrong: a refused, reset or closed connection, a
    server shutting down or starting up, a locked SQLite file, a gRPC proxy that is
    unavailable or could not reach its database."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return _says_unreachable(str(current))
        if _grpc_unavailable(current):
            return True
        if isinstance(
            current, StorageInternalError | ConnectionError | OSError
        ) and _says_unreachable(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def _says_unreachable(message: str) -> bool:
    return any(words in message.lower() for words in _UNREACHABLE_WORDS)


def _grpc_unavailable(exc: BaseException) -> bool:
    """A gRPC error saying the proxy is unavailable, or that it failed to reach its database
    (the proxy reports its storage's errors with their message)."""
    code = getattr(exc, "code", None)
    if not callable(code) or type(exc).__module__.split(".")[0] != "grpc":
        return False
    name = getattr(code(), "name", "")
    details = getattr(exc, "details", lambda: "")() or ""
    return name in ("UNAVAILABLE", "DEADLINE_EXCEEDED") or (
        name in ("INTERNAL", "UNKNOWN") and _says_unreachable(details)
    )


class Outage:
    """Whether one worker's storage is reachable, shared by its threads.

    Args:
        url: the storage's URL as the worker's messages show it (no password).
        patience: seconds of an outage after which calls give up.
    """

    def __init__(self, url: str, patience: float = STORAGE_PATIENCE_S) -> None:
        if not patience > 0:
            raise ValueError(f"Invalid storage patience: must be > 0 seconds, got {patience}.")
        self.url = url
        self.patience = patience
        self.count = 0
        """Outages seen so far (one that is on counts)."""
        self._since: float | None = None  # monotonic start of the outage that is on
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def reached(self) -> None:
        """A call reached the storage: an outage that was on is over."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            seconds = time.monotonic() - self._since
            self._since = None
        logger.warning("The storage at %s is back after %.0f s.", self.url, seconds)

    def failed(self, exc: BaseException) -> float:
        """A call could not reach the storage; seconds the outage has lasted."""
        now = time.monotonic()
        with self._lock:
            began = self._since is None
            if began:
                self._since = now
                self.count += 1
            since = self._since
            assert since is not None
        if began:
            logger.warning(
                "The storage at %s is unreachable (%s); the worker waits up to %.0f s for it.",
                self.url,
                " ".join(str(exc).split())[:160],
                self.patience,
            )
        return now - since


def patiently(
    call: Callable[[], _T], outage: Outage, give_up: Callable[[], bool] = lambda: False
) -> _T:
    """``call()``, retried while it fails because the storage is unreachable, with capped
    exponential backoff and jitter, up to ``outage``'s patience (or until ``give_up()``).

    Raises:
        StorageUnreachable: the outage outlasted the patience, or ``give_up()`` said so.
    """
    attempt = 0
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            seconds = outage.failed(exc)
            if seconds >= outage.patience:  # the message states the patience the user set
                raise StorageUnreachable(outage.url, outage.patience) from exc
            if give_up():
                raise StorageUnreachable(outage.url, seconds, past_patience=False) from exc
            delay = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2**attempt)
            _pause(delay * random.uniform(0.5, 1.0), give_up)  # jitter: workers spread out
            if give_up():  # a stop asked for while waiting: no attempt more
                seconds = outage.failed(exc)
                raise StorageUnreachable(outage.url, seconds, past_patience=False) from exc
            attempt += 1
            continue
        outage.reached()
        return result


def _pause(seconds: float, give_up: Callable[[], bool]) -> None:
    """Sleep ``seconds``, or until ``give_up()``: a worker or launcher asked to stop while it
    waits out an outage stops within :data:`STOP_CHECK_S`, not at the end of the backoff."""
    end = time.monotonic() + seconds
    while not give_up() and (left := end - time.monotonic()) > 0:
        time.sleep(min(STOP_CHECK_S, left))


def _patient(name: str) -> Callable[..., Any]:
    """``BaseStorage.name``, each call retried while the storage is unreachable."""

    def method(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(getattr(self.storage, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


class PatientStorage(BaseStorage):
    """``storage``, each call retried while the storage is unreachable, up to the outage's
    patience (:class:`Outage`); calls in an :func:`impatient` block fail at once instead.

    Args:
        storage: the storage every call goes to.
        outage: the worker's outage state.
        stopping: when it returns ``True`` (the worker was asked to stop), an outage is
            waited for no longer.
    """

    def __init__(
        self, storage: BaseStorage, outage: Outage, stopping: Callable[[], bool] = lambda: False
    ) -> None:
        self.storage = storage
        self.outage = outage
        self.stopping = stopping

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return patiently(
            lambda: method(*args, **kwargs),
            self.outage,
            give_up=lambda: getattr(_impatience, "on", False) or self.stopping(),
        )

    # Each is BaseStorage's method of that name, retried as it is: a retried write whose first
    # attempt committed before the connection dropped is made twice, which changes nothing for
    # a parameter, a report or an attribute (a state change is checked: below).
    create_new_study = _patient("create_new_study")
    delete_study = _patient("delete_study")
    set_study_user_attr = _patient("set_study_user_attr")
    set_study_system_attr = _patient("set_study_system_attr")
    get_study_id_from_name = _patient("get_study_id_from_name")
    get_study_name_from_id = _patient("get_study_name_from_id")
    get_study_directions = _patient("get_study_directions")
    get_study_user_attrs = _patient("get_study_user_attrs")
    get_study_system_attrs = _patient("get_study_system_attrs")
    get_all_studies = _patient("get_all_studies")
    create_new_trial = _patient("create_new_trial")
    set_trial_param = _patient("set_trial_param")
    get_trial_id_from_study_id_trial_number = _patient("get_trial_id_from_study_id_trial_number")
    get_trial_number_from_id = _patient("get_trial_number_from_id")
    set_trial_intermediate_value = _patient("set_trial_intermediate_value")
    set_trial_user_attr = _patient("set_trial_user_attr")
    set_trial_system_attr = _patient("set_trial_system_attr")
    get_trial = _patient("get_trial")
    get_all_trials = _patient("get_all_trials")

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Checked on retry: a state change found already made counts as made."""
        attempts = [0]

        def set_once() -> bool:
            attempts[0] += 1
            try:
                return self.storage.set_trial_state_values(trial_id, state, values)
            except UpdateFinishedTrialError:
                # A retry finding the trial in the state it was to be set to: the attempt
                # whose answer was lost made it.
                if attempts[0] > 1 and self.storage.get_trial(trial_id).state == state:
                    return True
                raise

        return bool(self._call(set_once))
