"""A workload of your own: a regression on scikit-learn's bundled diabetes data, its RMSE
minimised.

It lives outside the package on purpose: ``adamz-search`` imports it by its path,
``examples.diabetes.task:DiabetesRegression``, from the working directory (run the commands
from the repository's root) or from any installed package. See ``examples/README.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads import Metric, Protocol, WorkloadData

__all__ = ["DiabetesRegression"]


class DiabetesRegression:
    """Disease progression one year on from ten baseline measurements: scikit-learn's bundled
    diabetes data (442 patients, no download), split 75/25 with ``random_state=0``; an MLP
    10 -> ``hidden`` -> ReLU -> 1 on standardised features and targets; mean squared error;
    the RMSE in the target's own units, minimised. Validation: 20 % of the 331 training
    patients (66), leaving 265 to train on; test: 111.
    """

    protocol = Protocol(epochs=30, batch_size=32)
    metrics: ClassVar[dict[str, Metric]] = {"rmse": Metric("minimize", finish=math.sqrt)}
    validation_fraction = 0.2

    def __init__(self, hidden: int = 32) -> None:
        if not (isinstance(hidden, int) and hidden >= 1):
            raise ValueError(f"Invalid hidden: must be an integer >= 1, got {hidden!r}.")
        self.hidden = hidden
        train_x, test_x, train_y, test_y = _diabetes()
        # Standardised with the training split's statistics alone: the test split stays unseen.
        self.feature_mean, self.feature_std = train_x.mean(0), train_x.std(0)
        self.target_mean, self.target_std = train_y.mean(), train_y.std()
        self.splits = (train_x, test_x, train_y, test_y)

    def data(self, data_dir: Path | None) -> WorkloadData:
        train_x, test_x, train_y, test_y = self.splits
        return WorkloadData(
            train=(self._features(train_x), self._targets(train_y)),
            test=(self._features(test_x), self._targets(test_y)),
        )

    def build_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Linear(10, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1), nn.Flatten(0)
        )

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(outputs, targets)

    def metric_values(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        # Squared errors in the target's units: the metric's finish (sqrt) makes their mean an RMSE.
        return {"rmse": ((outputs - targets) * self.target_std) ** 2}

    def _features(self, features: Tensor) -> Tensor:
        return (features - self.feature_mean) / self.feature_std

    def _targets(self, targets: Tensor) -> Tensor:
        return (targets - self.target_mean) / self.target_std


def _diabetes() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The training and test features and targets, as float32 tensors."""
    # Imported here: scikit-learn takes a second to import, and only loading the data needs it.
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    features, targets = load_diabetes(return_X_y=True, scaled=False)
    parts = train_test_split(features, targets, test_size=0.25, random_state=0)
    train_x, test_x, train_y, test_y = (
        torch.as_tensor(part, dtype=torch.float32) for part in parts
    )
    return train_x, test_x, train_y, test_y
