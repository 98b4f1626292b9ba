"""Trials: each trains its plan's seeds through the one training loop and reports to Optuna.

:meth:`TrialObjective.train` trains any number of trials with one call into the training
(:func:`adamz.training.population.train_runs`, once per optimizer): a worker with
``--population K`` trains K trials at once, every seed of each, stacked as one model where the
model and optimizer allow it (else one at a time; the training says why, once); a trial alone
trains its seeds each on its own model. Either way each trial is reported to, pruned and
recorded on its own, and ``study.optimize(objective)`` runs one trial the same way. A stopped
worker and a storage unreachable past the patience end the training of every trial the same
way, whatever the population: every checkpoint is kept, and the trials resume (:meth:`train`).

After each epoch, the trials report as one round: every trial's report first (its first
seed's value of the study's metric, and nothing else: the pruner never sees a test value),
then the study is read once, then each trial is checked for pruning against it. A worker's
storage (:class:`~adamz.search.cache.WorkerStorage`) writes the reports behind and reads them
back at once; while it cannot be reached, the pruning checks wait for a round that can read
the study, and training goes on.

A trial records two user attributes, because each is a write to the storage (a few
milliseconds on SQLite, which is most of a worker's cost per trial on a short workload):

- ``worker``, written when the trial starts so that ``status`` can show who runs it: ``host``,
  ``pid``, ``device``, ``torch_version``, ``adamz_version`` and, for a retried trial,
  ``resumes_trial`` (the number of the trial whose checkpoints it resumes);
- ``run``, written when it ends however it ends: its :class:`~adamz.search.records.TrialRun`.

The trial's value, every report to the pruner, and so everything that selects, is the study's
metric, a validation metric for a search (see :mod:`~adamz.search.studies`); the test metrics
are only recorded. A run whose loss diverges ends the trial as COMPLETE at the workload's
chance value (:meth:`~adamz.workloads.Workload.chance_value`) with ``run.diverged``: it cost
budget like any other, and the sampler must learn that its region is bad, which neither a
failed trial nor a pruned one at its last good value would teach it.

A trial whose training raised also has ``error``; one refused by the budget has ``surplus``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from adamz import __version__
from adamz.search.budget import (
    FINISHED,
    NO_QUEUED_RUN,
    QUEUED_ATTR,
    SurplusTrialError,
    count_states,
)
from adamz.search.cache import WorkerStorage
from adamz.search.definitions import TrialPlan
from adamz.search.errors import error_message
from adamz.search.interrupts import Interrupts, WorkerStopped
from adamz.search.outage import StorageUnreachable, impatient
from adamz.search.records import RUN_ATTR, TrialRun
from adamz.search.retries import retried_trial_number
from adamz.search.studies import AnySpec
from adamz.training import RunConfig, StopTraining
from adamz.training.loop import EpochEnd, OnEpochs
from adamz.training.population import train_runs
from adamz.workloads import RUN_SETTINGS, workload_of, workload_options

__all__ = ["Outcome", "TrialObjective", "TrialRef"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialRef:
    """A running trial, with what the storage said of it when it started."""

    trial: optuna.Trial
    trial_id: int
    """Its id in the storage, for ``BaseStorage`` methods."""
    origin: int
    """The number of the trial whose checkpoints it resumes: its own, unless it is a retry."""
    queued: bool
    """Queued (a reference point, a replicate run, a retry) rather than sampled."""
    reported: frozenset[int] = frozenset()
    """The epochs it inherited reports of (a retry: those its first attempt wrote)."""

    @property
    def number(self) -> int:
        return self.trial.number


@dataclass
class Outcome:
    """How one trial ended: a ``value`` (COMPLETE), ``pruned`` (after which epoch:
    ``stop_reason``), or an ``error`` (the exception its training raised)."""

    value: float | None = None
    pruned: bool = False
    error: BaseException | None = None
    stop_reason: str = ""


@dataclass
class _SeedRun:
    """One training run of a trial: the trial's plan on one of its seeds."""

    ref: TrialRef
    reports: bool
    """The trial's first seed: the one whose values are reported to the pruner."""
    config: RunConfig
    checkpoint: Path


@dataclass
class _Trials:
    """The trials of one :meth:`TrialObjective.train`, as their training goes."""

    refs: dict[int, TrialRef]
    runs: dict[int, TrialRun]
    lost: set[int]
    """Failed as stale by another worker: stopped, and nothing is recorded."""
    pruned: set[int] = field(default_factory=set)
    errors: dict[int, BaseException] = field(default_factory=dict)
    records: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    """Each run's record, by trial number and seed."""
    reported: dict[int, set[int]] = field(default_factory=dict)
    """The epochs each trial reported."""

    def ended(self, number: int) -> bool:
        return number in self.pruned or number in self.lost or number in self.errors


