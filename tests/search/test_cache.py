"""The read cache a worker's trials read through: the study once per round, their own writes at
once, and nothing written by the cache itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from adamz.search.cache import RoundCache
from adamz.search.storage import open_storage


@pytest.fixture
def live(tmp_path: Path) -> optuna.Study:
    """A study on SQLite with 12 finished trials, each reporting three epochs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(f"sqlite:///{tmp_path / 'cache.db'}")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for _ in range(12):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        for epoch in range(3):
            trial.report(x * (epoch + 1) / 3, epoch)
        study.tell(trial, x)
    return study


def snapshot_of(live: optuna.Study, tmp_path: Path) -> tuple[optuna.Study, RoundCache]:
    storage = open_storage(f"sqlite:///{tmp_path / 'cache.db'}")
    snapshot = RoundCache(storage, storage.get_study_id_from_name("s"))
    study = optuna.load_study(
        study_name="s",
        storage=snapshot,
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    return study, snapshot


def count_reads(snapshot: RoundCache, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the cache's reads of all the study's trials from its storage."""
    reads = [0]
    get_all_trials = snapshot.storage.get_all_trials

    def counted(*args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        reads[0] += 1
        return get_all_trials(*args, **kwargs)

    monkeypatch.setattr(snapshot.storage, "get_all_trials", counted)
    return reads


def test_a_round_of_asks_and_pruning_checks_reads_the_study_once(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    reads = count_reads(snapshot, monkeypatch)
    snapshot.new_round()
    trials = [study.ask() for _ in range(8)]
    for trial in trials:
        trial.suggest_float("x", 0.0, 1.0)  # TPE reads the study for each
    assert reads[0] == 1
    for epoch in range(3):  # a round: every report, then every check
        for trial in trials:
            trial.report(0.5, epoch)
        snapshot.new_round()
        for trial in trials:
            trial.should_prune()  # the median pruner reads the study for each
        assert reads[0] == 2 + epoch


def test_writes_reach_the_storage_and_the_round_reads_them_back(
    live: optuna.Study, tmp_path: Path
) -> None:
    study, _snapshot = snapshot_of(live, tmp_path)
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.25, 0)
    trial.set_user_attr("worker", {"host": "h"})
    seen = study.get_trials(deepcopy=False)[-1]  # no new round: the written trial, read again
    assert (seen.state, seen.params, seen.intermediate_values) == (
        TrialState.RUNNING,
        {"x": x},
        {0: 0.25},
    )
    assert seen.user_attrs == {"worker": {"host": "h"}}
    stored = live.get_trials(deepcopy=False)[-1]  # the storage itself
    assert (stored.number, stored.params, stored.intermediate_values) == (12, {"x": x}, {0: 0.25})
    assert stored.user_attrs == {"worker": {"host": "h"}}
    told = study.tell(trial, 0.75)
    assert told.state == TrialState.COMPLETE
    assert live.get_trials(deepcopy=False)[-1].value == 0.75


def test_other_workers_writes_show_at_the_next_round(live: optuna.Study, tmp_path: Path) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    assert len(study.get_trials()) == 12
    other = live.ask()  # another worker's trial
    other.report(0.9, 0)
    assert len(study.get_trials()) == 12
    snapshot.new_round()
    assert [t.intermediate_values for t in study.get_trials()][-1] == {0: 0.9}


def test_pruning_through_the_snapshot_decides_as_the_live_study(
    live: optuna.Study, tmp_path: Path
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    snapshot.new_round()
    trials = [study.ask() for _ in range(6)]
    values = [0.05, 0.2, 0.3, 0.45, 0.6, 0.9]  # around the median of the finished (x / 3)
    for trial, value in zip(trials, values, strict=True):
        trial.report(value, 0)
    snapshot.new_round()
    decisions = [trial.should_prune() for trial in trials]
    assert True in decisions
    assert False in decisions
    pruner = study.pruner
    expected = [
        pruner.prune(live, next(t for t in live.get_trials() if t.number == trial.number))
        for trial in trials
    ]
    assert decisions == expected


def test_a_queued_trial_another_worker_took_is_not_taken_twice(
    live: optuna.Study, tmp_path: Path
) -> None:
    live.enqueue_trial({"x": 0.5})
    study, snapshot = snapshot_of(live, tmp_path)
    snapshot.new_round()
    assert [t.state for t in study.get_trials()][-1] == TrialState.WAITING
    taken = live.ask()  # another worker takes it; the snapshot still has it WAITING
    assert taken.suggest_float("x", 0.0, 1.0) == 0.5
    mine = study.ask()
    assert mine.number == taken.number + 1
    assert study.get_trials()[taken.number].state == TrialState.RUNNING


class WriteCounter:
    """Counts the writes that reach a storage, by method."""

    WRITES = (
        "create_new_trial",
        "set_trial_state_values",
        "set_trial_param",
        "set_trial_intermediate_value",
        "set_trial_user_attr",
        "set_trial_system_attr",
        "set_study_user_attr",
        "set_study_system_attr",
    )

    def __init__(self, storage: BaseStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[str] = []
        for name in self.WRITES:
            method = getattr(storage, name)

            def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
                self.writes.append(_name)
                return _method(*args)

            monkeypatch.setattr(storage, name, counted)


def test_the_cache_writes_only_what_it_is_asked_to_and_stamps_nothing(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    counter = WriteCounter(snapshot.storage, monkeypatch)
    study.get_trials()
    study.best_trial  # noqa: B018 -- reads
    snapshot.new_round()
    study.get_trials(states=(TrialState.COMPLETE,))
    assert counter.writes == []  # reads write nothing
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    assert counter.writes[0] == "create_new_trial"  # Optuna's own writes, passed through
    assert "set_trial_param" in counter.writes
    started = live.get_trials(deepcopy=False)[-1].datetime_start
    assert study.get_trials(deepcopy=False)[-1].datetime_start == started  # the storage's


def test_a_study_s_id_name_and_directions_are_read_once(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, snapshot = snapshot_of(live, tmp_path)
    reads: list[str] = []
    for name in ("get_study_id_from_name", "get_study_directions"):
        method = getattr(snapshot.storage, name)
        monkeypatch.setattr(
            snapshot.storage,
            name,
            lambda *args, _n=name, _m=method: (reads.append(_n), _m(*args))[1],
        )
    for _ in range(5):  # as Hyperband builds a study per pruning check
        optuna.load_study(study_name="s", storage=snapshot).directions  # noqa: B018
    assert reads == []  # read once already, when the worker's study was loaded
