"""Counting a study's trials by state, which every worker does before every trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from adamz.search import open_storage
from adamz.search.budget import count_states


def make_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name="counted")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    study.enqueue_trial({"x": 0.5})
    study.ask()  # running
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    return study


def test_counts_on_sqlite_come_from_one_query_not_from_loading_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = make_study(open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", heartbeat_interval=None))

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("count_states loaded the trials")

    monkeypatch.setattr(optuna.Study, "get_trials", no_loading)
    monkeypatch.setattr(optuna.Study, "_get_trials", no_loading)
    counts = count_states(study)
    assert counts[TrialState.COMPLETE] == 3
    assert counts[TrialState.RUNNING] == 1
    assert counts[TrialState.PRUNED] == 1
    assert counts[TrialState.FAIL] == 1
    assert counts[TrialState.WAITING] == 0


def test_counts_on_other_storages_match_the_trials(tmp_path: Path) -> None:
    study = make_study(open_storage(f"journal:{tmp_path / 'study.journal'}"))
    counts = count_states(study)
    expected = {state: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        expected[trial.state] += 1
    assert counts == expected
    assert counts[TrialState.COMPLETE] == 3
