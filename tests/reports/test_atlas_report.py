"""The atlas in ``adamz-search report``: a sensitivity study created, run and reported end to
end, and sensitivity studies with a known answer (filled without training) side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from report_helpers import storage_of

from adamz.cli import main
from adamz.reports import build_report
from adamz.search import WorkerOptions, load_study_file, run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write_sensitivity(directory: Path, name: str, workload: dict[str, Any], budget: int) -> Path:
    space = {
        "optimizer": "adamz",
        "parameters": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
            "patience": {"type": "int", "low": 20, "high": 200, "log": True},
            "stagnation_period": {"type": "int", "low": 2, "high": 20},
            "max_grad_norm": {"type": "categorical", "choices": [1.0, None]},
        },
    }
    (directory / "space.yaml").write_text(yaml.safe_dump(space))
    study = {
        "kind": "sensitivity",
        "name": name,
        "workload": workload,
        "optimizer": "adamz",
        "search_space": "space.yaml",
        "design": {"name": "sobol", "seed": 0},
        "budget": budget,
        "seeds_per_trial": 3,
        "population": 16,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_a_tiny_sensitivity_study_is_created_run_by_a_worker_and_reported_as_an_atlas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    workload = {"name": "circles", "epochs": 1, "train_size": 400}
    path = write_sensitivity(tmp_path, "tiny-atlas", workload, budget=16)
    assert main(["create", str(path), "--storage", storage]) == 0
    summary = run_worker("tiny-atlas", WorkerOptions(storage=storage, checkpoint_interval=60))
    assert (summary.code, summary.complete) == (0, 16), summary.line()
    trials = optuna.load_study(study_name="tiny-atlas", storage=storage).get_trials()
    assert all(trial.user_attrs["worker"]["population"] == 16 for trial in trials)
    assert all(len(trial.user_attrs["run"]["seed_metrics"]) == 3 for trial in trials)

    out = tmp_path / "report"
    assert main(["report", "tiny-atlas", "--storage", storage, "--out", str(out)]) == 0
    numbers = json.loads((out / "report.json").read_text())
    atlas = numbers["tiny-atlas"]["Sensitivity atlas"]["numbers"]
    assert (atlas["configurations"], atlas["seeds"], atlas["unit"]) == (16, 3, "points")
    assert atlas["importance"] is None  # 16 configurations are too few to rank
    assert set(atlas["curves"]) == {"lr", "patience", "stagnation_period", "max_grad_norm"}
    assert atlas["curves"]["max_grad_norm"]["bins"] == ["1", "none"]
    assert len(atlas["controller"]["per_configuration"]["trial"]) == 16
    assert 0.0 <= atlas["controller"]["never_fires"] <= 1.0
    assert "Verdict" not in numbers  # a design has no winner to confirm
    page = (out / "report.html").read_text()
    assert "<title>AdamZ sensitivity atlas: tiny-atlas</title>" in page
    summary_md = (out / "summary.md").read_text()
    assert "Not enough configurations to rank" in summary_md.split("\n- ")[1]  # the answer first


def fill(name: str, storage: str, path: Path, *, patience_matters: bool) -> None:
    """Run ``name``'s queued design without training: a known response, with seed noise.

    The metric depends on lr (best at 0.01), on patience where ``patience_matters``, and on
    nothing else; the controller fires where patience is below 60.
    """
    spec = load_study_file(path)
    study = optuna.load_study(study_name=name, storage=storage)
    rng = np.random.default_rng(0)
    for _ in range(spec.budget):
        trial = study.ask()
        hyperparameters = spec.plan(trial).hyperparameters
        accuracy = 0.95 - 0.05 * (math.log10(hyperparameters["lr"]) + 2) ** 2
        if patience_matters:
            accuracy -= 0.1 * (math.log10(hyperparameters["patience"]) - math.log10(20))
        seeds = [{"val_accuracy": float(accuracy + noise)} for noise in rng.normal(0, 0.003, 3)]
        fires = hyperparameters["patience"] < 60
        trial.set_user_attr(
            "run",
            {
                "seed_metrics": seeds,
                "metrics": {"val_accuracy": float(np.mean([s["val_accuracy"] for s in seeds]))},
                "result": {
                    "controller": {"overshoots": int(fires), "stagnations": 0},
                    "hyperparameters": hyperparameters,
                },
            },
        )
        study.tell(trial, float(np.mean([s["val_accuracy"] for s in seeds])))


def test_two_workloads_atlases_give_the_table_across_workloads_and_one_recommendation(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    for workload, matters in (("circles", False), ("digits", True)):
        path = write_sensitivity(tmp_path, f"{workload}-atlas", {"name": workload}, budget=64)
        assert main(["create", str(path), "--storage", storage]) == 0
        fill(f"{workload}-atlas", storage, path, patience_matters=matters)
    out = tmp_path / "report"
    studies = [
        optuna.load_study(study_name=n, storage=storage) for n in ("circles-atlas", "digits-atlas")
    ]
    build_report(
        studies,
        out,
        save_note=False,
        progress=False,
        atlas_resamples=20,
        storage=storage_of(studies[0]),
    )
    numbers = json.loads((out / "report.json").read_text())
    across = numbers["All studies"]["Across workloads"]["numbers"]
    assert across["workloads"] == ["circles", "digits"]
    circles = across["per_workload"]["circles"]["measurable_where_users_stand"]
    digits = across["per_workload"]["digits"]["measurable_where_users_stand"]
    assert (circles["patience"], digits["patience"]) == (False, True)
    assert not circles["stagnation_period"]
    assert not digits["stagnation_period"]
    found = across["recommendation"]
    values = found["hyperparameters"]
    # patience: the lowest quarter of 20-200 on its log scale (20-35.6), its geometric middle;
    # the rest, without an effect where users stand, at the paper's defaults.
    assert values["patience"] == 27
    assert (values["stagnation_period"], values["max_grad_norm"]) == (10, 1.0)
    assert found["from"] == ["circles", "digits"]
    summary = (out / "summary.md").read_text()
    first = summary.split("\n- ")[1]
    assert "### Across workloads\n" in summary.split("\n- ")[0]
    assert first.startswith("**Guideline**: On circles and digits: tune lr; set patience 27")
    atlas = numbers["digits-atlas"]["Sensitivity atlas"]["numbers"]
    lr_range = atlas["safe_ranges"]["lr"]
    assert lr_range["low"] < 0.01 < lr_range["high"]
    assert not lr_range["everywhere"]
    assert atlas["controller"]["never_fires"] == pytest.approx(
        np.mean([p > 60 for p in _patience(storage, "digits-atlas")]), abs=0.02
    )


def _patience(storage: str, name: str) -> list[int]:
    study = optuna.load_study(study_name=name, storage=storage)
    return [trial.params["patience"] for trial in study.get_trials()]
