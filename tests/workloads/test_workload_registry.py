"""The registry, the paper's protocols and the per-process data cache."""

from __future__ import annotations

import pytest
import torch

from adamz.workloads import WORKLOADS, Protocol, get_workload


@pytest.mark.parametrize(
    ("name", "protocol"),
    [
        ("circles", Protocol(epochs=10, batch_size=64)),
        ("mnist", Protocol(epochs=5, batch_size=64)),
        ("cifar10", Protocol(epochs=10, batch_size=128, train_size=1000, test_size=200)),
        ("digits", Protocol(epochs=10, batch_size=32)),
    ],
)
def test_default_protocols_are_the_papers(name: str, protocol: Protocol) -> None:
    assert get_workload(name).protocol == protocol


def test_registry_holds_the_four_workloads_under_their_names() -> None:
    assert list(WORKLOADS) == ["circles", "mnist", "cifar10", "digits"]
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
    whole = digits.load_data(None, "cpu")
    part = digits.load_data(None, "cpu", train_size=5, test_size=3)
    assert torch.equal(part.train_inputs, whole.train_inputs[:5])
    assert torch.equal(part.test_targets, whole.test_targets[:3])
    assert part.train_inputs.untyped_storage().nbytes() == part.train_inputs.nbytes


def test_workloads_that_read_files_need_a_data_directory() -> None:
    with pytest.raises(ValueError, match=r"^Invalid data_dir: workload 'mnist' reads its dataset"):
        get_workload("mnist").load_data(None, "cpu")
