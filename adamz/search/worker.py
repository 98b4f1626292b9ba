"""A study worker: a process that pulls trials from a shared storage until the budget is met.

:func:`run_worker` is Optuna's trial loop (``study.ask``, the objective, ``study.tell``) on its
public storage interface, so one code path runs on SQLite, PostgreSQL, the journal storage and
the gRPC storage proxy. Around each trial it adds:

1. a check for trials whose worker died (:func:`~adamz.search.heartbeat.claim_stale_trials`),
   once per heartbeat interval and whenever it waits: each is queued again to resume from its
   checkpoints (:mod:`~adamz.search.retries`);
2. the budget: it stops once the study's finished trials reach it, and waits while the running
   ones would (:mod:`~adamz.search.budget` bounds the overrun);
3. a :class:`~adamz.search.heartbeat.Heartbeat` while the trial runs; training stops as soon
   as the trial is found no longer RUNNING;
4. SIGTERM and SIGINT (:mod:`~adamz.search.interrupts`): the trial's training is interrupted,
   it is failed and queued to resume from its checkpoints, and the worker exits 143 or 130.

Each worker samples with a seed of its own, drawn from the OS and recorded in every trial's
``worker`` attribute, so workers started anywhere, or restarted, never propose the same
sequence (a QMC sampler keeps the study file's seed: its points are one sequence).

A replicate study (``queued_only``) runs only its queued trials, and queues again a trial whose
training raised (its (run, seed) would otherwise never run).

The process supervisor, :func:`launch_workers`, lives in :mod:`~adamz.search.launcher`.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import secrets
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from adamz.search.budget import FINISHED, SurplusTrialError, count_states, study_budget
from adamz.search.errors import error_message
from adamz.search.heartbeat import Heartbeat, claim_stale_trials
from adamz.search.interrupts import Interrupts, WorkerStopped
from adamz.search.retries import Reason, queue_retry
from adamz.search.snapshot import SnapshotStorage
from adamz.search.storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    load_study,
    open_storage,
    storage_url,
)
from adamz.search.study_attrs import require_definition
from adamz.search.trials import trial_id as trial_id_of

if TYPE_CHECKING:
    from adamz.search.objective import TrialObjective
    from adamz.search.studies import AnySpec

__all__ = [
    "Tickets",
    "Worker",
    "WorkerOptions",
    "WorkerStopped",
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
"""A worker whose trials fail this many times in a row stops with exit code 1: something is
wrong with the study or the host (a bug, missing data), not with the sampled values."""
STOP_CODES = {"SIGINT": 130, "SIGTERM": 143}
"""A stopped worker's exit code, as shells report a process ended by the signal."""


class TrialLost(RuntimeError):
    """The trial being trained is no longer RUNNING: another worker failed it as stale."""


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
        grace_period: seconds without a beat after which a trial counts as stale.
        sampler_seed: the sampler's seed (``None``: one from the OS, :func:`worker_seed`); fix
            it only to repeat a single worker's run, as the benchmarks do.
        population: trials trained at once in one process (:mod:`~adamz.search.population`);
            ``None``: the study file's ``population``, else 1.
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

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "grace_period", "n_trials", "population"):
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


def worker_seed() -> int:
    """A sampler seed from the OS: no two workers of a study share one (chance 2**-32)."""
    return secrets.randbits(32)


def run_worker(
    study_name: str, options: WorkerOptions, tickets: Tickets | None = None
) -> WorkerSummary:
    """Pull and run trials of ``study_name`` until its budget is met, or ``tickets`` (the
    invocation's ``--n-trials``) run out; what it did, with its exit code.

    Raises:
        ValueError: the storage cannot be opened, or the study is unknown or was not created
            by ``adamz-search create``.
    """
    worker = open_worker(study_name, options)
    if tickets is None:
        tickets = Tickets.shared(options.n_trials)
    with Interrupts(on_stop=worker.keep_checkpoints) as interrupts:
        worker.run(interrupts, tickets)
    worker.summary.seconds = time.monotonic() - worker.summary.started
    return worker.summary


def open_worker(study_name: str, options: WorkerOptions) -> Worker:
    """A :class:`Worker` for ``study_name``, its sampler seeded with :func:`worker_seed`.

    Raises:
        ValueError: as :func:`run_worker`.
    """
    # torch (through the objective and the study's checks): only where trials train.
    from adamz.search.objective import TrialObjective
    from adamz.search.studies import make_pruner, make_sampler

    storage = open_storage(options.storage)
    study = load_study(study_name, storage)
    spec = stored_spec(study, storage)
    seed = worker_seed() if options.sampler_seed is None else options.sampler_seed
    study.sampler = make_sampler(spec.sampler, seed=seed)
    study.pruner = make_pruner(spec.pruner)
    objective = TrialObjective(
        spec,
        budget=study_budget(study, spec.budget),
        device=options.device,
        checkpoint_dir=checkpoint_dir(options, study_name),
        data_dir=options.data_dir,
        download=options.download,
        checkpoint_interval_s=options.checkpoint_interval,
    )
    return Worker(study, storage, objective, options, seed)


