"""SQLite storages hand each queued trial to exactly one of several processes."""

from __future__ import annotations

import multiprocessing
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from adamz.search import open_storage

QUEUED = 120


def take_queued_trials(url: str) -> list[str]:
    """Ask for queued trials until none is left; return the errors met on the way."""
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="queue", storage=open_storage(url))
    errors = []
    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = study.ask()
        x = trial.suggest_int("x", 0, QUEUED - 1)
        try:
            study.tell(trial, x)
        except RuntimeError as exc:  # the trial was taken and finished by another process
            errors.append(str(exc))
    return errors


def test_four_processes_never_take_the_same_queued_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    study = optuna.create_study(study_name="queue", storage=open_storage(url))
    for x in range(QUEUED):
        study.enqueue_trial({"x": x})
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        errors = pool.map(take_queued_trials, [url] * 4)
    assert errors == [[], [], [], []]
    values = [t.params["x"] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert set(range(QUEUED)) <= set(values)
