"""A worker's storage: every call patient through an outage, the study read once per round,
and the reports of running trials written behind, by a thread of their own.

A worker reads the study for every sampling, every pruning check (Hyperband builds a study
object, which reads the study's id and directions, per check) and every budget count, and
writes a report per trial per epoch: with K trials of a population running, K reads of every
trial and K writes per epoch, which at K = 32 cost more than the training
(``benchmarks/population.py``). :class:`WorkerStorage` is the one storage object of a worker
process, on top of the storage it opened:

- **Patient.** Every call to the storage rides out an outage
  (:class:`~adamz.search.outage.PatientStorage`).
- **Read once per round.** The study's trials are read once per round (:meth:`new_round`,
  then the first read), and the round's reads are served from that read. A finished trial
  never changes (a storage refuses to update one), so it is read once: a round reads the
  unfinished trials, then, one by one, those that finished since the last round and any new
  ones it has not seen (trial numbers run without gaps). What other workers wrote since the
  round began shows at the next round, as it would with a slower database. A study's id, name
  and directions never change and are read once.
- **Written behind.** A running trial's parameters, reports, attributes, and its end as
  COMPLETE or PRUNED are applied at once to what this worker reads, and queued for a writer
  thread that writes them in order while the training goes on: the pruner decides on exactly
  the values it would if every write waited, and the training does not wait for the database.
  What is queued when the writer gets to it is written in one transaction (up to a trial's
  end, which is written by itself; see ``_together``). Any other write (a new trial, a FAIL,
  a queued trial taken) is written at once, after the queued writes of its trial. Because the
  queue is written in order, a trial the storage shows finished has every report and attribute
  written before its end: a worker killed outright loses only writes of trials still RUNNING
  in the storage, which are found stale and resumed (``tests/search/test_kill.py``). A trial
  that another worker failed as stale meanwhile refuses the writer's next write; its writes
  are dropped and ``on_lost`` is told. A write the database refuses for its own reason (a
  value too long) fails that trial the same way; only a storage unreachable past the patience
  stops the writer, and the worker with it. :meth:`flush` waits for the queue; a worker
  flushes before it leaves.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import math
import queue
import threading
import weakref
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from functools import partialmethod
from typing import Any

import sqlalchemy
from optuna.distributions import distribution_to_json
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from adamz.search.outage import Outage, PatientStorage, StorageUnreachable

__all__ = ["WorkerStorage"]

logger = logging.getLogger(__name__)


STALE_READS = 3
"""Trials written to at once since the round's read that are read again one by one; with
more, the unfinished trials are read again at once."""
_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
_WRITTEN_BEHIND = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True, eq=False)  # identity: two equal writes are two writes
class _Write:
    """One queued write of a trial: the storage method and its arguments."""

    trial_id: int
    method: str
    args: tuple[Any, ...]

    def apply(self, trial: FrozenTrial) -> FrozenTrial:
        """``trial`` as it reads once the write is made: a copy, since a pruner holds the
        trials it read before its own write (SuccessiveHalving's rung values) and must not
        see that write in them."""
        trial = copy.copy(trial)
        if self.method == "set_trial_param":
            name, internal, distribution = self.args
            trial.params = {**trial.params, name: distribution.to_external_repr(internal)}
            trial.distributions = {**trial.distributions, name: distribution}
        elif self.method == "set_trial_intermediate_value":
            step, value = self.args
            trial.intermediate_values = {**trial.intermediate_values, step: value}
        elif self.method == "set_trial_user_attr":
            trial.user_attrs = {**trial.user_attrs, self.args[0]: self.args[1]}
        elif self.method == "set_trial_system_attr":
            trial.system_attrs = {**trial.system_attrs, self.args[0]: self.args[1]}
        else:  # set_trial_state_values
            trial.state, trial.values = self.args
            trial.datetime_complete = datetime.datetime.now()
        return trial


_TOGETHER = frozenset(
    {"set_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
     "set_trial_system_attr"}
)  # fmt: skip
"""The writes made together in one transaction; a trial's end is made alone (Optuna's own
write of it stamps the time and checks the state)."""


def _transactions(writes: list[_Write]) -> list[list[_Write]]:
    """``writes`` in order, cut into groups made in one transaction each (:data:`_TOGETHER`)."""
    groups: list[list[_Write]] = []
    for write in writes:
        alone = write.method not in _TOGETHER
        if alone or not groups or groups[-1][-1].method not in _TOGETHER:
            groups.append([])
        groups[-1].append(write)
    return groups


_SCHEMA = "v3.2.0.a"
"""The version of Optuna's RDB schema whose tables :func:`_together` writes rows of."""
_TABLES = ("trials", "trial_params", "trial_intermediate_values", "trial_user_attributes",
           "trial_system_attributes")  # fmt: skip
