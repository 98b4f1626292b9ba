"""``circles``: two noisy concentric circles, a 2-10-1 network (the paper's Table 2)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads._base import Protocol, Splits, Workload, stacked_linear

__all__ = ["Circles", "CirclesNet"]


class CirclesNet(nn.Module):
    """2 -> 10 (Kaiming-uniform for ReLU) -> ReLU -> 1, returning the logit.

    The authors' network ends in a sigmoid and trains with ``BCELoss``; this one returns the
    logit and :class:`Circles` uses ``binary_cross_entropy_with_logits``, the same function
    computed without overflow. Predicting ``logit >= 0`` is their ``sigmoid >= 0.5``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer_1 = nn.Linear(2, 10)
        nn.init.kaiming_uniform_(self.layer_1.weight, nonlinearity="relu")
        self.layer_2 = nn.Linear(10, 1)

    def forward(self, inputs: Tensor) -> Tensor:
        """Logits of shape ``(batch,)`` for points of shape ``(batch, 2)``."""
        return self.layer_2(F.relu(self.layer_1(inputs))).squeeze(-1)


class Circles(Workload):
    """``make_circles(n_samples=10000, noise=0.05, random_state=26)`` (factor 0.8), split 67/33
    with ``random_state=26``; binary cross-entropy; batch 64; 10 epochs. Validation: 15 % of
    the 6,700 training points (1,005), leaving 5,695 to train on; test: the paper's 3,300.

    The data are the same in every run (fixed ``random_state``), as in the paper: only the
    run's seed (initialisation, batch order) varies.
    """

    name = "circles"
    summary = "two concentric circles, 2-10-1 MLP, BCE (paper Table 2); generated, no files"
    protocol = Protocol(epochs=10, batch_size=64)
    num_classes = 2
    validation_fraction = 0.15

    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        # Imported here: scikit-learn takes a second to import and only this loader needs it.
        from sklearn.datasets import make_circles
        from sklearn.model_selection import train_test_split

        points, labels = make_circles(n_samples=10000, noise=0.05, random_state=26, factor=0.8)
        train_x, test_x, train_y, test_y = train_test_split(
            points, labels, test_size=0.33, random_state=26
        )

        return Splits(
            torch.as_tensor(train_x, dtype=torch.float32),
            torch.as_tensor(train_y, dtype=torch.float32),
            torch.as_tensor(test_x, dtype=torch.float32),
            torch.as_tensor(test_y, dtype=torch.float32),
        ).first(train_size, test_size)

    def build_model(self) -> nn.Module:
        return CirclesNet()

    has_stacked_forward = True

    def stacked_forward(
        self, params: dict[str, Tensor], inputs: Tensor, *, training: bool
    ) -> Tensor:
        hidden = stacked_linear(inputs, params["layer_1.weight"], params["layer_1.bias"])
        return stacked_linear(F.relu(hidden), params["layer_2.weight"], params["layer_2.bias"])[
            ..., 0
        ]

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs, targets)

    def stacked_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs, targets, reduction="none").mean(-1)

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return ((outputs >= 0) == (targets >= 0.5)).sum()
