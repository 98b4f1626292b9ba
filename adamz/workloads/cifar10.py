"""``cifar10``: CIFAR-10 and a two-convolution network (the paper's Table 6)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads._base import (
    Protocol,
    Splits,
    Workload,
    first,
    open_torchvision_split,
)

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10

__all__ = ["Cifar10", "Cifar10Net", "normalize_images"]

_BASE_FOLDER = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder


def normalize_images(images: Tensor) -> Tensor:
    """uint8 HWC images ``(N, 32, 32, 3)`` -> CHW floats, as ``ToTensor`` then
    ``Normalize((0.5,) * 3, (0.5,) * 3)`` compute them, for a whole batch at once."""
    return images.permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5).contiguous()


class Cifar10Net(nn.Module):
    """Conv(3, 32, 3, pad 1), ReLU, Conv(32, 64, 3, pad 1), ReLU, MaxPool(2), flatten,
    Linear(16384, 128), ReLU, Dropout(0.5), Linear(128, 10), log-softmax (the authors' net)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(64 * 16 * 16, 128)
        self.fc2 = nn.Linear(128, num_classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, images: Tensor) -> Tensor:
        """Log-probabilities ``(batch, 10)`` for images ``(batch, 3, 32, 32)``."""
        features = self.pool(F.relu(self.conv2(F.relu(self.conv1(images)))))
        hidden = F.relu(self.fc1(features.flatten(1)))
        return F.log_softmax(self.fc2(self.dropout(hidden)), dim=1)


class Cifar10(Workload):
    """torchvision's CIFAR-10, normalised to [-1, 1] per channel; :class:`Cifar10Net`;
    negative log-likelihood; batch 128; 10 epochs; the first 1,000 training and 200 test
    images, as in the authors' script (a run may ask for other sizes, or all). Validation: 10 %
    of the training images (100 of the 1,000), leaving 900 to train on.

    Files are read from ``DATA_DIR/cifar-10-batches-py`` (the python version) by torchvision,
    which checks their md5 sums.
    """

    name = "cifar10"
    summary = "torchvision CIFAR-10 (first 1000/200), 2-conv net, NLL (paper Table 6); needs files"
    protocol = Protocol(epochs=10, batch_size=128, train_size=1000, test_size=200)
    num_classes = 10
    validation_fraction = 0.1
    needs_data_dir = True

    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        if data_dir is None:  # Workload.load_data checks this first; here for the type
            raise ValueError(f"Invalid data_dir: workload {self.name!r} needs one, got None.")
        train = _open(data_dir, train=True, download=download)
        test = _open(data_dir, train=False, download=False)

        def images(dataset: CIFAR10) -> Tensor:
            return torch.from_numpy(dataset.data)

        def labels(dataset: CIFAR10) -> Tensor:
            return torch.tensor(dataset.targets, dtype=torch.int64)

        return Splits(
            normalize_images(first(images(train), train_size, name="train_size", split="training")),
            first(labels(train), train_size, name="train_size", split="training"),
            normalize_images(first(images(test), test_size, name="test_size", split="test")),
            first(labels(test), test_size, name="test_size", split="test"),
        )

    def build_model(self) -> nn.Module:
        return Cifar10Net()

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.nll_loss(outputs, targets)

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(dim=1) == targets).sum()


def _open(data_dir: Path, *, train: bool, download: bool) -> CIFAR10:
    """torchvision's CIFAR-10 split, or :class:`DataNotFoundError` saying where the files go."""
    # Imported here: torchvision takes seconds to import and only file-based workloads need it.
    from torchvision.datasets import CIFAR10

    return open_torchvision_split(
        lambda: CIFAR10(root=data_dir, train=train, download=download),
        dataset="CIFAR-10",
        location=data_dir / _BASE_FOLDER,
        missing="not found or corrupted (torchvision checks the files' md5 sums)",
        instructions="put the python version there (data_batch_1 ... data_batch_5, test_batch, "
        "batches.meta, as extracted from cifar-10-python.tar.gz)",
        download=download,
    )
