"""Study workers: processes that pull trials from a shared storage until the budget is met.

:func:`launch_workers` starts ``workers_per_device`` processes per device, each pinned to its
device (``CUDA_VISIBLE_DEVICES``; on the CPU each gets its share of the cores), and shows a
progress bar read from the storage. Each process runs :func:`run_worker`, which repeats:

1. stop if the study's finished trials (complete + pruned) reach the budget;
2. if the trials running elsewhere will reach it, wait for them (and fail stale ones, so a
   dead worker's trial is queued again and someone retries it; also one whose worker died
   before its first heartbeat, :func:`~adamz.search.heartbeat.fail_unbeaten_trials`);
3. otherwise fail stale trials (at most once per heartbeat interval) and run one trial:
   ``study.ask``, the objective under a :class:`~adamz.search.heartbeat.Heartbeat`,
   ``study.tell``.

A replicate study (``queued_only``) runs only its queued trials: a worker waits while none is
queued and some run elsewhere, stops when none is left, and queues a trial that failed with an
exception again (up to ``MAX_RETRIES`` faults, :mod:`~adamz.search.retries`), since nothing
would sample its (run, seed).

The budget is the study's, not each worker's: N workers together run it once. On the first
SIGTERM or SIGINT a worker interrupts its trial's training, which is recorded as failed and
queued again (it resumes from its last epoch checkpoint), and exits 0; it never leaves a trial
RUNNING. A signal during a storage write takes effect once the write is done
(:mod:`~adamz.search.interrupts`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from adamz.search.budget import (
    FINISHED,
    NO_QUEUED_RUN,
    Budget,
    SurplusTrialError,
    count_states,
)
from adamz.search.errors import error_message
from adamz.search.heartbeat import Heartbeat, fail_unbeaten_trials
from adamz.search.interrupts import Interrupts, WorkerStopped
from adamz.search.objective import TrialObjective, is_queued
from adamz.search.retries import MAX_RETRIES, queue_retry
from adamz.search.storage import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, load_study, open_storage
from adamz.search.studies import AnySpec, make_pruner, make_sampler, spec_from_definition

__all__ = [
    "BUDGET_OVERRIDE_ATTR",
    "WorkerOptions",
    "WorkerStopped",
    "launch_workers",
    "parse_devices",
    "run_worker",
]

logger = logging.getLogger(__name__)

POLL_S = 1.0
CHECKPOINT_INTERVAL_S = 30.0
"""Least seconds between two checkpoints of a trial: a killed trial redoes at most this much."""
BUDGET_OVERRIDE_ATTR = "n_trials"
"""The study attribute holding the last workers' ``--n-trials`` (``None``: the file's budget)."""
MAX_CONSECUTIVE_FAILURES = 5
"""A worker whose trials fail this many times in a row stops with exit code 1: something is
wrong with the study or the host (a bug, missing data), not with the sampled values."""


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs: where, with what data, how long, and how it beats.

    ``n_trials`` overrides the study file's budget; ``heartbeat_interval`` and ``grace_period``
    are in seconds (shorter ones find dead workers sooner, at the cost of more writes).
    """

    storage: str | None = None
    device: str = "cpu"
    n_trials: int | None = None
    data_dir: str | None = None
    download: bool = False
    checkpoint_dir: str | None = None
    checkpoint_interval: float = CHECKPOINT_INTERVAL_S
    worker_index: int = 0
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S


