"""The heartbeat: a trial system attribute written from a thread, that survives storage errors
and notices a trial another worker failed; and stale trials found through the public API on
every storage."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from adamz.search.heartbeat import HEARTBEAT_ATTR, Heartbeat, claim_stale_trials
from adamz.search.storage import open_storage


class FlakyStorage:
    """A storage whose first ``errors`` beats raise, as a dropped connection does."""

    def __init__(self, errors: int = 0, finished_after: int | None = None) -> None:
        self.errors = errors
        self.finished_after = finished_after
        self.beats: list[tuple[int, str, float]] = []
        self.attempts = 0

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.errors:
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("connection reset"))
        if self.finished_after is not None and len(self.beats) >= self.finished_after:
            raise UpdateFinishedTrialError("trial 1 is already finished")
        assert key == HEARTBEAT_ATTR
        self.beats.append((trial_id, threading.current_thread().name, value))


def beat_for(storage: FlakyStorage, seconds: float, interval: float = 0.05, **kwargs: Any) -> None:
    with Heartbeat(cast(BaseStorage, storage), interval, **kwargs).beating(3):
        time.sleep(seconds)


def test_beats_come_every_interval_from_a_thread_and_stop_with_the_block() -> None:
    storage = FlakyStorage()
    beat_for(storage, 0.4)
    beats = len(storage.beats)
    time.sleep(0.2)
    assert len(storage.beats) == beats  # none after the block
    assert beats >= 4
    assert {(trial_id, name) for trial_id, name, _ in storage.beats} == {(3, "heartbeat")}
    assert all(abs(value - time.time()) < 60 for _, _, value in storage.beats)


def test_the_beats_stop_when_the_block_raises_and_resume_for_the_next_trial() -> None:
    storage = FlakyStorage()
    heartbeat = Heartbeat(cast(BaseStorage, storage), 0.05)

    def interrupted() -> None:
        with heartbeat.beating(1):
            time.sleep(0.2)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    beats = len(storage.beats)
    time.sleep(0.2)
    assert len(storage.beats) == beats
    with heartbeat.beating(2):
        time.sleep(0.2)
    assert {trial_id for trial_id, _, _ in storage.beats} == {1, 2}


def test_storage_errors_are_logged_and_the_beats_go_on(caplog: pytest.LogCaptureFixture) -> None:
    storage = FlakyStorage(errors=2)
    beat_for(storage, 2.0, interval=0.05)
    assert storage.beats, "the beats stopped after a storage error"
    warnings = [r.getMessage() for r in caplog.records if "Heartbeat of trial 3" in r.getMessage()]
    assert len(warnings) == 2
    assert "OperationalError" in warnings[0]
    assert "connection reset" in warnings[0]


def test_a_trial_found_finished_stops_the_beats_and_says_so() -> None:
    storage = FlakyStorage(finished_after=2)
    lost = threading.Event()
    beat_for(storage, 0.5, on_lost=lost.set)
    assert lost.is_set()
    assert len(storage.beats) == 2


def test_a_short_trial_writes_no_beat() -> None:
    storage = FlakyStorage()
    beat_for(storage, 0.01, interval=1.0)
    assert storage.attempts == 0


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"Invalid heartbeat interval: must be > 0, got 0"):
        Heartbeat(cast(BaseStorage, FlakyStorage()), 0)


STORAGES = ["sqlite", "journal", "postgresql"]


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> BaseStorage:
    if request.param == "sqlite":
        return open_storage(f"sqlite:///{tmp_path / 'beat.db'}")
    if request.param == "journal":
        return open_storage(f"journal:{tmp_path / 'beat.journal'}")
    return open_storage(request.getfixturevalue("postgres_url"))


def test_a_beating_trial_stays_alive_and_goes_stale_once_the_beats_stop(
    storage: BaseStorage,
) -> None:
    study = optuna.create_study(storage=storage, study_name="beats")
    dead, alive = study.ask(), study.ask()
    study_id = storage.get_study_id_from_name("beats")
    ids = [storage.get_trial_id_from_study_id_trial_number(study_id, n) for n in (0, 1)]
    storage.set_trial_system_attr(ids[0], HEARTBEAT_ATTR, time.time() - 10)  # it died
    with Heartbeat(storage, 0.2).beating(ids[1]):
        time.sleep(0.5)
        claimed = claim_stale_trials(study, storage, grace_period=3)
    assert [trial.number for trial in claimed] == [dead.number]
    assert claimed[0].state == TrialState.FAIL
    assert study.trials[alive.number].state == TrialState.RUNNING
    assert claim_stale_trials(study, storage, grace_period=3) == []  # claimed once


def test_a_trial_never_beaten_goes_stale_a_grace_period_after_it_started(
    storage: BaseStorage,
) -> None:
    study = optuna.create_study(storage=storage, study_name="unbeaten")
    orphan = study.ask()  # its worker died before the first beat
    assert claim_stale_trials(study, storage, grace_period=60) == []
    time.sleep(1.2)
    [claimed] = claim_stale_trials(study, storage, grace_period=1)
    assert claimed.number == orphan.number


def test_of_two_workers_claiming_a_stale_trial_exactly_one_gets_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="race")
    for _ in range(6):
        study.ask()
    time.sleep(1.1)
    claims: list[list[int]] = []

    def claim(storage: BaseStorage) -> None:  # a worker with its own connection
        worker = optuna.load_study(study_name="race", storage=storage)
        claims.append([t.number for t in claim_stale_trials(worker, storage, grace_period=1)])

    threads = [threading.Thread(target=claim, args=(open_storage(url),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = sorted(number for claimed in claims for number in claimed)
    assert numbers == list(range(6))
