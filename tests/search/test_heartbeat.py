"""The heartbeat: trial system attributes written from a thread, that ride out storage errors and
notice a trial another worker failed; and stale trials judged on the watcher's own clock, never
by comparing two hosts' clocks, on every storage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from search_helpers import run_cli, start_cli, trials, write_study

from adamz.search import heartbeat as heartbeat_module
from adamz.search.heartbeat import HEARTBEAT_ATTR, Heartbeat, StaleWatch, worker_contacts
from adamz.search.outage import Outage
from adamz.search.storage import open_storage


def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


class FlakyStorage:
    """A storage whose first ``errors`` beats raise, as a dropped connection does."""

    def __init__(self, errors: int = 0, finished_after: int | None = None) -> None:
        self.errors = errors
        self.finished_after = finished_after
        self.beats: list[tuple[int, str, float]] = []
        self.contacts: list[dict[str, Any]] = []
        self.attempts = 0

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.errors:
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("connection reset"))
        if self.finished_after is not None and len(self.beats) >= self.finished_after:
            raise UpdateFinishedTrialError("trial 1 is already finished")
        assert key == HEARTBEAT_ATTR
        self.beats.append((trial_id, threading.current_thread().name, value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.contacts.append(value)


def heartbeat(storage: FlakyStorage, interval: float = 0.05, **kwargs: Any) -> Heartbeat:
    return Heartbeat(cast(BaseStorage, storage), 0, interval, Outage("test://"), **kwargs)


def test_beats_come_every_interval_from_a_thread_for_each_trial_and_stop_with_the_block() -> None:
    storage = FlakyStorage()
    with heartbeat(storage).beating([3, 4]):
        eventually(lambda: len(storage.beats) >= 8)
    beats = len(storage.beats)
    time.sleep(0.2)
    assert len(storage.beats) == beats  # none after the block
    assert {(trial_id, name) for trial_id, name, _ in storage.beats} == {
        (3, "heartbeat"),
        (4, "heartbeat"),
    }
    assert storage.contacts[-1]["state"] == "running"


def test_the_beats_stop_when_the_block_raises_and_resume_for_the_next_trial() -> None:
    storage = FlakyStorage()
    beats = heartbeat(storage)

    def interrupted() -> None:
        with beats.beating([1]):
            eventually(lambda: len(storage.beats) >= 2)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    count = len(storage.beats)
    time.sleep(0.2)
    assert len(storage.beats) == count
    with beats.beating([2]):
        eventually(lambda: any(trial_id == 2 for trial_id, _, _ in storage.beats))
    assert {trial_id for trial_id, _, _ in storage.beats} == {1, 2}


def test_an_unreachable_storage_is_said_once_and_the_beats_go_on_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = FlakyStorage(errors=3)
    outage = Outage("test://db")
    beats = Heartbeat(cast(BaseStorage, storage), 0, 0.05, outage)
    monkey_retry = heartbeat_module.RETRY_S
    heartbeat_module.RETRY_S = 0.05
    try:
        with beats.beating([3]):
            eventually(lambda: len(storage.beats) >= 2)
    finally:
        heartbeat_module.RETRY_S = monkey_retry
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1  # once, not once per failed beat
    assert "connection reset" in said[0]
    assert any("is back" in r.getMessage() for r in caplog.records)
    assert outage.count == 1
    assert not outage.ongoing


def test_a_trial_found_finished_stops_its_beats_and_says_so() -> None:
    storage = FlakyStorage(finished_after=2)
    lost: list[int] = []
    with heartbeat(storage, on_lost=lost.append).beating([1]):
        eventually(lambda: bool(lost))
    assert lost == [1]
    assert len(storage.beats) == 2


def test_a_short_trial_writes_no_beat() -> None:
    storage = FlakyStorage()
    with heartbeat(storage, interval=1.0).beating([3]):
        time.sleep(0.01)
    assert storage.attempts == 0


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"Invalid heartbeat interval: must be > 0, got 0"):
        heartbeat(FlakyStorage(), interval=0)


STORAGES = ["sqlite", "journal", "postgresql"]


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> BaseStorage:
    if request.param == "sqlite":
        return open_storage(f"sqlite:///{tmp_path / 'beat.db'}")
    if request.param == "journal":
        return open_storage(f"journal:{tmp_path / 'beat.journal'}")
    return open_storage(request.getfixturevalue("postgres_url"))


def claim_until(watch: StaleWatch, study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Claim every few tens of milliseconds until something is claimed."""
    claimed: list[int] = []

    def some() -> bool:
        claimed.extend(trial.number for trial in watch.claim(study, storage))
        return bool(claimed)

    eventually(some)
    return claimed


