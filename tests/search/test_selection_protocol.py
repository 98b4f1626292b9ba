"""Searches select on validation and only record test metrics: the test split never steers.

The check is the one a reviewer would make: replace the test labels with garbage and run the
same search again. Every proposed configuration, every pruning decision, every value and the
best trial must stay the same, while the recorded test accuracy changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import torch.nn.functional as F
from search_helpers import storage_of
from torch import Tensor, nn

from adamz.reports import load_study_data
from adamz.reports._confirm import confirmation_spec
from adamz.search import StudySpec, TrialObjective
from adamz.workloads import WORKLOADS, Protocol, Splits, Workload, clear_data_cache

SPACE = {
    "optimizer": "adam",
    "parameters": {
        "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
        "betas": [{"value": 0.9}, {"type": "float", "low": 0.9, "high": 0.999}],
    },
}


class Blobs(Workload):
    """Two Gaussian blobs in 4 dimensions, a linear model: a search that trains in a moment."""

    name = "blobs"
    summary = "test workload"
    protocol = Protocol(epochs=3, batch_size=32)
    num_classes = 2
    validation_fraction = 0.25
    garbage_test_labels = False

    def _load(
        self, data_dir: Path | None, *, train_size: int | None, test_size: int | None,
        download: bool,
    ) -> Splits:  # fmt: skip
        generator = torch.Generator().manual_seed(7)
        targets = torch.randint(0, 2, (400,), generator=generator)
        inputs = torch.randn(400, 4, generator=generator) + targets[:, None].float()
        test_targets = targets[300:]
        if self.garbage_test_labels:
            test_targets = torch.randint(0, 2, (100,), generator=generator)
        return Splits(inputs[:300], targets[:300], inputs[300:], test_targets)

    def build_model(self) -> nn.Module:
        return nn.Linear(4, 2)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(dim=1) == targets).sum()


@pytest.fixture
def blobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Blobs]:
    workload = Blobs()
    monkeypatch.setitem(WORKLOADS, workload.name, workload)
    clear_data_cache()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield workload
    torch.set_num_threads(threads)
    clear_data_cache()


def search(tmp_path: Path, tag: str) -> optuna.Study:
    spec = StudySpec.from_definition(
        {
            "name": f"blobs-{tag}",
            "workload": {"name": "blobs"},
            "optimizer": "adam",
            "search_space": SPACE,
            "metric": "val_accuracy",
            "direction": "maximize",
            "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 4},
            "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 0},
            "budget": 12,
            "seeds_per_trial": 1,
            "enqueue_defaults": True,
        },
        source="test",
    )
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
        study_name=spec.name,
    )
    study.set_user_attr("definition", spec.definition)
    for params, attrs in spec.queued_trials():
        study.enqueue_trial(params, user_attrs=attrs)
    objective = TrialObjective(
        spec,
        study=study,
        storage=storage,
        budget=12,
        device="cpu",
        checkpoint_dir=tmp_path / tag,
    )
    study.optimize(objective.run, n_trials=12)
    return study


def decisions(study: optuna.Study) -> list[tuple[Any, ...]]:
    return [(t.params, t.state, t.value, dict(t.intermediate_values)) for t in study.trials]


def test_garbage_test_labels_change_no_sample_no_pruning_and_no_selection(
    tmp_path: Path, blobs: Blobs
) -> None:
    honest = search(tmp_path, "honest")
    blobs.garbage_test_labels = True
    clear_data_cache()
    garbage = search(tmp_path, "garbage")

    assert decisions(garbage) == decisions(honest)
    assert garbage.best_trial.number == honest.best_trial.number
    pruned = [t for t in honest.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the check needs pruning decisions to compare"
    # the confirmation's candidates are chosen from the same trials
    pick = [
        run["source"]["trial"]
        for run in confirmation_spec([load_study_data(honest, storage_of(honest))], 3).runs
    ]
    assert pick == [
        run["source"]["trial"]
        for run in confirmation_spec([load_study_data(garbage, storage_of(garbage))], 3).runs
    ]
    # ...while the test metrics, recorded on every trial, did see the garbage
    completed = [t for t in honest.trials if t.state == optuna.trial.TrialState.COMPLETE]
    test_accuracy = [t.user_attrs["run"]["metrics"]["test_accuracy"] for t in completed]
    garbage_accuracy = [
        garbage.trials[t.number].user_attrs["run"]["metrics"]["test_accuracy"] for t in completed
    ]
    assert test_accuracy != garbage_accuracy


def test_trial_values_are_the_validation_metric_and_test_metrics_are_recorded(
    tmp_path: Path, blobs: Blobs
) -> None:
    study = search(tmp_path, "values")
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert completed
    for trial in completed:
        metrics = trial.user_attrs["run"]["metrics"]
        assert trial.value == metrics["val_accuracy"]
        assert set(metrics) == {"val_accuracy", "val_loss", "test_accuracy", "test_loss"}
        assert trial.intermediate_values[max(trial.intermediate_values)] == trial.value
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    for trial in pruned:  # what it reached when it was stopped, test metrics included
        reached = trial.user_attrs["run"]["last_epoch_metrics"]
        assert reached["val_accuracy"] == trial.intermediate_values[max(trial.intermediate_values)]
        assert "test_accuracy" in reached


def test_a_diverged_run_is_a_completed_trial_at_chance_marked_diverged(
    tmp_path: Path, blobs: Blobs
) -> None:
    spec = StudySpec.from_definition(
        {
            "name": "circles-diverge",
            "workload": {"name": "circles", "epochs": 2, "train_size": 300, "test_size": 100},
            "optimizer": "sgd",
            "search_space": {
                "optimizer": "sgd",
                "parameters": {"lr": {"type": "float", "low": 1e30, "high": 1e31, "log": True}},
            },
            "metric": "val_accuracy",
            "budget": 2,
            "seeds_per_trial": 2,
        },
        source="test",
    )
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    objective = TrialObjective(
        spec, study=study, storage=storage, budget=2, device="cpu", checkpoint_dir=tmp_path
    )
    study.optimize(objective.run, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == 0.5  # chance for the two balanced circles
    assert trial.user_attrs["run"]["diverged"] is True
    assert trial.user_attrs["run"]["stop_reason"].startswith("diverged on seed 0: non-finite loss")
    assert trial.user_attrs["run"]["seeds"] == [0, 1]
    assert "metrics" not in trial.user_attrs["run"]  # nothing finished to average
