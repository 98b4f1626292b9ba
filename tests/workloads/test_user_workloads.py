"""Workloads of the user's own code: imported by path, trained, checkpointed, resumed and run as
populations like the built-in ones; a broken one is refused in one line."""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from adamz.training import RunConfig, TrainResult, evaluate, population, train
from adamz.training.population import train_runs
from adamz.workloads import (
    DataNotFoundError,
    DatasetData,
    ImportedWorkload,
    Metric,
    TensorData,
    WorkloadError,
    check_workload,
    get_workload,
    workload_of,
)

TASKS = Path(__file__).with_name("regression_tasks.py")
REGRESSION = "regression_tasks:Regression"
# One step per epoch (the 24 training examples fit in a batch of 32), so that the records'
# per-epoch losses are per step.
ONE_STEP_EPOCHS = {"train_size": 30, "batch_size": 32, "epochs": 100}


def outcome(result: TrainResult) -> dict[str, Any]:
    """The record without what legitimately differs between identical runs."""
    times = ("train_time_s", "wall_time_s", "resumed_from_epoch")
    return {k: v for k, v in result.to_dict().items() if k not in times}


def test_a_workload_from_an_import_path_trains_and_records_its_own_metrics() -> None:
    result = train(RunConfig(REGRESSION, workload_options={"hidden": 4}))
    assert result.workload == REGRESSION
    assert result.to_dict()["workload_options"] == {"hidden": 4}
    assert result.final_metrics is not None
    assert list(result.final_metrics) == [
        "val_rmse", "val_mae", "val_loss", "test_rmse", "test_mae", "test_loss",
    ]  # fmt: skip
    assert all(len(values) == 3 for values in result.epoch_metrics.values())
    # RMSE is the square root of the mean squared error, which is the loss here.
    for split in ("val", "test"):
        assert result.final_metrics[f"{split}_rmse"] == pytest.approx(
            math.sqrt(result.final_metrics[f"{split}_loss"]), rel=1e-5
        )
    assert result.protocol == {
        "epochs": 3, "batch_size": 16, "train_size": 144, "test_size": 60, "val_size": 36,
    }  # fmt: skip
    assert result.epoch_losses[-1] < result.epoch_losses[0]


def test_the_options_go_to_the_constructor_and_each_set_is_its_own_workload() -> None:
    small, large = get_workload(REGRESSION, {"hidden": 2}), get_workload(REGRESSION, {"hidden": 9})
    assert isinstance(small, ImportedWorkload)
    assert small is get_workload(REGRESSION, {"hidden": 2})  # one per path and options
    assert small is not large
    assert small.build_model()[0].out_features == 2
    assert workload_of({"name": REGRESSION, "hidden": 9, "epochs": 5}) is large


def test_a_built_in_workload_takes_no_options() -> None:
    with pytest.raises(ValueError, match=r"^Invalid workload options: digits takes none"):
        get_workload("digits", {"hidden": 3})


def test_metrics_take_their_direction_and_chance_from_the_declaration() -> None:
    workload = get_workload(REGRESSION)
    assert workload.metric("val_rmse") == Metric("minimize", finish=math.sqrt)
    assert workload.metric("test_mae").direction == "minimize"
    assert workload.metric("val_loss").direction == "minimize"
    # Nothing declared: a diverged run counts as the worst value there is.
    assert workload.chance_value("val_rmse") == math.inf
    assert get_workload("digits").chance_value("val_accuracy") == pytest.approx(0.1)
    with pytest.raises(
        ValueError, match=r"^Unknown metric 'val_accuracy': must be one of val_rmse"
    ):
        workload.metric("val_accuracy")


def test_a_dataset_trains_exactly_as_the_same_data_in_tensors() -> None:
    tensors = train(RunConfig(REGRESSION, seed=2))
    datasets = train(RunConfig(REGRESSION, seed=2, workload_options={"dataset": True}))
    data = get_workload(REGRESSION, {"dataset": True}).load_data(None, "cpu")
    assert isinstance(data, DatasetData)
    assert isinstance(get_workload(REGRESSION).load_data(None, "cpu"), TensorData)
    assert datasets.epoch_losses == tensors.epoch_losses
    assert datasets.final_metrics is not None
    assert tensors.final_metrics is not None
    validation = [name for name in tensors.final_metrics if name.startswith("val_")]
    assert all(datasets.final_metrics[name] == tensors.final_metrics[name] for name in validation)
    # The test split's dataset gives its targets as Python floats, collated into float64.
    assert datasets.final_metrics == pytest.approx(tensors.final_metrics, rel=1e-6)


def test_a_dataset_serves_one_batch_per_run_of_a_population() -> None:
    data = get_workload(REGRESSION, {"dataset": True}).load_data(None, "cpu")
    index = torch.tensor([[0, 5, 7], [1, 1, 2]])
    inputs, targets = data.train_batch(index)
    assert inputs.shape == (2, 3, 6)
    assert targets.shape == (2, 3)
    whole = get_workload(REGRESSION).load_data(None, "cpu")
    assert isinstance(whole, TensorData)
    assert torch.equal(inputs, whole.train_inputs[index])
    assert torch.equal(targets, whole.train_targets[index])


