"""Sensitivity studies: a space-filling design queued at creation, every configuration trained
to the end on at least 3 seeds; refused with one line when a file asks for less."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml
from search_helpers import cli, storage_of

from adamz.search import SpecError, load_search_space, load_study_file
from adamz.search.studies import SensitivitySpec, design_points, spec_from_definition
from adamz.search.study_attrs import stored_definition
from adamz.training import resolve_hyperparameters

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "optimizer": "adamz",
    "parameters": {
        "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "patience": {"type": "int", "low": 20, "high": 60, "log": True},
        "stagnation_period": {"type": "int", "low": 2, "high": 10},
        "max_grad_norm": {"type": "categorical", "choices": [1.0, None]},
    },
}


def write_sensitivity(directory: Path, **changes: object) -> Path:
    (directory / "space.yaml").write_text(yaml.safe_dump(SPACE))
    study = {
        "kind": "sensitivity",
        "name": "atlas",
        "workload": {"name": "circles", "epochs": 1, "train_size": 300},
        "optimizer": "adamz",
        "search_space": "space.yaml",
        "design": {"name": "sobol", "seed": 0},
        "budget": 16,
        "seeds_per_trial": 3,
        **changes,
    }
    path = directory / "atlas.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in study.items() if v is not None}))
    return path


def test_a_sensitivity_study_queues_its_sobol_design_once_and_stores_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_sensitivity(tmp_path)
    spec = load_study_file(path)
    assert isinstance(spec, SensitivitySpec)
    assert spec.queued_only
    assert (spec.pruner, spec.seeds_per_trial) == ({"name": "none"}, 3)
    code, _, err = cli("create", str(path), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    study = optuna.load_study(
        study_name="atlas", storage=f"sqlite:///{tmp_path / 'adamz-search.db'}"
    )
    queued = [trial.system_attrs["fixed_params"] for trial in study.get_trials()]
    assert len(queued) == 16
    assert len({tuple(sorted(params.items(), key=str)) for params in queued}) == 16
    # Sobol's balance: 16 points split the two choices of clipping evenly.
    assert sorted(params["max_grad_norm"] is None for params in queued) == [False] * 8 + [True] * 8
    assert queued == [params for params, _ in spec.queued_trials()]  # the same design again
    assert study.user_attrs["kind"] == "sensitivity"
    definition = stored_definition(study.study_name, storage_of(study)) or {}
    assert definition["design"] == {"name": "sobol", "seed": 0}
    assert type(spec_from_definition(definition, source="stored")) is SensitivitySpec


def test_the_design_points_lie_in_the_space_and_a_seed_changes_them() -> None:
    space = load_search_space(ROOT / "search_spaces" / "adamz-atlas.yaml")
    sobol = {"name": "qmc", "qmc_type": "sobol", "scramble": True, "seed": 0}
    points = design_points(space, sobol, 32)
    for params in points:
        for name, value in params.items():
            distribution = space.distributions[name]
            assert distribution._contains(distribution.to_internal_repr(value))
        resolve_hyperparameters("adamz", space.hyperparameters(params))  # raises if invalid
    assert design_points(space, {**sobol, "seed": 1}, 32) != points
    assert len(design_points(space, {"name": "random", "seed": 0}, 5)) == 5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"pruner": {"name": "median"}},
            "pruner: a sensitivity study trains every configuration to the end",
        ),
        (
            {"seeds_per_trial": 1},
            "seeds_per_trial: a sensitivity study trains each configuration on at least 3 seeds",
        ),
        ({"seeds_per_trial": 2}, "the atlas's noise floor is the spread between the seeds"),
        ({"sampler": {"name": "tpe"}}, "sampler: a sensitivity study draws its configurations"),
        ({"enqueue_defaults": True}, "enqueue_defaults: a sensitivity study runs its design's"),
        ({"design": {"name": "grid"}}, "design.name: must be one of sobol, random, got 'grid'"),
        ({"design": {"name": "sobol", "seed": -1}}, "design.seed: must be an integer >= 0"),
        ({"kind": "atlas"}, "kind: must be sensitivity or replicates, or absent for a search"),
    ],
)
def test_create_refuses_a_sensitivity_study_that_would_not_map_the_space_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, object],
    message: str,
) -> None:
    path = write_sensitivity(tmp_path, **changes)
    with pytest.raises(SpecError, match=re.escape(message)):
        load_study_file(path)
    code, out, err = cli("create", str(path), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert not (tmp_path / "adamz-search.db").exists()  # nothing written to the storage


def test_a_sensitivity_study_takes_an_explicit_none_pruner_and_three_seeds_by_default(
    tmp_path: Path,
) -> None:
    spec = load_study_file(
        write_sensitivity(tmp_path, pruner="none", seeds_per_trial=None, design="random")
    )
    assert isinstance(spec, SensitivitySpec)
    assert spec.seeds_per_trial == 3
    assert spec.definition["design"] == {"name": "random", "seed": 0}
    assert spec.sampler == {"name": "random", "seed": 0}


def test_a_categorical_may_offer_null_where_the_optimizer_takes_none(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "optimizer: adamz\nparameters:\n  max_grad_norm: {type: categorical, choices: [1.0, null]}\n"
    )
    space = load_search_space(path)
    assert space.hyperparameters({"max_grad_norm": None}) == {"max_grad_norm": None}
    path.write_text(
        "optimizer: adamz\nparameters:\n  lr: {type: categorical, choices: [0.01, null]}\n"
    )
    with pytest.raises(SpecError, match=r"parameters.lr: the choice None is invalid: .*lr"):
        load_search_space(path)


@pytest.mark.parametrize(
    ("workload", "configurations"), [("circles", 1000), ("digits", 1000), ("mnist", 200)]
)
def test_the_shipped_atlas_studies_map_the_whole_adamz_space_on_three_seeds(
    workload: str, configurations: int
) -> None:
    spec = load_study_file(ROOT / "studies" / f"{workload}-adamz-atlas.yaml")
    assert isinstance(spec, SensitivitySpec)
    assert spec.budget >= configurations
    assert spec.seeds_per_trial >= 3
    assert spec.definition["population"] > 1
    assert spec.design["name"] == "sobol"
    names = {name.split("[")[0] for name in spec.space.distributions}
    assert names == {
        "lr",
        "overshoot_factor",
        "stagnation_factor",
        "stagnation_threshold",
        "patience",
        "stagnation_period",
        "lr_bounds",
        "max_grad_norm",
    }
    assert spec.space.distributions["max_grad_norm"].choices == (1.0, None)  # type: ignore[attr-defined]
    if workload == "mnist":
        assert (spec.workload["train_size"], spec.workload["test_size"]) == (4000, 1000)
