"""Population trials: a worker trains K trials of its study at once, in one process.

A worker with ``--population K`` (or ``population: K`` in the study file) asks Optuna for up to
K trials, TPE's constant liar seeing the others as running, and trains all their seeds together
with :func:`adamz.training.population.train_population`: one stacked model, one batched
optimizer with every trial's own hyperparameters. Each trial is reported to and pruned on its
own, records the same ``run`` attribute as a trial trained alone
(:mod:`~adamz.search.objective`), and is told on its own.

Trials whose optimizer has no batched form (:data:`adamz.optim.batched.BATCHED_OPTIMIZERS`)
train one after another, and the worker says so once. A replicate study whose runs use several
optimizers trains one population per optimizer.

Each member checkpoints on its own (``trial-N-seed-S.member.pt``), so a trial of a killed
population is retried, and resumed, in whichever population later takes it.

The worker asks for a population's trials, and checks them for pruning, through a study that
reads the storage once per round (:mod:`~adamz.search.snapshot`): read once per trial, the K
running trials cost K reads of K trials per epoch, which at K = 32 with a pruner cost more than
the training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from adamz.optim.batched import BATCHED_OPTIMIZERS, NotBatchableError
from adamz.search.errors import error_message
from adamz.search.objective import TrialObjective, record_seed
from adamz.search.studies import AnySpec
from adamz.training import RunConfig, StopTraining
from adamz.training.population import train_population

__all__ = ["Outcome", "batched_optimizers", "train_trials"]

logger = logging.getLogger(__name__)

_WARNED: set[str] = set()


@dataclass
class Outcome:
    """How one trial of a population ended: a ``value`` (COMPLETE), ``pruned``, or ``error``."""

    value: float | None = None
    pruned: bool = False
    error: str | None = None


def batched_optimizers(spec: AnySpec) -> tuple[set[str], set[str]]:
    """The optimizers ``spec`` trains, split into those with a batched form and the others."""
    runs = getattr(spec, "runs", None)
    names = {run["optimizer"] for run in runs} if runs is not None else {spec.optimizer}  # type: ignore[union-attr]
    return names & set(BATCHED_OPTIMIZERS), names - set(BATCHED_OPTIMIZERS)


@dataclass
class _Member:
    trial: optuna.Trial
    index: int
    seed: int
    config: RunConfig
    checkpoint: Path


def train_trials(
    objective: TrialObjective,
    trials: list[optuna.Trial],
    lost: set[int],
    new_round: Callable[[], None] = lambda: None,
) -> dict[int, Outcome]:
    """Train ``trials`` (admitted already) together; their outcomes by trial number.

    ``lost`` holds the numbers of trials that another worker failed as stale meanwhile (the
    heartbeat adds them): their members stop at their next epoch, and nothing is recorded.
    ``new_round`` is called before each epoch's reports (the worker reads the study again
    then, :mod:`~adamz.search.snapshot`).

    Raises:
        adamz.search.interrupts.WorkerStopped: SIGTERM or SIGINT; every trial's checkpoints
            are kept for its retry.
        Exception: training failed for every trial (a missing dataset, say).
    """
    spec = objective.spec
    runs: dict[int, dict[str, Any]] = {}
    members: list[_Member] = []
    for trial in trials:
        plan = spec.plan(trial)
        runs[trial.number] = {"seeds": plan.seeds, "epochs_run": 0}
        for index, seed in enumerate(plan.seeds):
            path = objective.checkpoint_path(trial, seed, member=True)
            members.append(_Member(trial, index, seed, objective.run_config(plan, seed), path))
    stopped: set[int] = set()  # pruned trials
    reporters = {
        trial.number: objective.reporter(trial, runs[trial.number], spec.metric, report=True)
        for trial in trials
    }

    def on_epoch(group: list[_Member]) -> Callable[[int, int, dict[str, float]], None]:
        last = len(group)

        def report(position: int, epoch: int, metrics: dict[str, float]) -> None:
            nonlocal last
            if position <= last:  # members report in order: a lower one begins a round
                new_round()
            last = position
            member = group[position]
            number = member.trial.number
            if number in stopped or number in lost:
                raise StopTraining("its trial has ended")
            if member.index != 0:  # as a trial trained alone: its first seed reports
                runs[number]["epochs_run"] += 1
                return
            try:
                reporters[number](epoch, metrics)
            except optuna.TrialPruned as pruned:
                stopped.add(number)
                raise StopTraining(str(pruned)) from None
            except UpdateFinishedTrialError:  # failed as stale before its heartbeat noticed
                lost.add(number)
                raise StopTraining("its trial has ended") from None

        return report

    started = time.perf_counter()
    records: dict[tuple[int, int], dict[str, Any]] = {}
    outcomes: dict[int, Outcome] = {}
    try:
        for optimizer in dict.fromkeys(member.config.optimizer for member in members):
            group = [member for member in members if member.config.optimizer == optimizer]
            try:
                results = train_population(
                    [member.config for member in group],
                    on_epoch=on_epoch(group),
                    on_step=objective.on_step,
                    checkpoint_paths=[member.checkpoint for member in group],
                    checkpoint_interval_s=objective.checkpoint_interval_s,
                )
            except NotBatchableError as exc:
                if str(exc) not in _WARNED:  # once per worker, not once per population
                    _WARNED.add(str(exc))
                    logger.warning("%s: its trials train one at a time.", exc)
                for trial in dict.fromkeys(member.trial for member in group):
                    outcomes[trial.number] = _train_alone(objective, trial)
                continue
            for member, result in zip(group, results, strict=True):
                records[member.trial.number, member.index] = result.to_dict()
    finally:
        seconds = time.perf_counter() - started
        for trial in trials:
            if trial.number in outcomes or trial.number in lost:
                continue
            run = runs[trial.number]
            seed_metrics: list[dict[str, float]] = []
            for index, seed in enumerate(run["seeds"]):
                record = records.get((trial.number, index))
                if record is None or not record_seed(run, index, seed, record):
                    break
                if record["stop_reason"] != "completed":
                    break
                seed_metrics.append(record["final_metrics"])
            paths = [m.checkpoint for m in members if m.trial.number == trial.number]
            # Its share of the population's time, as its members' records count it.
            share = sum(
                records[trial.number, index]["wall_time_s"]
                for index in range(len(run["seeds"]))
                if (trial.number, index) in records
            )
            try:
                objective.close_run(trial, run, seed_metrics, share or seconds / len(trials), paths)
            except UpdateFinishedTrialError:  # failed as stale meanwhile: not ours to record
                lost.add(trial.number)
    for trial in trials:
        if trial.number in outcomes or trial.number in lost:
            continue
        run = runs[trial.number]
        if trial.number in stopped:
            outcomes[trial.number] = Outcome(pruned=True)
        elif run.get("diverged") or "metrics" in run:
            outcomes[trial.number] = Outcome(value=objective.value(run))
        else:
            outcomes[trial.number] = Outcome(error="no seed of the trial finished")
    return outcomes


def _train_alone(objective: TrialObjective, trial: optuna.Trial) -> Outcome:
    """Train ``trial`` on its own, as a worker without a population would."""
    try:
        return Outcome(value=objective.run(trial, admitted=True))
    except optuna.TrialPruned:
        return Outcome(pruned=True)
    except Exception as exc:  # this trial's fault: the others go on
        logger.warning("Trial %d failed:", trial.number, exc_info=True)
        return Outcome(error=error_message(exc))
