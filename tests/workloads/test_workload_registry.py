"""The registry, the paper's protocols and the per-process data cache."""

from __future__ import annotations

import math

import pytest
import torch

from adamz.workloads import (
    WORKLOADS,
    Protocol,
    get_workload,
    tail_validation_split,
    validation_split,
)


@pytest.mark.parametrize(
    ("name", "protocol"),
    [
        ("circles", Protocol(epochs=10, batch_size=64)),
        ("mnist", Protocol(epochs=5, batch_size=64)),
        ("cifar10", Protocol(epochs=10, batch_size=128, train_size=1000, test_size=200)),
        ("digits", Protocol(epochs=10, batch_size=32)),
        ("pysource", Protocol(epochs=8, batch_size=32)),
    ],
)
def test_default_protocols_are_the_papers(name: str, protocol: Protocol) -> None:
    assert get_workload(name).protocol == protocol


def test_registry_holds_the_five_workloads_under_their_names() -> None:
    assert list(WORKLOADS) == ["circles", "mnist", "cifar10", "digits", "pysource"]
    assert all(workload.name == name for name, workload in WORKLOADS.items())


def test_unknown_workload_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"^Unknown workload 'cifar': must be one of circles, "):
        get_workload("cifar")


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("batch_size", -1), ("train_size", 0), ("test_size", 2.5), ("epochs", True)],
)
def test_protocol_refuses_values_that_are_not_positive_integers(field: str, value: object) -> None:
    arguments: dict[str, object] = {"epochs": 1, "batch_size": 1, field: value}
    with pytest.raises(ValueError, match=rf"^Invalid {field}: must be an integer >= 1, got "):
        Protocol(**arguments)  # type: ignore[arg-type]


def test_data_are_loaded_once_per_process_and_device() -> None:
    circles = get_workload("circles")
    first = circles.load_data(None, "cpu")
    assert circles.load_data(None, torch.device("cpu")) is first
    assert circles.load_data(None, "cpu", train_size=10) is not first


def test_subset_larger_than_the_split_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^Invalid test_size: must be at most the 3300 "):
        get_workload("circles").load_data(None, "cpu", test_size=3301)


def test_subsets_are_the_first_examples_and_hold_no_reference_to_the_whole_split() -> None:
    digits = get_workload("digits")
    whole = digits.load_data(None, "cpu", train_size=1347)  # every example, validation apart
    part = digits.load_data(None, "cpu", train_size=5, test_size=3)
    assert part.num_train + part.num_val == 5
    first_five = torch.cat([whole.train_inputs, whole.val_inputs])
    rows = {tuple(row) for row in first_five.tolist()}
    assert all(
        tuple(row) in rows for row in torch.cat([part.train_inputs, part.val_inputs]).tolist()
    )
    assert torch.equal(part.test_targets, whole.test_targets[:3])
    assert part.train_inputs.untyped_storage().nbytes() == part.train_inputs.nbytes


def test_workloads_that_read_files_need_a_data_directory() -> None:
    with pytest.raises(ValueError, match=r"^Invalid data_dir: workload 'mnist' reads its dataset"):
        get_workload("mnist").load_data(None, "cpu")


@pytest.mark.parametrize(
    ("name", "train", "val", "test"),
    [("circles", 5695, 1005, 3300), ("digits", 1078, 269, 450), ("pysource", 9216, 1024, 1024)],
)
def test_the_validation_split_is_carved_from_the_training_set_at_the_documented_size(
    name: str, train: int, val: int, test: int
) -> None:
    data = get_workload(name).load_data(None, "cpu")
    assert (data.num_train, data.num_val, data.num_test) == (train, val, test)


def test_the_validation_split_is_disjoint_from_training_and_fixed_by_its_own_seed() -> None:
    kept, held_out = validation_split(100, 0.2)
    assert len(held_out) == 20
    assert len(kept) == 80
    assert set(kept.tolist()).isdisjoint(held_out.tolist())
    assert sorted([*kept.tolist(), *held_out.tolist()]) == list(range(100))
    torch.manual_seed(1)  # a run's seed changes nothing about the split
    again_kept, again_held_out = validation_split(100, 0.2)
    assert torch.equal(kept, again_kept)
    assert torch.equal(held_out, again_held_out)


def test_a_tail_validation_split_holds_out_the_last_examples_as_one_range() -> None:
    kept, held_out = tail_validation_split(100, 0.2)
    assert kept.tolist() == list(range(80))
    assert held_out.tolist() == list(range(80, 100))
    assert tail_validation_split(3, 0.01)[1].tolist() == [2]  # at least one
    with pytest.raises(ValueError, match=r"^Invalid train_size: holding out 1 for validation"):
        tail_validation_split(1, 0.1)


def test_validation_examples_are_training_examples_never_test_ones() -> None:
    data = get_workload("circles").load_data(None, "cpu")
    from sklearn.datasets import make_circles
    from sklearn.model_selection import train_test_split

    points, labels = make_circles(n_samples=10000, noise=0.05, random_state=26, factor=0.8)
    train_points, test_points, _, _ = train_test_split(
        points, labels, test_size=0.33, random_state=26
    )
    train_rows = {tuple(row) for row in torch.as_tensor(train_points, dtype=torch.float32).tolist()}
    assert all(tuple(row) in train_rows for row in data.val_inputs.tolist())
    assert torch.equal(data.test_inputs, torch.as_tensor(test_points, dtype=torch.float32))


@pytest.mark.parametrize(
    ("name", "accuracy", "loss"),
    [
        ("circles", 0.5, math.log(2)),
        ("digits", 0.1, math.log(10)),
        ("mnist", 0.1, math.log(10)),
        ("pysource", 1 / 96, math.log(96)),
    ],
)
def test_chance_values_are_a_uniform_guess(name: str, accuracy: float, loss: float) -> None:
    workload = get_workload(name)
    assert workload.chance_value("val_accuracy") == workload.chance_value("test_accuracy")
    assert workload.chance_value("val_accuracy") == pytest.approx(accuracy)
    assert workload.chance_value("val_loss") == pytest.approx(loss)
    with pytest.raises(ValueError, match=r"^Unknown metric 'accuracy': must be one of"):
        workload.chance_value("accuracy")
