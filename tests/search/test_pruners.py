"""Equal brackets: Hyperband whose bracket of a trial is the same in every study."""

from __future__ import annotations

import math
import re

import optuna
import pytest
from optuna.pruners import HyperbandPruner, SuccessiveHalvingPruner

from adamz.search.pruners import EqualBracketsHyperbandPruner, bracket_cycle
from adamz.search.studies import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def curve(number: int, epoch: int) -> float:
    """A trial's validation accuracy after ``epoch``: trials differ in speed and ceiling."""
    ceiling = 0.5 + 0.45 * ((number * 7919) % 23) / 22
    speed = 0.2 + ((number * 104729) % 17) / 16
    return ceiling * (1 - math.exp(-speed * epoch))


def run(study: optuna.Study, numbers: list[int], epochs: int) -> dict[int, int]:
    """Train the trials of ``numbers``' curves in order; the epochs each reached."""
    reached = {}
    for number in numbers:
        trial = study.ask()
        for epoch in range(1, epochs + 1):
            trial.report(curve(number, epoch), epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, curve(number, epochs))
        reached[number] = epoch
    return reached


def test_the_bracket_of_a_trial_is_the_same_in_studies_of_any_name() -> None:
    brackets = {}
    for name in ("digits-adamz", "digits-adam", "x"):
        pruner = EqualBracketsHyperbandPruner(min_resource=1, max_resource=10, reduction_factor=4)
        study = optuna.create_study(study_name=name, direction="maximize", pruner=pruner)
        run(study, list(range(30)), epochs=10)
        brackets[name] = [pruner.bracket(t.number) for t in study.get_trials()]
    assert brackets["digits-adamz"] == brackets["digits-adam"] == brackets["x"]
    assert len(set(brackets["x"])) == 2  # both of this setting's brackets are used


def test_each_cycle_holds_optunas_share_of_each_bracket_spread_out() -> None:
    pruner = EqualBracketsHyperbandPruner(min_resource=1, max_resource=30, reduction_factor=3)
    # Optuna's count floor(log_3 30) + 1 = 4 brackets, budgets ceil(4 * 3**s / (s + 1)).
    budgets = [4, 6, 12, 27]
    assert pruner.n_brackets == 4
    cycle = [pruner.bracket(number) for number in range(sum(budgets))]
    assert [cycle.count(bracket) for bracket in range(4)] == budgets
    assert [pruner.bracket(number + sum(budgets)) for number in range(sum(budgets))] == cycle
    assert bracket_cycle([2, 4]) == [1, 0, 1, 1, 0, 1]


@pytest.mark.parametrize(("max_resource", "reduction_factor"), [(10, 4), (27, 3), (9, 3)])
def test_within_a_bracket_it_prunes_as_optunas_successive_halving(
    max_resource: int, reduction_factor: int
) -> None:
    pruner = EqualBracketsHyperbandPruner(
        min_resource=1, max_resource=max_resource, reduction_factor=reduction_factor
    )
    study = optuna.create_study(study_name="a", direction="maximize", pruner=pruner)
    numbers = list(range(60))
    reached = run(study, numbers, epochs=max_resource)
    assert any(epochs < max_resource for epochs in reached.values())  # it did prune
    assert pruner.n_brackets is not None
    for bracket in range(pruner.n_brackets):
        members = [n for n in numbers if pruner.bracket(n) == bracket]
        alone = optuna.create_study(
            direction="maximize",
            pruner=SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=reduction_factor, min_early_stopping_rate=bracket
            ),
        )
        expected = run(alone, members, epochs=max_resource)
        assert {n: reached[n] for n in members} == expected


def test_with_one_bracket_it_is_optunas_hyperband() -> None:
    def reached(pruner: optuna.pruners.BasePruner) -> dict[int, int]:
        study = optuna.create_study(direction="maximize", pruner=pruner)
        return run(study, list(range(40)), epochs=3)

    ours = EqualBracketsHyperbandPruner(min_resource=1, max_resource=3, reduction_factor=4)
    assert ours.n_brackets == 1
    assert reached(ours) == reached(HyperbandPruner(1, 3, 4))


def test_auto_max_resource_waits_for_a_complete_trial() -> None:
    pruner = EqualBracketsHyperbandPruner(min_resource=1, reduction_factor=3)
    assert pruner.n_brackets is None
    with pytest.raises(ValueError, match="not known until a trial has completed"):
        pruner.bracket(0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    run(study, list(range(5)), epochs=9)
    assert pruner.n_brackets == 3  # floor(log_3(9 + 1)) + 1


def test_study_files_hyperband_is_the_equal_brackets_pruner() -> None:
    pruner = make_pruner({"name": "hyperband", "min_resource": 1, "max_resource": 10})
    assert isinstance(pruner, EqualBracketsHyperbandPruner)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_resource": 2.5}, "Invalid max_resource: must be an integer or 'auto', got 2.5."),
        ({"min_resource": "auto"}, "Invalid min_resource: must be an integer, got 'auto'."),
        ({"bootstrap_count": 2}, "Invalid bootstrap_count: must be 0 with max_resource 'auto'"),
        ({"reduction_factor": 1, "max_resource": 9}, "reduction_factor"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        EqualBracketsHyperbandPruner(**options)  # type: ignore[arg-type]
