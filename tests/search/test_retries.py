"""Queuing a trial again: faults are limited to MAX_RETRIES, interruptions and refusals are not."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from adamz.search import open_storage
from adamz.search.heartbeat import Heartbeat
from adamz.search.retries import MAX_RETRIES, faults, queue_retry


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'retries.db'}", heartbeat_interval=None)
    return optuna.create_study(storage=storage)


def fail_next(study: optuna.Study) -> FrozenTrial:
    """Take the next trial (the queued retry if there is one), record an outcome, fail it."""
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("error", "RuntimeError: boom")
    trial.set_user_attr("worker", {"pid": 1})
    study.tell(trial, state=TrialState.FAIL)
    return study.trials[trial.number]


def test_a_faulting_trial_is_queued_again_max_retries_times_then_left_failed(
    study: optuna.Study,
) -> None:
    first = fail_next(study)
    queued = [queue_retry(study, first, fault=True, resume=False)]
    for _ in range(MAX_RETRIES):
        queued.append(queue_retry(study, fail_next(study), fault=True, resume=False))
    assert queued == [True] * MAX_RETRIES + [False]
    assert not study.get_trials(states=(TrialState.WAITING,))
    last = study.trials[-1]
    assert last.params == first.params
    assert last.system_attrs["failed_trial"] == first.number
    assert faults(last) == MAX_RETRIES


def test_interruptions_do_not_count_against_the_faults_a_trial_is_allowed(
    study: optuna.Study,
) -> None:
    attempt = fail_next(study)
    for _ in range(MAX_RETRIES + 2):  # a host preempted again and again
        assert queue_retry(study, attempt, fault=False, resume=True)
        attempt = fail_next(study)
    assert faults(attempt) == 0
    for _ in range(MAX_RETRIES):
        assert queue_retry(study, attempt, fault=True, resume=True)
        attempt = fail_next(study)
    assert not queue_retry(study, attempt, fault=True, resume=True)
    assert len(study.trials) == 1 + (MAX_RETRIES + 2) + MAX_RETRIES


def test_a_retry_resumes_or_starts_over_and_drops_the_attempt_s_outcome(
    study: optuna.Study,
) -> None:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.5, 1)
    trial.set_user_attr("error", "RuntimeError: boom")
    trial.set_user_attr("surplus", True)
    trial.set_user_attr("worker", {"pid": 1})
    study.tell(trial, state=TrialState.FAIL)
    failed = study.trials[trial.number]
    queue_retry(study, failed, fault=False, resume=True)
    queue_retry(study, failed, fault=True, resume=False)
    resumed, restarted = study.get_trials(states=(TrialState.WAITING,))
    assert resumed.intermediate_values == {1: 0.5}
    assert restarted.intermediate_values == {}
    for retry in (resumed, restarted):
        assert retry.user_attrs == {"worker": {"pid": 1}}
        assert retry.params == failed.params


def test_the_storage_retries_a_stale_trial_after_interruptions_as_a_fault(
    tmp_path: Path,
) -> None:
    storage = open_storage(
        f"sqlite:///{tmp_path / 'stale.db'}", heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat storage outside optimize; experimental
        attempt = fail_next(study)
        for _ in range(MAX_RETRIES):  # interrupted as often as faults are allowed
            queue_retry(study, attempt, fault=False, resume=True)
            attempt = fail_next(study)
        queue_retry(study, attempt, fault=False, resume=True)
        stale = study.ask()  # taken from the queue; its worker beats once and dies
        with Heartbeat(storage).beating(stale._trial_id):
            pass
        time.sleep(2.5)
        fail_stale_trials(study)
    assert study.trials[stale.number].state == TrialState.FAIL
    [retry] = study.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["failed_trial"] == 0
    assert faults(retry) == 1
