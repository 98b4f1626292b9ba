"""A worker's trial is admitted against the study's budget by its first heartbeat: exactly, on
SQLite and PostgreSQL, however many workers start trials at the same moment."""

from __future__ import annotations

import datetime
import threading
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from search_helpers import write_study

from adamz.search import TrialObjective, load_study_file, open_storage
from adamz.search.budget import Budget, SurplusTrialError
from adamz.search.heartbeat import Heartbeat
from adamz.search.interrupts import Interrupts
from adamz.search.worker import _run_trial


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'admit.db'}"
    return str(request.getfixturevalue("postgres_url"))


def ask(study: optuna.Study) -> optuna.Trial:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a heartbeat storage outside optimize
        return study.ask()


def beats(storage: RDBStorage) -> set[int]:
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        return {beat.trial_id for beat in session.query(models.TrialHeartbeatModel).all()}


def test_trials_are_admitted_until_the_budget_is_taken_and_the_next_is_refused(
    database: str,
) -> None:
    storage = open_storage(database, heartbeat_interval=60)
    study = optuna.create_study(storage=storage)
    budget = Budget(study._study_id, 2)
    first, second, third = ask(study), ask(study), ask(study)
    heartbeat = Heartbeat(storage)
    for trial in (first, second):
        with heartbeat.beating(trial._trial_id, {"worker": {"pid": 1}}, budget=budget) as checked:
            assert checked is True
    with (
        pytest.raises(SurplusTrialError, match="budget of 2 trials is already taken"),
        heartbeat.beating(third._trial_id, {"worker": {"pid": 3}}, budget=budget),
    ):
        raise AssertionError("a refused trial's block ran")
    refused = study.trials[third.number]
    assert refused.user_attrs == {
        "worker": {"pid": 3},
        "surplus": True,
        "error": "SurplusTrialError: the budget of 2 trials is already taken",
    }
    # Failed with the refusal: never RUNNING without a heartbeat, which would never go stale.
    assert refused.state == TrialState.FAIL
    assert refused.datetime_complete is not None
    assert abs(refused.datetime_complete - datetime.datetime.now()).total_seconds() < 60
    assert beats(storage) == {first._trial_id, second._trial_id}  # a refused trial has none


def test_a_closed_budget_refuses_a_trial_whatever_the_counts(database: str) -> None:
    storage = open_storage(database, heartbeat_interval=60)
    study = optuna.create_study(storage=storage)
    closed = Budget(study._study_id, 5, closed="no queued run is left to take")
    trial = ask(study)
    with (
        pytest.raises(SurplusTrialError, match=r"^no queued run is left to take$"),
        Heartbeat(storage).beating(trial._trial_id, budget=closed),
    ):
        raise AssertionError("a refused trial's block ran")
    assert study.trials[trial.number].state == TrialState.FAIL
    assert beats(storage) == set()


def test_finished_and_admitted_trials_take_places_but_failed_and_unadmitted_ones_do_not(
    database: str,
) -> None:
    storage = open_storage(database, heartbeat_interval=60)
    study = optuna.create_study(storage=storage)
    budget = Budget(study._study_id, 4)
    heartbeat = Heartbeat(storage)
    study.tell(ask(study), 1.0)  # complete
    study.tell(ask(study), state=TrialState.PRUNED)
    study.tell(ask(study), state=TrialState.FAIL)
    ask(study)  # running, not yet admitted: its worker has yet to write its first beat
    admitted = ask(study)
    with heartbeat.beating(admitted._trial_id, budget=budget):
        pass  # left running, as if its worker still trained it
    last = ask(study)
    with heartbeat.beating(last._trial_id, budget=budget) as checked:
        assert checked  # 3 places taken of 4
    with pytest.raises(SurplusTrialError), heartbeat.beating(ask(study)._trial_id, budget=budget):
        pass


def test_without_heartbeats_the_budget_is_left_to_the_caller(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'none.db'}", heartbeat_interval=None)
    study = optuna.create_study(storage=storage)
    study.tell(study.ask(), 1.0)
    full = Budget(study._study_id, 1)
    with Heartbeat(storage).beating(study.ask()._trial_id, budget=full) as checked:
        assert checked is False


def test_concurrent_first_beats_admit_exactly_the_budget(database: str) -> None:
    """Eight workers (each with its own connections) admit their trials at the same moment."""
    workers, places = 8, 3
    storages = [open_storage(database, heartbeat_interval=60) for _ in range(workers)]
    study = optuna.create_study(storage=storages[0])
    budget = Budget(study._study_id, places)
    trial_ids = [ask(study)._trial_id for _ in range(workers)]
    start = threading.Barrier(workers)
    outcomes: list[str] = []

    def admit(index: int) -> None:
        start.wait()
        try:
            with Heartbeat(storages[index]).beating(trial_ids[index], budget=budget):
                outcomes.append("admitted")
        except SurplusTrialError:
            outcomes.append("refused")
        except Exception as exc:  # a database error fails the test below, by its name
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=admit, args=(index,)) for index in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["admitted"] * places + ["refused"] * (workers - places)
    assert len(beats(storages[0])) == places


def test_a_worker_s_trial_refused_at_its_first_beat_fails_as_surplus_without_training(
    tmp_path: Path, database: str
) -> None:
    torch.set_num_threads(1)
    spec = load_study_file(write_study(tmp_path, budget=1, epochs=1))
    storage = open_storage(database, heartbeat_interval=60)
    study = optuna.create_study(storage=storage, direction="maximize")
    with Heartbeat(storage).beating(ask(study)._trial_id, budget=Budget(study._study_id, 1)):
        pass  # another worker's trial holds the only place
    objective = TrialObjective(spec, budget=1, device="cpu", checkpoint_dir=tmp_path)
    with Interrupts(on_stop=lambda: None) as interrupts:
        error = _run_trial(study, objective, Heartbeat(storage), interrupts)
    assert error is None  # a surplus trial is not a failure that stops the worker
    refused = study.trials[-1]
    assert refused.state == TrialState.FAIL
    assert refused.user_attrs["surplus"] is True
    assert refused.user_attrs["worker"]["pid"] > 0
    assert "run" not in refused.user_attrs  # never trained
