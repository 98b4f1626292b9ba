"""The storage a population's trials read: the study once per round, their own writes at once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from adamz.search.snapshot import SnapshotStorage
from adamz.search.storage import open_storage


@pytest.fixture
def live(tmp_path: Path) -> optuna.Study:
    """A study on SQLite with 12 finished trials, each reporting three epochs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(f"sqlite:///{tmp_path / 'snapshot.db'}")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for _ in range(12):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        for epoch in range(3):
            trial.report(x * (epoch + 1) / 3, epoch)
        study.tell(trial, x)
    return study


def snapshot_of(live: optuna.Study, tmp_path: Path) -> tuple[optuna.Study, SnapshotStorage]:
    storage = open_storage(f"sqlite:///{tmp_path / 'snapshot.db'}")
    snapshot = SnapshotStorage(live, storage)
    study = optuna.load_study(
        study_name="s",
        storage=snapshot,
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    return study, snapshot


def count_reads(study: optuna.Study, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the live study's reads of its trials."""
    reads = [0]
    get_trials = study.get_trials

    def counted(*args: object, **kwargs: object) -> list[optuna.trial.FrozenTrial]:
        reads[0] += 1
        return get_trials(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(study, "get_trials", counted)
    return reads


def test_a_round_of_asks_and_pruning_checks_reads_the_study_once(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    reads = count_reads(live, monkeypatch)
    snapshot.invalidate()
    trials = [study.ask() for _ in range(8)]
    for trial in trials:
        trial.suggest_float("x", 0.0, 1.0)  # TPE reads the study for each
    assert reads[0] == 1
    for epoch in range(3):
        snapshot.invalidate()
        for trial in trials:
            trial.report(0.5, epoch)
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
    seen = study.get_trials(deepcopy=False)[-1]  # no new round: the snapshot, written into
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
    snapshot.invalidate()
    assert [t.intermediate_values for t in study.get_trials()][-1] == {0: 0.9}


def test_pruning_through_the_snapshot_decides_as_the_live_study(
    live: optuna.Study, tmp_path: Path
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    snapshot.invalidate()
    trials = [study.ask() for _ in range(6)]
    values = [0.05, 0.2, 0.3, 0.45, 0.6, 0.9]  # around the median of the finished (x / 3)
    decisions = []
    for trial, value in zip(trials, values, strict=True):
        trial.report(value, 0)
        decisions.append(trial.should_prune())
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
    snapshot.invalidate()
    assert [t.state for t in study.get_trials()][-1] == TrialState.WAITING
    taken = live.ask()  # another worker takes it; the snapshot still has it WAITING
    assert taken.suggest_float("x", 0.0, 1.0) == 0.5
    mine = study.ask()
    assert mine.number == taken.number + 1
    assert study.get_trials()[taken.number].state == TrialState.RUNNING
