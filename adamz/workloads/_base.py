"""What a workload is: a dataset, a model, a loss and a metric under a fixed training protocol.

A workload is one of the paper's experiments. Its data fits in memory, so it is loaded once per
process into tensors on the training device (see :meth:`Workload.load_data`) and the training
loop batches it by index: no ``DataLoader``, no per-sample transforms while training.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["DataNotFoundError", "Protocol", "TensorData", "Workload", "clear_data_cache"]

logger = logging.getLogger(__name__)


class DataNotFoundError(FileNotFoundError):
    """A workload's dataset files are missing; the message says where to put them."""


@dataclass(frozen=True)
class Protocol:
    """How a workload is trained: the paper's settings, which a run may override.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per optimisation step (the last step of an epoch may hold fewer).
        train_size: use the first ``train_size`` training examples; ``None`` uses all of them.
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
class TensorData:
    """A workload's train and test splits as tensors, already preprocessed, on one device."""

    train_inputs: Tensor
    train_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.train_inputs.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.test_inputs.shape[0])

    def first(self, train_size: int | None, test_size: int | None) -> TensorData:
        """The first ``train_size`` training and ``test_size`` test examples (``None``: all).

        Raises:
            ValueError: a size is larger than its split.
        """
        return TensorData(
            first(self.train_inputs, train_size, name="train_size", split="training"),
            first(self.train_targets, train_size, name="train_size", split="training"),
            first(self.test_inputs, test_size, name="test_size", split="test"),
            first(self.test_targets, test_size, name="test_size", split="test"),
        )

    def to(self, device: torch.device) -> TensorData:
        """The same data on ``device`` (contiguous, so batches are gathered from one block)."""
        splits = (self.train_inputs, self.train_targets, self.test_inputs, self.test_targets)
        return TensorData(*(tensor.to(device).contiguous() for tensor in splits))


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
    metric_name: ClassVar[str] = "test_accuracy"
    """What :meth:`count_correct` summed over the test split and divided by its size measures."""
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
    ) -> TensorData:
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

    def load_data(
        self,
        data_dir: str | Path | None,
        device: str | torch.device,
        *,
        train_size: int | None = None,
        test_size: int | None = None,
        download: bool = False,
    ) -> TensorData:
        """The workload's data on ``device``, loaded once per process and cached.

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
            cpu_data = self._load(
                directory, train_size=train_size, test_size=test_size, download=download
            )
            cached = _DATA_CACHE[key] = cpu_data.to(device)
        return cached

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, protocol={self.protocol})"


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
