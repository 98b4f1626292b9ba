"""Pinned protocols: a run that states its dataset's sizes refuses a directory holding others."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import optuna
import pytest

from adamz.search import load_study_file
from adamz.search.definitions import TrialPlan
from adamz.search.objective import TrialObjective
from adamz.training import RunConfig, train
from adamz.workloads import get_workload

ROOT = Path(__file__).resolve().parents[2]
SHARED_MNIST = ROOT.parent / "shared" / "data"
MNIST_TRAIN, MNIST_TEST = 96, 40  # what conftest.py's mnist_dir fixture writes


def test_the_sizes_are_read_from_the_idx_headers(mnist_dir: Path) -> None:
    assert get_workload("mnist").split_sizes(mnist_dir) == (MNIST_TRAIN, MNIST_TEST)


def test_a_directory_holding_the_stated_sizes_loads_with_the_subset_sizes(
    mnist_dir: Path,
) -> None:
    data = get_workload("mnist").load_data(
        mnist_dir,
        "cpu",
        train_size=50,
        test_size=20,
        dataset_sizes={"train": MNIST_TRAIN, "test": MNIST_TEST},
    )
    assert (data.num_train + data.num_val, data.num_test) == (50, 20)


def test_a_directory_holding_other_sizes_is_refused_in_one_line(mnist_dir: Path) -> None:
    # The shipped MNIST studies state the 4,000 / 1,000 subset; this directory holds 96 / 40.
    with pytest.raises(ValueError, match=re.escape("Invalid dataset_sizes: ")) as caught:
        get_workload("mnist").load_data(
            mnist_dir, "cpu", train_size=50, dataset_sizes={"train": 4000, "test": 1000}
        )
    message = str(caught.value)
    assert "\n" not in message
    assert f"holds {MNIST_TRAIN} training and {MNIST_TEST} test examples" in message
    assert "dataset_sizes says 4000 and 1000" in message


def test_a_shipped_mnist_study_refuses_a_directory_of_other_data(
    mnist_dir: Path, tmp_path: Path
) -> None:
    spec = load_study_file(ROOT / "studies" / "mnist-adam.yaml")
    assert spec.workload == {
        "name": "mnist",
        "train_size": 4000,
        "test_size": 1000,
        "dataset_sizes": {"train": 4000, "test": 1000},
    }
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    objective = TrialObjective(
        spec,
        study=study,
        storage=storage,
        budget=1,
        device="cpu",
        checkpoint_dir=tmp_path,
        data_dir=str(mnist_dir),
    )
    config = objective.run_config(TrialPlan("adam", {"lr": 0.01}, [0]), seed=0)
    with pytest.raises(ValueError, match=r"^Invalid dataset_sizes: .* holds 96 training"):
        train(config)


def test_without_stated_sizes_any_directory_is_taken(mnist_dir: Path) -> None:
    result = train(RunConfig(workload="mnist", data_dir=str(mnist_dir), epochs=1, train_size=40))
    assert result.protocol["train_size"] + result.protocol["val_size"] == 40


@pytest.mark.parametrize(
    "sizes", [{"train": 96}, {"train": 96, "test": 0}, {"train": 96, "test": 40.0}, [96, 40]]
)
def test_malformed_sizes_are_refused(mnist_dir: Path, sizes: object) -> None:
    with pytest.raises(ValueError, match=re.escape("Invalid dataset_sizes: must be a mapping")):
        get_workload("mnist").load_data(mnist_dir, "cpu", dataset_sizes=sizes)  # type: ignore[arg-type]


@pytest.mark.skipif(not (SHARED_MNIST / "MNIST" / "raw").is_dir(), reason="no shared MNIST subset")
def test_the_shared_subset_is_what_the_mnist_studies_state() -> None:
    spec = load_study_file(ROOT / "studies" / "mnist-adamz.yaml")
    sizes = spec.workload["dataset_sizes"]
    assert get_workload("mnist").split_sizes(SHARED_MNIST) == (sizes["train"], sizes["test"])


FULL_MNIST_STUDIES = sorted((ROOT / "studies").glob("mnist-full-*.yaml"))


@pytest.mark.parametrize("path", FULL_MNIST_STUDIES, ids=lambda p: p.stem)
def test_a_full_mnist_study_trains_the_papers_whole_protocol_on_full_mnist_only(
    path: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    spec = load_study_file(path)
    assert spec.workload == {"name": "mnist", "dataset_sizes": {"train": 60000, "test": 10000}}
    storage = optuna.storages.InMemoryStorage()
    objective = TrialObjective(
        spec,
        study=optuna.create_study(storage=storage),
        storage=storage,
        budget=1,
        device="cpu",
        checkpoint_dir=tmp_path,
        data_dir=str(mnist_dir),
    )
    config = objective.run_config(TrialPlan(spec.optimizer, {"lr": 0.01}, [0]), seed=0)
    # Every image of both splits, the paper's batch size and epochs.
    assert config.resolve().protocol == get_workload("mnist").protocol
    assert (config.train_size, config.test_size) == (None, None)
    with pytest.raises(
        ValueError,
        match=r"^Invalid dataset_sizes: .* holds 96 training and 40 test examples, but "
        r"dataset_sizes says 60000 and 10000",
    ):
        train(config)


def test_a_directory_of_full_mnist_holds_what_the_full_studies_state(tmp_path: Path) -> None:
    # Label files of full MNIST's lengths: the sizes are read from their headers.
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, count in (("train", 60000), ("t10k", 10000)):
        header = struct.pack(">II", 0x0801, count)  # unsigned bytes, one dimension
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(header + bytes(count))
    sizes = load_study_file(ROOT / "studies" / "mnist-full-adamz.yaml").workload["dataset_sizes"]
    assert get_workload("mnist").split_sizes(tmp_path) == (sizes["train"], sizes["test"])
