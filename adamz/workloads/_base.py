"""What a workload is: a dataset, a model, a loss and a metric under a fixed training protocol.

A workload is one of the paper's experiments. Its data fits in memory, so it is loaded once per
process into tensors on the training device (see :meth:`Workload.load_data`) and the training
loop batches it by index: no ``DataLoader``, no per-sample transforms while training.

Every workload has three splits. The test split is the dataset's own; the validation split is
carved from the training examples (after ``train_size`` picks them) by a permutation drawn
from :data:`VALIDATION_SPLIT_SEED`, which no run's seed changes, so every run and every trial
of every study sees the same validation examples. Searches select on validation metrics and
reports present test metrics: the test split never steers a choice.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

__all__ = [
    "METRICS",
    "VALIDATION_SPLIT_SEED",
    "DataNotFoundError",
    "Protocol",
    "Splits",
    "TensorData",
    "Workload",
    "clear_data_cache",
    "validation_split",
]

logger = logging.getLogger(__name__)


VALIDATION_SPLIT_SEED = 20241123
"""Seeds the permutation that carves the validation split from the training examples."""

METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")
"""What every epoch records: accuracy (fraction correct) and mean loss on each held-out split."""


class DataNotFoundError(FileNotFoundError):
    """A workload's dataset files are missing; the message says where to put them."""


@dataclass(frozen=True)
class Protocol:
    """How a workload is trained: the paper's settings, which a run may override.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per optimisation step (the last step of an epoch may hold fewer).
        train_size: use the first ``train_size`` training examples; ``None`` uses all of them.
            The workload's ``validation_fraction`` of them is held out for validation.
        test_size: evaluate on the first ``test_size`` test examples; ``None`` uses all of them.

    Raises:
        ValueError: a value is not a positive integer.
    """

    epochs: int
    batch_size: int
    train_size: int | None = None
    test_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "train_size", "test_size"):
            value = getattr(self, name)
            if value is None and name in ("train_size", "test_size"):
                continue
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"Invalid {name}: must be an integer >= 1, got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The protocol as plain values (``None`` sizes mean the whole split)."""
        return asdict(self)


@dataclass(frozen=True)
class Splits:
    """A dataset's own train and test splits as tensors, preprocessed, before validation is
    carved out of the training split."""

    train_inputs: Tensor
    train_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor

    def first(self, train_size: int | None, test_size: int | None) -> Splits:
        """The first ``train_size`` training and ``test_size`` test examples (``None``: all).

        Raises:
            ValueError: a size is larger than its split.
        """
        return Splits(
            first(self.train_inputs, train_size, name="train_size", split="training"),
            first(self.train_targets, train_size, name="train_size", split="training"),
            first(self.test_inputs, test_size, name="test_size", split="test"),
            first(self.test_targets, test_size, name="test_size", split="test"),
        )

    def with_validation(self, fraction: float) -> TensorData:
        """Hold out ``round(fraction * n)`` (at least 1) of the ``n`` training examples.

        Which ones is drawn from :data:`VALIDATION_SPLIT_SEED` alone; the rest keep their
        order, so the training split is the same in every run.
        """
        kept, held_out = validation_split(int(self.train_inputs.shape[0]), fraction)
        return TensorData(
            self.train_inputs[kept],
            self.train_targets[kept],
            self.train_inputs[held_out],
            self.train_targets[held_out],
            self.test_inputs,
            self.test_targets,
        )


def validation_split(n: int, fraction: float) -> tuple[Tensor, Tensor]:
    """Indices (kept for training, held out for validation) of ``n`` training examples.

    ``round(fraction * n)`` of them, at least 1, drawn from :data:`VALIDATION_SPLIT_SEED`
    alone; both index lists are sorted, so the examples keep their order.

    Raises:
        ValueError: nothing would be left to train on.
    """
    count = max(1, round(fraction * n))
    if count >= n:
        raise ValueError(
            f"Invalid train_size: holding out {count} for validation needs more than {n} "
            "training examples."
        )
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SPLIT_SEED))
    return permutation[count:].sort().values, permutation[:count].sort().values


