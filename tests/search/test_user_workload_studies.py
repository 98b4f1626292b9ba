"""Studies of a workload of the user's code: the file names its import path and options, create
checks it and refuses a broken one in one line, and workers train it, in populations too."""

from __future__ import annotations

import gc
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import SPACE, cli, run_cli, storage_of, trials

from adamz.search import load_study_file
from adamz.search.replicates import ReplicateSpec
from adamz.search.studies import spec_from_definition

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tests" / "workloads" / "regression_tasks.py"
REGRESSION = "regression_tasks:Regression"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the user's module and a search space."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the working directory is appended to it
    shutil.copy(TASKS, tmp_path / "regression_tasks.py")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    return tmp_path


def write_study(folder: Path, name: str = "own", **changes: Any) -> Path:
    study = {
        "name": name,
        "workload": {"name": REGRESSION, "hidden": 4, "epochs": 2},
        "optimizer": "adamz",
        "search_space": "space.yaml",
        "sampler": {"name": "tpe", "seed": 0},
        "budget": 4,
        **changes,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_a_search_selects_on_the_workloads_first_metric_in_its_declared_direction(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    spec = load_study_file(write_study(folder))
    assert (spec.metric, spec.direction) == ("val_rmse", "minimize")
    assert spec.workload == {"name": REGRESSION, "hidden": 4, "epochs": 2}
    mae = load_study_file(write_study(folder, "mae", metric="val_mae"))
    assert (mae.metric, mae.direction) == ("val_mae", "minimize")
    replicate = load_study_file(
        _write(
            folder / "replicate.yaml",
            {
                "kind": "replicates",
                "name": "rep",
                "workload": {"name": REGRESSION},
                "seeds": 2,
                "runs": [{"label": "a", "optimizer": "adam", "hyperparameters": {"lr": 0.01}}],
            },
        )
    )
    assert isinstance(replicate, ReplicateSpec)
    assert (replicate.metric, replicate.direction) == ("test_rmse", "minimize")


def test_a_stored_definition_is_read_without_importing_the_workload() -> None:
    definition = {
        "name": "elsewhere",
        "workload": {"name": "a_module_only_the_workers_have:Task", "hidden": 3},
        "optimizer": "adamz",
        "search_space": SPACE,
        "direction": "minimize",
        "metric": "val_rmse",
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "none"},
        "budget": 2,
        "seeds_per_trial": 1,
        "enqueue_defaults": False,
    }
    spec = spec_from_definition(definition, source="stored")
    assert (spec.metric, spec.direction, spec.workload["hidden"]) == ("val_rmse", "minimize", 3)


BROKEN: list[tuple[dict[str, Any], str]] = [
    (
        {"workload": {"name": "no_such_module_anywhere:Task"}},
        "workload.name: module 'no_such_module_anywhere' not found",
    ),
    (
        {"workload": {"name": "regression_tasks:Nothing"}},
        "workload.name: module 'regression_tasks' has no attribute 'Nothing'",
    ),
    ({"workload": {"name": "regression_tasks:NoLoss"}}, "workload.name: missing method loss()"),
    (
        {"workload": {"name": "regression_tasks:NoDirection"}},
        "workload.name: metric 'rmse' has no direction",
    ),
    (
        {"workload": {"name": "regression_tasks:ShortTargets"}},
        "workload: data().train holds 180 inputs but 170 targets",
    ),
    (
        {"workload": {"name": "regression_tasks:WrongTestShape"}},
        "workload: the test inputs have shape (5,) per example, the train inputs (6,)",
    ),
    (
        {"workload": {"name": "regression_tasks:BatchLoss"}},
        "workload: loss() must return a 0-dim tensor",
    ),
    (
        {"workload": {"name": REGRESSION, "width": 3}},
        "workload.name: Regression(width=3) raised TypeError",
    ),
    ({"metric": "val_accuracy"}, "metric: must be one of val_rmse, val_mae, val_loss"),
    ({"metric": "val_rmse", "direction": "maximize"}, "direction: must be minimize"),
]


@pytest.mark.parametrize(
    ("changes", "message"), BROKEN, ids=[m.split(":")[1].strip()[:30] for _, m in BROKEN]
)
def test_create_refuses_a_broken_workload_in_one_line_and_writes_nothing(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, Any],
    message: str,
) -> None:
    database = folder / "adamz-search.db"
    assert (
        cli("create", str(write_study(folder, "good")), cwd=folder, **_io(capsys, monkeypatch))[0]
        == 0
    )
    gc.collect()  # the first storage's connection closes: SQLite moves its WAL into the file
    before = database.read_bytes()
    code, _, err = cli(
        "create", str(write_study(folder, "broken", **changes)), cwd=folder,
        **_io(capsys, monkeypatch),
    )  # fmt: skip
    assert code == 2
    assert re.search(re.escape(message), err), err
    assert err.count("\n") == 1
    gc.collect()
    assert database.read_bytes() == before
    assert optuna.get_all_study_names(f"sqlite:///{database}") == ["good"]


