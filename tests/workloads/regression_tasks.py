"""Workloads of a user's own code, for the tests: a small regression, and broken variants.

Tests import them by path (``regression_tasks:Regression``), in this process or, copied into a
test's working directory, in the CLI's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from adamz.workloads import Metric, Protocol, WorkloadData

FEATURES = 6


class Regression:
    """A noisy linear target of 6 random features (240 examples: 180 to train, 60 to test); an
    MLP 6 -> hidden -> 1; mean squared error; RMSE and MAE, minimised."""

    protocol = Protocol(epochs=3, batch_size=16)
    metrics: ClassVar[dict[str, Any]] = {
        "rmse": Metric("minimize", finish=math.sqrt),
        "mae": "minimize",
    }
    validation_fraction = 0.2

    def __init__(self, hidden: int = 8, dataset: bool = False, validation: bool = False) -> None:
        self.hidden = hidden
        self.dataset = dataset
        self.validation = validation

    def data(self, data_dir: Path | None) -> WorkloadData:
        generator = torch.Generator().manual_seed(7)
        inputs = torch.randn(240, FEATURES, generator=generator)
        targets = inputs @ torch.linspace(-1.0, 1.0, FEATURES) + 0.1 * torch.randn(
            240, generator=generator
        )
        train, test = (inputs[:180], targets[:180]), (inputs[180:], targets[180:])
        validation = (inputs[150:180], targets[150:180]) if self.validation else None
        if self.validation:
            train = (inputs[:150], targets[:150])
        if not self.dataset:
            return WorkloadData(train, test, validation)
        return WorkloadData(
            TensorDataset(*train),
            PairDataset(*test),
            None if validation is None else TensorDataset(*validation),
        )

    def build_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Linear(FEATURES, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1), nn.Flatten(0)
        )

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(outputs, targets)

    def metric_values(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        errors = outputs - targets
        return {"rmse": errors**2, "mae": errors.abs()}


class PairDataset(Dataset[tuple[Tensor, float]]):
    """Examples one at a time, targets as Python numbers: a dataset as a user writes one."""

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[Tensor, float]:
        return self.inputs[index], float(self.targets[index])


class Branching(nn.Module):
    """A model whose forward branches on its input's values: ``vmap`` cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(FEATURES, 1)

    def forward(self, inputs: Tensor) -> Tensor:
        outputs = self.linear(inputs).squeeze(-1)
        return outputs if bool(outputs.sum() > -1e9) else -outputs


class NotVmappable(Regression):
    """:class:`Regression` with :class:`Branching`'s model."""

    def build_model(self) -> nn.Module:
        return Branching()


class NestedClass(Regression):
    """Its model's class is defined inside ``build_model()``: a new class at every call, which
    ``stack_module_state`` refuses to stack."""

    def build_model(self) -> nn.Module:
        class Model(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.linear = nn.Linear(FEATURES, 1)

            def forward(self, inputs: Tensor) -> Tensor:
                return self.linear(inputs).squeeze(-1)

        return Model()


class Recurrent(Regression):
    """A GRU over the features as a sequence of 6 steps: ``vmap`` cannot batch it."""

    def build_model(self) -> nn.Module:
        return GRURegressor()


class GRURegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(1, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, inputs: Tensor) -> Tensor:
        _, hidden = self.gru(inputs.unsqueeze(-1))
        return self.head(hidden[-1]).squeeze(-1)


class FromDataDir(Regression):
    """:class:`Regression`'s data, read from ``regression.pt`` in the data directory."""

    def data(self, data_dir: Path | None) -> WorkloadData:
        if data_dir is None or not (data_dir / "regression.pt").is_file():
            raise FileNotFoundError(f"no regression.pt in {data_dir}")
        train, test = torch.load(data_dir / "regression.pt", weights_only=True)
        return WorkloadData(tuple(train), tuple(test))


class NoLoss:
    """Lacks the loss."""

    protocol = Protocol(epochs=1, batch_size=16)
    metrics: ClassVar[dict[str, str]] = {}

    def data(self, data_dir: Path | None) -> WorkloadData:
        return Regression().data(data_dir)

    def build_model(self) -> nn.Module:
        return Regression().build_model()


class NoDirection(Regression):
    """Names its metric without a direction."""

    metrics: ClassVar[Any] = ["rmse"]


class ShortTargets(Regression):
    """Its training split holds fewer targets than inputs."""

    def data(self, data_dir: Path | None) -> WorkloadData:
        data = super().data(data_dir)
        inputs, targets = data.train  # type: ignore[misc]
        return WorkloadData((inputs, targets[:-10]), data.test)


class WrongTestShape(Regression):
    """Its test examples have one feature fewer than its training examples."""

    def data(self, data_dir: Path | None) -> WorkloadData:
        data = super().data(data_dir)
        inputs, targets = data.test  # type: ignore[misc]
        return WorkloadData(data.train, (inputs[:, :-1], targets))


class BatchLoss(Regression):
    """Returns one loss per example instead of the batch's mean."""

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs - targets) ** 2


class Ranked(Regression):
    """The regression's target thresholded at 0 as a label, scored by the ROC AUC of the
    model's outputs (a whole-split metric: the fraction of (positive, negative) pairs ranked
    right) beside the per-example RMSE."""

    metrics: ClassVar[dict[str, Any]] = {
        "auc": Metric("maximize", chance=0.5, whole_split=True),
        "rmse": Metric("minimize", finish=math.sqrt),
    }
    calls: ClassVar[list[int]] = []  # the split sizes whole_split_values saw

    def metric_values(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return {"rmse": (outputs - targets) ** 2}

    def whole_split_values(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        Ranked.calls.append(int(targets.shape[0]))
        return {"auc": area_under_roc(outputs, targets > 0)}


def area_under_roc(scores: Tensor, positive: Tensor) -> float:
    """The fraction of (positive, negative) pairs whose positive scores higher (ties half)."""
    above = scores[positive][:, None] - scores[~positive][None, :]
    return float(((above > 0).double() + 0.5 * (above == 0).double()).mean())


class BrokenAuc(Ranked):
    """Its whole-split metric raises."""

    def whole_split_values(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        raise ValueError("Only one class present in y_true")


class NoWholeSplitValues(Regression):
    """Declares a whole-split metric without the method that computes it."""

    metrics: ClassVar[dict[str, Any]] = {"auc": Metric("maximize", whole_split=True)}
