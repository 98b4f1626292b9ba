"""Replicate studies: fixed configurations over seeds, queued at creation, run by workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import run_cli, trials

from adamz.search import load_study_file
from adamz.search.errors import SpecError
from adamz.search.replicates import ReplicateSpec


def replicate_file(directory: Path, **changes: Any) -> Path:
    content: dict[str, Any] = {
        "kind": "replicates",
        "name": "reps",
        "workload": {"name": "digits", "epochs": 1, "train_size": 300},
        "seeds": 3,
        "first_seed": 7,
        "runs": [
            {"label": "AdamZ", "optimizer": "adamz", "hyperparameters": {"lr": 0.01}},
            {"label": "SGD", "optimizer": "sgd", "hyperparameters": {"lr": 0.05}},
        ],
        **changes,
    }
    path = directory / "reps.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_a_replicate_file_queues_every_run_on_the_same_seeds(tmp_path: Path) -> None:
    spec = load_study_file(replicate_file(tmp_path))
    assert isinstance(spec, ReplicateSpec)
    assert spec.budget == 6
    queued = [params for params, _ in spec.queued_trials()]
    assert sorted((p["run"], p["seed"]) for p in queued) == [
        ("AdamZ", 7), ("AdamZ", 8), ("AdamZ", 9), ("SGD", 7), ("SGD", 8), ("SGD", 9),
    ]  # fmt: skip
    assert spec.from_definition(spec.definition, source="stored").digest == spec.digest


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"repeats": 3}, r"reps\.yaml: repeats: unknown key"),
        ({"seeds": 0}, r"seeds: must be a positive integer"),
        ({"runs": []}, r"runs: must be a non-empty list"),
        (
            {"runs": [{"label": "a", "optimizer": "adam"}, {"label": "a", "optimizer": "sgd"}]},
            r"runs: labels must be unique",
        ),
        ({"runs": [{"label": "a", "optimizer": "adamq"}]}, r"runs\[0\]: .*adamq"),
        (
            {"runs": [{"label": "a", "optimizer": "adam", "hyperparameters": {"patience": 3}}]},
            r"runs\[0\]: Unknown hyperparameter 'patience'",
        ),
        (
            {"runs": [{"label": "a", "optimizer": "adamz", "hyperparameters": {"lr": -1}}]},
            r"runs\[0\]: .*lr",
        ),
    ],
)
def test_bad_replicate_files_fail_in_one_line_naming_the_key(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message) as raised:
        load_study_file(replicate_file(tmp_path, **changes))
    assert "\n" not in str(raised.value)


def test_workers_run_each_run_on_each_seed_once(tmp_path: Path) -> None:
    path = replicate_file(tmp_path)
    assert run_cli("create", str(path), cwd=tmp_path).returncode == 0
    worker = run_cli("worker", "reps", "--workers-per-device", "2", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr[-2000:]
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "reps")
    done = [t for t in found if t.state == TrialState.COMPLETE]
    assert sorted((t.params["run"], t.params["seed"]) for t in done) == [
        ("AdamZ", 7), ("AdamZ", 8), ("AdamZ", 9), ("SGD", 7), ("SGD", 8), ("SGD", 9),
    ]  # fmt: skip
    for trial in done:
        result = trial.user_attrs["run"]["result"]
        assert result["seed"] == trial.params["seed"]
        assert result["optimizer"] == {"AdamZ": "adamz", "SGD": "sgd"}[trial.params["run"]]
    status = run_cli("status", "reps", "--format", "json", cwd=tmp_path)
    assert '"budget": 6' in status.stdout


def test_a_run_can_take_an_exported_config_or_a_preset(tmp_path: Path) -> None:
    exported = {
        "format": "adamz-config/1",
        "optimizer": "adamz",
        "hyperparameters": {"lr": 0.02, "patience": 50},
        "provenance": {"study": "tuned"},
    }
    (tmp_path / "exported.yaml").write_text(yaml.safe_dump(exported))
    runs = [{"label": "tuned", "config": "exported.yaml"}, {"label": "paper", "config": "paper"}]
    spec = load_study_file(replicate_file(tmp_path, runs=runs))
    assert isinstance(spec, ReplicateSpec)
    assert spec.runs[0]["hyperparameters"] == {"lr": 0.02, "patience": 50}
    assert spec.runs[0]["source"]["provenance"] == {"study": "tuned"}
    assert spec.runs[1]["hyperparameters"]["overshoot_factor"] == 0.5
    # The stored definition holds the values themselves: it parses without the file.
    (tmp_path / "exported.yaml").unlink()
    assert ReplicateSpec.from_definition(spec.definition, source="stored").digest == spec.digest
    with pytest.raises(SpecError, match=r"runs\[0\]\.config: cannot be read"):
        load_study_file(replicate_file(tmp_path, runs=runs))
