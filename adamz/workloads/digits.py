"""``digits``: scikit-learn's bundled 8x8 digits and a small MLP; the quick default run."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads._base import Protocol, Splits, Workload, stacked_linear

__all__ = ["Digits"]


class Digits(Workload):
    """1,797 8x8 grey images of digits (bundled with scikit-learn: no download), pixels scaled
    to [0, 1]; a stratified 75/25 split with ``random_state=0``; MLP 64 -> 64 -> ReLU -> 10;
    cross-entropy; batch 32; 10 epochs. Validation: 20 % of the 1,347 training images (269),
    leaving 1,078 to train on; test: 450.

    Not one of the paper's experiments: a task that trains anywhere in about a second, for
    smoke tests, examples and trying out a search.
    """

    name = "digits"
    summary = "scikit-learn 8x8 digits, 64-64-10 MLP; bundled, trains in seconds"
    protocol = Protocol(epochs=10, batch_size=32)
    num_classes = 10
    validation_fraction = 0.2

    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        # Imported here: scikit-learn takes a second to import and only this loader needs it.
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        images, labels = load_digits(return_X_y=True)
        train_x, test_x, train_y, test_y = train_test_split(
            images / 16.0, labels, test_size=0.25, random_state=0, stratify=labels
        )
        return Splits(
            torch.as_tensor(train_x, dtype=torch.float32),
            torch.as_tensor(train_y, dtype=torch.int64),
            torch.as_tensor(test_x, dtype=torch.float32),
            torch.as_tensor(test_y, dtype=torch.int64),
        ).first(train_size, test_size)

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    has_stacked_forward = True

    def stacked_forward(
        self, params: dict[str, Tensor], inputs: Tensor, *, training: bool
    ) -> Tensor:
        hidden = F.relu(stacked_linear(inputs, params["0.weight"], params["0.bias"]))
        return stacked_linear(hidden, params["2.weight"], params["2.bias"])

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def stacked_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs.transpose(1, 2), targets, reduction="none").mean(-1)

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(dim=1) == targets).sum()
