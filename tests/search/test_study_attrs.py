"""What a study stores beside its trials: the definition out of the dashboard's panel, short
readable values in it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from search_helpers import storage_of, write_study

from adamz.cli._study_commands import create_study
from adamz.search import load_study_file
from adamz.search.study_attrs import (
    DEFINITION_ATTR,
    DIGEST_ATTR,
    Divergence,
    note_header,
    readable_attrs,
    stored_definition,
    stored_digest,
)

ROOT = Path(__file__).resolve().parents[2]
SHORT = 80
"""Characters of a value read at a glance in optuna-dashboard's panel of study attributes."""


def created(tmp_path: Path, study_file: Path) -> tuple[optuna.storages.BaseStorage, optuna.Study]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    spec = load_study_file(study_file)
    assert create_study(spec, storage, study_file=study_file)
    return storage, optuna.load_study(study_name=spec.name, storage=storage)


def test_create_stores_the_definition_and_digest_as_system_attributes(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=7)
    storage, study = created(tmp_path, study_file)
    system_attrs = storage.get_study_system_attrs(study._study_id)
    spec = load_study_file(study_file)
    assert system_attrs[DEFINITION_ATTR] == spec.definition
    assert system_attrs[DIGEST_ATTR] == spec.digest
    assert stored_definition(study.study_name, storage_of(study)) == spec.definition
    assert stored_digest(study.study_name, storage_of(study)) == spec.digest


def test_the_dashboards_study_attributes_are_short_readable_values(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=7)
    _, study = created(tmp_path, study_file)
    shown = {key: value for key, value in study.user_attrs.items() if key != DEFINITION_ATTR}
    assert shown == {
        "workload": "digits, epochs 2, train_size 400",
        "optimizer": "adamz",
        "metric": "val_accuracy",
        "budget": 7,
        "study_file": str(study_file),
        "kind": "search",
        "sampler": "tpe",
        "pruner": "none",
        "adamz_version": shown["adamz_version"],
    }
    assert DIGEST_ATTR not in study.user_attrs
    assert all(isinstance(value, str | int) for value in shown.values())


def test_a_replicate_study_lists_its_optimizers_once_each() -> None:
    spec = load_study_file(ROOT / "studies" / "paper-circles.yaml")
    attrs = readable_attrs(spec)
    assert attrs["kind"] == "replicates"
    optimizers = str(attrs["optimizer"]).split(", ")
    assert len(optimizers) == len(set(optimizers)) > 1
    assert attrs["budget"] == spec.budget
    assert all(len(str(value)) <= SHORT for value in attrs.values())


def test_every_shipped_study_file_gives_values_read_at_a_glance() -> None:
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        attrs = readable_attrs(load_study_file(path), study_file=Path("studies") / path.name)
        assert all(len(str(value)) <= SHORT for value in attrs.values()), path


def test_a_study_created_with_the_definition_among_its_user_attributes_is_still_read(
    tmp_path: Path,
) -> None:
    spec = load_study_file(write_study(tmp_path))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'old.sqlite'}", study_name="old")
    study.set_user_attr(DEFINITION_ATTR, spec.definition)
    study.set_user_attr(DIGEST_ATTR, spec.digest)
    assert stored_definition(study.study_name, storage_of(study)) == spec.definition
    assert stored_digest(study.study_name, storage_of(study)) == spec.digest


def test_a_plain_optuna_study_has_no_stored_definition() -> None:
    study = optuna.create_study()
    study.set_user_attr(DEFINITION_ATTR, "not a definition")
    assert stored_definition(study.study_name, storage_of(study)) is None
    assert stored_digest(study.study_name, storage_of(study)) is None


def trial(value: float, *, diverged: bool = False) -> optuna.trial.FrozenTrial:
    run = {"diverged": True, "stop_reason": "diverged on seed 0: loss nan"} if diverged else {}
    return optuna.trial.create_trial(value=value, user_attrs={"run": run})


@pytest.mark.parametrize(
    ("values", "headline", "best_is_chance"),
    [
        ([(0.9, False), (0.8, False)], "", False),
        ([(0.9, False), (0.1, True), (0.1, True)], "2 of 3 finished trials diverged", False),
        # a chance value above the others: the best is a diverged trial's
        ([(0.05, False), (0.1, True)], "1 of 2 finished trials diverged", True),
        ([(0.1, True), (0.1, True)], "every trial diverged (2 of 2 finished)", True),
    ],
)
def test_divergence_counts_the_diverged_trials_and_says_when_the_best_is_a_chance_value(
    values: list[tuple[float, bool]], headline: str, best_is_chance: bool
) -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trials([trial(value, diverged=diverged) for value, diverged in values])
    divergence = Divergence.of(study.trials, study.best_trial)
    assert divergence.headline() == headline
    assert divergence.best_is_chance == best_is_chance
    assert ("chance value" in divergence.sentence()) == bool(headline)
    assert ("the best value is a diverged trial's" in divergence.sentence()) == best_is_chance


def test_the_dashboard_note_begins_with_the_divergence_and_keeps_the_report_below(
    tmp_path: Path,
) -> None:
    import optuna_dashboard

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'note.db'}", direction="maximize")
    optuna_dashboard.save_note(study, "## Report\n\nThe summary.")
    study.add_trial(trial(0.9))
    note_header(study, storage_of(study))  # nothing diverged: nothing to say
    assert optuna_dashboard.get_note(study) == "## Report\n\nThe summary."
    study.add_trial(trial(0.1, diverged=True))
    note_header(study, storage_of(study))
    first, blank, *rest = optuna_dashboard.get_note(study).splitlines()
    assert first.startswith("> **Diverged:** 1 of 2 finished trials diverged")
    assert (blank, rest) == ("", ["## Report", "", "The summary."])
    study.add_trial(trial(0.1, diverged=True))
    note_header(study, storage_of(study))  # the line is replaced, not repeated
    first, blank, *rest = optuna_dashboard.get_note(study).splitlines()
    assert first.startswith("> **Diverged:** 2 of 3 finished trials diverged")
    assert rest == ["## Report", "", "The summary."]