def run_worker(study_name: str, options: WorkerOptions) -> int:
    """Pull and run trials of ``study_name`` until its budget is met; return the exit code.

    Raises:
        ValueError: the storage cannot be opened, or the study is unknown or was not created
            by ``adamz-search create``.
    """
    storage = open_storage(
        options.storage,
        heartbeat_interval=options.heartbeat_interval,
        grace_period=options.grace_period,
    )
    study = load_study(study_name, storage)
    spec = stored_spec(study)
    study.sampler = make_sampler(spec.sampler, seed_offset=options.worker_index)
    study.pruner = make_pruner(spec.pruner)
    budget = options.n_trials or spec.budget
    if study.user_attrs.get(BUDGET_OVERRIDE_ATTR) != options.n_trials:
        study.set_user_attr(BUDGET_OVERRIDE_ATTR, options.n_trials)  # for `status`
    objective = TrialObjective(
        spec,
        budget=budget,
        device=options.device,
        checkpoint_dir=checkpoint_dir(options, study_name),
        data_dir=options.data_dir,
        download=options.download,
        checkpoint_interval_s=options.checkpoint_interval,
    )

    def keep_checkpoints() -> None:
        objective.keep_checkpoints = True  # the interrupted trial resumes from them

    heartbeat = Heartbeat(storage)
    # A dead worker's trial goes stale only a grace period after its last beat: checking once
    # per heartbeat interval finds it as soon as checking before every trial would, near enough.
    stale_check_interval = heartbeat.interval or 0.0
    next_stale_check = 0.0
    failures = 0
    error: str | None = None
    nothing_left = False
    with Interrupts(on_stop=keep_checkpoints) as interrupts:
        while failures < MAX_CONSECUTIVE_FAILURES:
            if interrupts.pending is not None:
                logger.warning("Worker %s stopped by %s.", os.getpid(), interrupts.pending)
                return 0
            counts = count_states(study)
            finished = sum(counts[state] for state in FINISHED)
            if finished >= budget:
                return 0
            waiting = finished + counts[TrialState.RUNNING] >= budget
            if spec.queued_only and not counts[TrialState.WAITING]:
                # Nothing to take. A failed trial's retry is queued just after it fails (by
                # its worker, or by a stale check): look again after a poll before giving up.
                if not counts[TrialState.RUNNING] and nothing_left:
                    return _no_queued_run_left(finished, budget, spec.budget)
                nothing_left = not counts[TrialState.RUNNING]
                waiting = True
            if waiting or time.monotonic() >= next_stale_check:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    fail_stale_trials(study)
                fail_unbeaten_trials(study)
                next_stale_check = time.monotonic() + stale_check_interval
            if waiting:
                time.sleep(POLL_S)
                continue
            nothing_left = False
            error = _run_trial(study, objective, heartbeat, interrupts)
            failures = failures + 1 if error is not None else 0
    logger.error(
        "Worker %s stops: its last %d trials failed (the last error: %s).",
        os.getpid(),
        failures,
        error,
    )
    return 1