@pytest.mark.parametrize("dataset", [False, True], ids=["tensors", "dataset"])
def test_a_validation_split_of_the_workload_is_used_as_it_is(dataset: bool) -> None:
    options = {"validation": True, "dataset": dataset}
    result = train(RunConfig(REGRESSION, epochs=1, train_size=100, workload_options=options))
    # train_size picks from the training split; the validation split is the workload's 30.
    assert (result.protocol["train_size"], result.protocol["val_size"]) == (100, 30)


def test_a_run_resumed_from_its_checkpoint_ends_exactly_like_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    config = RunConfig(REGRESSION, hyperparameters={"patience": 4, "stagnation_period": 2})
    uninterrupted = train(config, checkpoint_path=tmp_path / "whole.pt")

    def interrupt_after_first_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt  # as if the worker were killed after the checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(config, on_epoch=interrupt_after_first_epoch, checkpoint_path=tmp_path / "cut.pt")
    resumed = train(config, checkpoint_path=tmp_path / "cut.pt")
    assert resumed.resumed_from_epoch == 1
    assert outcome(resumed) == outcome(uninterrupted)


def test_a_checkpoint_of_the_same_workload_with_other_options_is_refused(tmp_path: Path) -> None:
    train(RunConfig(REGRESSION, epochs=1), checkpoint_path=tmp_path / "run.pt")
    with pytest.raises(ValueError, match="belongs to another run"):
        train(
            RunConfig(REGRESSION, epochs=1, workload_options={"hidden": 3}),
            checkpoint_path=tmp_path / "run.pt",
        )


@pytest.mark.parametrize("dataset", [False, True], ids=["tensors", "dataset"])
def test_the_first_100_steps_losses_of_a_population_match_each_member_s_single_run(
    dataset: bool,
) -> None:
    members = [
        RunConfig(
            REGRESSION,
            hyperparameters=settings,
            seed=seed,
            workload_options={"dataset": dataset},
            **ONE_STEP_EPOCHS,
        )
        for seed, settings in enumerate(
            [
                {"lr": 0.02, "patience": 4, "stagnation_period": 2, "stagnation_threshold": 0.5},
                {"lr": 0.005, "patience": 7, "stagnation_period": 3, "overshoot_factor": 0.8},
                {"lr": 0.05, "patience": 3, "stagnation_period": 3, "max_grad_norm": None},
            ],
            start=3,
        )
    ]
    population = train_runs(members)
    for config, member in zip(members, population, strict=True):
        single = train(config)
        assert member.steps == single.steps == 100
        torch.testing.assert_close(member.epoch_losses, single.epoch_losses, rtol=1e-4, atol=1e-6)
        assert member.final_metrics is not None
        assert single.final_metrics is not None
        assert member.final_metrics.keys() == single.final_metrics.keys()
        assert member.population_size == len(members)


