"""Search-space and study files: the shipped ones load, bad ones fail naming file, key and rule."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml

from adamz.cli import main
from adamz.search import SpecError, StudySpec, load_search_space, load_study_file
from adamz.search.studies import make_pruner, spec_from_definition

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_shipped_search_space_loads_and_samples_valid_configurations(path: Path) -> None:
    space = load_search_space(path)
    assert path.stem == space.optimizer or path.stem.startswith(f"{space.optimizer}-")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    from adamz.training import resolve_hyperparameters

    for _ in range(20):
        trial = study.ask()
        resolve_hyperparameters(space.optimizer, space.suggest(trial))  # raises if invalid
        study.tell(trial, 0.0)


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_file_loads(path: Path) -> None:
    spec = load_study_file(path)
    assert spec.name == path.stem
    stored = spec_from_definition(spec.definition, source="stored")
    assert type(stored) is type(spec)
    assert stored.digest == spec.digest


def test_the_adamz_space_covers_the_six_hyperparameters_and_the_papers_values() -> None:
    space = load_search_space(ROOT / "search_spaces" / "adamz.yaml")
    tuned = [
        {
            "overshoot_factor": 0.5,
            "stagnation_factor": 1.2,
            "stagnation_threshold": 0.2,
            "patience": 100,
            "stagnation_period": 10,
        },
        {
            "overshoot_factor": 0.864,
            "stagnation_factor": 1.088,
            "stagnation_threshold": 0.076,
            "patience": 164,
            "stagnation_period": 28,
        },
        {
            "overshoot_factor": 0.4848,
            "stagnation_factor": 1.2927,
            "stagnation_threshold": 0.2698,
            "patience": 129,
            "stagnation_period": 15,
        },
    ]
    for values in tuned:
        for name, value in values.items():
            assert space.distributions[name]._contains(
                space.distributions[name].to_internal_repr(value)
            )
    assert {"lr", "lr_bounds[0]", "lr_bounds[1]"} <= set(space.distributions)


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


GOOD_SPACE = {
    "optimizer": "adamz",
    "parameters": {
        "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "patience": {"type": "int", "low": 20, "high": 50},
        "stagnation_period": {"type": "int", "low": 2, "high": 10},
    },
}


def space_with(**parameters: object) -> dict[str, object]:
    return {"optimizer": "adamz", "parameters": {**GOOD_SPACE["parameters"], **parameters}}  # type: ignore[dict-item]


BAD_SPACES = [
    (
        {"optimizer": "adamz", "parameters": GOOD_SPACE["parameters"], "extra": 1},
        "extra: unknown key",
    ),
    (
        {"optimizer": "lamb", "parameters": {"lr": {"value": 0.1}}},
        "optimizer: Unknown optimizer 'lamb'",
    ),
    (space_with(momentum={"value": 0.9}), "parameters.momentum: unknown hyperparameter of adamz"),
    (
        space_with(lr={"type": "float", "low": 0.1, "high": 0.01}),
        "parameters.lr: range must not be empty or inverted",
    ),
    (
        space_with(lr={"type": "float", "low": 0.1, "high": 0.1}),
        "parameters.lr: range must not be empty or inverted",
    ),
    (
        space_with(lr={"type": "float", "low": "small", "high": 0.1}),
        "parameters.lr.low: must be a number (float), got 'small'",
    ),
    (
        space_with(patience={"type": "int", "low": 2.5, "high": 9}),
        "parameters.patience.low: must be a number (int), got 2.5",
    ),
    (
        space_with(lr={"type": "real", "low": 0.1, "high": 0.2}),
        "parameters.lr.type: must be float, int or categorical, got 'real'",
    ),
    (
        space_with(lr={"type": "float", "low": 0.0, "high": 0.1, "log": True}),
        "parameters.lr.low: must be > 0 on a log scale, got 0.0",
    ),
    (
        space_with(lr={"type": "float", "low": 0.01, "high": 0.1, "lag": True}),
        "parameters.lr.lag: unknown key for a float parameter",
    ),
    (
        space_with(stagnation_period={"type": "int", "low": 2, "high": 30}),
        "parameters.stagnation_period: the largest stagnation_period must be <= the smallest patience, got (30, 20)",
    ),
    (
        space_with(lr_bounds=[{"type": "float", "low": 1e-4, "high": 0.5}, {"value": 0.2}]),
        "parameters.lr_bounds: the largest min rate lr_bounds[0] must be <= the smallest max rate lr_bounds[1]",
    ),
    (
        space_with(lr_bounds={"value": [1e-7, 1.0]}),
        "parameters.lr_bounds: a pair: must be a list of two parameters",
    ),
    (
        space_with(overshoot_factor={"type": "float", "low": 0.5, "high": 1.0}),
        "parameters: the range's high ends are invalid: Invalid overshoot_factor: must be in (0, 1), got 1.0",
    ),
]


@pytest.mark.parametrize(
    ("content", "message"),
    BAD_SPACES,
    ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_SPACES)],
)
def test_a_bad_search_space_names_the_file_the_key_and_the_rule(
    tmp_path: Path, content: object, message: str
) -> None:
    path = write(tmp_path, "space.yaml", content)
    with pytest.raises(SpecError, match=re.escape(f"{path}: {message}")):
        load_search_space(path)


def study(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "s",
        "workload": {"name": "digits", "epochs": 1},
        "optimizer": "adamz",
        "search_space": "space.yaml",
        "budget": 3,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


BAD_STUDIES = [
    (study(budgett=3), "budgett: unknown key"),
    (study(budget=None), "budget: is required"),
    (study(budget=0), "budget: must be an integer >= 1, got 0"),
    (study(budget="ten"), "budget: must be an integer >= 1, got 'ten'"),
    (study(workload={"name": "imagenet"}), "workload.name: unknown workload"),
    (study(workload={"name": "digits", "epoch": 2}), "workload.epoch: unknown key"),
    (
        study(workload={"name": "digits", "epochs": -1}),
        "workload.epochs: must be an integer >= 1, got -1",
    ),
    (study(optimizer="adam"), "search_space: tunes 'adamz', but the study's optimizer is 'adam'"),
    (study(direction="up"), "direction: must be maximize or minimize, got 'up'"),
    (
        study(sampler={"name": "bayes"}),
        "sampler.name: must be one of tpe, random, qmc, gp, cmaes, got 'bayes'",
    ),
    (
        study(pruner={"name": "median", "warmup": 1}),
        "pruner: unknown option 'warmup' of MedianPruner",
    ),
    (
        study(pruner={"name": "percentile", "percentile": 150}),
        "pruner: Percentile must be between 0 and 100",
    ),
    (study(search_space="missing.yaml"), "search_space: missing.yaml (relative to "),
    ("name: [unclosed", "file: is not valid YAML: expected ',' or ']'"),
]


@pytest.mark.parametrize(
    ("content", "message"),
    BAD_STUDIES,
    ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_STUDIES)],
)
def test_a_bad_study_file_names_the_file_the_key_and_the_rule(
    tmp_path: Path, content: object, message: str
) -> None:
    write(tmp_path, "space.yaml", GOOD_SPACE)
    path = write(tmp_path, "study.yaml", content)
    with pytest.raises(SpecError, match=re.escape(message)) as raised:
        load_study_file(path)
    assert str(raised.value).count("\n") == 0
    assert str(tmp_path) in str(raised.value)


def test_the_digest_changes_with_the_definition_only(tmp_path: Path) -> None:
    write(tmp_path, "space.yaml", GOOD_SPACE)
    first = load_study_file(write(tmp_path, "a.yaml", study()))
    again = load_study_file(write(tmp_path, "b.yaml", "# a comment\n" + yaml.safe_dump(study())))
    other = load_study_file(write(tmp_path, "c.yaml", study(budget=4)))
    assert first.digest == again.digest != other.digest


def test_patient_pruner_wraps_the_named_pruner() -> None:
    pruner = make_pruner({"name": "patient", "patience": 2, "wrapped_pruner": {"name": "median"}})
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*-*.yaml")), ids=lambda p: p.stem)
def test_the_queued_defaults_of_every_shipped_search_lie_in_its_space(path: Path) -> None:
    spec = load_study_file(path)
    if not isinstance(spec, StudySpec):
        pytest.skip("a replicate study queues its runs, not defaults")
    for params, attrs in spec.queued_trials():
        for name, value in params.items():
            distribution = spec.space.distributions[name]
            assert distribution._contains(distribution.to_internal_repr(value)), (name, value)
        for name, (default, used) in attrs.get("clamped", {}).items():
            assert params[name] == used != default


def test_a_default_outside_a_log_range_runs_at_the_range_end_and_says_so() -> None:
    spec = load_study_file(ROOT / "studies" / "digits-adam.yaml")
    [(library, library_attrs), (paper, paper_attrs)] = spec.queued_trials()
    assert (library["lr"], paper["lr"]) == (1e-3, 0.01)
    assert library_attrs == {
        "enqueued": ["library defaults"],
        "clamped": {"weight_decay": [0, 1e-8]},
    }
    assert paper_attrs == {"enqueued": ["paper settings"], "clamped": {"weight_decay": [0, 1e-8]}}


def test_adamz_queues_one_trial_for_its_defaults_which_are_the_papers() -> None:
    spec = load_study_file(ROOT / "studies" / "digits-adamz.yaml")
    [(params, attrs)] = spec.queued_trials()
    assert params["lr"] == 0.01
    assert params["max_grad_norm"] == 1.0
    # Weight decay is tuned over Adam's log range, as for every optimizer of the Adam family.
    assert attrs == {
        "enqueued": ["library defaults", "paper settings"],
        "clamped": {"weight_decay": [0.0, 1e-8]},
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric": "test_accuracy"}, "metric: a search selects on its metric"),
        ({"metric": "test_loss"}, "use val_loss"),
        ({"metric": "accuracy"}, "metric: must be one of val_accuracy, val_loss"),
        ({"metric": "val_loss", "direction": "maximize"}, "direction: must be minimize"),
        ({"direction": "minimize"}, "direction: must be maximize for metric val_accuracy"),
    ],
)
def test_a_search_that_would_select_on_test_or_against_its_metric_is_refused(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    write(tmp_path, "space.yaml", GOOD_SPACE)
    path = write(tmp_path, "study.yaml", study(**changes))
    with pytest.raises(SpecError, match=re.escape(message)) as raised:
        load_study_file(path)
    assert "\n" not in str(raised.value)


def test_a_search_selects_on_validation_by_default_and_a_replicate_measures_test(
    tmp_path: Path,
) -> None:
    write(tmp_path, "space.yaml", GOOD_SPACE)
    search = load_study_file(write(tmp_path, "study.yaml", study()))
    assert (search.metric, search.direction) == ("val_accuracy", "maximize")
    assert load_study_file(write(tmp_path, "loss.yaml", study(metric="val_loss"))).direction == (
        "minimize"
    )
    replicate = load_study_file(ROOT / "studies" / "paper-circles.yaml")
    assert replicate.metric == "test_accuracy"


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_no_shipped_search_selects_on_a_test_metric(path: Path) -> None:
    spec = load_study_file(path)
    if isinstance(spec, StudySpec):
        assert spec.metric.startswith("val_")


def test_a_search_space_path_that_cannot_be_read_is_said_to_be_relative_to_the_study_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A shipped study file copied to another folder keeps its ../search_spaces/ path.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    copied = Path("mine/x.yaml")
    copied.write_text((ROOT / "studies" / "digits-adamz.yaml").read_text())
    assert main(["create", str(copied)]) == 2
    error = capsys.readouterr().err
    assert error == (
        "adamz-search: error: mine/x.yaml: search_space: ../search_spaces/adamz.yaml (relative "
        f"to mine/x.yaml, i.e. {tmp_path.resolve() / 'search_spaces' / 'adamz.yaml'}) cannot be "
        "read (No such file or directory).\n"
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "mine"]  # no storage was written


def test_a_config_path_in_a_replicate_file_is_said_to_be_relative_to_it(tmp_path: Path) -> None:
    runs = [{"label": "tuned", "config": "../exported.yaml"}]
    content = {"kind": "replicates", "name": "r", "workload": "digits", "seeds": 2, "runs": runs}
    path = write(tmp_path, "r.yaml", content)
    expected = (
        f"{path}: runs[0].config: ../exported.yaml (relative to {path}, "
        f"i.e. {tmp_path.parent.resolve() / 'exported.yaml'}) cannot be read"
    )
    with pytest.raises(SpecError, match=re.escape(expected)):
        load_study_file(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\nworkload: {name: digits\nbudget: 3\n", "but got ':' at line 3, column 7"),
        (
            "name: x\n  workload: digits\n",
            "mapping values are not allowed here at line 2, column 11",
        ),
        ("name: x\n\tbudget: 3\n", "at line 2, column 1"),
    ],
)
def test_a_yaml_syntax_error_names_its_line_and_column(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, "study.yaml", text)
    with pytest.raises(SpecError, match=re.escape(f"{path}: file: is not valid YAML: ")) as raised:
        load_study_file(path)
    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_yaml_syntax_error_in_a_search_space_names_its_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "space.yaml", "optimizer: adamz\nparameters:\n  lr: {type: float\n")
    with pytest.raises(
        SpecError, match=r"space\.yaml: file: is not valid YAML: .* at line 4, column 1"
    ):
        load_search_space(path)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_search_space_ships_with_the_package_as_it_is_in_the_repository(path: Path) -> None:
    from adamz.search.spaces import SHIPPED_SPACES

    assert (SHIPPED_SPACES / path.name).read_bytes() == path.read_bytes()


def test_a_study_file_anywhere_names_a_shipped_search_space_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    content = yaml.safe_load((ROOT / "studies" / "digits-adam.yaml").read_text())
    content["search_space"] = "adam"
    spec = load_study_file(write(tmp_path, "mine.yaml", content))
    assert isinstance(spec, StudySpec)
    assert (
        spec.space.definition
        == load_study_file(ROOT / "studies" / "digits-adam.yaml").space.definition
    )  # type: ignore[union-attr]
    content["search_space"] = "adamx"
    assert main(["create", str(write(tmp_path, "typo.yaml", content))]) == 2
    error = capsys.readouterr().err
    assert "search_space: no shipped search space is called 'adamx' (there are adafactor," in error
    assert "\n" not in error.rstrip("\n")
