"""The worker's own rules: a seeded lone worker repeats its search, several workers sample apart,
and no queue entry outlives the budget."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import run_cli, trials, write_study

from adamz.search import WorkerOptions, open_storage, run_worker
from adamz.search.retries import NOT_RUN_ATTR, end_unrunnable, queue_retry
from adamz.search.worker import open_worker, worker_seed


def run_fresh_study(directory: Path, population: int, **changes: object) -> list[dict[str, float]]:
    """Create the quick study in a fresh storage, run one worker to its budget; the trials'
    parameters in number order."""
    directory.mkdir()
    study_file = write_study(directory, budget=8, epochs=1, population=population, **changes)
    url = f"sqlite:///{directory / 'seeded.db'}"
    assert run_cli("create", str(study_file), "--storage", url, cwd=directory).returncode == 0
    summary = run_worker("quick", WorkerOptions(storage=url, checkpoint_dir=str(directory)))
    assert summary.code == 0, summary.reason
    return [trial.params for trial in trials(url, "quick")]


@pytest.mark.slow
@pytest.mark.parametrize("population", [1, 4])
def test_a_lone_worker_with_the_file_s_seed_repeats_its_search(
    tmp_path: Path, population: int
) -> None:
    first = run_fresh_study(tmp_path / "first", population)
    again = run_fresh_study(tmp_path / "again", population)
    assert len(first) == 8
    assert first == again
    assert len({tuple(sorted(params.items())) for params in first}) == 8


@pytest.mark.slow
def test_without_a_seed_in_the_file_each_run_samples_anew(tmp_path: Path) -> None:
    sampler = {"name": "tpe"}
    first = run_fresh_study(tmp_path / "first", 1, sampler=sampler)
    again = run_fresh_study(tmp_path / "again", 1, sampler=sampler)
    assert first != again


def test_workers_that_take_different_first_trials_sample_with_different_seeds() -> None:
    assert worker_seed(0, 0) == worker_seed(0, 0)
    assert len({worker_seed(0, first) for first in range(64)}) == 64
    assert worker_seed(1, 0) != worker_seed(0, 0)


def test_a_retry_queued_after_the_budget_was_met_is_ended_as_not_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    study_file = write_study(tmp_path, budget=2, epochs=1, pruner={"name": "none"})
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    options = WorkerOptions(storage=url, checkpoint_dir=str(tmp_path))
    worker = open_worker("quick", options)
    # A killed trial's retry, queued once other trials had met the budget: nobody will run it.
    killed = worker.study.ask()
    storage = open_storage(url)
    trial_id = storage.get_trial_id_from_study_id_trial_number(worker.study_id, killed.number)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    assert run_worker("quick", options).code == 0  # meets the budget
    queue_retry(worker.study, storage.get_trial(trial_id), "death")
    assert run_worker("quick", options).reason.startswith("nothing to do")
    found = trials(url, "quick")
    assert [t.state for t in found].count(TrialState.WAITING) == 0
    [ended] = [t for t in found if NOT_RUN_ATTR in t.user_attrs]
    assert ended.user_attrs[NOT_RUN_ATTR] == "budget met"
    assert ended.state == TrialState.FAIL
    status = run_cli("status", "quick", "--storage", url, cwd=tmp_path)
    assert "not run: 1 queued trials ended when the budget was met" in status.stdout
    assert "running 0" in status.stdout


def test_a_queued_trial_another_worker_takes_meanwhile_is_not_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'taken.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="taken")
    study.enqueue_trial({"x": 1.0})
    seen = study.get_trials(deepcopy=False)  # the queue as this worker read it
    taken = study.ask()  # then another worker took it
    monkeypatch.setattr(study, "get_trials", lambda *args, **kwargs: seen)
    storage = open_storage(url)
    assert end_unrunnable(study, storage, storage.get_study_id_from_name("taken")) == []
    assert trials(url, "taken")[taken.number].state == TrialState.RUNNING


def test_a_study_named_after_many_studies_gets_a_checkpoint_folder_the_file_system_takes() -> None:
    from adamz.search.worker import MAX_FOLDER_NAME, WorkerOptions, checkpoint_dir

    long_name = "confirm-" + "+".join(f"digits-optimizer-{i}~r2" for i in range(14)) + "-k20-c1"
    other = long_name.replace("~r2", "~r3")
    options = WorkerOptions(checkpoint_dir="/tmp/checkpoints")
    folder = checkpoint_dir(options, long_name).name
    assert len(long_name) > 255
    assert len(folder.encode()) <= MAX_FOLDER_NAME
    assert folder.startswith("confirm-digits-optimizer-0~r2+")
    assert checkpoint_dir(options, long_name).name == folder  # every host finds the same
    assert checkpoint_dir(options, other).name != folder
    assert checkpoint_dir(options, "quick").name == "quick"  # a short name as it is