_tables_of: weakref.WeakKeyDictionary[sqlalchemy.Engine, Mapping[str, sqlalchemy.Table] | None]
_tables_of = weakref.WeakKeyDictionary()


def _tables(storage: BaseStorage) -> Mapping[str, sqlalchemy.Table] | None:
    """Optuna's trial tables in ``storage``'s database, read from it by name once per engine;
    ``None`` where ``storage`` is not an RDB storage, or its schema is not :data:`_SCHEMA`."""
    if not isinstance(storage, RDBStorage):
        return None
    if storage.engine not in _tables_of:
        tables = None
        if storage.get_current_version() == _SCHEMA:
            metadata = sqlalchemy.MetaData()
            metadata.reflect(storage.engine, only=_TABLES)
            tables = dict(metadata.tables)
        _tables_of[storage.engine] = tables
    return _tables_of[storage.engine]


def _stored(value: float) -> tuple[float | None, str]:
    """A report as Optuna's schema stores it: a value and its kind (a NaN or an infinity has
    no value), as its RDBStorage does."""
    if math.isnan(value):
        return None, "NAN"
    if math.isinf(value):
        return None, "INF_POS" if value > 0 else "INF_NEG"
    return value, "FINITE"


def _together(storage: BaseStorage, writes: list[_Write]) -> None:
    """``writes`` (none a trial's end) in one transaction, where ``storage`` is Optuna's
    RDBStorage; one by one elsewhere.

    Deliberately not Optuna's own path, which commits every write by itself after reading
    the trial (and, for a parameter, the study's first use of its name): at K = 32 on circles,
    some 25 writes a trial made so took a third of the worker's CPU time, which the writer
    thread shares with the training (``benchmarks/population.py``). Optuna's public storage
    API has no write of many values at once; here the trials' states are read once, and the
    writes go in as rows of its tables (:func:`_tables`), one statement per table. An
    attribute set again replaces its row; a report or parameter is never written twice. A
    finished trial among them, or a row already there, raises and rolls all of them back: the
    writer then makes them one by one, Optuna's way, which finds the write at fault.
    """
    tables = _tables(storage)
    if tables is None:
        for write in writes:
            getattr(storage, write.method)(write.trial_id, *write.args)
        return
    assert isinstance(storage, RDBStorage)  # as _tables found it
    params, reports = [], []
    attrs: dict[tuple[str, int, str], str] = {}  # the last value of each attribute written
    for write in writes:
        if write.method == "set_trial_param":
            name, internal, distribution = write.args
            params.append(
                {"trial_id": write.trial_id, "param_name": name, "param_value": internal,
                 "distribution_json": distribution_to_json(distribution)}
            )  # fmt: skip
        elif write.method == "set_trial_intermediate_value":
            step, value = write.args
            stored, kind = _stored(value)
            reports.append(
                {"trial_id": write.trial_id, "step": step, "intermediate_value": stored,
                 "intermediate_value_type": kind}
            )  # fmt: skip
        else:
            kind = write.method.replace("set_trial_", "trial_").replace("_attr", "_attributes")
            key, value = write.args
            attrs[kind, write.trial_id, key] = json.dumps(value)
    with storage.engine.begin() as connection:  # commits, or rolls back on a raise
        trials = tables["trials"]
        ids = {write.trial_id for write in writes}
        found = connection.execute(
            sqlalchemy.select(trials.c.trial_id, trials.c.state).where(trials.c.trial_id.in_(ids))
        )
        states = dict(found.all())
        for trial_id in ids:  # not check_trial_is_updatable: it reads the trial, in a session
            if TrialState[states[trial_id]].is_finished():  # that waits for this one's lock
                raise UpdateFinishedTrialError(f"trial {trial_id} has already finished")
        rows: dict[str, list[dict[str, Any]]] = {
            "trial_params": params, "trial_intermediate_values": reports,
            "trial_user_attributes": [], "trial_system_attributes": [],
        }  # fmt: skip
        for (name, trial_id, key), value_json in attrs.items():
            rows[name].append({"trial_id": trial_id, "key": key, "value_json": value_json})
        for name, table_rows in rows.items():
            if not table_rows:
                continue
            into = tables[name]
            if name.endswith("_attributes"):  # set again: replaces the row
                pairs = [(row["trial_id"], row["key"]) for row in table_rows]
                replaced = sqlalchemy.tuple_(into.c.trial_id, into.c.key).in_(pairs)
                connection.execute(sqlalchemy.delete(into).where(replaced))
            connection.execute(sqlalchemy.insert(into), table_rows)


