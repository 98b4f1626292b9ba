"""What a workload is: a dataset, a model, a loss and its metrics under a fixed training protocol.

A workload is one of the paper's experiments, or one from the user's own code
(:mod:`adamz.workloads._user`). Its data is loaded once per process (see
:meth:`Workload.load_data`) and the training loop batches it by index: no ``DataLoader``, no
per-sample transforms while training. Data that fits in memory lives in tensors on the training
device (:class:`TensorData`); a user's ``torch.utils.data.Dataset`` is read batch by batch
instead (:class:`DatasetData`).

Every epoch records the loss and the workload's own metrics (:attr:`Workload.metric_names`:
accuracy for the paper's classification tasks, :data:`METRICS`) on the validation and the test
split, each declared with its direction (:class:`Metric`).

Every workload has three splits. The test split is the dataset's own; the validation split is
carved from the training examples (after ``train_size`` picks them) by a permutation drawn
from :data:`VALIDATION_SPLIT_SEED`, which no run's seed changes, so every run and every trial
of every study sees the same validation examples. A workload whose examples are consecutive
pieces of one text holds out their contiguous tail instead (:func:`tail_validation_split`,
through :meth:`Workload.validation_indices`): pieces drawn at random would sit between
training pieces of the same passage. A user's workload may give its own validation split
instead. Searches select on validation metrics and reports present test metrics: the test split
never steers a choice.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeAlias, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

__all__ = [
    "DIRECTIONS",
    "HELD_OUT_SPLITS",
    "METRICS",
    "VALIDATION_SPLIT_SEED",
    "DataNotFoundError",
    "DatasetData",
    "Metric",
    "Protocol",
    "RunData",
    "Splits",
    "TensorData",
    "Workload",
    "clear_data_cache",
    "tail_validation_split",
    "validation_split",
]

logger = logging.getLogger(__name__)


VALIDATION_SPLIT_SEED = 20241123
"""Seeds the permutation that carves the validation split from the training examples."""

METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")
"""What every epoch of the paper's workloads records: accuracy (fraction correct) and mean loss
on each held-out split. A workload's own are its :attr:`Workload.metric_names`."""

HELD_OUT_SPLITS = ("val", "test")
"""The splits every epoch is evaluated on; a metric's record name is ``SPLIT_NAME``."""

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Metric:
    """How one of a workload's metrics is computed and judged.

    A split's value is the mean, over its examples, of the per-example values the workload
    gives (``Workload.metric_sums``), then ``finish`` (an RMSE is ``math.sqrt`` of the mean
    squared error, a perplexity ``math.exp`` of the mean negative log-likelihood). A metric
    that is no mean over examples (ROC AUC, F1, a ranking metric) says ``whole_split=True``:
    the workload computes it from all of a split's outputs and targets at once
    (``Workload.whole_split_values``), one value per run and split.

    Attributes:
        direction: ``"maximize"`` or ``"minimize"``: which way is better. A study that selects
            on the metric takes its direction from here.
        chance: what a model that learned nothing scores, the value a diverged run counts at;
            ``None``: the worst value there is (``-inf`` when maximising, ``inf`` when
            minimising), which the reports count as the worst value their study saw.
        finish: applied to the split's mean (default: none).
        whole_split: computed from a whole split at once, not averaged over its examples
            (default: False).

    Raises:
        ValueError: ``direction`` is not one of :data:`DIRECTIONS`, or a ``whole_split``
            metric has a ``finish`` (it has no mean to finish).
    """

    direction: str
    chance: float | None = None
    finish: Callable[[float], float] | None = None
    whole_split: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"Invalid direction: must be one of {', '.join(DIRECTIONS)}, "
                f"got {self.direction!r}."
            )
        if self.whole_split and self.finish is not None:
            raise ValueError(
                "Invalid finish: a whole_split metric is computed whole, with no mean to "
                f"finish, got {self.finish!r}."
            )

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def worst(self) -> float:
        """The worst value there is in this direction."""
        return -math.inf if self.maximize else math.inf


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
        return self.hold_out(*validation_split(int(self.train_inputs.shape[0]), fraction))

    def hold_out(self, kept: Tensor, held_out: Tensor) -> TensorData:
        """The training examples at ``kept`` to train on, those at ``held_out`` to validate on
        (index tensors, as :func:`validation_split` gives them)."""
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
    count = _validation_count(n, fraction)
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SPLIT_SEED))
    return permutation[count:].sort().values, permutation[:count].sort().values


