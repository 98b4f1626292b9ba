"""A trial's budget check: refused when earlier trials fill the budget, free of queries when they
cannot."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from search_helpers import write_study

from adamz.search import TrialObjective, load_study_file, open_storage
from adamz.search import objective as objective_module
from adamz.search.budget import QUEUED_ATTR, SurplusTrialError


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    torch.set_num_threads(1)
    storage = open_storage(f"sqlite:///{tmp_path / 'budget.db'}")
    return optuna.create_study(storage=storage, direction="maximize")


def objective(tmp_path: Path, budget: int, study: optuna.Study) -> TrialObjective:
    spec = load_study_file(write_study(tmp_path, budget=budget, epochs=1))
    storage = open_storage(f"sqlite:///{tmp_path / 'budget.db'}")
    return TrialObjective(
        spec, study=study, storage=storage, budget=budget, device="cpu", checkpoint_dir=tmp_path
    )


def forbid_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_count(study: optuna.Study) -> None:
        raise AssertionError("the budget check counted the trials")

    monkeypatch.setattr(objective_module, "count_states", no_count)


def test_a_new_trial_numbered_below_the_budget_runs_without_counting(
    tmp_path: Path, study: optuna.Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = objective(tmp_path, budget=2, study=study)
    study.tell(study.ask(), 0.5)
    forbid_counting(monkeypatch)
    trial = study.ask()  # number 1, budget 2
    assert 0.0 < run(trial) <= 1.0


def test_a_queued_trial_is_counted_even_below_the_budget(
    tmp_path: Path, study: optuna.Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = objective(tmp_path, budget=2, study=study)
    study.enqueue_trial({"lr": 0.01}, user_attrs={QUEUED_ATTR: True})
    trial = study.ask()  # number 0, but queued: whoever popped it may have started late
    forbid_counting(monkeypatch)
    with pytest.raises(AssertionError, match="counted"):
        run(trial)


def test_a_trial_after_the_budget_is_filled_is_refused_as_surplus(
    tmp_path: Path, study: optuna.Study
) -> None:
    run = objective(tmp_path, budget=2, study=study)
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    trial = study.ask()
    with pytest.raises(SurplusTrialError, match="budget of 2 trials is already taken"):
        run(trial)
    assert study.trials[-1].user_attrs["surplus"] is True


def test_failed_trials_do_not_fill_the_budget(tmp_path: Path, study: optuna.Study) -> None:
    run = objective(tmp_path, budget=2, study=study)
    for _ in range(3):
        study.tell(study.ask(), state=TrialState.FAIL)
    trial = study.ask()  # number 3 >= budget: counted, and the failures leave room
    assert 0.0 < run(trial) <= 1.0


@pytest.mark.parametrize("read", [1, 2, 3])
def test_a_trial_finishing_during_the_check_never_lets_two_trials_take_the_last_place(
    tmp_path: Path, study: optuna.Study, monkeypatch: pytest.MonkeyPatch, read: int
) -> None:
    """Budget 2; ``first`` runs, then ``second``, then ``late``: ``late`` has no place.

    ``first`` completes just after the check's read number ``read`` (the counts, the running
    trials or the second count), however the reads interleave with it.
    """
    run = objective(tmp_path, budget=2, study=study)
    first, second, late = study.ask(), study.ask(), study.ask()
    reads = 0

    def finish_first_after_read() -> None:
        nonlocal reads
        reads += 1
        if reads == read:
            study.tell(first, 0.5)

    real_count, real_get_trials = objective_module.count_states, optuna.Study.get_trials

    def counting(*args: object, **kwargs: object) -> dict[TrialState, int]:
        counts = real_count(*args, **kwargs)
        finish_first_after_read()
        return counts

    def getting(self: optuna.Study, *args: object, **kwargs: object) -> object:
        trials = real_get_trials(self, *args, **kwargs)
        finish_first_after_read()
        return trials

    monkeypatch.setattr(objective_module, "count_states", counting)
    monkeypatch.setattr(optuna.Study, "get_trials", getting)
    with pytest.raises(SurplusTrialError):
        run(late)
    assert reads >= read, "the check made fewer reads than the test interleaves with"
    assert study.trials[first.number].state is TrialState.COMPLETE
    assert study.trials[second.number].state is TrialState.RUNNING


def test_a_queued_trial_waiting_with_a_lower_number_holds_its_place(
    tmp_path: Path, study: optuna.Study
) -> None:
    """Budget 2, one finished; a retry queued as number 1 waits; trial 2, started before
    the retry, finds the last place taken by it (else both would run: the retry, when it
    starts, counts only trials numbered below it)."""
    run = objective(tmp_path, budget=2, study=study)
    study.tell(study.ask(), 0.5)
    study.enqueue_trial({"lr": 0.01}, user_attrs={QUEUED_ATTR: True})  # number 1, waiting
    [waiting] = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    # A trial that started while the retry waited (``ask`` would pop the retry instead).
    storage = open_storage(f"sqlite:///{tmp_path / 'budget.db'}")
    study_id = storage.get_study_id_from_name(study.study_name)
    late = optuna.trial.Trial(study, storage.create_new_trial(study_id))
    assert (waiting.number, late.number) == (1, 2)
    with pytest.raises(SurplusTrialError, match="budget of 2 trials is already taken"):
        run(late)
    retry = study.ask()  # the queued trial: its place is there
    assert retry.number == 1
    assert 0.0 < run(retry) <= 1.0