class WorkerStorage(PatientStorage):
    """``storage`` as one worker process uses it: patient, read by round for study
    ``study_id``, its trials' reports written behind (see the module docs).

    Args:
        storage: the opened storage.
        outage: the worker's outage state (:class:`~adamz.search.outage.Outage`).
        study_id: the study whose trials are cached and written behind; other studies' calls
            go straight to the storage.
        stopping: when it returns ``True``, an outage is waited for no longer.
        on_lost: called with a trial's id when the storage refused a write because the trial
            was finished meanwhile (another worker failed it as stale).
    """

    def __init__(
        self,
        storage: BaseStorage,
        outage: Outage,
        study_id: int,
        stopping: Callable[[], bool] = lambda: False,
        on_lost: Callable[[int], None] = lambda trial_id: None,
    ) -> None:
        super().__init__(storage, outage, stopping)
        self.study_id = study_id
        self.on_lost = on_lost
        self._trials: dict[int, FrozenTrial] = {}  # by number; finished ones kept for good
        self._read = False  # whether this round's read was made
        self._stale: set[int] = set()  # ids of trials written to at once since they were read
        self._numbers: dict[int, int] = {}  # trial id -> number (fixed for a trial's life)
        self._ids: dict[int, int] = {}  # trial number -> id
        self._fixed: dict[tuple[str, Any], Any] = {}  # a study's id, name, directions
        # Written behind: the queue, the writes not made yet by trial, and the writer's error.
        self._lock = threading.Condition()
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._pending: dict[int, list[_Write]] = {}
        # Writes made, with the count of writes made when each was: a read that began before
        # one may miss it, so it is applied to that read's trial too (_store).
        self._made = 0
        self._written: dict[int, list[tuple[int, _Write]]] = {}
        self._error: BaseException | None = None
        self._lost: set[int] = set()  # ids of trials whose write was refused: read them again
        threading.Thread(target=self._write_behind, name="writer", daemon=True).start()

    # Written behind.

    def _write_behind(self) -> None:
        done = False
        while not done:
            writes = [self._queue.get()]  # what is queued: one transaction where it can
            while writes[-1] is not None and not self._queue.empty():
                writes.append(self._queue.get())
            done = writes[-1] is None
            with self._lock:
                wanted = [
                    write
                    for write in writes
                    if write is not None and write in self._pending.get(write.trial_id, ())
                ]
            for group in _transactions(wanted):
                if self._error is None:
                    self._make(group)

    def _make(self, writes: list[_Write]) -> None:
        """Make ``writes`` in one transaction, or one by one where that fails (one of them
        refused: only its trial's writes are dropped)."""
        if len(writes) > 1:
            try:
                self._call(_together, self.storage, writes)
            except StorageUnreachable as exc:  # past the patience: the worker gives up
                self._give_up(exc)
                return
            except Exception:  # rolled back: find which write it was, one by one
                pass
            else:
                self._made_all(writes)
                return
        for write in writes:
            with self._lock:  # not dropped since (another of its trial's writes refused)
                if write not in self._pending.get(write.trial_id, ()):
                    continue
            try:
                self._call(getattr(self.storage, write.method), write.trial_id, *write.args)
            except UpdateFinishedTrialError:  # failed as stale meanwhile: not ours to write
                self._drop(write.trial_id)
                continue
            except StorageUnreachable as exc:  # past the patience: the worker gives up
                self._give_up(exc)
                return
            except Exception as exc:  # this trial's write (a value the database refuses)
                logger.warning("Trial %d failed: %s", self._numbers.get(write.trial_id, -1), exc)
                with contextlib.suppress(Exception):
                    self._call(self.storage.set_trial_user_attr, write.trial_id, "error", str(exc))
                    self._call(self.storage.set_trial_state_values, write.trial_id, TrialState.FAIL)
                self._drop(write.trial_id)
                continue
            self._made_all([write])

    def _give_up(self, exc: StorageUnreachable) -> None:
        with self._lock:  # wakes a thread waiting for the queue (flush): it raises
            self._error = exc
            self._lock.notify_all()

    def _made_all(self, writes: list[_Write]) -> None:
        with self._lock:
            for write in writes:
                pending = self._pending.get(write.trial_id, [])
                if write in pending:
                    pending.remove(write)
                    self._made += 1
                    self._written.setdefault(write.trial_id, []).append((self._made, write))
                if not pending:
                    self._pending.pop(write.trial_id, None)
            self._lock.notify_all()

    def _drop(self, trial_id: int) -> None:
        """Drop ``trial_id``'s queued writes (the storage refused one): it is read again, and
        the worker told (it stops the trial's training, and does not count it as told)."""
        with self._lock:
            self._pending.pop(trial_id, None)
            self._written.pop(trial_id, None)
            self._lock.notify_all()
        self._lost.add(trial_id)
        self.on_lost(trial_id)

    def _write(self, method: str, trial_id: int, *args: Any, behind: bool = True) -> Any:
        """Queue the write if ``behind`` and ``trial_id`` is a running trial of the study as
        this worker reads it; else make it at once, after the trial's queued writes."""
        self._raise()
        number = self._numbers.get(trial_id)
        trial = self._round().get(number) if behind and number is not None else None
        if trial is not None and trial.state == TrialState.RUNNING:
            write = _Write(trial_id, method, args)
            with self._lock:
                self._pending.setdefault(trial_id, []).append(write)
            self._trials[trial.number] = write.apply(trial)
            self._queue.put(write)
            return True
        self.flush(trial_id)
        try:
            return getattr(PatientStorage, method)(self, trial_id, *args)
        finally:  # made or not (another worker took a queued trial first): read it again
            self._stale.add(trial_id)

    def flush(self, trial_id: int | None = None) -> None:
        """Wait until the queued writes of ``trial_id`` (of every trial: ``None``) are made.

        Raises:
            StorageUnreachable: the writer gave up on the storage.
        """
        with self._lock:
            self._lock.wait_for(
                lambda: (
                    self._error is not None
                    or not (self._pending if trial_id is None else self._pending.get(trial_id))
                )
            )
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """End the writer thread once the queued writes are made (or given up)."""
        self._queue.put(None)

    # Reads of the study's trials: from the round's read.

    def new_round(self) -> None:
        """Read the study again at its next read."""
        self._read = False

    def _round(self) -> dict[int, FrozenTrial]:
        self._raise()
        if not self._read or len(self._stale) > STALE_READS:
            self._refresh()
        while self._lost:
            self._stale.add(self._lost.pop())
        for trial_id in self._stale:
            since = self._made
            self._store(super().get_trial(trial_id), since)
        self._stale.clear()
        return self._trials

    def _refresh(self) -> None:
        """Read what may have changed since the last round."""
        self._stale.clear()
        since = self._made
        if not self._trials:
            for trial in super().get_all_trials(self.study_id, False, None):
                self._store(trial, since)
            self._read = True
            return
        with self._lock:  # a finished trial's writes, all made, are never read again
            for trial_id in [i for i in self._written if i not in self._pending]:
                if self._trials[self._numbers[trial_id]].state.is_finished():
                    del self._written[trial_id]
        unfinished = super().get_all_trials(self.study_id, False, _UNFINISHED)
        seen = {trial.number for trial in unfinished}
        for trial in unfinished:
            self._store(trial, since)
        finished = [
            n for n, t in self._trials.items() if not t.state.is_finished() and n not in seen
        ]
        new = [n for n in range(max(self._trials) + 1) if n not in self._trials]
        for number in finished + new:
            since = self._made
            self._store(super().get_trial(self._id_of(number)), since)
        self._read = True

    def _store(self, trial: FrozenTrial, since: int) -> None:
        """Keep ``trial`` as read when ``since`` writes were made, with this worker's writes
        applied that the read may have missed: those not made yet, or made since."""
        # Optuna keeps a trial's storage id private, though every storage reads it: read here
        # too, it saves a query per trial.
        trial_id = trial._trial_id  # noqa: SLF001
        with self._lock:
            made = [(n, w) for n, w in self._written.get(trial_id, ()) if n > since]
            if trial_id in self._written:
                self._written[trial_id] = made
            for write in [w for _, w in made] + self._pending.get(trial_id, []):
                trial = write.apply(trial)
        self._trials[trial.number] = trial
        self._numbers[trial_id], self._ids[trial.number] = trial.number, trial_id

    def _id_of(self, number: int) -> int:
        if number not in self._ids:
            trial_id = super().get_trial_id_from_study_id_trial_number(self.study_id, number)
            self._ids[number], self._numbers[trial_id] = trial_id, number
        return self._ids[number]

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if study_id != self.study_id:
            return super().get_all_trials(study_id, deepcopy, states)
        trials = [
            trial
            for _, trial in sorted(self._round().items())
            if states is None or trial.state in states
        ]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trials = self._round()  # first: it reads the trials this worker created
        number = self.get_trial_number_from_id(trial_id)
        if number not in trials:  # created by another worker since the round's read
            since = self._made
            self._store(super().get_trial(trial_id), since)
        return copy.deepcopy(trials[number])

    def get_trial_number_from_id(self, trial_id: int) -> int:
        if trial_id not in self._numbers:
            number = super().get_trial_number_from_id(trial_id)
            self._numbers[trial_id], self._ids[number] = number, trial_id
        return self._numbers[trial_id]

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        if study_id != self.study_id:
            return super().get_trial_id_from_study_id_trial_number(study_id, trial_number)
        return self._id_of(trial_number)

    # What never changes: read once.

    def _once(self, key: tuple[str, Any], read: Callable[[], Any]) -> Any:
        if key not in self._fixed:
            self._fixed[key] = read()
        return self._fixed[key]

    def get_study_id_from_name(self, study_name: str) -> int:
        read = super().get_study_id_from_name
        return int(self._once(("id", study_name), lambda: read(study_name)))

    def get_study_name_from_id(self, study_id: int) -> str:
        read = super().get_study_name_from_id
        return str(self._once(("name", study_id), lambda: read(study_id)))

    def get_study_directions(self, study_id: int) -> list[Any]:
        read = super().get_study_directions
        return list(self._once(("directions", study_id), lambda: read(study_id)))

    # Trial writes: a running trial's behind (its parameters, reports, attributes and end),
    # the others at once.

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._raise()
        trial_id = super().create_new_trial(study_id, template_trial)
        if study_id == self.study_id:
            self._stale.add(trial_id)
        return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        behind = state in _WRITTEN_BEHIND
        return bool(self._write("set_trial_state_values", trial_id, state, values, behind=behind))

    set_trial_param = partialmethod(_write, "set_trial_param")
    set_trial_intermediate_value = partialmethod(_write, "set_trial_intermediate_value")
    set_trial_user_attr = partialmethod(_write, "set_trial_user_attr")
    set_trial_system_attr = partialmethod(_write, "set_trial_system_attr")