@pytest.mark.parametrize(
    ("workload", "reason"),
    [
        ("NotVmappable", r"does not run under torch\.func\.vmap"),
        ("NestedClass", r"cannot be stacked \(RuntimeError: .*same class"),
        ("Recurrent", r"does not run under torch\.func\.vmap"),
    ],
)
def test_runs_of_a_model_that_cannot_be_stacked_train_one_at_a_time_each_as_alone(
    workload: str, reason: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(population, "_SAID", set())
    configs = [RunConfig(f"regression_tasks:{workload}", seed=seed, epochs=2) for seed in (0, 1)]
    with caplog.at_level(logging.WARNING, logger="adamz"):
        records = train_runs(configs)
        train_runs(configs)  # said once per process
    said = [
        record.getMessage() for record in caplog.records if "No population" in record.getMessage()
    ]
    assert len(said) == 1
    assert re.search(reason, said[0]), said[0]
    for config, record in zip(configs, records, strict=True):
        alone = train(config)
        assert record.population_size is None
        assert record.stop_reason == "completed"
        assert record.epoch_losses == alone.epoch_losses
        assert record.final_metrics == alone.final_metrics


def test_the_data_directory_reaches_data_and_data_elsewhere_is_left_to_the_workers(
    tmp_path: Path,
) -> None:
    workload = get_workload("regression_tasks:FromDataDir")
    check_workload(workload)  # no data here: only the declarations are checked
    config = RunConfig("regression_tasks:FromDataDir", epochs=1)
    with pytest.raises(
        DataNotFoundError, match=re.escape("data() found no data: no regression.pt in None")
    ):
        train(config)
    whole = get_workload(REGRESSION).user.data(None)  # type: ignore[attr-defined]
    torch.save([list(whole.train), list(whole.test)], tmp_path / "regression.pt")
    from_directory = train(replace(config, data_dir=str(tmp_path)))
    assert from_directory.final_metrics == train(replace(config, workload=REGRESSION)).final_metrics


def test_the_working_directory_is_searched_after_the_installed_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(TASKS, tmp_path / "tasks_in_the_working_directory.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    workload = get_workload("tasks_in_the_working_directory:Regression")
    assert workload.name == "tasks_in_the_working_directory:Regression"
    assert sys.path[-1] == str(tmp_path)


BROKEN = [
    ("no_such_module_anywhere:Task", "module 'no_such_module_anywhere' not found"),
    ("regression_tasks:Nothing", "module 'regression_tasks' has no attribute 'Nothing'"),
    ("regression_tasks", "Unknown workload 'regression_tasks'"),
    ("regression_tasks:NoLoss", "missing method loss()"),
    ("regression_tasks:NoDirection", "metric 'rmse' has no direction"),
]


@pytest.mark.parametrize(("path", "message"), BROKEN, ids=[m for m, _ in BROKEN])
def test_a_workload_that_cannot_be_imported_or_breaks_the_protocol_is_refused_in_one_line(
    path: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        get_workload(path)
    assert "\n" not in str(raised.value)


def test_options_its_constructor_does_not_take_are_refused_naming_the_call() -> None:
    with pytest.raises(WorkloadError, match=re.escape("Regression(width=3) raised TypeError")):
        get_workload(REGRESSION, {"width": 3})


BAD_DATA = [
    ("ShortTargets", "data().train holds 180 inputs but 170 targets"),
    ("WrongTestShape", "the test inputs have shape (5,) per example, the train inputs (6,)"),
    ("BatchLoss", "loss() must return a 0-dim tensor (the batch's mean), got shape (2,)"),
    ("NotVmappable", None),
]


@pytest.mark.parametrize(("name", "message"), BAD_DATA, ids=[n for n, _ in BAD_DATA])
def test_the_check_refuses_data_of_the_wrong_shape_and_a_loss_per_example(
    name: str, message: str | None
) -> None:
    workload = get_workload(f"regression_tasks:{name}")
    if message is None:  # vmap is needed by populations only: a single run trains it
        check_workload(workload)
        return
    with pytest.raises(WorkloadError, match=re.escape(message)) as raised:
        check_workload(workload)
    assert "\n" not in str(raised.value)


def test_a_whole_split_metric_is_computed_from_every_output_of_the_split_at_once() -> None:
    from regression_tasks import Ranked, area_under_roc

    Ranked.calls.clear()
    config = RunConfig("regression_tasks:Ranked", epochs=2, seed=3)
    result = train(config)
    assert result.final_metrics is not None
    assert list(result.final_metrics) == [
        "val_auc", "val_rmse", "val_loss", "test_auc", "test_rmse", "test_loss",
    ]  # fmt: skip
    # once per split and epoch, on the whole split (36 validation, 60 test examples), not
    # per batch of evaluation
    assert Ranked.calls == [36, 60, 36, 60]
    assert 0.0 <= result.final_metrics["test_auc"] <= 1.0
    # evaluated in batches of 16, the AUC is still that of all 60 test outputs together
    workload = get_workload("regression_tasks:Ranked")
    assert workload.metric("val_auc").whole_split
    data = workload.load_data(None, "cpu")
    assert isinstance(data, TensorData)
    model = workload.build_model()
    with torch.no_grad():
        expected = area_under_roc(model(data.test_inputs), data.test_targets > 0)
    metrics = evaluate(workload, model, data.test_inputs, data.test_targets, batch_size=16)
    assert metrics["auc"] == pytest.approx(expected)


def test_a_population_computes_each_members_whole_split_metric_as_its_single_run() -> None:
    configs = [
        RunConfig("regression_tasks:Ranked", seed=seed, hyperparameters={"lr": lr}, epochs=2)
        for seed, lr in ((0, 0.01), (1, 0.03))
    ]
    for member, config in zip(train_runs(configs), configs, strict=True):
        single = train(config)
        assert member.final_metrics is not None
        assert single.final_metrics is not None
        for name in ("val_auc", "test_auc"):
            assert member.final_metrics[name] == pytest.approx(single.final_metrics[name], abs=0.02)


def test_a_whole_split_metric_takes_no_finish_and_needs_its_method() -> None:
    with pytest.raises(ValueError, match="a whole_split metric is computed whole"):
        Metric("maximize", finish=math.sqrt, whole_split=True)
    with pytest.raises(WorkloadError, match=re.escape("missing method whole_split_values()")):
        get_workload("regression_tasks:NoWholeSplitValues")


def test_the_check_names_the_function_that_raised() -> None:
    with pytest.raises(
        WorkloadError,
        match=re.escape(
            "whole_split_values() on the validation split raised ValueError: Only one class "
            "present in y_true"
        ),
    ):
        check_workload(get_workload("regression_tasks:BrokenAuc"))
    with pytest.raises(
        WorkloadError, match=re.escape("Invalid workload 'regression_tasks:BatchLoss'")
    ):
        check_workload(get_workload("regression_tasks:BatchLoss"))
