"""``cifar10``: loaded by torchvision's CIFAR10 from pickle batches, trained by the 2-conv net."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torchvision.datasets import CIFAR10

from adamz.training import RunConfig, train
from adamz.workloads import DataNotFoundError, get_workload, validation_split


def test_images_become_chw_in_minus_one_to_one_like_totensor_then_normalize(
    cifar10_dir: Path,
) -> None:
    data = get_workload("cifar10").load_data(cifar10_dir, "cpu", train_size=None)
    with open(cifar10_dir / CIFAR10.base_folder / "data_batch_1", "rb") as file:
        first_batch = pickle.load(file)
    rows = torch.from_numpy(first_batch["data"]).reshape(-1, 3, 32, 32)  # stored channel-first
    # 5 batches of 20, 30: as written; 10 % of the training images validate
    assert (data.num_train, data.num_val, data.num_test) == (90, 10, 30)
    assert data.train_inputs.shape == (90, 3, 32, 32)
    kept, held_out = validation_split(100, 0.1)
    first_kept = kept[kept < 20]
    first_held_out = held_out[held_out < 20]
    expected = (rows.float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(
        data.train_inputs[: len(first_kept)], expected[first_kept], rtol=0, atol=1e-7
    )
    torch.testing.assert_close(
        data.val_inputs[: len(first_held_out)], expected[first_held_out], rtol=0, atol=1e-7
    )
    labels = torch.tensor(first_batch["labels"])
    assert torch.equal(data.train_targets[: len(first_kept)], labels[first_kept])


def test_default_protocol_takes_the_first_1000_and_200_images(cifar10_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"^Invalid train_size: must be at most the 100 "):
        train(RunConfig(workload="cifar10", optimizer="adam", data_dir=str(cifar10_dir)))


def test_model_maps_32x32_rgb_to_log_probabilities_for_ten_classes() -> None:
    torch.manual_seed(0)
    model = get_workload("cifar10").build_model().eval()
    log_probs = model(torch.randn(2, 3, 32, 32))
    assert log_probs.shape == (2, 10)
    assert model.fc1.in_features == 16384  # type: ignore[union-attr]
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(2))


def test_one_short_epoch_trains_from_files_written_in_torchvisions_format(
    cifar10_dir: Path,
) -> None:
    result = train(
        RunConfig(
            workload="cifar10",
            optimizer="adam",
            data_dir=str(cifar10_dir),
            epochs=1,
            train_size=64,
            test_size=20,
        )
    )
    assert result.stop_reason == "completed"
    assert result.protocol == {
        "epochs": 1,
        "batch_size": 128,
        "train_size": 58,
        "val_size": 6,
        "test_size": 20,
    }
    assert result.steps == 1


def test_corrupted_files_are_reported_as_missing_data(cifar10_dir: Path) -> None:
    (cifar10_dir / CIFAR10.base_folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataNotFoundError, match=r"^CIFAR-10 not found or corrupted .* in "):
        get_workload("cifar10").load_data(cifar10_dir, "cpu")
