"""A workload of your own whose metric is no mean over examples: ROC AUC on scikit-learn's
bundled breast-cancer data, maximised.

ROC AUC ranks every example of a split against every other, so it is declared
``whole_split=True`` and computed by ``whole_split_values`` from all of a split's outputs at
once (here by scikit-learn); the accuracy beside it is a mean over examples, computed batch by
batch by ``metric_values``. ``adamz-search`` imports it by its path,
``examples.breast_cancer.task:BreastCancerClassification``, from the working directory (run the
commands from the repository's root). See ``examples/README.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads import Metric, Protocol, WorkloadData

__all__ = ["BreastCancerClassification"]


class BreastCancerClassification:
    """Malignant or benign from 30 measurements of a cell nucleus: scikit-learn's bundled
    breast-cancer data (569 tumours, no download), split 75/25 stratified with
    ``random_state=0``; an MLP 30 -> ``hidden`` -> ReLU -> 1 logit on standardised features;
    binary cross-entropy; ROC AUC (maximised, 0.5 at chance) and accuracy. Validation: 20 % of
    the 426 training tumours (85), leaving 341 to train on; test: 143.
    """

    protocol = Protocol(epochs=10, batch_size=32)
    metrics: ClassVar[dict[str, Metric]] = {
        "auc": Metric("maximize", chance=0.5, whole_split=True),
        "accuracy": Metric("maximize", chance=0.5),
    }
    validation_fraction = 0.2

    def __init__(self, hidden: int = 16) -> None:
        if not (isinstance(hidden, int) and hidden >= 1):
            raise ValueError(f"Invalid hidden: must be an integer >= 1, got {hidden!r}.")
        self.hidden = hidden
        train_x, test_x, train_y, test_y = _breast_cancer()
        # Standardised with the training split's statistics alone: the test split stays unseen.
        mean, std = train_x.mean(0), train_x.std(0)
        self.splits = ((train_x - mean) / std, (test_x - mean) / std, train_y, test_y)

    def data(self, data_dir: Path | None) -> WorkloadData:
        train_x, test_x, train_y, test_y = self.splits
        return WorkloadData(train=(train_x, train_y), test=(test_x, test_y))

    def build_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Linear(30, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1), nn.Flatten(0)
        )

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs, targets)

    def metric_values(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        # One value per example (a logit above 0 predicts malignant): the split's mean.
        return {"accuracy": ((outputs > 0).float() == targets).float()}

    def whole_split_values(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        # All of one run's outputs on a split at once: the area under its ROC curve.
        from sklearn.metrics import roc_auc_score

        return {"auc": float(roc_auc_score(targets.cpu().numpy(), outputs.cpu().numpy()))}


def _breast_cancer() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The training and test features and labels (1: malignant), as float32 tensors."""
    # Imported here: scikit-learn takes a second to import, and only loading the data needs it.
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    features, labels = load_breast_cancer(return_X_y=True)
    malignant = 1 - labels  # scikit-learn's 1 is benign
    parts = train_test_split(
        features, malignant, test_size=0.25, random_state=0, stratify=malignant
    )
    train_x, test_x, train_y, test_y = (
        torch.as_tensor(part, dtype=torch.float32) for part in parts
    )
    return train_x, test_x, train_y, test_y