def _run_trial(
    study: optuna.Study, objective: TrialObjective, heartbeat: Heartbeat, interrupts: Interrupts
) -> str | None:
    """Ask for a trial, run ``objective`` on it with a heartbeat, tell how it ended; return the
    error it failed with (``None`` if it finished, was refused as surplus or interrupted).

    This is ``study.optimize(objective, n_trials=1, catch=(Exception,))`` with these changes:

    - :class:`Heartbeat` instead of Optuna's heartbeat thread, for speed (its docstring says
      why); it writes the trial's ``worker`` record with the first beat, and admits the trial
      against the budget (:class:`~adamz.search.budget.Budget`) or fails it as surplus (in a
      replicate study, a sampled trial is always surplus);
    - no check for stale trials before each trial (:func:`run_worker` makes one per heartbeat
      interval);
    - SIGTERM and SIGINT interrupt only the training (:mod:`~adamz.search.interrupts`): the
      trial is told failed and queued to resume from its checkpoints;
    - in a replicate study, a trial that failed with an exception, or a queued one refused as
      surplus, is queued again: nothing would sample its (run, seed);
    - a trial that another worker failed as stale while this one stalled keeps that state, and
      is queued again once, by the stale check.

    An exception fails the trial and is logged; the worker goes on.
    """
    with warnings.catch_warnings():
        # Optuna warns that a heartbeat storage is meant for study.optimize: this is its loop.
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    value: float | None = None
    state: TrialState | None = None  # complete, or failed by Optuna if the value is NaN
    requeue: dict[str, bool] | None = None  # queue_retry's options, if it is to run again
    trained = False  # whether the objective started (it records its own error)
    refused = False  # refused by its first beat, which failed it
    error: str | None = None
    sampled_in_replicates = objective.spec.queued_only and not is_queued(trial)
    closed = NO_QUEUED_RUN if sampled_in_replicates else None
    budget = Budget(study._study_id, objective.budget, closed=closed)
    try:
        with (
            heartbeat.beating(
                trial._trial_id, {"worker": objective.worker_record(trial)}, budget=budget
            ) as admitted,
            interrupts.allowed(),
        ):
            trained = True
            value = objective.run(trial, admitted=admitted)
    except optuna.TrialPruned as pruned:
        state = TrialState.PRUNED
        logger.info("Trial %d pruned: %s", trial.number, pruned)
    except SurplusTrialError as surplus:
        state = TrialState.FAIL
        refused = not trained
        logger.info("Trial %d not run: %s", trial.number, surplus)
        if objective.spec.queued_only and is_queued(trial):
            requeue = {"fault": False, "resume": True}
    except WorkerStopped as stopped:
        state = TrialState.FAIL
        if not trained:  # the signal came while the trial was asked for or first beat
            trial.set_user_attr("error", error_message(stopped))
        logger.warning("Trial %d interrupted by %s: queued to resume.", trial.number, stopped)
        requeue = {"fault": False, "resume": True}
    except Exception as exc:
        state = TrialState.FAIL
        error = error_message(exc)
        logger.warning("Trial %d failed, parameters %s:", trial.number, trial.params, exc_info=True)
        if objective.spec.queued_only:
            requeue = {"fault": True, "resume": False}
    if requeue is None:
        if not refused:
            _tell(study, trial, value, state)
        return error
    # The worker that fails the trial queues it again. One that another worker's stale check
    # failed first (this one stalled past the grace period) was queued again by that check.
    attempt = study._storage.get_trial(trial._trial_id)
    if refused or _fail(study, attempt):
        queue_retry(study, attempt, **requeue)
    return error


def _tell(
    study: optuna.Study, trial: optuna.Trial, value: float | None, state: TrialState | None
) -> None:
    """Tell how ``trial`` ended, unless another worker's stale check has failed it already.

    Optuna's own loop calls ``_tell_with_warning`` rather than ``study.tell``, which reads the
    finished trial back from the storage and deep-copies it for a caller that has no use for it.
    """
    try:
        _tell_with_warning(study, trial, value, state=state, skip_if_finished=True)
    except UpdateFinishedTrialError:  # failed as stale between the tell's read and its write
        logger.warning("Trial %d was already failed as stale by another worker.", trial.number)


