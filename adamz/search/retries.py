"""Queuing a trial again, and how many times: faults are limited, interruptions are not.

A trial is queued again (a new ``WAITING`` trial with its parameters, built by Optuna's
``RetryHeartbeatStaleTrialCallback``) when

- its worker died: it went stale, and the storage's :class:`RetryStaleTrial` queues it;
- it raised, in a replicate study, where nothing would sample its (run, seed) again;
- its worker was stopped (SIGTERM on a preempted host, Ctrl-C), or it was refused as surplus.

The first two are *faults*: after :data:`MAX_RETRIES` of them a trial is left failed, since
it would likely fail again. The last are not, and are not held against it. Optuna's callback
counts every earlier attempt in ``retry_history`` against its ``max_retry``: with it, a trial
interrupted three times would be dropped at its first fault, and a replicate study would lose
its (run, seed) for good. So the retry counts its non-fault attempts in the system attribute
``requeues``, and the limit applies to the rest.
"""

from __future__ import annotations

import copy
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

__all__ = ["MAX_RETRIES", "OUTCOME_ATTRS", "RetryStaleTrial", "faults", "queue_retry"]

MAX_RETRIES = 3
"""Times a trial that faulted (went stale, or raised in a replicate study) is queued again."""
OUTCOME_ATTRS = ("error", "surplus")
"""User attributes that say how one attempt at a trial ended; its retry starts without them."""
REQUEUES_ATTR = "requeues"
"""System attribute: how many earlier attempts at a trial were queued again without a fault."""


def faults(trial: FrozenTrial) -> int:
    """How many earlier attempts at ``trial`` (the trials it retries) ended in a fault."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
    return len(history) - int(trial.system_attrs.get(REQUEUES_ATTR, 0))


def queue_retry(study: optuna.Study, trial: FrozenTrial, *, fault: bool, resume: bool) -> bool:
    """Queue ``trial``, which has just ended, again; whether it was (a fault past the limit is not).

    The retry keeps the parameters and attributes, but not how this attempt ended
    (:data:`OUTCOME_ATTRS`). With ``resume`` it inherits the intermediate values, and resumes
    from the trial's checkpoints. A ``fault`` counts against :data:`MAX_RETRIES`.
    """
    if fault and faults(trial) + 1 > MAX_RETRIES:
        return False
    retry = copy.deepcopy(trial)  # the callback appends to the retry history in place
    retry.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in OUTCOME_ATTRS}
    if not fault:
        retry.system_attrs[REQUEUES_ATTR] = int(trial.system_attrs.get(REQUEUES_ATTR, 0)) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=resume)
    callback(study, retry)
    return True


class RetryStaleTrial:
    """The storage's callback for a trial that went stale: a fault; the retry resumes."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        queue_retry(study, trial, fault=True, resume=True)
