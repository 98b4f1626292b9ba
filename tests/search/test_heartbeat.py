"""The worker's heartbeat: a first beat in line before the trial runs, carrying the trial's start
record, then one per interval."""

from __future__ import annotations

import datetime
import threading
import time
import warnings
from pathlib import Path
from typing import cast

import optuna
import pytest
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState

from adamz.search.heartbeat import Heartbeat, fail_unbeaten_trials
from adamz.search.storage import open_storage


class RecordingStorage:
    """The two heartbeat methods of an RDB storage, recording who beat and when."""

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self.beats: list[tuple[int, str]] = []

    def get_heartbeat_interval(self) -> float | None:
        return self.interval

    def record_heartbeat(self, trial_id: int) -> None:
        self.beats.append((trial_id, threading.current_thread().name))


def test_the_first_beat_is_written_in_line_before_the_block_runs() -> None:
    storage = RecordingStorage(interval=60)
    with Heartbeat(cast(BaseStorage, storage)).beating(7):
        assert storage.beats == [(7, threading.current_thread().name)]


def test_later_beats_come_every_interval_from_a_thread_and_stop_with_the_block() -> None:
    storage = RecordingStorage(interval=0.05)
    with Heartbeat(cast(BaseStorage, storage)).beating(3):
        time.sleep(0.4)
    beats = len(storage.beats)
    time.sleep(0.2)
    assert len(storage.beats) == beats  # none after the block
    assert beats >= 4
    assert {name for _, name in storage.beats[1:]} == {"heartbeat-3"}
    assert all(trial_id == 3 for trial_id, _ in storage.beats)


def test_the_thread_stops_when_the_block_raises() -> None:
    storage = RecordingStorage(interval=0.05)
    with pytest.raises(KeyboardInterrupt), Heartbeat(cast(BaseStorage, storage)).beating(1):
        raise KeyboardInterrupt
    assert not [thread for thread in threading.enumerate() if thread.name == "heartbeat-1"]


def test_a_storage_without_heartbeats_gets_no_beats() -> None:
    storage = RecordingStorage(interval=None)
    with Heartbeat(cast(BaseStorage, storage)).beating(1):
        time.sleep(0.05)
    assert storage.beats == []


def test_on_sqlite_a_beating_trial_stays_alive_and_goes_stale_once_the_beats_stop(
    tmp_path: Path,
) -> None:
    storage = open_storage(
        f"sqlite:///{tmp_path / 'beat.db'}", heartbeat_interval=1, grace_period=2
    )
    study = optuna.create_study(storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat of storage"):
        trial = study.ask()

    def stale() -> list[int]:
        return storage._get_stale_trial_ids(study._study_id)  # type: ignore[attr-defined,no-any-return]

    with Heartbeat(storage).beating(trial._trial_id):
        time.sleep(3)  # longer than the grace period: only the thread's beats keep it alive
        assert stale() == []
    # The block is left without telling the trial: as if the worker died there.
    time.sleep(3)
    assert stale() == [trial._trial_id]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'beat.db'}"
    return str(request.getfixturevalue("postgres_url"))


def beat_times(storage: RDBStorage) -> dict[int, datetime.datetime]:
    with storage.scoped_session() as session:
        return {
            beat.trial_id: beat.heartbeat
            for beat in session.query(models.TrialHeartbeatModel).all()
        }


@pytest.mark.parametrize("interval", [60, None])
def test_the_first_beat_carries_the_start_record_in_one_commit(
    database: str, interval: int | None
) -> None:
    storage = open_storage(database, heartbeat_interval=interval)
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # heartbeat storage outside optimize
        trial = study.ask()
    commits: list[object] = []
    record = commits.append  # one bound method, to remove the listener by
    sqlalchemy.event.listen(storage.engine, "commit", record)
    with Heartbeat(storage).beating(trial._trial_id, {"worker": {"pid": 1}, "note": "x"}):
        assert len(commits) == (1 if interval else 2)  # one per attribute without beats
        assert study.trials[trial.number].user_attrs == {"worker": {"pid": 1}, "note": "x"}
    sqlalchemy.event.remove(storage.engine, "commit", record)
    assert list(beat_times(storage)) == ([trial._trial_id] if interval else [])


def test_a_retried_trial_s_first_beat_replaces_the_attributes_it_inherited(
    database: str,
) -> None:
    storage = open_storage(database, heartbeat_interval=60)
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    storage.set_trial_user_attr(trial._trial_id, "worker", {"pid": 1})
    storage.set_trial_user_attr(trial._trial_id, "enqueued", "defaults")
    storage.record_heartbeat(trial._trial_id)
    first = beat_times(storage)[trial._trial_id]
    time.sleep(1.1)  # SQLite keeps beats to the second
    with Heartbeat(storage).beating(trial._trial_id, {"worker": {"pid": 2}}):
        attrs = study.trials[trial.number].user_attrs
    assert attrs == {"worker": {"pid": 2}, "enqueued": "defaults"}
    assert beat_times(storage)[trial._trial_id] > first


def started_long_ago(storage: RDBStorage, trial_id: int) -> None:
    """Move ``trial_id``'s start an hour back, as if it had been asked for then."""
    trials = models.TrialModel
    an_hour_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        hours=1
    )
    with storage.scoped_session() as session:
        session.execute(
            sqlalchemy.update(trials)
            .where(trials.trial_id == trial_id)
            .values(_datetime_start_utc=an_hour_ago)
        )
        session.commit()


def test_a_trial_whose_worker_died_before_its_first_beat_is_failed_and_queued_again(
    database: str,
) -> None:
    storage = open_storage(database, heartbeat_interval=60, grace_period=120)
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        orphan, just_asked, beating = study.ask(), study.ask(), study.ask()
    started_long_ago(storage, orphan._trial_id)
    storage.record_heartbeat(beating._trial_id)
    started_long_ago(storage, beating._trial_id)  # long-running, and beating

    assert fail_unbeaten_trials(study) == [orphan._trial_id]
    assert fail_unbeaten_trials(study) == []  # failed once
    states = [study.trials[trial.number].state for trial in (orphan, just_asked, beating)]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]
    [retry] = study.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["failed_trial"] == orphan.number
