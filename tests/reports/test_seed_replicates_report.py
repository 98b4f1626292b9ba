"""Seed replicates in reports: intervals, paired tests, confirmation and the confirmed export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from report_helpers import storage_of, with_storage

from adamz.reports import ReportError, load_study_data
from adamz.reports._confirm import FIRST_SEED, confirmation_spec
from adamz.reports._replicates import median_interval, replicates_section

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_median_interval_is_the_binomial_order_statistics() -> None:
    values = np.arange(10.0)  # n = 10: [x(2), x(9)] covers the median with 97.9 %
    assert median_interval(values) == (1.0, 8.0)
    values = np.arange(20.0)  # n = 20: [x(6), x(15)], 95.9 %
    assert median_interval(values) == (5.0, 14.0)
    low, high = median_interval(np.array([3.0, 1.0, 2.0]))  # too few for 95 %: none
    assert np.isnan(low)
    assert np.isnan(high)


def replicate_study(storage: str, values: dict[str, list[float]], **definition: Any) -> None:
    """A finished replicate study with the given values per run, seed by seed."""
    labels = list(values)
    seeds = len(next(iter(values.values())))
    study = optuna.create_study(storage=storage, study_name="reps", direction="maximize")
    study.set_user_attr(
        "definition",
        {
            "kind": "replicates",
            "name": "reps",
            "workload": {"name": "digits"},
            "metric": "test_accuracy",
            "seeds": seeds,
            "first_seed": 0,
            "runs": [
                {"label": label, "optimizer": "adam", "hyperparameters": {}} for label in labels
            ],
            **definition,
        },
    )
    distributions = {
        "run": CategoricalDistribution(labels),
        "seed": IntDistribution(0, seeds - 1),
    }
    for label, column in values.items():
        for seed, value in enumerate(column):
            record = {"result": {"train_time_s": 1.5}, "metrics": {"val_accuracy": value}}
            study.add_trial(
                optuna.trial.create_trial(
                    params={"run": label, "seed": seed},
                    distributions=distributions,
                    value=value,
                    user_attrs={"run": record},
                )
            )


def test_the_replicates_section_ranks_runs_by_validation_and_pairs_them_by_seed(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 0.9, size=10)
    replicate_study(
        storage,
        {"worse": list(base), "better": list(base + 0.01), "same": list(base + 0.01)},
    )
    data = load_study_data(*with_storage(optuna.load_study(study_name="reps", storage=storage)))
    section = replicates_section(data)
    runs = section.numbers["runs"]
    assert section.numbers["top_by_validation"] in ("better", "same")
    # Better on every one of 10 seeds: two-sided Wilcoxon p = 2 / 2**10.
    assert runs["worse"]["paired_vs_top"]["p_value"] == pytest.approx(2 / 1024)
    assert runs["worse"]["paired_vs_top"]["difference"] == pytest.approx(0.01)  # top - worse
    assert runs["worse"]["paired_vs_top"]["smallest_possible_p"] == pytest.approx(2 / 1024)
    other = "same" if section.numbers["top_by_validation"] == "better" else "better"
    assert runs[other]["paired_vs_top"]["p_value"] == 1.0
    assert runs["worse"]["median"] == pytest.approx(np.median(base))
    assert runs["worse"]["median_train_time_s"] == 1.5
    assert len(section.tables[0]) == 4  # header + 3 runs
    assert len(section.figures) == 1


def test_confirmation_takes_the_same_number_of_top_trials_from_every_study(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    datas = []
    for name, optimizer, offset in (("tuned-adamz", "adamz", 0.0), ("tuned-adam", "adam", 0.1)):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        study.set_user_attr(
            "definition",
            {
                "workload": {"name": "digits", "epochs": 2},
                "optimizer": optimizer,
                "metric": "val_accuracy",
            },
        )
        for value in (0.5, 0.9, 0.7, 0.8):
            study.add_trial(
                optuna.trial.create_trial(
                    params={"lr": value / 100},
                    distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)},
                    value=value + offset,
                    user_attrs={"run": {"result": {"hyperparameters": {"lr": value / 100}}}},
                )
            )
        datas.append(load_study_data(study, storage_of(study)))
    spec = confirmation_spec(datas, 5)
    assert [run["source"]["trial"] for run in spec.runs] == [1, 3, 2, 1, 3, 2]
    assert [run["optimizer"] for run in spec.runs] == ["adamz"] * 3 + ["adam"] * 3
    assert spec.metric == "test_accuracy"  # measured on test, picked on validation
    assert [run["source"]["trial"] for run in confirmation_spec(datas, 5, top=1).runs] == [1, 1]
    assert spec.runs[0]["hyperparameters"] == {"lr": pytest.approx(0.009)}
    assert spec.seed_list == list(range(FIRST_SEED, FIRST_SEED + 5))
    assert spec.workload == {"name": "digits", "epochs": 2}
    datas[1].definition["workload"] = {"name": "circles"}  # type: ignore[index]
    with pytest.raises(ReportError, match="one workload"):
        confirmation_spec(datas, 5)
    with pytest.raises(ReportError, match="at least 2 seeds"):
        confirmation_spec(datas[:1], 1)