def test_a_beating_trial_stays_alive_and_goes_stale_once_the_beats_stop(
    storage: BaseStorage,
) -> None:
    study = optuna.create_study(storage=storage, study_name="beats")
    dead, alive = study.ask(), study.ask()
    study_id = storage.get_study_id_from_name("beats")
    ids = [storage.get_trial_id_from_study_id_trial_number(study_id, n) for n in (0, 1)]
    outage = Outage("test://")
    watch = StaleWatch(0.6, outage)
    assert watch.claim(study, storage) == []  # first sight: nothing is stale yet
    with Heartbeat(storage, study_id, 0.1, outage).beating([ids[1]]):
        claimed = claim_until(watch, study, storage)
    assert claimed == [dead.number]
    assert study.trials[dead.number].state == TrialState.FAIL
    assert study.trials[alive.number].state == TrialState.RUNNING
    assert watch.claim(study, storage) == []  # claimed once


def test_a_watcher_whose_clock_is_an_hour_ahead_fails_no_live_trial_and_finds_a_dead_one(
    storage: BaseStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(storage=storage, study_name="skewed")
    dead, alive = study.ask(), study.ask()
    study_id = storage.get_study_id_from_name("skewed")
    ids = [storage.get_trial_id_from_study_id_trial_number(study_id, n) for n in (0, 1)]
    storage.set_trial_system_attr(ids[0], HEARTBEAT_ATTR, time.time())  # beat, then died
    outage = Outage("test://")
    with Heartbeat(storage, study_id, 0.1, outage).beating([ids[1]]):
        real = time.time
        monkeypatch.setattr(heartbeat_module.time, "time", lambda: real() + 3600)
        watch = StaleWatch(0.5, outage)
        claimed = claim_until(watch, study, storage)
        for _ in range(10):  # the live one, watched for twice its grace period more
            assert watch.claim(study, storage) == []
            time.sleep(0.1)
    assert claimed == [dead.number]
    assert study.trials[alive.number].state == TrialState.RUNNING


def test_watching_starts_over_after_an_outage_in_which_nobody_could_beat(
    tmp_path: Path,
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'outage.db'}")
    study = optuna.create_study(storage=storage, study_name="outage")
    study.ask()
    outage = Outage("test://")
    watch = StaleWatch(0.3, outage)
    assert watch.claim(study, storage) == []
    time.sleep(0.4)
    outage.failed(ConnectionError("connection refused"))  # the watcher's own storage fails
    outage.reached()
    started = time.monotonic()
    assert watch.claim(study, storage) == []  # not stale for the outage alone
    assert claim_until(watch, study, storage) == [0]  # but a grace period after it ended
    assert time.monotonic() - started >= 0.3


def test_of_two_workers_claiming_a_stale_trial_exactly_one_gets_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="race")
    for _ in range(6):
        study.ask()
    watchers = []
    for _ in range(4):  # each a worker with its own connection, watching since the start
        storage = open_storage(url)
        watch = StaleWatch(0.5, Outage("test://"))
        worker = optuna.load_study(study_name="race", storage=storage)
        assert watch.claim(worker, storage) == []
        watchers.append((watch, worker, storage))
    time.sleep(0.6)
    claims: list[list[int]] = []

    def claim(watch: StaleWatch, worker: optuna.Study, storage: BaseStorage) -> None:
        claims.append([t.number for t in watch.claim(worker, storage)])

    threads = [threading.Thread(target=claim, args=watcher) for watcher in watchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = sorted(number for claimed in claims for number in claimed)
    assert numbers == list(range(6))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_in_time_zones_fourteen_hours_apart_share_a_study_and_fail_no_trial(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'zones.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    # Trials of a few seconds, a grace period of two: a worker that compared its clock with
    # a trial's start written in another zone would fail the other's trials at once.
    study_file = write_study(tmp_path, budget=6, epochs=25)
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    options = ["--heartbeat-interval", "0.5", "--grace-period", "2", "--storage", url]
    workers = []
    for zone in ("Etc/GMT+7", "Etc/GMT-7"):  # UTC-7 and UTC+7
        workers.append(start_cli("worker", "quick", *options, cwd=tmp_path, env={"TZ": zone}))
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
    found = trials(url, "quick")
    assert (
        sum(t.state == TrialState.COMPLETE for t in found)
        + sum(t.state == TrialState.PRUNED for t in found)
        >= 6
    )
    # A trial refused as surplus (two workers asked for the last place) was never trained.
    failed = [t for t in found if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")]
    assert [t.number for t in failed] == []
    reader = open_storage(url)
    contacts = worker_contacts(
        reader.get_study_system_attrs(reader.get_study_id_from_name("quick"))
    )
    assert len(contacts) == 2  # each worker says when it last reached the storage
    assert {contact["state"] for contact in contacts.values()} == {"exited"}