def test_workers_train_it_in_populations_minimising_its_metric(folder: Path) -> None:
    study_file = write_study(folder, budget=4, population=2)
    result = run_cli("worker", str(study_file), cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    url = f"sqlite:///{folder / 'adamz-search.db'}"
    assert optuna.load_study(study_name="own", storage=url).direction.name == "MINIMIZE"
    found = trials(url, "own")
    assert [trial.state for trial in found] == [TrialState.COMPLETE] * 4
    for trial in found:
        run = trial.user_attrs["run"]
        assert trial.value == run["metrics"]["val_rmse"]
        assert set(run["metrics"]) == {
            f"{split}_{name}" for split in ("val", "test") for name in ("rmse", "mae", "loss")
        }
        assert run["result"]["workload"] == REGRESSION
        assert run["result"]["workload_options"] == {"hidden": 4}
        assert run["result"]["population_size"] == 2
        assert trial.user_attrs["worker"]["population"] == 2


@pytest.mark.parametrize(
    ("workload", "said"),
    [
        ("NotVmappable", "does not run under torch.func.vmap"),
        ("Recurrent", "does not run under torch.func.vmap"),  # a GRU
        ("NestedClass", "Expected all models to be of the same class"),
    ],
)
def test_a_model_that_cannot_be_stacked_trains_the_budget_one_trial_at_a_time_and_says_so_once(
    folder: Path, workload: str, said: str
) -> None:
    study_file = write_study(
        folder, budget=4, population=4, workload={"name": f"regression_tasks:{workload}"}
    )
    result = run_cli("worker", str(study_file), cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.count(said) == 1, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    said_at = next(i for i, line in enumerate(lines) if said in line)
    assert "one at a time" not in lines[said_at]  # the reason, then the fall-back, on its own
    assert "No population: these runs train one at a time" in lines[said_at + 1]
    found = trials(f"sqlite:///{folder / 'adamz-search.db'}", "own")
    assert [trial.state for trial in found] == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs["run"]["result"]["population_size"] is None for t in found)


def _write(path: Path, content: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(content))
    return path


def _io(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return {"capsys": capsys, "monkeypatch": monkeypatch}


def test_a_diverged_trial_counts_at_the_declared_chance_or_else_the_worst_value_seen(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from adamz.reports import load_study_data
    from adamz.search.objective import TrialObjective
    from adamz.search.records import TrialRun

    monkeypatch.chdir(folder)
    study_file = write_study(folder, budget=3)
    spec = load_study_file(study_file)
    storage = optuna.storages.InMemoryStorage()
    objective = TrialObjective(
        spec,
        study=optuna.create_study(storage=storage),
        storage=storage,
        budget=3,
        device="cpu",
        checkpoint_dir=folder,
    )
    # Regression declares no chance value for its RMSE: the worst there is.
    assert objective.value(TrialRun(diverged=True)) == math.inf
    assert cli("create", str(study_file), cwd=folder, **_io(capsys, monkeypatch))[0] == 0
    study = optuna.load_study(study_name="own", storage=f"sqlite:///{folder / 'adamz-search.db'}")
    for value in (0.5, math.inf, 0.25):
        trial = study.ask()
        trial.suggest_float("lr", 1e-3, 0.05, log=True)
        study.tell(trial, value)
    data = load_study_data(study, storage_of(study))
    # The reports count it at the worst value the study saw, and rank the others.
    assert data.finished_values.tolist() == [0.5, 0.5, 0.25]
    assert data.values.tolist() == [0.5, 0.25]
