"""Budget curves count every trial the budget paid for, at equal budget across studies."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from report_helpers import storage_of, with_storage

from adamz.reports import load_study_data
from adamz.reports._budget import budget_section


def plain_study(name: str = "plain", *, completed: int = 14, pruned: int = 43, failed: int = 3):
    """A plain Optuna study (no adamz-search definition): its objective prunes, completes or
    raises as told, in an interleaved order."""
    plan = ["complete"] * completed + ["pruned"] * pruned + ["failed"] * failed
    np.random.default_rng(0).shuffle(plan)
    study = optuna.create_study(direction="maximize", study_name=name)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        outcome = plan[trial.number]
        for step in range(1, 4):
            trial.report(x * step / 3, step)
            if outcome == "pruned" and step == 2:
                raise optuna.TrialPruned()
        if outcome == "failed":
            raise RuntimeError("an exception in the objective")
        return x

    study.optimize(objective, n_trials=len(plan), catch=(RuntimeError,))
    return study


def test_a_budget_curve_runs_over_every_finished_trial_pruned_ones_included() -> None:
    study = plain_study()
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 14
    assert states.count(optuna.trial.TrialState.PRUNED) == 43
    assert states.count(optuna.trial.TrialState.FAIL) == 3
    data = load_study_data(study, storage_of(study))
    section = budget_section([data])
    numbers = section.numbers["plain"]
    assert numbers["finished_trials"] == 57
    assert max(numbers["k"]) == 57
    assert numbers["pruned"] == 43
    # a pruned trial counts once, at its last reported value (step 2 of 3)
    pruned = [t for t in data.finished if t.state == optuna.trial.TrialState.PRUNED]
    values = dict(zip([t.number for t in data.finished], data.finished_values, strict=True))
    assert all(values[t.number] == pytest.approx(t.params["x"] * 2 / 3) for t in pruned)
    # the cost axis adds the epochs each trial reported: 2 for pruned ones, 3 for complete ones
    assert numbers["cumulative_epochs"][-1] == 43 * 2 + 14 * 3


def test_studies_of_equal_budget_share_one_k_axis_and_longer_ones_are_cut() -> None:
    first = load_study_data(*with_storage(plain_study("first", completed=10, pruned=20, failed=2)))
    second = load_study_data(*with_storage(plain_study("second", completed=5, pruned=25, failed=7)))
    longer = load_study_data(
        *with_storage(plain_study("longer", completed=12, pruned=24, failed=0))
    )
    section = budget_section([first, second])
    assert section.numbers["first"]["k"] == section.numbers["second"]["k"]
    assert max(section.numbers["first"]["k"]) == 30
    cut = budget_section([first, longer])
    assert cut.numbers["longer"]["finished_trials"] == 30
    assert max(cut.numbers["longer"]["k"]) == 30
    assert any("Cut to the first 30 finished trials" in line for line in cut.summary)


def test_a_study_that_diverges_more_often_looks_worse_not_better() -> None:
    def study(name: str, diverged: int) -> optuna.Study:
        study = optuna.create_study(direction="maximize", study_name=name)
        definition = {"workload": {"name": "circles"}, "metric": "val_accuracy"}
        study.set_user_attr("definition", definition)
        for number in range(20):
            trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            trial.report(0.97, 1)
            if number < diverged:  # as workers record it: complete at chance, marked
                trial.set_user_attr("run", {"diverged": True})
                study.tell(trial, 0.5)
            else:
                study.tell(trial, 0.97)
        return study

    steady = budget_section([load_study_data(*with_storage(study("steady", 0)))]).numbers["steady"]
    shaky = budget_section([load_study_data(*with_storage(study("shaky", 10)))]).numbers["shaky"]
    assert shaky["divergence_rate"] == 0.5
    assert steady["divergence_rate"] == 0.0
    assert shaky["expected_best"][0] < steady["expected_best"][0]
    assert any(
        "50% divergence rate" in line
        for line in budget_section([load_study_data(*with_storage(study("again", 10)))]).summary
    )


def test_an_older_study_counts_a_pruned_diverged_trial_at_chance_not_at_its_last_value() -> None:
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("definition", {"workload": {"name": "digits"}, "metric": "val_accuracy"})
    good = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(good, 0.9)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.95, 1)
    trial.set_user_attr("run", {"stop_reason": "diverged: non-finite loss (nan) at epoch 2"})
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    data = load_study_data(study, storage_of(study))
    assert list(data.finished_values) == [0.9, pytest.approx(0.1)]