def _fail(study: optuna.Study, attempt: FrozenTrial) -> bool:
    """Fail the running trial ``attempt``, as ``study.tell`` does; whether this call failed it.

    The state is checked and written under the trial's row lock (Optuna's
    ``set_trial_state_values``): of two workers failing one trial, exactly one succeeds.
    """
    if attempt.state.is_finished():
        return False
    study.sampler.after_trial(study, attempt, TrialState.FAIL, None)
    try:
        study._storage.set_trial_state_values(attempt._trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False
    return True


def _no_queued_run_left(finished: int, budget: int, queued: int) -> int:
    """A replicate study's worker with nothing to take: 0 if every queued run finished."""
    if finished >= queued:
        logger.info(
            "Every queued run has finished (%d trials of the budget's %d).", finished, budget
        )
        return 0
    logger.error(
        "Worker %s stops: no queued run is left and %d of %d finished; the others failed "
        "and were retried up to %d times (see 'adamz-search status').",
        os.getpid(),
        finished,
        queued,
        MAX_RETRIES,
    )
    return 1


def stored_spec(study: optuna.Study) -> AnySpec:
    """The study's definition, as ``create`` stored it."""
    definition = study.user_attrs.get("definition")
    if definition is None:
        raise ValueError(
            f"Study {study.study_name!r} was not created by 'adamz-search create': "
            "it has no stored definition to run."
        )
    return spec_from_definition(definition, source=f"study {study.study_name}")


def checkpoint_dir(options: WorkerOptions, study_name: str) -> Path:
    """``--checkpoint-dir``, else ``checkpoints/STUDY`` beside a file storage, else in the cwd.

    Workers on several hosts resume each other's trials only if this directory is shared.
    """
    if options.checkpoint_dir:
        return Path(options.checkpoint_dir) / study_name
    from adamz.search.storage import storage_url

    url = storage_url(options.storage)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "checkpoints" / study_name
    return Path("checkpoints") / study_name


def parse_devices(devices: str) -> list[str]:
    """``cpu``, ``cuda`` (every visible GPU) or ``cuda:0,1`` -> one device string per device.

    Raises:
        ValueError: an unknown device, or CUDA asked for where none is available.
    """
    if devices == "cpu":
        return ["cpu"]
    if devices == "cuda" or devices.startswith("cuda:"):
        import torch

        available = torch.cuda.device_count()
        if available == 0:
            raise ValueError(f"Invalid --devices {devices!r}: no CUDA device is available here.")
        if devices == "cuda":
            return [f"cuda:{i}" for i in range(available)]
        indices = devices.removeprefix("cuda:").split(",")
        if not all(i.isdigit() and int(i) < available for i in indices):
            raise ValueError(
                f"Invalid --devices {devices!r}: indices must be in 0..{available - 1}."
            )
        return [f"cuda:{i}" for i in indices]
    raise ValueError(f"Invalid --devices {devices!r}: must be cpu, cuda or cuda:0,1,...")


def launch_workers(
    study_name: str, devices: list[str], workers_per_device: int, options: WorkerOptions
) -> int:
    """Run ``workers_per_device`` worker processes per device with a progress bar; exit code.

    Each child is ``python -m adamz.cli worker STUDY --single`` with the same options. SIGTERM
    and SIGINT are passed on to the children, which stop as :func:`run_worker` describes.
    """
    total = len(devices) * workers_per_device
    cpu_threads = max(1, (os.cpu_count() or 1) // total)
    children: list[subprocess.Popen[bytes]] = []
    for index in range(total):
        device = devices[index % len(devices)]
        env = dict(os.environ)
        if device.startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = device.removeprefix("cuda:")
            device = "cuda:0"
        else:
            env["OMP_NUM_THREADS"] = str(cpu_threads)
        command = [
            sys.executable, "-m", "adamz.cli", "worker", study_name, "--single",
            "--device", device, "--worker-index", str(index),
            "--heartbeat-interval", str(options.heartbeat_interval),
            "--grace-period", str(options.grace_period),
            "--checkpoint-interval", str(options.checkpoint_interval),
        ]  # fmt: skip
        for flag, value in (
            ("--storage", options.storage),
            ("--n-trials", options.n_trials),
            ("--data-dir", options.data_dir),
            ("--checkpoint-dir", options.checkpoint_dir),
        ):
            if value is not None:
                command += [flag, str(value)]
        if options.download:
            command.append("--download")
        children.append(subprocess.Popen(command, env=env))

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _show_progress(study_name, options, children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def _show_progress(
    study_name: str, options: WorkerOptions, children: list[subprocess.Popen[bytes]]
) -> None:
    """A bar of finished / budget with the best value and running trials, until children end."""
    storage = open_storage(options.storage, heartbeat_interval=None)
    study = load_study(study_name, storage)
    budget = options.n_trials or stored_spec(study).budget
    with tqdm(total=budget, unit="trial", desc=study_name, dynamic_ncols=True) as bar:
        while any(child.poll() is None for child in children):
            time.sleep(POLL_S)
            counts = count_states(study)
            finished = sum(counts[state] for state in FINISHED)
            bar.update(min(finished, budget) - bar.n)
            postfix: dict[str, object] = {
                "running": counts[TrialState.RUNNING],
                "failed": counts[TrialState.FAIL],
            }
            if counts[TrialState.COMPLETE]:
                postfix["best"] = f"{study.best_value:.4f}"
            bar.set_postfix(postfix)
