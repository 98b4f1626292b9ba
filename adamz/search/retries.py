"""Queuing a trial again after an attempt at it ended early, and when to stop.

A trial is queued again (a new ``WAITING`` trial with its parameters, built by Optuna's
``RetryHeartbeatStaleTrialCallback``, which records ``failed_trial`` and ``retry_history``) for
one of these :data:`Reason` s, each counted in a system attribute of its own:

- ``stop``: its worker was stopped (SIGTERM on a preempted host, Ctrl-C). Never limited: the
  infrastructure is not the trial's fault.
- ``surplus``: a queued trial was refused because the budget was taken. Never limited.
- ``death``: its worker died (the trial went stale). Limited to :data:`MAX_DEATHS`: a
  configuration that kills its worker every time (out of memory) would otherwise hold a worker
  for good. Preempted hosts die too, so the limit is generous.
- ``fault``: its training raised, in a replicate study, where nothing would sample its
  (run, seed) again. Limited to :data:`MAX_FAULTS`: it would likely raise again.

A stopped, surplus or dead trial's retry resumes from the trial's checkpoints; a faulted one's
starts over. A trial past its limit is left failed (``status`` shows it as dropped), and the
worker that drops it deletes its checkpoints.
"""

from __future__ import annotations

import copy
import warnings
from typing import Literal

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from adamz.search.heartbeat import HEARTBEAT_ATTR

__all__ = [
    "MAX_DEATHS",
    "MAX_FAULTS",
    "NOT_RUN_ATTR",
    "OUTCOME_ATTRS",
    "Reason",
    "end_unrunnable",
    "outcomes",
    "queue_retry",
    "requeued",
    "retried_trial_number",
]

Reason = Literal["stop", "surplus", "death", "fault"]
MAX_DEATHS = 5
"""Times a trial whose worker died (it went stale) is queued again; then it is dropped."""
MAX_FAULTS = 3
"""Times a replicate trial whose training raised is queued again; then it is dropped."""
RULES: dict[Reason, tuple[str, int | None]] = {
    "stop": ("stops", None),
    "surplus": ("surplus_requeues", None),
    "death": ("deaths", MAX_DEATHS),
    "fault": ("faults", MAX_FAULTS),
}
"""Each reason's system attribute, counting it over the earlier attempts at a trial, and the
times a trial is queued again for it (``None``: always)."""
OUTCOME_ATTRS = ("error", "surplus")
"""User attributes that say how one attempt at a trial ended; its retry starts without them."""


def queue_retry(study: optuna.Study, trial: FrozenTrial, reason: Reason) -> bool:
    """Queue ``trial``, which has just ended, again; whether it was (one past its limit is not).

    The retry keeps the parameters and the user attributes, but not how this attempt ended
    (:data:`OUTCOME_ATTRS`) nor its heartbeat. It inherits the intermediate values (it resumes
    from the trial's checkpoints) unless the trial faulted.
    """
    key, limit = RULES[reason]
    count = int(trial.system_attrs.get(key, 0)) + 1
    if limit is not None and count > limit:
        return False
    retry = copy.deepcopy(trial)  # the callback appends to the retry history in place
    retry.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in OUTCOME_ATTRS}
    retry.system_attrs.pop(HEARTBEAT_ATTR, None)
    retry.system_attrs[key] = count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=reason != "fault")
    callback(study, retry)
    return True


NOT_RUN_ATTR = "not_run"
"""User attribute of a queued trial that no worker will run, saying why (``budget met``)."""


def retried_trial_number(trial: FrozenTrial) -> int | None:
    """The number of the trial that ``trial`` retries, ``None`` if it retries none (Optuna's
    reader, whose experimental warning is not the user's concern)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def requeued(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the trials among ``trials``' attempts that were queued again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {
            number
            for trial in trials
            for number in RetryHeartbeatStaleTrialCallback.retry_history(trial)
        }


def end_unrunnable(study: optuna.Study, storage: BaseStorage, study_id: int) -> list[int]:
    """End the study's queued (WAITING) trials as no worker will run them once its budget is
    met: each is failed with :data:`NOT_RUN_ATTR` ``budget met`` (``status`` shows them), so
    that no queue entry waits for ever. The numbers of those this call ended (another worker
    may end or take one first)."""
    ended = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            # Taken from the queue as a worker takes it (only a WAITING trial can be), so
            # that a trial another worker took meanwhile runs on; then ended.
            if not storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        storage.set_trial_user_attr(trial_id, NOT_RUN_ATTR, "budget met")
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        ended.append(trial.number)
    return ended


def outcomes(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by outcome: Optuna's states, with a failed trial split into ``requeued`` (a retry
    was queued), ``not_run`` (queued, and ended when the budget was met), ``surplus`` (refused
    by the budget), ``dropped`` (its retries' limit reached) and ``fail`` (its training
    raised)."""
    counts = dict.fromkeys([state.name.lower() for state in TrialState], 0)
    counts.update(requeued=0, surplus=0, dropped=0, not_run=0)
    again = requeued(trials)
    for trial in trials:
        if trial.state != TrialState.FAIL:
            outcome = trial.state.name.lower()
        elif trial.number in again:
            outcome = "requeued"
        elif NOT_RUN_ATTR in trial.user_attrs:
            outcome = "not_run"
        elif trial.user_attrs.get("surplus"):
            outcome = "surplus"
        elif "error" in trial.user_attrs and not trial.system_attrs.get("faults"):
            outcome = "fail"
        else:
            outcome = "dropped"
        counts[outcome] += 1
    return counts
