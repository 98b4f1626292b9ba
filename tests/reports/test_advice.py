"""Sweeps and non-inferiority in reports: rate choice, one-at-a-time curves with the
controller's activity, and "no worse than Adam by more than the margin"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from report_helpers import with_storage

from adamz.reports import load_study_data
from adamz.reports._advice import is_sweep_study, noninferiority_section, sweep_section
from adamz.search.errors import SpecError
from adamz.search.replicates import parse_replicates

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_of(
    storage: str,
    runs: list[dict[str, Any]],
    values: dict[str, list[float]],
    *,
    metric: str = "test_accuracy",
    events: dict[str, tuple[int, int]] | None = None,
    **definition: Any,
) -> Any:
    """A finished replicate study with ``values`` per run label, seed by seed."""
    seeds = len(next(iter(values.values())))
    study = optuna.create_study(storage=storage, study_name="advice", direction="maximize")
    study.set_user_attr(
        "definition",
        {
            "kind": "replicates",
            "name": "advice",
            "workload": {"name": "digits"},
            "metric": metric,
            "seeds": seeds,
            "first_seed": 0,
            "runs": runs,
            **definition,
        },
    )
    labels = [run["label"] for run in runs]
    distributions = {"run": CategoricalDistribution(labels), "seed": IntDistribution(0, seeds - 1)}
    for label, column in values.items():
        overshoots, stagnations = (events or {}).get(label, (0, 0))
        for seed, value in enumerate(column):
            record = {
                "result": {"controller": {"overshoots": overshoots, "stagnations": stagnations}},
                "metrics": {"val_accuracy": value, "val_loss": 1 - value},
            }
            study.add_trial(
                optuna.trial.create_trial(
                    params={"run": label, "seed": seed},
                    distributions=distributions,
                    value=value,
                    user_attrs={"run": record},
                )
            )
    return load_study_data(*with_storage(optuna.load_study(study_name="advice", storage=storage)))


def run(label: str, optimizer: str = "adamz", **extra: Any) -> dict[str, Any]:
    hyperparameters = extra.pop("hyperparameters", {"lr": 0.01})
    return {"label": label, "optimizer": optimizer, "hyperparameters": hyperparameters, **extra}


def test_a_rate_grid_chooses_the_best_validation_median(tmp_path: Path) -> None:
    rates = [0.001, 0.01, 0.1]
    runs = [
        run(f"adam lr={r}", "adam", hyperparameters={"lr": r}, family="adam", varies={"lr": r})
        for r in rates
    ]
    values = {"adam lr=0.001": [0.90] * 5, "adam lr=0.01": [0.97] * 5, "adam lr=0.1": [0.5] * 5}
    data = study_of(f"sqlite:///{tmp_path / 'db'}", runs, values, metric="val_accuracy")
    assert is_sweep_study(data)
    section = sweep_section(data)
    assert section.numbers["families"]["adam"]["chosen"] == ["adam lr=0.01"]
    assert section.summary[0].startswith("adam: rate 0.01 chosen on validation (median")
    assert section.title == "Rate grid"
    assert len(section.figures) == 1


def test_a_sweep_draws_each_hyperparameter_s_curve_with_collapses_and_the_controller(
    tmp_path: Path,
) -> None:
    centre = {"lr": 0.01, "stagnation_threshold": 0.2}
    runs = [run("centre", hyperparameters=centre, family="paper", varies={})]
    for value in (0.02, 0.5):
        runs.append(
            run(
                f"stagnation_threshold={value}",
                hyperparameters={**centre, "stagnation_threshold": value},
                family="paper",
                varies={"stagnation_threshold": value},
            )
        )
    rng = np.random.default_rng(0)
    collapsing = list(0.96 + rng.normal(0, 0.002, 10))
    collapsing[:3] = [0.40, 0.45, 0.50]  # three seeds in ten collapse
    values = {
        "centre": list(0.95 + rng.normal(0, 0.002, 10)),
        "stagnation_threshold=0.02": list(0.97 + rng.normal(0, 0.002, 10)),
        "stagnation_threshold=0.5": collapsing,
    }
    events = {
        "centre": (2, 5),
        "stagnation_threshold=0.02": (0, 0),
        "stagnation_threshold=0.5": (9, 30),
    }
    data = study_of(f"sqlite:///{tmp_path / 'db'}", runs, values, events=events)
    section = sweep_section(data)
    curve = section.numbers["families"]["paper"]["curves"]["stagnation_threshold"]
    assert [point["value"] for point in curve] == [0.02, 0.2, 0.5]  # the centre joins in order
    assert [point["centre"] for point in curve] == [False, True, False]
    assert curve[0]["median"] == pytest.approx(97, abs=0.2)  # in points
    assert curve[0]["ci95"][0] < curve[0]["median"] < curve[0]["ci95"][1]
    assert [point["collapse_share"] for point in curve] == [0.0, 0.0, 0.3]
    assert [point["stagnations_per_run"] for point in curve] == [0.0, 5.0, 30.0]
    assert "best at 0.02" in section.summary[0]
    assert "collapses up to 30% of runs (at 0.5)" in section.summary[0]
    assert len(section.figures) == 1


def test_non_inferiority_is_shown_for_a_run_a_little_worse_and_not_for_one_much_worse(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    base = 0.95 + rng.normal(0, 0.01, 20)
    values = {
        "adam": list(base),
        "close": list(base - 0.0005 + rng.normal(0, 0.0005, 20)),  # 0.05 points worse
        "far": list(base - 0.01 + rng.normal(0, 0.0005, 20)),  # a point worse
    }
    runs = [run("adam", "adam"), run("close"), run("far")]
    data = study_of(
        f"sqlite:///{tmp_path / 'db'}",
        runs,
        values,
        noninferiority={"reference": "adam", "margin": 0.25},
    )
    section = noninferiority_section(data)
    found = section.numbers["runs"]
    assert found["close"]["noninferior"]
    assert found["close"]["estimate"] == pytest.approx(-0.05, abs=0.03)
    assert not found["far"]["noninferior"]
    assert found["far"]["interval"][1] < -0.25
    assert section.numbers["difference"] == "run minus adam"
    assert section.summary[1].startswith("far is **not** shown to be no worse than adam by more")
    assert len(section.figures) == 1


def test_a_replicate_file_refuses_a_reference_that_is_not_a_run_and_a_second_varied_value() -> None:
    content = {
        "kind": "replicates",
        "name": "x",
        "workload": {"name": "digits"},
        "seeds": 2,
        "runs": [run("adam", "adam")],
        "noninferiority": {"reference": "sgd", "margin": 0.25},
    }
    with pytest.raises(SpecError, match=r"noninferiority\.reference"):
        parse_replicates(content, source="x.yaml")
    content["noninferiority"] = {"reference": "adam", "margin": 0.25}
    content["runs"] = [run("a", family="f", varies={"lr": 0.1, "patience": 3})]
    with pytest.raises(SpecError, match="must map at most one name to its value"):
        parse_replicates(content, source="x.yaml")