def tail_validation_split(n: int, fraction: float) -> tuple[Tensor, Tensor]:
    """Indices (kept for training, held out for validation) of ``n`` training examples: the
    last ``round(fraction * n)`` of them, at least 1, are held out, as one contiguous range.

    For examples that are consecutive pieces of one text, where a piece drawn at random would
    be held out between two training pieces of the same passage.

    Raises:
        ValueError: nothing would be left to train on.
    """
    count = _validation_count(n, fraction)
    return torch.arange(n - count), torch.arange(n - count, n)


def _validation_count(n: int, fraction: float) -> int:
    """How many of ``n`` training examples are held out: ``round(fraction * n)``, at least 1.

    Raises:
        ValueError: nothing would be left to train on.
    """
    count = max(1, round(fraction * n))
    if count >= n:
        raise ValueError(
            f"Invalid train_size: holding out {count} for validation needs more than {n} "
            "training examples."
        )
    return count


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

    def train_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The training inputs and targets at ``index``: shape ``(batch,)`` for one run,
        ``(K, batch)`` for K runs; the results have ``index``'s shape first."""
        return self.train_inputs[index], self.train_targets[index]

    def held_out(self, split: str, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The inputs and targets of ``split`` (``"val"`` or ``"test"``), ``batch_size`` at a
        time, in order."""
        inputs, targets = getattr(self, f"{split}_inputs"), getattr(self, f"{split}_targets")
        for start in range(0, inputs.shape[0], batch_size):
            yield inputs[start : start + batch_size], targets[start : start + batch_size]


@dataclass(frozen=True)
class DatasetData:
    """A workload's train, validation and test splits as ``torch.utils.data.Dataset`` objects
    of ``(input, target)`` pairs, for data that does not fit in memory: each batch is read
    from its dataset when the loop asks for it, collated (``default_collate``) and moved to
    :attr:`device`.

    Read in the training process, example by example (or through the dataset's
    ``__getitems__``): the loop decides every batch's indices from the run's own seeded
    generator, which a ``DataLoader``'s sampler would have to reproduce, and a population reads
    K batches per step. A dataset that is slow to read trains at its reading speed.
    """

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return _length(self.train)

    @property
    def num_val(self) -> int:
        """Number of validation examples."""
        return _length(self.val)

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return _length(self.test)

    def to(self, device: torch.device) -> DatasetData:
        """The same datasets, their batches delivered on ``device``."""
        return replace(self, device=device)

    def train_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`TensorData.train_batch`."""
        inputs, targets = self._read(self.train, index.reshape(-1).tolist())
        return (
            inputs.reshape(*index.shape, *inputs.shape[1:]),
            targets.reshape(*index.shape, *targets.shape[1:]),
        )

    def held_out(self, split: str, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """As :meth:`TensorData.held_out`."""
        dataset = getattr(self, split)
        count = _length(dataset)
        for start in range(0, count, batch_size):
            yield self._read(dataset, list(range(start, min(start + batch_size, count))))

    def _read(self, dataset: Dataset[Any], indices: list[int]) -> tuple[Tensor, Tensor]:
        """The examples at ``indices``, collated, on :attr:`device`."""
        get_items = getattr(dataset, "__getitems__", None)
        items = get_items(indices) if get_items is not None else [dataset[i] for i in indices]
        inputs, targets = default_collate(items)
        return inputs.to(self.device), targets.to(self.device)


RunData: TypeAlias = TensorData | DatasetData
"""A workload's splits as the training loop reads them."""


def _length(dataset: Dataset[Any]) -> int:
    return len(dataset)  # type: ignore[arg-type]


_DATA_CACHE: dict[
    tuple[str, str | None, str, int | None, int | None, tuple[int, int] | None], RunData
] = {}


def clear_data_cache() -> None:
    """Forget every dataset loaded by :meth:`Workload.load_data` in this process."""
    _DATA_CACHE.clear()


class Workload(ABC):
    """One experiment: data, model, loss and metrics, trained under :attr:`protocol`.

    Subclasses set the class attributes and implement the three abstract methods, and
    :meth:`count_correct` for the accuracy that :attr:`metrics` declares by default; instances
    hold no state, so the registry keeps one of each. A workload from the user's own code is
    adapted to this class (:class:`adamz.workloads.ImportedWorkload`) from a smaller protocol.
    """

    name: str
    """Registry key, used on the command line and in studies (an import path for a user's)."""
    summary: str
    """One line for ``--help`` and reports."""
    protocol: Protocol
    """The paper's training protocol for this experiment."""
    num_classes: int
    """Classes of the labels, balanced: chance accuracy is ``1 / num_classes`` and the loss of a
    uniform prediction ``log(num_classes)`` (what a diverged run is scored at)."""
    validation_fraction: float
    """Share of the training examples held out for validation (see the module docs)."""
    needs_data_dir: ClassVar[bool] = False
    """Whether :meth:`load_data` reads files from a data directory."""
    takes_data_dir: ClassVar[bool] = False
    """Whether :meth:`load_data` passes a data directory on where one is given, without
    needing one (a user's workload may read its files from there)."""

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

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Number of correctly predicted examples in a batch, as a 0-dim integer tensor: the
        accuracy of the classification workloads (:meth:`metric_sums`).

        Kept on the device so evaluation reads one number back at its end.

        Raises:
            NotImplementedError: a workload without an accuracy (it overrides
                :meth:`metric_sums` instead).
        """
        raise NotImplementedError(f"{self.name} does not count correct predictions")

    @property
    def metrics(self) -> dict[str, Metric]:
        """Every metric evaluated on each held-out split, by its name without the split, the
        loss last: this default is a classification's accuracy and loss, whose chance values
        follow from :attr:`num_classes`.

        Each is recorded as ``val_NAME`` and ``test_NAME`` (:attr:`metric_names`).
        """
        return {
            "accuracy": Metric("maximize", chance=1.0 / self.num_classes),
            "loss": Metric("minimize", chance=math.log(self.num_classes)),
        }

    @property
    def metric_names(self) -> tuple[str, ...]:
        """What every epoch records, validation first: :data:`METRICS` for the paper's
        workloads."""
        return tuple(f"{split}_{name}" for split in HELD_OUT_SPLITS for name in self.metrics)

    def metric(self, name: str) -> Metric:
        """The declaration of the recorded metric ``name`` (``val_rmse`` is ``rmse``'s).

        Raises:
            ValueError: an unknown metric; the message lists the workload's.
        """
        split, _, base = name.partition("_") if isinstance(name, str) else ("", "", "")
        declared = self.metrics
        if split not in HELD_OUT_SPLITS or base not in declared:
            raise ValueError(
                f"Unknown metric {name!r}: must be one of {', '.join(self.metric_names)}."
            )
        return declared[base]

    def metric_sums(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Each metric but the loss and the ``whole_split`` ones (:attr:`metrics`): the sum of
        its per-example values over the batch, a 0-dim tensor on the device; the loop adds them
        up over a split and divides by its size. Called under ``torch.func.vmap`` for a
        population. This default: accuracy, from :meth:`count_correct`."""
        return {"accuracy": self.count_correct(outputs, targets)}

    @property
    def whole_split_metrics(self) -> tuple[str, ...]:
        """The names of the metrics declared ``whole_split`` (:class:`Metric`), in order."""
        return tuple(name for name, metric in self.metrics.items() if metric.whole_split)

    def whole_split_values(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        """Each :attr:`whole_split_metrics` metric of one run on one whole split: ``outputs``
        are the run's outputs for every example of the split, ``targets`` their targets. Called
        once per run and split after each epoch, outside ``vmap`` and without gradients.

        Raises:
            NotImplementedError: this default: no workload of the package has one.
        """
        raise NotImplementedError(f"{self.name} has no whole-split metric")

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

    has_stacked_forward: bool = False

    def stacked_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """:meth:`loss` of K models' batches at once: outputs ``(K, batch, ...)``, targets
        ``(K, batch, ...)`` -> ``(K,)``. This default vectorises :meth:`loss` with ``vmap``; a
        workload with a stacked forward writes it out too (one kernel instead of a dispatch)."""
        return torch.func.vmap(self.loss)(outputs, targets)

    def validation_indices(self, num_train: int) -> tuple[Tensor, Tensor]:
        """Indices (kept for training, held out for validation) of the ``num_train`` training
        examples: by default :func:`validation_split` at :attr:`validation_fraction`.

        Raises:
            ValueError: nothing would be left to train on.
        """
        return validation_split(num_train, self.validation_fraction)

    @property
    def identity(self) -> str:
        """What tells this workload's data apart from others' in the per-process cache: its
        name (a user's workload adds its options)."""
        return self.name

    def load_data(
        self,
        data_dir: str | Path | None,
        device: str | torch.device,
        *,
        train_size: int | None = None,
        test_size: int | None = None,
        download: bool = False,
        dataset_sizes: Mapping[str, int] | None = None,
    ) -> RunData:
        """The workload's data on ``device``, loaded once per process and cached, with the
        validation split held out of the training examples.

        Args:
            data_dir: directory holding the dataset (torchvision's layout, e.g.
                ``DIR/MNIST/raw``); ignored by workloads that generate or bundle their data.
            device: where the tensors live, normally the training device.
            train_size: keep the first ``train_size`` training examples (``None``: all).
            test_size: keep the first ``test_size`` test examples (``None``: all).
            download: let torchvision download missing files (needs a network).
            dataset_sizes: ``{"train": N, "test": M}``, the examples the dataset's own splits
                must hold (:meth:`split_sizes`), before ``train_size`` and ``test_size`` pick
                from them. A data directory may hold a subset of a dataset, or the whole: the
                first ``train_size`` examples of each are different images, and a result
                holds only for the data it was made on, so a run that states the sizes it was
                made on refuses other data instead of training on it silently.

        Raises:
            DataNotFoundError: the files are missing (and were not downloaded).
            ValueError: ``data_dir`` is missing for a workload that needs one, a size is
                larger than the split, or the dataset does not hold ``dataset_sizes``.
        """
        directory: Path | None = None
        if self.needs_data_dir and data_dir is None:
            raise ValueError(
                f"Invalid data_dir: workload {self.name!r} reads its dataset from a "
                "directory, got None."
            )
        if data_dir is not None and (self.needs_data_dir or self.takes_data_dir):
            directory = Path(data_dir).expanduser().resolve()
        device = torch.device(device)
        expected = None if dataset_sizes is None else _dataset_sizes(dataset_sizes)
        key = (
            self.identity,
            None if directory is None else str(directory),
            str(device),
            train_size,
            test_size,
            expected,
        )
        cached = _DATA_CACHE.get(key)
        if cached is None:
            if expected is not None:
                found = self.split_sizes(directory, download=download)
                if found != expected:
                    where = f"{directory}" if directory is not None else f"{self.name}'s data"
                    raise ValueError(
                        f"Invalid dataset_sizes: {where} holds {found[0]} training and "
                        f"{found[1]} test examples, but dataset_sizes says {expected[0]} and "
                        f"{expected[1]} (the data the results were made on): use a data "
                        "directory holding that data, or change dataset_sizes."
                    )
            logger.debug("loading %s data from %s onto %s", self.name, directory, device)
            cpu_data = self._held_out_data(
                directory, train_size=train_size, test_size=test_size, download=download
            )
            cached = _DATA_CACHE[key] = cpu_data.to(device)
        return cached

    def _held_out_data(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> RunData:
        """The three splits on the CPU: :meth:`_load`'s, with the validation split held out
        of the training examples (:meth:`validation_indices`)."""
        splits = self._load(data_dir, train_size=train_size, test_size=test_size, download=download)
        return splits.hold_out(*self.validation_indices(int(splits.train_inputs.shape[0])))

    def split_sizes(self, data_dir: Path | None, *, download: bool = False) -> tuple[int, int]:
        """The number of examples in the dataset's own training and test splits, before
        ``train_size`` and ``test_size`` are applied (what ``dataset_sizes`` is checked on).

        This default loads the splits; a workload reading files may count them cheaper.

        Raises:
            DataNotFoundError: the files are missing.
        """
        splits = self._load(data_dir, train_size=None, test_size=None, download=download)
        return int(splits.train_inputs.shape[0]), int(splits.test_inputs.shape[0])

    def chance_value(self, metric: str) -> float:
        """What a model that learned nothing scores on ``metric`` (one of
        :attr:`metric_names`): its declared ``chance`` (:class:`Metric`), else the worst value
        there is in its direction.

        Raises:
            ValueError: an unknown metric.
        """
        declared = self.metric(metric)
        return declared.worst() if declared.chance is None else declared.chance

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, protocol={self.protocol})"


def _dataset_sizes(sizes: Mapping[str, int]) -> tuple[int, int]:
    """``{"train": N, "test": M}`` as ``(N, M)``, or ValueError naming the rule and value."""
    valid = (
        isinstance(sizes, Mapping)
        and set(sizes) == {"train", "test"}
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values())
    )
    if not valid:
        raise ValueError(
            "Invalid dataset_sizes: must be a mapping {train: N, test: M} of integers >= 1, "
            f"got {sizes!r}."
        )
    return sizes["train"], sizes["test"]


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