class Tickets:
    """A count of trials an invocation may still start (``--n-trials``), shared by its worker
    processes. Nothing of it is stored: the study's budget is unchanged."""

    def __init__(self, value: object) -> None:
        self._value = value  # a multiprocessing.Value("i"), or None: no limit

    @classmethod
    def shared(cls, trials: int | None) -> Tickets:
        """``trials`` tickets (``None``: no limit), shareable with spawned processes."""
        if trials is None:
            return cls(None)
        return cls(multiprocessing.get_context("spawn").Value("i", trials))

    def take(self) -> bool:
        if self._value is None:
            return True
        with self._value.get_lock():  # type: ignore[attr-defined]
            if self._value.value <= 0:  # type: ignore[attr-defined]
                return False
            self._value.value -= 1  # type: ignore[attr-defined]
            return True


class Worker:
    """One worker's trial loop on ``study``; its counts are what :class:`WorkerSummary` says."""

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        objective: TrialObjective,
        options: WorkerOptions,
        seed: int,
    ) -> None:
        self.study = study
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.objective = objective
        objective.on_step = self._stop_if_lost
        self.options = options
        self.seed = seed
        self.lost = threading.Event()
        self.heartbeat = Heartbeat(storage, options.heartbeat_interval, on_lost=self._on_lost)
        self.summary = WorkerSummary()
        self.population = self._population_size()
        self.slots: list[int] = []  # the trial number each population heartbeat beats for
        self.lost_trials: set[int] = set()
        self.heartbeats: list[Heartbeat] = []
        self._snapshot: SnapshotStorage | None = None
        self._population_study: optuna.Study | None = None

    def _population_size(self) -> int:
        from adamz.search.population import batched_optimizers

        size = self.options.population or int(self.spec.definition.get("population", 1))
        if size > 1:
            batched, alone = batched_optimizers(self.spec)
            if not batched:
                logger.warning(
                    "Study %s: %s has no batched form; its trials train one at a time.",
                    self.study.study_name,
                    ", ".join(sorted(alone)),
                )
                return 1
        return size

    @property
    def spec(self) -> AnySpec:
        return self.objective.spec

    def keep_checkpoints(self) -> None:
        """Keep the running trial's checkpoints: its retry resumes from them."""
        self.objective.keep_checkpoints = True

    def _on_lost(self) -> None:
        self.keep_checkpoints()  # the retry queued by the stale check resumes from them
        self.lost.set()

    def _stop_if_lost(self, epoch: int, step: int, steps: int) -> None:
        if self.lost.is_set():
            raise TrialLost("another worker failed this trial as stale")

    def run(self, interrupts: Interrupts, tickets: Tickets | None) -> None:
        budget = self.objective.budget
        failures = 0
        error: str | None = None
        next_stale_check = 0.0
        first = True
        empty_polls = 0
        while True:
            if interrupts.pending is not None:
                self.summary.code = STOP_CODES.get(interrupts.pending, 1)
                self.summary.reason = f"stopped by {interrupts.pending}"
                return
            waited = False
            if time.monotonic() >= next_stale_check:
                self.requeue_stale()
                next_stale_check = time.monotonic() + self.options.heartbeat_interval
            counts = count_states(self.study)
            finished = sum(counts[state] for state in FINISHED)
            if finished >= budget:
                self.summary.reason = (
                    f"nothing to do: study {self.study.study_name} has met its budget "
                    f"({finished} of {budget} trials finished)"
                    if first
                    else f"the budget is met ({finished} of {budget} trials finished)"
                )
                return
            first = False
            if self.spec.queued_only and not counts[TrialState.WAITING]:
                # A failed run's retry is queued just after it fails: look again before leaving.
                empty_polls = 0 if counts[TrialState.RUNNING] else empty_polls + 1
                if empty_polls > 1:
                    self.summary.code = 0 if finished >= budget else 1
                    self.summary.reason = (
                        f"no queued run is left ({finished} of {budget} finished; the others "
                        "failed too often, see 'adamz-search status')"
                    )
                    return
                waited = True
            elif finished + counts[TrialState.RUNNING] >= budget:
                waited = True  # the running trials fill the budget: wait for them
            if waited:
                next_stale_check = 0.0
                time.sleep(POLL_S)
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
            error = (
                self.run_trial(interrupts) if size == 1 else self.run_population(interrupts, size)
            )
            failures = failures + 1 if error is not None else 0
            if failures >= MAX_CONSECUTIVE_FAILURES:
                self.summary.code = 1
                self.summary.reason = f"its last {failures} trials failed (the last: {error})"
                return

    def requeue_stale(self) -> None:
        """Fail the trials whose worker died, and queue each again (or drop it at its limit)."""
        for trial in claim_stale_trials(self.study, self.storage, self.options.grace_period):
            self.requeue(trial, "death")

    def requeue(self, trial: FrozenTrial, reason: Reason) -> None:
        """Queue ``trial`` again for ``reason``; past its limit, drop it and its checkpoints."""
        if queue_retry(self.study, trial, reason):
            logger.warning("Trial %d queued again (%s).", trial.number, reason)
            return
        origin = int(trial.system_attrs.get("failed_trial", trial.number))
        for path in self.objective.checkpoint_dir.glob(f"trial-{origin}-seed-*.pt"):
            path.unlink(missing_ok=True)
        logger.error(
            "Trial %d dropped: its %s limit is reached (see adamz.search.retries).",
            trial.number,
            reason,
        )

    def run_trial(self, interrupts: Interrupts) -> str | None:
        """Ask for a trial, train it with a heartbeat, tell how it ended; the error it failed
        with (``None`` if it finished, was refused as surplus, interrupted or lost)."""
        trial = self.study.ask()
        trial_id = trial_id_of(trial)
        self.lost.clear()
        self.objective.keep_checkpoints = False
        value: float | None = None
        state = TrialState.FAIL
        requeue: Reason | None = None
        error: str | None = None
        try:
            with self.heartbeat.beating(trial_id):
                record = {**self.objective.worker_record(trial), "sampler_seed": self.seed}
                trial.set_user_attr("worker", record)
                with interrupts.allowed():
                    value = self.objective.run(trial)
                state = TrialState.COMPLETE
        except optuna.TrialPruned as pruned:
            state = TrialState.PRUNED
            logger.info("Trial %d pruned: %s", trial.number, pruned)
        except SurplusTrialError as surplus:
            requeue = self._surplus(trial, surplus)
        except WorkerStopped as stopped:
            if "error" not in trial.user_attrs:  # stopped before its training began
                trial.set_user_attr("error", error_message(stopped))
            logger.warning("Trial %d interrupted by %s: queued to resume.", trial.number, stopped)
            requeue = "stop"
        except (TrialLost, UpdateFinishedTrialError):
            logger.warning("Trial %d was failed as stale by another worker.", trial.number)
            self.summary.requeued += 1
            return None
        except Exception as exc:
            error = error_message(exc)
            logger.warning(
                "Trial %d failed, parameters %s:", trial.number, trial.params, exc_info=True
            )
            if self.spec.queued_only:
                requeue = "fault"
        return self._end(trial, trial_id, value, state, requeue, error)

    def _end(
        self,
        trial: optuna.Trial,
        trial_id: int,
        value: float | None,
        state: TrialState,
        requeue: Reason | None,
        error: str | None,
    ) -> str | None:
        """Tell how ``trial`` ended, or fail it and queue it again for ``requeue``; ``error``."""
        if requeue is None:
            try:  # through the trial's own study: a population's reads its snapshot
                told = trial.study.tell(trial, value, state=state, skip_if_finished=True)
            except UpdateFinishedTrialError:  # failed as stale since that snapshot was read
                logger.warning("Trial %d was failed as stale by another worker.", trial.number)
                self.summary.requeued += 1
                return None
            if told.state == TrialState.COMPLETE:
                self.summary.complete += 1
            elif told.state == TrialState.PRUNED:
                self.summary.pruned += 1
            elif error is not None:
                self.summary.failed += 1
            return error
        # Fail it here, unless another worker's stale check did first and queued it again.
        try:
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return error
        if requeue == "fault":
            self.summary.failed += 1
        elif requeue == "stop":
            self.summary.requeued += 1
        self.requeue(self.storage.get_trial(trial_id), requeue)
        return error

    def _surplus(self, trial: optuna.Trial, surplus: SurplusTrialError) -> Reason | None:
        """Count ``trial``, refused by the budget; a replicate's queued run goes back."""
        from adamz.search.objective import is_queued

        self.summary.surplus += 1
        logger.info("Trial %d not run: %s", trial.number, surplus)
        return "surplus" if self.spec.queued_only and is_queued(trial) else None

    def _beat_for(self, slot: int) -> Heartbeat:
        """The heartbeat of population slot ``slot`` (one thread per slot, kept)."""
        while len(self.heartbeats) <= slot:
            index = len(self.heartbeats)
            self.slots.append(-1)
            self.heartbeats.append(
                Heartbeat(
                    self.storage,
                    self.options.heartbeat_interval,
                    on_lost=functools.partial(self._on_slot_lost, index),
                )
            )
        return self.heartbeats[slot]

    def _on_slot_lost(self, slot: int) -> None:
        self.keep_checkpoints()  # the retry queued by the stale check resumes from them
        self.lost_trials.add(self.slots[slot])

    def population_study(self) -> tuple[optuna.Study, SnapshotStorage]:
        """The study as a population's trials see it: read once per round
        (:mod:`~adamz.search.snapshot`), with this worker's sampler and pruner."""
        if self._population_study is None or self._snapshot is None:
            self._snapshot = SnapshotStorage(self.study, self.storage)
            self._population_study = optuna.load_study(
                study_name=self.study.study_name,
                storage=self._snapshot,
                sampler=self.study.sampler,
                pruner=self.study.pruner,
            )
        return self._population_study, self._snapshot

    def run_population(self, interrupts: Interrupts, size: int) -> str | None:
        """Ask for ``size`` trials and train them together (:mod:`~adamz.search.population`);
        the error they failed with, if training failed for all of them."""
        from adamz.search.population import train_trials

        study, snapshot = self.population_study()
        snapshot.invalidate()
        trials = [study.ask() for _ in range(size)]
        ids = {trial.number: trial_id_of(trial) for trial in trials}
        self.lost_trials.clear()
        self.objective.keep_checkpoints = False
        admitted: list[optuna.Trial] = []
        with ExitStack() as beats:
            for slot, trial in enumerate(trials):
                heartbeat = self._beat_for(slot)
                self.slots[slot] = trial.number
                beats.enter_context(heartbeat.beating(ids[trial.number]))
            snapshot.invalidate()  # the budget's admission reads the study as it is now
            for trial in trials:
                record = self.objective.worker_record(trial)
                trial.set_user_attr(
                    "worker", {**record, "sampler_seed": self.seed, "population": size}
                )
                try:
                    self.objective.admit(trial)
                except SurplusTrialError as surplus:
                    requeue = self._surplus(trial, surplus)
                    self._end(trial, ids[trial.number], None, TrialState.FAIL, requeue, None)
                    continue
                admitted.append(trial)
            try:
                with interrupts.allowed():
                    outcomes = train_trials(
                        self.objective, admitted, self.lost_trials, snapshot.invalidate
                    )
            except WorkerStopped as stopped:
                logger.warning(
                    "Trials %s interrupted by %s: queued to resume.",
                    ", ".join(str(trial.number) for trial in admitted),
                    stopped,
                )
                for trial in admitted:
                    trial.set_user_attr("error", error_message(stopped))
                    self._end(trial, ids[trial.number], None, TrialState.FAIL, "stop", None)
                return None
            except Exception as exc:
                error = error_message(exc)
                logger.warning("Trials of a population failed:", exc_info=True)
                fault: Reason | None = "fault" if self.spec.queued_only else None
                for trial in admitted:
                    trial.set_user_attr("error", error)
                    self._end(trial, ids[trial.number], None, TrialState.FAIL, fault, error)
                return error
        errors = []
        for trial in admitted:
            if trial.number in self.lost_trials:
                logger.warning("Trial %d was failed as stale by another worker.", trial.number)
                self.summary.requeued += 1
                continue
            outcome = outcomes[trial.number]
            if outcome.error is not None:
                trial.set_user_attr("error", outcome.error)
                errors.append(outcome.error)
            state = (
                TrialState.PRUNED
                if outcome.pruned
                else TrialState.FAIL
                if outcome.error is not None
                else TrialState.COMPLETE
            )
            again: Reason | None = (
                "fault" if outcome.error is not None and self.spec.queued_only else None
            )
            self._end(trial, ids[trial.number], outcome.value, state, again, outcome.error)
        return errors[0] if errors and len(errors) == len(admitted) else None


def stored_spec(study: optuna.Study, storage: BaseStorage | None = None) -> AnySpec:
    """The study's definition, as ``create`` stored it (``storage``: the study's, read through
    its public interface).

    Raises:
        ValueError: the study was not created by ``adamz-search create``.
    """
    from adamz.search.studies import spec_from_definition  # imports torch

    definition = require_definition(study, storage)
    return spec_from_definition(definition, source=f"study {study.study_name}")


def checkpoint_dir(options: WorkerOptions, study_name: str) -> Path:
    """``--checkpoint-dir``, else ``checkpoints/STUDY`` beside a file storage, else in the cwd.

    Workers on several hosts resume each other's trials only if this directory is shared.
    """
    if options.checkpoint_dir:
        return Path(options.checkpoint_dir) / study_name
    url = storage_url(options.storage)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "checkpoints" / study_name
    return Path("checkpoints") / study_name
