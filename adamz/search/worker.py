"""A study worker: a process that pulls trials from a shared storage until the budget is met.

:func:`run_worker` is Optuna's trial loop (``study.ask``, the objective, ``study.tell``) on its
public storage interface, so one code path runs on SQLite, PostgreSQL, the journal storage and
the gRPC storage proxy. A worker takes one trial at a time, or ``--population K`` trials that
train together (:mod:`~adamz.search.objective`): the same loop. Around them it adds:

1. a check for trials whose worker died (:class:`~adamz.search.heartbeat.StaleWatch`),
   between trials and whenever it waits: each is queued again to resume from its
   checkpoints (:mod:`~adamz.search.retries`);
2. the budget: it stops once the study's finished trials reach it (ending the queued trials
   nobody will run then), and waits while the running ones would (:mod:`~adamz.search.budget`
   bounds the overrun);
3. a :class:`~adamz.search.heartbeat.Heartbeat` while its trials run; a trial found no longer
   RUNNING stops at its next epoch;
4. SIGTERM and SIGINT (:mod:`~adamz.search.interrupts`): at the next training step, or
   between trials, the trials are failed and queued to resume from their checkpoints, and the
   worker exits 143 or 130 (or past :data:`STOP_GRACE_S`, from a thread: :meth:`Worker.run`);
5. storage outages (:mod:`~adamz.search.outage`): every storage call waits for the storage
   for up to ``--storage-patience`` seconds; past it the worker exits with
   :data:`UNREACHABLE_CODE` and one line, its trials left to resume from their checkpoints.

Every storage call goes through one :class:`~adamz.search.cache.WorkerStorage` per worker
(patient, read once per round, written behind: see :mod:`~adamz.search.cache`).

**Sampler seeds.** A study file's ``sampler: {seed: N}`` makes a lone worker's search repeat:
the worker seeds its sampler from ``N`` and the number of the first trial it takes, which is
the same run after run on a fresh study. Several workers take different first trials (the
storage numbers trials), so each samples with a seed of its own, and none proposes another's
sequence. Without a seed in the file, each worker draws one from the OS. The seed is recorded
in every trial's ``worker`` attribute.

**Sampling a population.** With TPE or random sampling, a population's new configurations are
sampled in one go from an in-memory copy of the study (Optuna's ``InMemoryStorage``; the
trials sampled before each count as running, as they do for the constant liar) and created
running, each with its parameters as ``fixed_params`` (as ``study.enqueue_trial`` records
them): one write per trial on the training's path, where a queued trial with its parameters
cost a query and a row per parameter, and taking it two more. The trial writes its parameters
as it suggests them, behind, with its reports.

A replicate or sensitivity study (``queued_only``) runs only its queued trials, and queues
again a trial whose training raised (its run would otherwise never run).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from adamz.search.budget import FINISHED, SurplusTrialError, count_states, study_budget
from adamz.search.cache import WorkerStorage
from adamz.search.errors import error_message
from adamz.search.heartbeat import Heartbeat, StaleWatch
from adamz.search.interrupts import STOP_CODES, Interrupts, WorkerStopped
from adamz.search.outage import (
    STOP_CHECK_S,
    STORAGE_PATIENCE_S,
    Outage,
    PatientStorage,
    StorageUnreachable,
    patiently,
)
from adamz.search.retries import Reason, end_unrunnable, queue_retry, retried_trial_number
from adamz.search.storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    load_study,
    open_storage,
    safe_url,
    storage_url,
)
from adamz.search.study_attrs import require_definition

if TYPE_CHECKING:
    from adamz.search.objective import Outcome, TrialRef
    from adamz.search.studies import AnySpec

__all__ = [
    "UNREACHABLE_CODE",
    "Tickets",
    "Worker",
    "WorkerOptions",
    "WorkerSummary",
    "open_worker",
    "run_worker",
    "stored_spec",
]

logger = logging.getLogger(__name__)

POLL_S = 1.0
"""Seconds a worker waits before it looks again at a study whose running trials fill it."""
CHECKPOINT_INTERVAL_S = 30.0
"""Least seconds between two checkpoints of a trial: a killed trial redoes at most this much."""
MAX_CONSECUTIVE_FAILURES = 5
"""A worker whose trials fail this many times in a row with the same error stops with exit
code 1: something is wrong with the study or the host (a bug, missing data), not with the
sampled values. A population's trials count one by one."""
UNREACHABLE_CODE = 75
"""A worker's exit code when the storage stayed unreachable past its patience (``EX_TEMPFAIL``:
start it again when the storage is back)."""
STOP_GRACE_S = 1.0
"""Seconds a stopped worker's trial loop has to reach a safe point before a worker with
``exit_on_stop`` stops its trials from another thread and ends its process."""


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs: where, with what data, how long, and how it beats.

    Args:
        storage: the storage URL (``None``: ``$ADAMZ_STORAGE``, else the SQLite default).
        device: the torch device this worker trains on.
        n_trials: most trials this invocation runs (all its workers together); ``None``: until
            the study's budget is met. Nothing is stored: the budget is the study's.
        data_dir: the dataset directory, when the study file does not name one.
        download: let torchvision download a missing dataset.
        checkpoint_dir: where trials keep their checkpoints (``None``: see
            :func:`checkpoint_dir`).
        checkpoint_interval: least seconds between two checkpoints of a trial.
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds a trial's heartbeat must be seen unchanged to count as stale.
        sampler_seed: the sampler's seed (``None``: from the study file's seed and the first
            trial, or from the OS; see the module docs).
        population: trials trained at once in one process (:mod:`~adamz.search.objective`);
            ``None``: the study file's ``population``, else 1.
        storage_patience: seconds the worker waits for an unreachable storage.
    """

    storage: str | None = None
    device: str = "cpu"
    n_trials: int | None = None
    data_dir: str | None = None
    download: bool = False
    checkpoint_dir: str | None = None
    checkpoint_interval: float = CHECKPOINT_INTERVAL_S
    heartbeat_interval: float = HEARTBEAT_INTERVAL_S
    grace_period: float = GRACE_PERIOD_S
    sampler_seed: int | None = None
    population: int | None = None
    storage_patience: float = STORAGE_PATIENCE_S

    def __post_init__(self) -> None:
        names = ("heartbeat_interval", "grace_period", "n_trials", "population", "storage_patience")
        for name in names:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Invalid {name}: must be > 0, got {value}.")
        if self.checkpoint_interval < 0:
            raise ValueError(
                f"Invalid checkpoint_interval: must be >= 0, got {self.checkpoint_interval}."
            )
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"Invalid grace_period: must exceed heartbeat_interval "
                f"({self.heartbeat_interval}), got {self.grace_period}."
            )


@dataclass
class WorkerSummary:
    """What one worker did: its trials by outcome, its exit code, and why it stopped."""

    code: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    requeued: int = 0
    surplus: int = 0
    seconds: float = 0.0
    reason: str = ""
    started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def trials(self) -> int:
        return self.complete + self.pruned + self.failed + self.requeued + self.surplus

    def exit(self) -> None:
        """End the process with :attr:`code`, after this summary's line on stderr: every result
        is in the storage, so the interpreter's teardown (torch's takes a second or more) is
        skipped, and a stopped worker is gone well within a container's grace period."""
        # On a line of its own: a launcher's progress bar may be mid-line on the same terminal.
        print("\n" + self.line(), file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(self.code)

    def line(self) -> str:
        """One line for the worker's log: ``worker 123: 4 trials (3 complete, ...), 9.1 s; why``."""
        parts = [f"{self.complete} complete", f"{self.pruned} pruned", f"{self.failed} failed"]
        parts.append(f"{self.requeued} requeued")
        if self.surplus:
            parts.append(f"{self.surplus} surplus")
        return (
            f"worker {os.getpid()}: {self.trials} trials ({', '.join(parts)}) in "
            f"{self.seconds:.1f} s; {self.reason}"
        )


def worker_seed(file_seed: int | None, first_trial: int) -> int:
    """The sampler seed of a worker whose first trial is number ``first_trial``: derived from
    the study file's seed, or drawn from the OS if it has none (see the module docs)."""
    if file_seed is None:
        return secrets.randbits(32)
    digest = hashlib.sha256(f"{file_seed}:{first_trial}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def run_worker(
    study_name: str,
    options: WorkerOptions,
    tickets: Tickets | None = None,
    *,
    on_ready: Callable[[], None] = lambda: None,
    exit_on_stop: bool = False,
) -> WorkerSummary:
    """Pull and run trials of ``study_name`` until its budget is met, or ``tickets`` (the
    invocation's ``--n-trials``) run out; what it did, with its exit code. ``on_ready`` is
    called once the worker handles SIGTERM and SIGINT. ``exit_on_stop``: the worker is its
    process's only work; once stopped, it may end the process itself (:meth:`Worker.run`).

    Raises:
        ValueError: the storage cannot be opened, or the study is unknown or was not created
            by ``adamz-search create``.
    """
    worker = open_worker(study_name, options)
    tickets = Tickets(options.n_trials) if tickets is None else tickets
    worker.run(tickets, on_ready, exit_on_stop=exit_on_stop)
    worker.summary.seconds = time.monotonic() - worker.summary.started
    return worker.summary


def open_worker(study_name: str, options: WorkerOptions) -> Worker:
    """A :class:`Worker` for ``study_name``; raises as :func:`run_worker`."""

    def open_() -> tuple[BaseStorage, AnySpec]:
        storage = open_storage(options.storage)
        load_study(study_name, storage)  # one line naming the studies there, if it is not one
        return storage, stored_spec(study_name, storage)

    # One per worker, for its every storage call (the trial loop's, the heartbeat's): a worker
    # started while the database is down waits for it, as a running one does.
    outage = Outage(safe_url(storage_url(options.storage)), options.storage_patience)
    storage, spec = patiently(open_, outage)
    return Worker(study_name, storage, spec, options, outage)


class Tickets:
    """A count of trials an invocation may still start (``--n-trials``), shared by its worker
    processes. Nothing of it is stored: the study's budget is unchanged."""

    def __init__(self, trials: int | None) -> None:
        """``trials`` tickets (``None``: no limit), shareable with spawned processes."""
        self._left = (
            None if trials is None else multiprocessing.get_context("spawn").Semaphore(trials)
        )

    def take(self) -> bool:
        return self._left is None or self._left.acquire(block=False)


class Worker:
    """One worker's trial loop on the study ``study_name`` in ``storage``; its counts are what
    :class:`WorkerSummary` says."""

    def __init__(
        self,
        study_name: str,
        storage: BaseStorage,
        spec: AnySpec,
        options: WorkerOptions,
        outage: Outage,
    ) -> None:
        # torch (through the objective and the study's checks): only where trials train.
        from adamz.search.objective import TrialObjective
        from adamz.search.studies import make_pruner, make_sampler

        self.options = options
        self.spec = spec
        self.interrupts = Interrupts()
        self.outage = outage
        self.lost: set[int] = set()
        stopping = lambda: self.interrupts.pending is not None  # noqa: E731
        self.study_id = patiently(lambda: storage.get_study_id_from_name(study_name), outage)
        self.storage = WorkerStorage(storage, outage, self.study_id, stopping, self._on_lost)
        self.file_seed: int | None = spec.sampler.get("seed")
        self.seed = options.sampler_seed
        self._make_sampler = make_sampler
        self.study = optuna.load_study(
            study_name=study_name,
            storage=self.storage,
            sampler=make_sampler(spec.sampler, seed=self.seed),
            pruner=make_pruner(spec.pruner),
        )
        self.checkpoint_dir = checkpoint_dir(options, study_name)
        self.objective = TrialObjective(
            spec,
            study=self.study,
            storage=self.storage,
            budget=study_budget(self.study, spec.budget),
            device=options.device,
            checkpoint_dir=self.checkpoint_dir,
            data_dir=options.data_dir,
            download=options.download,
            checkpoint_interval_s=options.checkpoint_interval,
            interrupts=self.interrupts,
        )
        self.heartbeat = Heartbeat(
            storage, self.study_id, options.heartbeat_interval, outage, on_lost=self._on_lost
        )
        self.watch = StaleWatch(options.grace_period, outage)
        self.summary = WorkerSummary()
        self.population = options.population or int(spec.definition.get("population", 1))
        self._ids: dict[int, int] = {}  # trial number -> id, for the trials this worker runs
        self._populations = 0
        self._failures: list[tuple[int, str]] = []  # trials that failed in a row, one error
        # Held while the loop writes what must be written whole (asking, telling, queueing
        # again, ending queued trials), and by a stop that takes over (_stop_when_stuck).
        self._writing = threading.RLock()
        self._done = False
        # Trials told (written behind), by id, and those whose writes the storage refused.
        self._told: dict[int, tuple[int, TrialState]] = {}
        self._refused: set[int] = set()

    def _on_lost(self, trial_id: int) -> None:
        """A trial failed as stale by another worker: it stops, its retry resumes from its
        checkpoints (called by the heartbeat's thread and the storage's writer)."""
        self.lost.update(number for number, known in self._ids.items() if known == trial_id)
        self._refused.add(trial_id)

    # The loop.

    def run(
        self,
        tickets: Tickets | None,
        on_ready: Callable[[], None] = lambda: None,
        *,
        exit_on_stop: bool = False,
    ) -> None:
        """As :func:`run_worker`; with ``exit_on_stop``, a stop that the loop has not carried
        out within :data:`STOP_GRACE_S` is carried out by :meth:`_stop_when_stuck`."""
        state = "exited"
        with self.interrupts:
            if exit_on_stop:
                threading.Thread(target=self._stop_when_stuck, name="stop", daemon=True).start()
            on_ready()
            try:
                self._loop(tickets)
            except WorkerStopped as stopped:
                self.summary.code = STOP_CODES.get(str(stopped), 1)
                self.summary.reason = f"stopped by {stopped}"
            except StorageUnreachable as unreachable:
                state = "gave up: storage unreachable"
                self.summary.code = STOP_CODES.get(self.interrupts.pending or "", UNREACHABLE_CODE)
                running = sorted(self._ids)
                self.summary.reason = str(unreachable) + (
                    f"; {'trials' if len(running) > 1 else 'trial'} "
                    f"{', '.join(map(str, running))} will resume from their checkpoints"
                    if running
                    else ""
                )
                logger.error("%s", self.summary.reason)
            finally:
                with self._writing:
                    self._done = True
                self.close(state)

    def close(self, state: str = "exited") -> None:
        """Write what is written behind, then stop the writer and the heartbeat (recording
        ``state`` as the worker's last contact); :meth:`run` does it as it ends."""
        try:
            with contextlib.suppress(StorageUnreachable):  # said: the trials resume
                self.written()
        finally:
            self.storage.close()
            self.heartbeat.stop(state)

    def written(self) -> None:
        """Wait for the writes behind; a trial told whose end the storage refused (another
        worker failed it as stale meanwhile, or a write of it failed) counts as requeued, not
        as told."""
        self.storage.flush()
        for trial_id in self._refused & self._told.keys():
            number, state = self._told[trial_id]
            logger.warning("Trial %d: its end was not written (the trial was failed).", number)
            if state == TrialState.COMPLETE:
                self.summary.complete -= 1
            else:
                self.summary.pruned -= 1
            self.summary.requeued += 1
        self._told.clear()

    def _stop_when_stuck(self) -> None:
        """Once a signal asked the worker to stop, give its loop :data:`STOP_GRACE_S` to stop
        at a safe point; past it, fail each of its trials and queue it to resume, as the loop
        would, and end the process. It waits for the loop's write under way, if any, and none
        starts after it."""
        deadline: float | None = None  # set once a signal came
        while deadline is None or time.monotonic() < deadline:
            if self._done:
                return
            if deadline is None and self.interrupts.pending is not None:
                deadline = time.monotonic() + STOP_GRACE_S
            time.sleep(STOP_CHECK_S)
        self._writing.acquire()  # for good: the process ends here
        if self._done:
            self._writing.release()
            return
        stopped = self.interrupts.pending
        try:
            self.storage.flush()  # the trials told already stay told
            patient = PatientStorage(self.storage.storage, self.outage)
            stopper = optuna.load_study(study_name=self.study.study_name, storage=patient)
            ids = {n: trial_id for n, trial_id in self._ids.items() if n not in self.lost}
            if ids:
                logger.warning(
                    "Trials %s interrupted by %s: queued to resume.",
                    ", ".join(map(str, ids)),
                    stopped,
                )
            for trial_id in ids.values():
                try:
                    patient.set_trial_state_values(trial_id, TrialState.FAIL)
                except UpdateFinishedTrialError:  # told meanwhile, or failed as stale
                    continue
                self.requeue(patient.get_trial(trial_id), "stop", stopper)
                self.summary.requeued += 1
            self.heartbeat.stop()
        except Exception as exc:  # the storage is down: the trials resume when found stale
            logger.error("Trials not queued again: %s", exc)
        self.summary.code = STOP_CODES.get(str(stopped), 1)
        self.summary.reason = f"stopped by {stopped}"
        self.summary.seconds = time.monotonic() - self.summary.started
        self.summary.exit()

    def _loop(self, tickets: Tickets | None) -> None:
        budget = self.objective.budget
        next_stale_check = 0.0
        first = True
        empty_polls = 0
        while True:
            self.interrupts.check()
            self.storage.new_round()
            if time.monotonic() >= next_stale_check:
                self.requeue_stale()
                next_stale_check = time.monotonic() + self.options.heartbeat_interval
            counts = count_states(self.study)
            finished = sum(counts[state] for state in FINISHED)
            if finished >= budget:
                if counts[TrialState.WAITING]:
                    with self._writing:
                        ended = end_unrunnable(self.study, self.storage, self.study_id)
                    if ended:
                        logger.info("Queued trials %s not run: the budget is met.", ended)
                self.summary.reason = (
                    f"nothing to do: study {self.study.study_name} has met its budget "
                    f"({finished} of {budget} trials finished)"
                    if first
                    else f"the budget is met ({finished} of {budget} trials finished)"
                )
                return
            first = False
            waiting = finished + counts[TrialState.RUNNING] >= budget  # the running trials fill it
            if self.spec.queued_only and not counts[TrialState.WAITING]:
                # A failed run's retry is queued just after it fails: look again before leaving.
                empty_polls = 0 if counts[TrialState.RUNNING] else empty_polls + 1
                if empty_polls > 1:
                    self.summary.code = 1
                    self.summary.reason = (
                        f"no queued run is left ({finished} of {budget} finished; the others "
                        "failed too often, see 'adamz-search status')"
                    )
                    return
                waiting = True
            if waiting:
                next_stale_check = 0.0
                self._sleep(POLL_S)
                continue
            room = budget - finished - counts[TrialState.RUNNING]
            if self.spec.queued_only:
                room = min(room, counts[TrialState.WAITING])
            size = 0
            while size < max(1, min(self.population, room)) and (tickets is None or tickets.take()):
                size += 1
            if size == 0:
                self.summary.reason = "--n-trials reached"
                return
            self.run_trials(size)
            if len(self._failures) >= MAX_CONSECUTIVE_FAILURES:
                number, error = self._failures[-1]
                self.summary.code = 1
                self.summary.reason = (
                    f"its last {len(self._failures)} trials failed with the same error "
                    f"(the last, trial {number}: {error})"
                )
                return

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a signal asks the worker to stop."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.interrupts.check()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def requeue_stale(self) -> None:
        """Fail the trials whose worker died, and queue each again (or drop it at its limit)."""
        with self._writing:
            for trial in self.watch.claim(self.study, self.storage):
                self.requeue(trial, "death")

    def requeue(
        self, trial: FrozenTrial, reason: Reason, study: optuna.Study | None = None
    ) -> None:
        """Queue ``trial`` again for ``reason`` in ``study`` (the worker's, by default); past
        its limit, drop it and its checkpoints."""
        if queue_retry(self.study if study is None else study, trial, reason):
            logger.warning("Trial %d queued again (%s).", trial.number, reason)
            return
        origin = retried_trial_number(trial)
        origin = trial.number if origin is None else origin
        for path in self.checkpoint_dir.glob(f"trial-{origin}-seed-*.pt"):
            path.unlink(missing_ok=True)
        logger.error(
            "Trial %d dropped: its %s limit is reached (see adamz.search.retries).",
            trial.number,
            reason,
        )

    # Trials.

    def ask(self, size: int) -> list[optuna.Trial]:
        """``size`` trials: queued ones first, then new ones sampled (see the module docs)."""
        trials: list[optuna.Trial] = []
        if self.seed is None:  # the first trial's number seeds the sampler
            trials.append(self.study.ask())
            self.seed = worker_seed(self.file_seed, trials[0].number)
            self.study.sampler = self._make_sampler(self.spec.sampler, seed=self.seed)
        queued = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        trials += [self.study.ask() for _ in range(min(queued, size - len(trials)))]
        new = size - len(trials)
        if new and not self.spec.queued_only and _samples_in_memory(self.study.sampler):
            # As study.ask makes a trial, created running rather than taken from the queue.
            ids = [self.storage.create_new_trial(self.study_id, t) for t in self._sample(new)]
            return trials + [optuna.Trial(self.study, trial_id) for trial_id in ids]
        return trials + [self.study.ask() for _ in range(new)]

    def _sample(self, size: int) -> list[FrozenTrial]:
        """``size`` configurations sampled from an in-memory copy of the study, as running
        trials with their parameters to suggest."""
        self.storage.new_round()
        # A sampler of its own (a sampler keeps the study it first served), seeded from the
        # worker's: a lone worker samples the same populations run after run.
        self._populations += 1
        seed = worker_seed(self.seed, -self._populations)
        copy = optuna.create_study(
            storage=InMemoryStorage(),
            directions=self.study.directions,
            sampler=self._make_sampler(self.spec.sampler, seed=seed),
        )
        copy.add_trials(
            trial
            for trial in self.study.get_trials(deepcopy=False)
            if trial.state in (*FINISHED, TrialState.RUNNING)
        )
        templates = []
        for _ in range(size):
            trial = copy.ask()
            self.spec.plan(trial)  # suggests every parameter of the space
            # Its parameters as fixed_params (see the module docs: "Sampling a population").
            templates.append(
                create_trial(state=TrialState.RUNNING, system_attrs={"fixed_params": trial.params})
            )
        return templates

    def run_trials(self, size: int) -> None:
        """Ask for ``size`` trials, train them with their heartbeats, tell how each ended.

        Raises:
            WorkerStopped: the worker was stopped; the trials are failed and queued to resume.
            StorageUnreachable: past the patience; the trials are left running, to resume
                (their numbers go in the worker's last line).
        """
        with self._writing:  # a stop that takes over knows every trial asked for
            trials = self.ask(size)
            self.storage.new_round()
            refs = [self.objective.ref(trial) for trial in trials]
            self._ids = {ref.number: ref.trial_id for ref in refs}
        self.lost.clear()
        extra: dict[str, Any] = {"sampler_seed": self.seed}
        if size > 1:
            extra["population"] = size
        admitted: list[TrialRef] = []
        with self.heartbeat.beating(self._ids.values()):
            for ref in refs:
                ref.trial.set_user_attr("worker", self.objective.worker_record(ref, **extra))
                try:
                    self.objective.admit(ref)
                except SurplusTrialError as surplus:
                    ref.trial.set_user_attr("error", error_message(surplus))
                    self.summary.surplus += 1
                    logger.info("Trial %d not run: %s", ref.number, surplus)
                    back = self.spec.queued_only and ref.queued  # a replicate's queued run
                    self._end(ref, None, TrialState.FAIL, "surplus" if back else None)
                    continue
                admitted.append(ref)
            try:
                outcomes = self.objective.train(admitted, self.lost, population=size > 1)
            except WorkerStopped as stopped:
                logger.warning(
                    "Trials %s interrupted by %s: queued to resume.",
                    ", ".join(str(ref.number) for ref in admitted),
                    stopped,
                )
                for ref in admitted:
                    if ref.number not in self.lost:
                        self._end(ref, None, TrialState.FAIL, "stop")
                raise
            self._tell(admitted, outcomes)
        self._ids = {}

    def _tell(self, refs: list[TrialRef], outcomes: dict[int, Outcome]) -> None:
        for ref in refs:
            if ref.number in self.lost or ref.number not in outcomes:
                logger.warning("Trial %d was failed as stale by another worker.", ref.number)
                self.summary.requeued += 1
                continue
            outcome = outcomes[ref.number]
            if outcome.error is None:
                self._failures.clear()
            else:
                error = error_message(outcome.error)
                if self._failures and self._failures[-1][1] != error:
                    self._failures.clear()
                self._failures.append((ref.number, error))
                logger.warning(
                    "Trial %d failed, parameters %s: %s", ref.number, ref.trial.params, error
                )
            state = TrialState.PRUNED if outcome.pruned else TrialState.COMPLETE
            again: Reason | None = None
            if outcome.error is not None:  # an error counts before a pruning
                state = TrialState.FAIL
                again = "fault" if self.spec.queued_only else None
            self._end(ref, outcome.value, state, again)

    def _end(
        self, ref: TrialRef, value: float | None, state: TrialState, requeue: Reason | None
    ) -> None:
        """Tell how ``ref``'s trial ended, or fail it and queue it again for ``requeue``."""
        with self._writing:
            if requeue is None:
                try:
                    told = self.study.tell(ref.trial, value, state=state, skip_if_finished=True)
                except UpdateFinishedTrialError:  # failed as stale since the round's read
                    logger.warning("Trial %d was failed as stale by another worker.", ref.number)
                    self.summary.requeued += 1
                    return
                if told.state == TrialState.COMPLETE:
                    self.summary.complete += 1
                elif told.state == TrialState.PRUNED:
                    self.summary.pruned += 1
                if told.state in (TrialState.COMPLETE, TrialState.PRUNED):
                    self._told[ref.trial_id] = (ref.number, told.state)
                else:
                    self.summary.failed += 1
                return
            # Fail it here, unless another worker's stale check did first and queued it again.
            try:
                self.storage.set_trial_state_values(ref.trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                return
            if requeue == "fault":
                self.summary.failed += 1
            elif requeue == "stop":
                self.summary.requeued += 1
            self.requeue(self.storage.get_trial(ref.trial_id), requeue)


def _samples_in_memory(sampler: optuna.samplers.BaseSampler) -> bool:
    """Whether ``sampler`` keeps nothing in the storage, and so samples the same from an
    in-memory copy of the study (QMC numbers its points, CMA-ES keeps its state there)."""
    return isinstance(sampler, optuna.samplers.TPESampler | optuna.samplers.RandomSampler)


def stored_spec(study_name: str, storage: BaseStorage) -> AnySpec:
    """The study's definition, as ``create`` stored it.

    Raises:
        ValueError: the study was not created by ``adamz-search create``.
    """
    from adamz.search.studies import spec_from_definition  # imports torch

    definition = require_definition(study_name, storage)
    return spec_from_definition(definition, source=f"study {study_name}")


MAX_FOLDER_NAME = 120
"""Longest study folder name used as is: a file system refuses names over 255 bytes, and a
confirmation of many studies is named after all of them."""


def checkpoint_dir(options: WorkerOptions, study_name: str) -> Path:
    """``--checkpoint-dir``, else ``checkpoints/STUDY`` beside a file storage, else in the cwd.
    The study's folder is its name or, past :data:`MAX_FOLDER_NAME` bytes, its start and a
    digest of the whole: the same on every host. Workers on several hosts resume each other's
    trials only if this directory is shared."""
    folder = study_name
    if len(study_name.encode()) > MAX_FOLDER_NAME:
        digest = hashlib.sha256(study_name.encode()).hexdigest()[:16]
        folder = study_name.encode()[: MAX_FOLDER_NAME - 17].decode(errors="ignore") + "-" + digest
    if options.checkpoint_dir:
        return Path(options.checkpoint_dir) / folder
    url = storage_url(options.storage)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "checkpoints" / folder
    return Path("checkpoints") / folder
