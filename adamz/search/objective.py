"""A trial: sample a configuration, train it through the one training loop, report to Optuna.

A trial records two user attributes, because each is a write to the storage (a few
milliseconds on SQLite, which is most of a worker's cost per trial on a short workload):

- ``worker``, written when the trial starts so that ``status`` can show who runs it: ``host``,
  ``pid``, ``device``, ``torch_version``, ``adamz_version`` and, for a retried trial,
  ``resumes_trial`` (the number of the trial whose checkpoints it resumes); a worker writes it
  with the trial's first heartbeat;
- ``run``, written when it ends however it ends: ``seeds`` it trained, ``wall_time_s``,
  ``epochs_run`` in this trial, ``metrics`` (the mean over its seeds of every metric the loop
  records, validation and test: :data:`~adamz.workloads.METRICS`), ``seed_metrics`` (the same
  per seed), ``last_epoch_metrics`` (every metric after the last epoch the first seed
  reported, which is what a pruned trial reached), ``stop_reason`` when it was pruned or
  diverged, ``diverged`` when a seed's loss
  turned non-finite, and ``result``: the first seed's :class:`~adamz.training.TrainResult` as a
  dict, which for AdamZ holds the controller's adjustments.

The trial's value, every report to the pruner, and so everything that selects, is the study's
metric, a validation metric for a search (see :mod:`~adamz.search.studies`); the test metrics
are only recorded. A run whose loss diverges ends the trial as COMPLETE at the workload's
chance value (:meth:`~adamz.workloads.Workload.chance_value`) with ``run.diverged``: it cost
budget like any other, and the sampler must learn that its region is bad, which neither a
failed trial nor a pruned one at its last good value would teach it.

A trial that raised also has ``error``; one refused by the budget has ``surplus`` too.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from adamz import __version__
from adamz.search.budget import FINISHED, NO_QUEUED_RUN, SurplusTrialError, count_states
from adamz.search.errors import error_message
from adamz.search.replicates import TrialPlan
from adamz.search.studies import AnySpec
from adamz.search.trials import queued_attrs
from adamz.training import RunConfig, train
from adamz.workloads import METRICS, get_workload

__all__ = ["TrialObjective", "is_queued", "record_seed"]


def is_queued(trial: optuna.Trial) -> bool:
    """Whether ``trial`` was queued (defaults, a replicate run, a retry) rather than sampled.

    Queued trials carry ``fixed_params`` (``enqueue_trial``) or ``failed_trial`` (a retry) in
    their system attributes.
    """
    system_attrs = queued_attrs(trial)
    return "fixed_params" in system_attrs or "failed_trial" in system_attrs


def original_trial_number(trial: optuna.Trial) -> int:
    """The number of the trial that ``trial`` retries (itself if it retries none).

    Optuna's retry callbacks record it in the system attributes (``failed_trial``).
    """
    origin = queued_attrs(trial).get("failed_trial")
    return trial.number if origin is None else int(origin)


def record_seed(run: dict[str, Any], index: int, seed: int, result: dict[str, Any]) -> bool:
    """Record seed number ``index`` (``seed``) of a trial's ``run``: the first seed's record as
    ``result``, a diverged seed as ``stop_reason`` and ``diverged``. Whether it finished with
    metrics (the trial's later seeds are then trained; after a divergence they are not)."""
    if index == 0:
        run["result"] = result
    if result["final_metrics"] is None:
        run["stop_reason"] = f"diverged on seed {seed}: {result['stop_detail']}"
        run["diverged"] = True
        return False
    return True


class TrialObjective:
    """The objective a worker runs for each trial: one trial, ``seeds_per_trial`` training runs.

    Args:
        spec: the study.
        budget: finished trials the study runs; a trial beyond it is refused (see
            :mod:`~adamz.search.budget` and :meth:`_check_budget`).
        device: the torch device to train on.
        checkpoint_dir: where trials keep their per-epoch checkpoints until they finish.
        data_dir: the dataset directory, when the study file does not name one.
        download: let torchvision download a missing dataset.
        on_step: progress callback forwarded to the training loop.
        checkpoint_interval_s: least seconds between two checkpoints of a trial.
    """

    def __init__(
        self,
        spec: AnySpec,
        *,
        budget: int,
        device: str,
        checkpoint_dir: Path,
        data_dir: str | None = None,
        download: bool = False,
        on_step: Callable[[int, int, int], None] | None = None,
        checkpoint_interval_s: float = 0.0,
    ) -> None:
        self.spec = spec
        self.budget = budget
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.data_dir = spec.workload.get("data_dir", data_dir)
        self.download = download
        self.on_step = on_step
        self.checkpoint_interval_s = checkpoint_interval_s
        self.keep_checkpoints = False
        """Set when the worker is interrupted: the trial's retry resumes from them."""

    def __call__(self, trial: optuna.Trial) -> float:
        """Record who runs ``trial``, then :meth:`run` it: the objective for ``study.optimize``."""
        trial.set_user_attr("worker", self.worker_record(trial))
        return self.run(trial)

    def worker_record(self, trial: optuna.Trial) -> dict[str, Any]:
        """The ``worker`` user attribute: who runs ``trial`` and which trial it resumes.

        Reading it costs no query: ``adamz-search`` workers write it with the trial's first
        heartbeat, in one transaction, and then call :meth:`run`.
        """
        worker: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.device,
            "torch_version": torch.__version__,
            "adamz_version": __version__,
        }
        origin = original_trial_number(trial)
        if origin != trial.number:
            worker["resumes_trial"] = origin
        return worker

    def run(self, trial: optuna.Trial, *, admitted: bool = False) -> float:
        """Train ``trial``'s plan on each of its seeds and return the mean of the study's metric
        (the workload's chance value if a seed diverged).

        ``admitted``: the budget already admitted ``trial`` (a worker's first heartbeat does,
        :class:`~adamz.search.budget.Budget`); otherwise :meth:`_check_budget` checks it. An
        exception is recorded in the ``error`` attribute, and raised.

        Raises:
            optuna.TrialPruned: the pruner stopped it.
            SurplusTrialError: the trials that started before it already fill the budget.
        """
        try:
            return self._run(trial, admitted=admitted)
        except optuna.TrialPruned:
            raise
        except BaseException as exc:
            trial.set_user_attr("error", error_message(exc))
            raise

    def admit(self, trial: optuna.Trial) -> None:
        """Check that ``trial`` may run: a replicate study runs only queued trials, and the
        budget must have room for it (:meth:`_check_budget`).

        Raises:
            SurplusTrialError: it may not; it is marked ``surplus``.
        """
        if self.spec.queued_only and not is_queued(trial):
            trial.set_user_attr("surplus", True)
            raise SurplusTrialError(NO_QUEUED_RUN)
        self._check_budget(trial)

    def checkpoint_path(self, trial: optuna.Trial, seed: int, *, member: bool = False) -> Path:
        """Where seed ``seed`` of ``trial`` keeps its checkpoint (a retry resumes from it).

        A population member's (``member``) has a format of its own, and a name of its own.
        """
        suffix = ".member.pt" if member else ".pt"
        return self.checkpoint_dir / f"trial-{original_trial_number(trial)}-seed-{seed}{suffix}"

    def _run(self, trial: optuna.Trial, *, admitted: bool) -> float:
        if not admitted:  # an admitted trial already passed both checks
            self.admit(trial)
        plan = self.spec.plan(trial)
        seeds = plan.seeds
        started = time.perf_counter()
        seed_metrics: list[dict[str, float]] = []
        run: dict[str, Any] = {"seeds": seeds, "epochs_run": 0}
        checkpoints = [self.checkpoint_path(trial, seed) for seed in seeds]
        try:
            for index, seed in enumerate(seeds):
                result = train(
                    self.run_config(plan, seed),
                    on_epoch=self.reporter(trial, run, self.spec.metric, report=index == 0),
                    on_step=self.on_step,
                    checkpoint_path=checkpoints[index],
                    checkpoint_interval_s=self.checkpoint_interval_s,
                )
                record = result.to_dict()
                if not record_seed(run, index, seed, record):
                    break
                seed_metrics.append(record["final_metrics"])
        finally:
            self.close_run(trial, run, seed_metrics, time.perf_counter() - started, checkpoints)
        return self.value(run)

    def close_run(
        self,
        trial: optuna.Trial,
        run: dict[str, Any],
        seed_metrics: list[dict[str, float]],
        seconds: float,
        checkpoints: list[Path],
    ) -> None:
        """Write ``trial``'s ``run`` attribute, its ``metrics`` the mean over ``seed_metrics``,
        and delete its checkpoints unless the worker keeps them for a retry."""
        run["wall_time_s"] = round(seconds, 3)
        run["seed_metrics"] = seed_metrics
        if seed_metrics and not run.get("diverged"):
            run["metrics"] = {
                name: statistics.fmean(metrics[name] for metrics in seed_metrics)
                for name in METRICS
            }
        trial.set_user_attr("run", run)
        if not self.keep_checkpoints:
            for path in checkpoints:
                path.unlink(missing_ok=True)

    def value(self, run: dict[str, Any]) -> float:
        """The trial's value: the mean of the study's metric over its seeds, or the
        workload's chance value if a seed diverged."""
        if run.get("diverged"):
            return get_workload(self.spec.workload["name"]).chance_value(self.spec.metric)
        return float(run["metrics"][self.spec.metric])

    def _check_budget(self, trial: optuna.Trial) -> None:
        """Refuse ``trial`` if the trials that started before it already fill the budget.

        The check for a trial that its first heartbeat did not admit (on Optuna's journal
        storage, or run by ``study.optimize``). Workers check the budget before asking for a
        trial, but two of them can ask at the same moment; the one that started later is
        refused here. It is recorded as failed with ``surplus: true`` and does not count
        against the budget.

        The slow path reads the running trials and then counts the finished ones, in that
        order: a trial that finishes between the two reads is then counted twice, which can
        only refuse a trial that had room (its worker asks again; a replicate's queued run is
        queued again). Read the other way round, such a trial was in neither read, and two
        workers could both run the last place.

        Which trial started first is told by their start times, which each worker's clock
        takes as it takes a trial. Two trials that start within a few milliseconds of each
        other, as the budget's last place frees, can both run where those times disagree with
        the order in which the trials became visible: on hosts whose clocks differ, or on
        PostgreSQL, where a trial taken from the queue becomes visible a moment after its time
        is taken. SQLite serialises all writes, and there the check is exact. A worker's
        admission by its first heartbeat is exact on both.

        A trial that was not queued was numbered and started in one step, so every trial that
        started before it has a lower number: if its number is below the budget, those cannot
        fill it, and the check needs no query. Queued trials (defaults, replicate runs, retries)
        carry ``fixed_params`` or ``failed_trial`` and are always counted: they were numbered
        when queued, and may start long after trials with higher numbers.
        """
        if not is_queued(trial) and trial.number < self.budget:
            return
        counts = count_states(trial.study)  # one query: a consistent view
        if sum(counts[state] for state in FINISHED) + counts[TrialState.RUNNING] <= self.budget:
            return  # this one included
        running = trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))  # few
        finished = sum(count_states(trial.study)[state] for state in FINISHED)
        mine = next(other for other in running if other.number == trial.number)
        # Finished trials all count; running ones if they started before this one.
        started_before = [
            other
            for other in running
            if other.number != trial.number
            and (other.datetime_start, other.number) < (mine.datetime_start, mine.number)
        ]
        if finished + len(started_before) >= self.budget:
            trial.set_user_attr("surplus", True)
            raise SurplusTrialError(f"the budget of {self.budget} trials is already taken")

    def run_config(self, plan: TrialPlan, seed: int) -> RunConfig:
        """The training run of ``plan`` on ``seed``."""
        workload = {k: v for k, v in self.spec.workload.items() if k not in ("name", "data_dir")}
        return RunConfig(
            workload=self.spec.workload["name"],
            optimizer=plan.optimizer,
            hyperparameters=plan.hyperparameters,
            seed=seed,
            device=self.device,
            data_dir=self.data_dir,
            download=self.download,
            **workload,
        )

    @staticmethod
    def reporter(
        trial: optuna.Trial, run: dict[str, Any], metric_name: str, *, report: bool
    ) -> Callable[[int, dict[str, float]], None]:
        """``on_epoch`` for the training loop: counts epochs in ``run``; if ``report``, reports
        the study's metric (and nothing else: the pruner never sees a test value) and prunes."""

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            run["epochs_run"] += 1
            if not report:
                return
            run["last_epoch_metrics"] = metrics  # what a pruned trial had reached, test included
            metric = metrics[metric_name]
            if math.isfinite(metric):
                trial.report(metric, epoch)
            # should_prune reads the trial back from the storage; without a pruner, skip it.
            if (
                not isinstance(trial.study.pruner, optuna.pruners.NopPruner)
                and trial.should_prune()
            ):
                run["stop_reason"] = f"pruned after epoch {epoch}"
                raise optuna.TrialPruned(run["stop_reason"])

        return on_epoch
