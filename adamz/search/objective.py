"""A trial: sample a configuration, train it through the one training loop, report to Optuna.

What a trial records in its user attributes: ``host``, ``pid``, ``device``, ``torch_version``,
``adamz_version``, ``seeds``, ``wall_time_s``, ``epochs_run``, ``result`` (the first seed's
:class:`~adamz.training.TrainResult` as a dict, which for AdamZ holds the controller's
adjustments), ``seed_metrics``, and when it did not complete, ``stop_reason`` / ``error``.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from adamz import __version__
from adamz.search.studies import StudySpec
from adamz.training import RunConfig, train

__all__ = ["FINISHED", "SurplusTrialError", "TrialObjective", "count_states"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""States that count against a study's budget."""


class SurplusTrialError(RuntimeError):
    """A trial started after the budget was already taken by trials before it; it is not run."""


def original_trial_number(trial: optuna.Trial) -> int:
    """The number of the trial that ``trial`` retries (itself if it retries none).

    Optuna's retry callbacks record it in the system attributes, which a live ``Trial`` no
    longer exposes: read them through the storage, as Optuna's own helper does for frozen trials.
    """
    frozen = trial.study._storage.get_trial(trial._trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        origin = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return trial.number if origin is None else origin


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    """Number of the study's trials in each state."""
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


class TrialObjective:
    """The objective a worker passes to ``study.optimize``: one trial, ``seeds_per_trial`` runs.

    Args:
        spec: the study.
        budget: finished trials the study runs; a trial beyond it is refused (see
            :meth:`_check_budget`).
        device: the torch device to train on.
        checkpoint_dir: where trials keep their per-epoch checkpoints until they finish.
        data_dir: the dataset directory, when the study file does not name one.
        download: let torchvision download a missing dataset.
        on_step: progress callback forwarded to the training loop.
    """

    def __init__(
        self,
        spec: StudySpec,
        *,
        budget: int,
        device: str,
        checkpoint_dir: Path,
        data_dir: str | None = None,
        download: bool = False,
        on_step: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self.spec = spec
        self.budget = budget
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.data_dir = spec.workload.get("data_dir", data_dir)
        self.download = download
        self.on_step = on_step
        self.keep_checkpoints = False
        """Set when the worker is interrupted: the trial's retry resumes from them."""

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:1000])
            raise

    def _run(self, trial: optuna.Trial) -> float:
        self._check_budget(trial)
        hyperparameters = self.spec.space.suggest(trial)
        origin = original_trial_number(trial)
        seeds = list(range(self.spec.seeds_per_trial))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("device", self.device)
        trial.set_user_attr("torch_version", torch.__version__)
        trial.set_user_attr("adamz_version", __version__)
        trial.set_user_attr("seeds", seeds)
        if origin != trial.number:
            trial.set_user_attr("resumes_trial", origin)

        started = time.perf_counter()
        metrics: list[float] = []
        epochs_run = 0
        checkpoints = [self.checkpoint_dir / f"trial-{origin}-seed-{seed}.pt" for seed in seeds]
        try:
            for index, seed in enumerate(seeds):
                result = train(
                    self._run_config(hyperparameters, seed),
                    on_epoch=self._reporter(trial) if index == 0 else None,
                    on_step=self.on_step,
                    checkpoint_path=checkpoints[index],
                )
                epochs_run += result.epochs_completed
                if index == 0:
                    trial.set_user_attr("result", result.to_dict())
                if result.stop_reason == "nonfinite_loss" or result.final_metric is None:
                    trial.set_user_attr("stop_reason", f"diverged: {result.stop_detail}")
                    raise optuna.TrialPruned(f"diverged: {result.stop_detail}")
                metrics.append(result.final_metric)
        finally:
            trial.set_user_attr("wall_time_s", round(time.perf_counter() - started, 3))
            trial.set_user_attr("epochs_run", epochs_run)
            if not self.keep_checkpoints:
                for path in checkpoints:
                    path.unlink(missing_ok=True)
        trial.set_user_attr("seed_metrics", metrics)
        return statistics.fmean(metrics)

    def _check_budget(self, trial: optuna.Trial) -> None:
        """Refuse ``trial`` if the trials numbered before it already fill the budget.

        Workers check the budget before asking for a trial, but two of them can ask at the same
        moment; numbering is atomic in the storage, so the later trial is refused here. It is
        recorded as failed with ``surplus: true`` and does not count against the budget.
        """
        taken = sum(
            1
            for other in trial.study.get_trials(
                deepcopy=False, states=(*FINISHED, TrialState.RUNNING)
            )
            if other.number < trial.number
        )
        if taken >= self.budget:
            trial.set_user_attr("surplus", True)
            raise SurplusTrialError(f"the budget of {self.budget} trials is already taken")

    def _run_config(self, hyperparameters: dict[str, Any], seed: int) -> RunConfig:
        workload = {k: v for k, v in self.spec.workload.items() if k not in ("name", "data_dir")}
        return RunConfig(
            workload=self.spec.workload["name"],
            optimizer=self.spec.optimizer,
            hyperparameters=hyperparameters,
            seed=seed,
            device=self.device,
            data_dir=self.data_dir,
            download=self.download,
            **workload,
        )

    @staticmethod
    def _reporter(trial: optuna.Trial) -> Callable[[int, float], None]:
        def report(epoch: int, metric: float) -> None:
            if math.isfinite(metric):
                trial.report(metric, epoch)
            if trial.should_prune():
                trial.set_user_attr("stop_reason", f"pruned after epoch {epoch}")
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        return report