class TrialObjective:
    """Trains a study's trials: ``seeds_per_trial`` training runs each.

    Args:
        spec: the study's definition.
        study: the study the trials are of (through ``storage``).
        storage: the study's storage: a worker's :class:`~adamz.search.cache.WorkerStorage`
            is read again before each round's pruning checks.
        budget: finished trials the study runs; a trial beyond it is refused
            (:meth:`admit`).
        device: the torch device to train on.
        checkpoint_dir: where trials keep their per-epoch checkpoints until they finish.
        data_dir: the dataset directory, when the study file does not name one.
        download: let torchvision download a missing dataset.
        checkpoint_interval_s: least seconds between two checkpoints of a trial.
        interrupts: the worker's signal flag, checked at every training step; once a signal
            came, the trials keep their checkpoints for their retries.
    """

    def __init__(
        self,
        spec: AnySpec,
        *,
        study: optuna.Study,
        storage: BaseStorage,
        budget: int,
        device: str,
        checkpoint_dir: Path,
        data_dir: str | None = None,
        download: bool = False,
        checkpoint_interval_s: float = 0.0,
        interrupts: Interrupts | None = None,
    ) -> None:
        self.spec = spec
        self.study = study
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.budget = budget
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.data_dir = spec.workload.get("data_dir", data_dir)
        self.download = download
        self.checkpoint_interval_s = checkpoint_interval_s
        self.interrupts = Interrupts() if interrupts is None else interrupts

    # One trial as Optuna's own loop runs it.

    def __call__(self, trial: optuna.Trial) -> float:
        """Train ``trial`` (``study.optimize(objective)``): its value, or ``TrialPruned``.

        Raises:
            optuna.TrialPruned: the pruner stopped it.
            SurplusTrialError: the trials that started before it already fill the budget.
            Exception: what its training raised.
        """
        ref = self.ref(trial)
        trial.set_user_attr("worker", self.worker_record(ref))
        self.admit(ref)
        outcome = self.train([ref], set())[trial.number]
        if outcome.error is not None:
            raise outcome.error
        if outcome.pruned:
            raise optuna.TrialPruned(outcome.stop_reason)
        assert outcome.value is not None
        return outcome.value

    run = __call__

    def ref(self, trial: optuna.Trial) -> TrialRef:
        """``trial`` with its id and how it came to run, read from the storage."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        frozen = self.storage.get_trial(trial_id)
        origin = retried_trial_number(frozen)
        return TrialRef(
            trial,
            trial_id,
            trial.number if origin is None else origin,
            origin is not None or bool(frozen.user_attrs.get(QUEUED_ATTR)),
            frozenset(frozen.intermediate_values),
        )

    def worker_record(self, ref: TrialRef, **extra: Any) -> dict[str, Any]:
        """The ``worker`` user attribute: who runs ``ref``'s trial and which trial it
        resumes, and ``extra`` (the worker's sampler seed, its population)."""
        worker: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.device,
            "torch_version": torch.__version__,
            "adamz_version": __version__,
            **extra,
        }
        if ref.origin != ref.number:
            worker["resumes_trial"] = ref.origin
        return worker

    def admit(self, ref: TrialRef) -> None:
        """Check that ``ref``'s trial may run: a replicate or sensitivity study runs only queued
        trials, and the budget must have room for it.

        The trials before it count against the budget: every finished trial, and the running
        and queued ones with lower numbers (the storage numbers trials in one order for every
        host, where start times would follow each host's clock). A queued trial holds its place
        even before it starts, or a trial that checked while it waited and the queued one when
        it starts could each count the other out. A trial that was not queued was numbered as
        it started: below the budget, it needs no query. A queued one is always counted: it
        may start long after trials with higher numbers. The unfinished trials are read before
        the finished ones: one that finishes between the two reads is counted twice, which can
        only refuse a trial that had room (its worker asks again), never let two take the last
        place.

        Raises:
            SurplusTrialError: it may not; it is marked ``surplus``.
        """
        trial = ref.trial
        if self.spec.queued_only and not ref.queued:
            trial.set_user_attr("surplus", True)
            raise SurplusTrialError(NO_QUEUED_RUN)
        if not ref.queued and trial.number < self.budget:
            return
        counts = count_states(self.study)  # one query: a consistent view
        unfinished = counts[TrialState.RUNNING] + counts[TrialState.WAITING]
        if sum(counts[state] for state in FINISHED) + unfinished <= self.budget:
            return  # this one included
        unfinished_trials = self.study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
        )
        finished = sum(count_states(self.study)[state] for state in FINISHED)
        before = [other for other in unfinished_trials if other.number < trial.number]
        if finished + len(before) >= self.budget:
            trial.set_user_attr("surplus", True)
            raise SurplusTrialError(f"the budget of {self.budget} trials is already taken")

    def run_config(self, plan: TrialPlan, seed: int) -> RunConfig:
        """The training run of ``plan`` on ``seed``: the study's workload with its protocol
        overrides, and its options where it is one of the user's code."""
        entry = self.spec.workload
        settings = {k: v for k, v in entry.items() if k in RUN_SETTINGS and k != "data_dir"}
        return RunConfig(
            workload=entry["name"],
            optimizer=plan.optimizer,
            hyperparameters=plan.hyperparameters,
            seed=seed,
            device=self.device,
            data_dir=self.data_dir,
            download=self.download,
            workload_options=workload_options(entry),
            **settings,
        )

    # Training.

    def train(
        self, refs: list[TrialRef], lost: set[int], *, population: bool = False
    ) -> dict[int, Outcome]:
        """Train ``refs``' trials (admitted already) and record each; their outcomes by number.

        ``population``: stack the trials' runs as one model where the model allows it.
        ``lost`` holds the numbers of trials another worker failed as stale meanwhile (the
        heartbeat adds them): they stop at their next epoch, and nothing is recorded.

        Raises:
            adamz.search.interrupts.WorkerStopped: the worker was stopped; what was trained is
                recorded.
            StorageUnreachable: the storage was unreachable past the worker's patience;
                nothing more is recorded.
            Either way every checkpoint is written and kept: the trials resume from them.
        """
        now = _Trials(
            {ref.number: ref for ref in refs}, {ref.number: TrialRun() for ref in refs}, lost
        )
        runs: list[_SeedRun] = []
        for ref in refs:
            plan = self.spec.plan(ref.trial)
            now.runs[ref.number].seeds = list(plan.seeds)
            for index, seed in enumerate(plan.seeds):
                path = self.checkpoint_dir / f"trial-{ref.origin}-seed-{seed}.pt"  # a retry's too
                runs.append(_SeedRun(ref, index == 0, self.run_config(plan, seed), path))
        started = time.perf_counter()
        try:
            for optimizer in dict.fromkeys(run.config.optimizer for run in runs):
                group = [run for run in runs if run.config.optimizer == optimizer]
                self._train_group(group, now, population)
        except WorkerStopped as stopped:  # record what was done; the trials resume
            for run in now.runs.values():
                run.stop_reason = f"interrupted ({error_message(stopped)})"
            self._close(now, runs, time.perf_counter() - started, keep=True)
            raise
        keep = self.interrupts.pending is not None  # the retries queued on a stop resume
        self._close(now, runs, time.perf_counter() - started, keep=keep)
        return {number: self._outcome(number, now) for number in now.refs if number not in lost}

    def _train_group(self, group: list[_SeedRun], now: _Trials, stack: bool) -> None:
        """Train ``group``'s runs in one call; an error of their training is every one of
        their trials'."""
        try:
            results = train_runs(
                [run.config for run in group],
                stack=stack,
                on_epochs=self._reporter(group, now),
                on_step=self.interrupts.check,
                checkpoint_paths=[run.checkpoint for run in group],
                checkpoint_interval_s=self.checkpoint_interval_s,
            )
        except StorageUnreachable:
            raise  # not the trials' fault: they resume (see train)
        except Exception as exc:  # the trials' fault (their data, their model): others go on
            numbers = sorted({run.ref.number for run in group})
            logger.warning("Trials %s failed:", ", ".join(map(str, numbers)), exc_info=True)
            for number in numbers:
                now.errors.setdefault(number, exc)
            return
        for run, result in zip(group, results, strict=True):
            now.records[run.ref.number, run.config.seed] = result.to_dict()

    def _reporter(self, group: list[_SeedRun], now: _Trials) -> OnEpochs:
        """The training's ``on_epochs`` for ``group``: one round of reports."""

        def on_epochs(ends: list[EpochEnd]) -> dict[int, StopTraining]:
            reporting: list[int] = []
            for end in ends:
                run = group[end.member]
                number = run.ref.number
                now.runs[number].epochs_run += 1
                if not run.reports or now.ended(number):
                    continue
                now.runs[number].last_epoch_metrics = end.metrics  # what a pruned one reached
                metric = end.metrics[self.spec.metric]
                if math.isfinite(metric):
                    self._report(number, end.epoch, metric, now)
                reporting.append(number)
            self._prune_round(reporting, now)
            return {
                end.member: StopTraining(now.runs[number].stop_reason or "its trial ended")
                for end in ends
                if now.ended(number := group[end.member].ref.number)
            }

        return on_epochs

    def _report(self, number: int, epoch: int, value: float, now: _Trials) -> None:
        try:
            now.refs[number].trial.report(value, epoch)
        except UpdateFinishedTrialError:  # failed as stale before its heartbeat noticed
            now.lost.add(number)
            return
        now.reported.setdefault(number, set()).add(epoch)

    def _prune_round(self, numbers: list[int], now: _Trials) -> None:
        """Check each of ``numbers``' trials, which reported this round, for pruning; if the
        storage cannot be read, at a later round."""
        if isinstance(self.study.pruner, optuna.pruners.NopPruner):
            return  # should_prune would read each trial back for nothing
        if isinstance(self.storage, WorkerStorage):
            self.storage.new_round()
        try:
            with impatient():
                for number in numbers:
                    if now.ended(number) or number not in now.reported:
                        continue
                    try:
                        pruned = now.refs[number].trial.should_prune()
                    except UpdateFinishedTrialError:
                        now.lost.add(number)
                        continue
                    if pruned:
                        epoch = max(now.reported[number])
                        now.runs[number].stop_reason = f"pruned after epoch {epoch}"
                        now.pruned.add(number)
        except StorageUnreachable as exc:
            if exc.past_patience:
                raise

    def _close(self, now: _Trials, runs: list[_SeedRun], seconds: float, *, keep: bool) -> None:
        """Record each trial's ``run`` (its waiting reports first) and delete its checkpoints
        unless they are to be kept for a retry."""
        for number, ref in now.refs.items():
            if number in now.lost:
                continue
            run = now.runs[number]
            self._report_missing(number, now)
            seed_metrics: list[dict[str, float]] = []
            for index, seed in enumerate(run.seeds):
                record = now.records.get((number, seed))
                if record is None:
                    break
                if index == 0:
                    run.result = record
                if record["final_metrics"] is None:
                    run.stop_reason = f"diverged on seed {seed}: {record['stop_detail']}"
                    run.diverged = True
                    break
                if record["stop_reason"] != "completed":
                    break
                seed_metrics.append(record["final_metrics"])
            share = sum(
                now.records[number, seed]["wall_time_s"]
                for seed in run.seeds
                if (number, seed) in now.records
            )
            run.wall_time_s = round(share or seconds / len(now.refs), 3)
            run.seed_metrics = seed_metrics
            if seed_metrics and not run.diverged:
                run.metrics = {
                    name: statistics.fmean(metrics[name] for metrics in seed_metrics)
                    for name in seed_metrics[0]
                }
            if number in now.errors:
                run.stop_reason = run.stop_reason or error_message(now.errors[number])
            try:
                ref.trial.set_user_attr(RUN_ATTR, run.to_dict())
                if number in now.errors:
                    ref.trial.set_user_attr("error", error_message(now.errors[number]))
            except UpdateFinishedTrialError:  # failed as stale meanwhile: not ours to record
                now.lost.add(number)
                continue
            if not keep and number not in now.lost:
                for seed_run in runs:
                    if seed_run.ref.number == number:
                        seed_run.checkpoint.unlink(missing_ok=True)

    def _report_missing(self, number: int, now: _Trials) -> None:
        """Report the epochs of ``number``'s first seed that the storage lacks: a resumed
        trial's whose reports were lost with its first worker (killed after the checkpoint,
        before they were written; or its checkpoint held the finished run)."""
        ref, record = now.refs[number], now.records.get((number, now.runs[number].seeds[0]))
        if record is None:
            return
        done = ref.reported | now.reported.get(number, set())
        for epoch, value in enumerate(record["epoch_metrics"][self.spec.metric], start=1):
            if epoch not in done and math.isfinite(value):
                self._report(number, epoch, value, now)

    def _outcome(self, number: int, now: _Trials) -> Outcome:
        run = now.runs[number]
        if number in now.errors:
            return Outcome(error=now.errors[number])
        if number in now.pruned:
            return Outcome(pruned=True, stop_reason=run.stop_reason or "pruned")
        if run.diverged or run.metrics is not None:
            return Outcome(value=self.value(run))
        return Outcome(error=RuntimeError("no seed of the trial finished"))

    def value(self, run: TrialRun) -> float:
        """The trial's value: the mean of the study's metric over its seeds, or the
        workload's chance value if a seed diverged."""
        if run.diverged or run.metrics is None:
            return workload_of(self.spec.workload).chance_value(self.spec.metric)
        return float(run.metrics[self.spec.metric])
