"""Queuing a trial again: deaths and faults have limits of their own; stops and refusals have
none."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from adamz.search import open_storage
from adamz.search.heartbeat import HEARTBEAT_ATTR
from adamz.search.retries import MAX_DEATHS, MAX_FAULTS, Reason, queue_retry, requeued


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'retries.db'}"))


def fail_next(study: optuna.Study) -> FrozenTrial:
    """Take the next trial (the queued retry if there is one), record an outcome, fail it."""
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("error", "RuntimeError: boom")
    trial.set_user_attr("worker", {"pid": 1})
    study.tell(trial, state=TrialState.FAIL)
    return study.trials[trial.number]


def retry_until_dropped(study: optuna.Study, reason: Reason, limit: int = 50) -> list[bool]:
    queued = [queue_retry(study, fail_next(study), reason)]
    while queued[-1] and len(queued) < limit:
        queued.append(queue_retry(study, fail_next(study), reason))
    return queued


@pytest.mark.parametrize(("reason", "limit"), [("death", MAX_DEATHS), ("fault", MAX_FAULTS)])
def test_deaths_and_faults_are_queued_again_up_to_their_limit(
    study: optuna.Study, reason: Reason, limit: int
) -> None:
    assert retry_until_dropped(study, reason) == [True] * limit + [False]
    assert not study.get_trials(states=(TrialState.WAITING,))
    first, last = study.trials[0], study.trials[-1]
    assert last.params == first.params
    assert last.system_attrs["failed_trial"] == first.number


@pytest.mark.parametrize("reason", ["stop", "surplus"])
def test_stops_and_refusals_are_never_limited(study: optuna.Study, reason: Reason) -> None:
    assert retry_until_dropped(study, reason, limit=2 * MAX_DEATHS) == [True] * (2 * MAX_DEATHS)


def test_a_trial_stopped_many_times_still_has_all_its_deaths_and_faults(
    study: optuna.Study,
) -> None:
    for _ in range(MAX_DEATHS + 2):
        queue_retry(study, fail_next(study), "stop")
    assert retry_until_dropped(study, "death") == [True] * MAX_DEATHS + [False]


def test_a_retry_resumes_unless_it_faulted_and_drops_the_attempt_s_outcome(
    study: optuna.Study,
) -> None:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.5, 1)
    trial.set_user_attr("error", "RuntimeError: boom")
    trial.set_user_attr("surplus", True)
    trial.set_user_attr("worker", {"pid": 1})
    storage = study._storage
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, 1.0)  # as a worker's beat
    study.tell(trial, state=TrialState.FAIL)
    failed = study.trials[trial.number]
    queue_retry(study, failed, "death")
    queue_retry(study, failed, "fault")
    resumed, restarted = study.get_trials(states=(TrialState.WAITING,))
    assert resumed.intermediate_values == {1: 0.5}
    assert restarted.intermediate_values == {}
    for retry in (resumed, restarted):
        assert retry.user_attrs == {"worker": {"pid": 1}}
        assert retry.params == failed.params
        assert HEARTBEAT_ATTR not in retry.system_attrs


def test_requeued_names_every_attempt_that_was_queued_again(study: optuna.Study) -> None:
    queue_retry(study, fail_next(study), "stop")
    queue_retry(study, fail_next(study), "death")
    fail_next(study)  # the second retry fails for good
    assert requeued(study.trials) == {0, 1}