@dataclass(frozen=True)
class TensorData:
    """A workload's train, validation and test splits as tensors, preprocessed, on one device."""

    train_inputs: Tensor
    train_targets: Tensor
    val_inputs: Tensor
    val_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.train_inputs.shape[0])

    @property
    def num_val(self) -> int:
        """Number of validation examples."""
        return int(self.val_inputs.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.test_inputs.shape[0])

    def to(self, device: torch.device) -> TensorData:
        """The same data on ``device`` (contiguous, so batches are gathered from one block)."""
        return TensorData(*(getattr(self, f.name).to(device).contiguous() for f in fields(self)))


_DATA_CACHE: dict[tuple[str, str | None, str, int | None, int | None], TensorData] = {}


def clear_data_cache() -> None:
    """Forget every dataset loaded by :meth:`Workload.load_data` in this process."""
    _DATA_CACHE.clear()


class Workload(ABC):
    """One experiment: data, model, loss and metric, trained under :attr:`protocol`.

    Subclasses set the class attributes and implement the four abstract methods; instances hold
    no state, so the registry keeps one of each.
    """

    name: ClassVar[str]
    """Registry key, used on the command line and in studies."""
    summary: ClassVar[str]
    """One line for ``--help`` and reports."""
    protocol: ClassVar[Protocol]
    """The paper's training protocol for this experiment."""
    num_classes: ClassVar[int]
    """Classes of the labels, balanced: chance accuracy is ``1 / num_classes`` and the loss of a
    uniform prediction ``log(num_classes)`` (what a diverged run is scored at)."""
    validation_fraction: ClassVar[float]
    """Share of the training examples held out for validation (see the module docs)."""
    needs_data_dir: ClassVar[bool] = False
    """Whether :meth:`load_data` reads files from a data directory."""

    @abstractmethod
    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        """The first ``train_size`` / ``test_size`` examples of each split, preprocessed, on CPU.

        Raises:
            DataNotFoundError: the dataset's files are missing.
            ValueError: a size exceeds the split.
        """

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (draws from torch's global RNG: seed before calling)."""

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The training loss of a batch, a 0-dim tensor (mean over the batch)."""

    @abstractmethod
    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Number of correctly predicted examples in a batch, as a 0-dim integer tensor.

        Kept on the device so evaluation reads one number back at its end.
        """

    def stacked_forward(
        self, params: dict[str, Tensor], inputs: Tensor, *, training: bool
    ) -> Tensor:
        """The outputs of K models at once: ``params`` are :meth:`build_model`'s parameters
        stacked along a first dimension of K (``torch.func.stack_module_state``), ``inputs``
        have shape ``(K, batch, ...)``, one batch per model; ``training`` as ``nn.Module``'s
        (dropout on or off).

        For a population (:mod:`adamz.training.population`), which otherwise vectorises the
        model's own ``forward`` with ``torch.func.vmap``. A small model whose forward is a few
        linear layers is faster written out as batched matrix products (:func:`stacked_linear`):
        ``vmap``'s dispatch costs more than its arithmetic. A workload that writes it says so in
        :attr:`has_stacked_forward`; tests hold it equal to ``vmap`` of ``forward``.
        """
        raise NotImplementedError(f"{self.name} has no hand-written stacked forward")

    has_stacked_forward: ClassVar[bool] = False

    def stacked_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """:meth:`loss` of K models' batches at once: outputs ``(K, batch, ...)``, targets
        ``(K, batch, ...)`` -> ``(K,)``. This default vectorises :meth:`loss` with ``vmap``; a
        workload with a stacked forward writes it out too (one kernel instead of a dispatch)."""
        return torch.func.vmap(self.loss)(outputs, targets)

    def load_data(
        self,
        data_dir: str | Path | None,
        device: str | torch.device,
        *,
        train_size: int | None = None,
        test_size: int | None = None,
        download: bool = False,
    ) -> TensorData:
        """The workload's data on ``device``, loaded once per process and cached, with the
        validation split held out of the training examples.

        Args:
            data_dir: directory holding the dataset (torchvision's layout, e.g.
                ``DIR/MNIST/raw``); ignored by workloads that generate or bundle their data.
            device: where the tensors live, normally the training device.
            train_size: keep the first ``train_size`` training examples (``None``: all).
            test_size: keep the first ``test_size`` test examples (``None``: all).
            download: let torchvision download missing files (needs a network).

        Raises:
            DataNotFoundError: the files are missing (and were not downloaded).
            ValueError: ``data_dir`` is missing for a workload that needs one, or a size is
                larger than the split.
        """
        directory: Path | None = None
        if self.needs_data_dir:
            if data_dir is None:
                raise ValueError(
                    f"Invalid data_dir: workload {self.name!r} reads its dataset from a "
                    "directory, got None."
                )
            directory = Path(data_dir).expanduser().resolve()
        device = torch.device(device)
        key = (
            self.name,
            None if directory is None else str(directory),
            str(device),
            train_size,
            test_size,
        )
        cached = _DATA_CACHE.get(key)
        if cached is None:
            logger.debug("loading %s data from %s onto %s", self.name, directory, device)
            splits = self._load(
                directory, train_size=train_size, test_size=test_size, download=download
            )
            cpu_data = splits.with_validation(self.validation_fraction)
            cached = _DATA_CACHE[key] = cpu_data.to(device)
        return cached

    def chance_value(self, metric: str) -> float:
        """What a model that learned nothing scores on ``metric`` (one of :data:`METRICS`).

        Raises:
            ValueError: an unknown metric.
        """
        if metric.endswith("_accuracy") and metric in METRICS:
            return 1.0 / self.num_classes
        if metric.endswith("_loss") and metric in METRICS:
            return math.log(self.num_classes)
        raise ValueError(f"Unknown metric {metric!r}: must be one of {', '.join(METRICS)}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, protocol={self.protocol})"


def stacked_linear(inputs: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``nn.Linear`` for K stacked models: inputs ``(K, batch, in)``, weight ``(K, out, in)``,
    bias ``(K, out)`` -> ``(K, batch, out)``, as one batched matrix product."""
    return torch.baddbmm(bias.unsqueeze(1), inputs, weight.transpose(1, 2))


def first(values: Tensor, size: int | None, *, name: str, split: str) -> Tensor:
    """A copy of the first ``size`` rows of ``values`` (``values`` itself for ``None``).

    A copy, not a view, so that a cached subset does not keep the whole split alive.

    Raises:
        ValueError: ``size`` is larger than the number of rows.
    """
    if size is None:
        return values
    if size > values.shape[0]:
        raise ValueError(
            f"Invalid {name}: must be at most the {values.shape[0]} examples of the {split} "
            f"split, got {size}."
        )
    return values[:size].clone()


_Dataset = TypeVar("_Dataset")


def open_torchvision_split(
    open_split: Callable[[], _Dataset],
    *,
    dataset: str,
    location: Path,
    missing: str,
    instructions: str,
    download: bool,
) -> _Dataset:
    """``open_split()`` (a torchvision dataset), or :class:`DataNotFoundError` in one line.

    torchvision says "not found (or corrupted)" or why a download failed, over several lines and
    suggesting download=True; this says it once, naming ``location`` and what to put there.
    Files that are there but unreadable keep torchvision's own ``OSError``.
    """
    try:
        return open_split()
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, OSError) and not download:
            raise
        problem = missing
        if download:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            problem = f"could not be downloaded ({lines[0]})"
        raise DataNotFoundError(
            f"{dataset} {problem} in {location}: {instructions}, or allow a download "
            "(download=True, --download) on a machine with a network."
        ) from exc
