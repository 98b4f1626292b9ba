"""``mnist``: loaded by torchvision's MNIST from IDX files, trained by the row-attention net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.datasets import MNIST

from adamz.training import RunConfig, train
from adamz.workloads import DataNotFoundError, get_workload, validation_split


def test_images_are_normalized_like_totensor_then_normalize_half(mnist_dir: Path) -> None:
    data = get_workload("mnist").load_data(mnist_dir, "cpu")
    reference = MNIST(root=mnist_dir, train=True)
    # the fixture wrote 96 training images: 10 % (10) are held out for validation
    assert (data.num_train, data.num_val, data.num_test) == (86, 10, 40)
    kept, held_out = validation_split(96, 0.1)
    expected = (reference.data.float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(data.train_inputs, expected[kept], rtol=0, atol=1e-7)
    torch.testing.assert_close(data.val_inputs, expected[held_out], rtol=0, atol=1e-7)
    assert torch.equal(data.train_targets, reference.targets[kept])
    assert torch.equal(data.val_targets, reference.targets[held_out])


def test_subset_sizes_take_the_first_examples(mnist_dir: Path) -> None:
    data = get_workload("mnist").load_data(mnist_dir, "cpu", train_size=10, test_size=4)
    reference = MNIST(root=mnist_dir, train=False)
    assert (data.num_train + data.num_val, data.num_test) == (10, 4)
    assert torch.equal(data.test_targets, reference.targets[:4])


def test_model_gives_log_probabilities_for_ten_classes() -> None:
    torch.manual_seed(0)
    model = get_workload("mnist").build_model().eval()
    log_probs = model(torch.randn(3, 28, 28))
    assert log_probs.shape == (3, 10)
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(3))


def test_one_short_epoch_trains_from_files_written_in_torchvisions_format(
    mnist_dir: Path,
) -> None:
    result = train(
        RunConfig(workload="mnist", optimizer="adamz", data_dir=str(mnist_dir), epochs=1)
    )
    assert result.stop_reason == "completed"
    assert result.protocol == {
        "epochs": 1,
        "batch_size": 64,
        "train_size": 86,
        "val_size": 10,
        "test_size": 40,
    }
    assert result.steps == 2
    assert result.final_metrics is not None
    assert 0.0 <= result.final_metrics["test_accuracy"] <= 1.0


def test_missing_files_raise_one_line_naming_the_directory_to_fill(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        get_workload("mnist").load_data(tmp_path / "nowhere", "cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert f"MNIST not found in {tmp_path / 'nowhere' / 'MNIST' / 'raw'}: put " in message
    assert "train-images-idx3-ubyte" in message
    assert "--download" in message
