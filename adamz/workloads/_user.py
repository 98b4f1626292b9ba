"""Workloads from the user's own code: a small protocol, imported by path, adapted to Workload.

A study file (or ``adamz-search train --workload``) names one by its import path, with options::

    workload: {name: "my_package.tasks:MyTask", hidden: 64, epochs: 20}

``my_package.tasks`` is imported, ``MyTask`` is called with the options (here ``hidden=64``),
and what it returns implements :class:`UserWorkload`::

    class MyTask:
        protocol = Protocol(epochs=10, batch_size=32)
        metrics = {"rmse": Metric("minimize", finish=math.sqrt)}  # or {"accuracy": "maximize"}

        def __init__(self, hidden: int = 32) -> None: ...
        def data(self, data_dir: Path | None) -> WorkloadData: ...
        def build_model(self) -> nn.Module: ...
        def loss(self, outputs: Tensor, targets: Tensor) -> Tensor: ...
        def metric_values(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]: ...

A metric that is no mean over examples (ROC AUC, F1) is declared ``Metric("maximize",
whole_split=True)`` and computed by ``whole_split_values(outputs, targets)`` from all of a
split's outputs and targets at once (any code: scikit-learn's ``roc_auc_score`` will do).

The keys of :data:`RUN_SETTINGS` are not options: ``epochs``, ``batch_size``, ``train_size``
and ``test_size`` override the protocol as for any workload, ``data_dir`` is passed to
``data()``, and ``dataset_sizes`` pins the sizes of its training and test splits.

Everything else is the service's, as for the built-in workloads: the validation split carved
from the training examples (unless ``data()`` gives one), checkpoints, populations (through
``torch.func.vmap`` of the model's own forward, or the workload's ``stacked_forward``; a model
that ``vmap`` cannot run trains one trial at a time, and the worker says so once), replicate
studies, confirmation, reports and export. The loss is always recorded (``val_loss``,
``test_loss``, minimised); each metric of ``metrics`` is recorded as ``val_NAME`` and
``test_NAME``, and a study selecting on it takes its direction from the declaration.

A module is found among the installed packages, then in the working directory. Every host
that creates the study or trains it imports the same path: install the package holding it
(``pip install -e .`` of your project) in the environment of every worker, at one version, or
start the workers from a directory that holds the module. A host that only reports on a study
or exports it needs neither (the stored study holds the workload's name and options, not its
code); ``report --confirm`` and an export of several studies train, and need it.
"""

from __future__ import annotations

import importlib
import json
import numbers
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset, TensorDataset

from adamz.workloads._base import (
    DIRECTIONS,
    DataNotFoundError,
    DatasetData,
    Metric,
    Protocol,
    RunData,
    Splits,
    TensorData,
    Workload,
    first,
)

__all__ = [
    "DEFAULT_VALIDATION_FRACTION",
    "RUN_SETTINGS",
    "ImportedWorkload",
    "UserWorkload",
    "WorkloadData",
    "WorkloadError",
    "check_workload",
    "import_workload",
    "is_import_path",
    "workload_options",
]

RUN_SETTINGS = ("epochs", "batch_size", "train_size", "test_size", "data_dir", "dataset_sizes")
"""The keys of a study file's workload, beside ``name``, that configure the run: every other
key is an option of a workload from the user's code."""

DEFAULT_VALIDATION_FRACTION = 0.1
"""The share of the training examples held out for validation when a user's workload says
neither ``validation_fraction`` nor gives a validation split."""

Split: TypeAlias = "tuple[Tensor, Tensor] | Dataset[Any]"


@dataclass(frozen=True)
class WorkloadData:
    """What a user's workload's ``data()`` returns: its splits, each a pair ``(inputs,
    targets)`` of tensors with one example per row, or a ``torch.utils.data.Dataset`` of
    ``(input, target)`` pairs for data that does not fit in memory.

    Attributes:
        train: the training examples; ``train_size`` takes the first ones.
        test: the test examples, only ever reported; ``test_size`` takes the first ones.
        validation: the examples a search selects on; ``None`` (the default) holds out
            ``validation_fraction`` of the training examples, the same ones in every run.
    """

    train: Split
    test: Split
    validation: Split | None = None


class UserWorkload(typing.Protocol):
    """What a workload from the user's own code implements (see the module docs); no base
    class is needed.

    Attributes:
        protocol: how it trains (:class:`Protocol`: epochs and batch size; a study overrides
            them with ``epochs`` and ``batch_size``).
        metrics: what to record on the validation and test splits besides the loss, by name,
            each with its direction: ``"maximize"``, ``"minimize"`` or a :class:`Metric`
            (with a chance value, a ``finish`` such as ``math.sqrt`` for an RMSE, or
            ``whole_split=True`` for a metric of the whole split, such as ROC AUC). May be
            empty: the loss alone is recorded. ``loss`` itself is not declared.

    Optional attributes: ``validation_fraction`` (the share of the training examples held out
    for validation when ``data()`` gives no validation split; default
    :data:`DEFAULT_VALIDATION_FRACTION`), ``summary`` (one line; default: the first line of
    the class's docstring), and ``stacked_forward(params, inputs, *, training)``, the outputs
    of K models at once, as :meth:`Workload.stacked_forward` (default: ``torch.func.vmap`` of
    the model's own forward).
    """

    protocol: Protocol
    metrics: Mapping[str, str | Metric]

    def data(self, data_dir: Path | None) -> WorkloadData:
        """The splits, on the CPU; ``data_dir``: the study's ``data_dir`` or the worker's
        ``--data-dir`` where one is given, else ``None``. Raise
        :class:`~adamz.workloads.DataNotFoundError` (or ``FileNotFoundError``) where the data
        is missing. Called once per process and cached."""
        ...

    def build_model(self) -> nn.Module:
        """A freshly initialised model, from torch's global generator (the run seeds it)."""
        ...

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The training loss of a batch: a 0-dim tensor, the mean over the batch."""
        ...

    def metric_values(self, outputs: Tensor, targets: Tensor) -> Mapping[str, Tensor]:
        """Each metric of :attr:`metrics`: one value per example of the batch, shape
        ``(batch,)``; a split's value is their mean (then the metric's ``finish``). Called
        without gradients, under ``torch.func.vmap`` (evaluation stacks the outputs of the
        runs it evaluates): tensor operations only, no ``.item()``. Needed only where
        :attr:`metrics` declares some that are not ``whole_split``."""
        ...

    def whole_split_values(self, outputs: Tensor, targets: Tensor) -> Mapping[str, float]:
        """Each ``whole_split`` metric of :attr:`metrics` (:class:`Metric`): one number (a
        float or a 0-dim tensor) for a whole split, from one run's ``outputs`` for all of the
        split's examples and their ``targets``. Called once per run and split after every
        epoch, without gradients and outside ``vmap``, so any code may compute it (NumPy,
        scikit-learn); a run whose outputs are not all finite scores NaN without a call.
        Needed only where :attr:`metrics` declares some."""
        ...


class WorkloadError(ValueError):
    """A workload from the user's code that cannot be imported or breaks the protocol; the
    message is one line naming the workload and what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"Invalid workload {path!r}: {problem}.")
        self.path = path
        self.problem = problem


def is_import_path(name: object) -> bool:
    """Whether ``name`` names a workload of the user's code (``module:attribute``) rather than
    a built-in one."""
    return isinstance(name, str) and ":" in name


def workload_options(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a study file's workload entry: every key but ``name`` and
    :data:`RUN_SETTINGS`."""
    return {key: value for key, value in entry.items() if key != "name" and key not in RUN_SETTINGS}


_IMPORTED: dict[str, ImportedWorkload] = {}
_MISSING = object()


def import_workload(path: str, options: Mapping[str, Any] | None = None) -> ImportedWorkload:
    """The user's workload at ``path`` (``module:attribute``) called with ``options``, checked
    against :class:`UserWorkload`; one instance per path and options in a process.

    Raises:
        WorkloadError: the path is malformed, the module or the attribute is not there, calling
            it raised, or what it returned lacks a method, a metric's direction or the
            protocol; one line saying which.
    """
    options = dict(options or {})
    key = _identity(path, options)
    workload = _IMPORTED.get(key)
    if workload is None:
        workload = _IMPORTED[key] = ImportedWorkload(path, _construct(path, options), options)
    return workload


def _identity(path: str, options: Mapping[str, Any]) -> str:
    return f"{path} {json.dumps(options, sort_keys=True, default=repr)}"


def _construct(path: str, options: dict[str, Any]) -> object:
    """What ``path`` names, called with ``options`` (or as it is, if it is not callable)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise WorkloadError(
            path, "an import path is module:attribute, e.g. my_package.tasks:MyTask"
        )
    _search_working_directory()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise WorkloadError(
                path,
                f"module {module_name!r} not found: install the package that holds it, or run "
                f"from the directory that holds it (searched: the installed packages and "
                f"{os.getcwd()})",
            ) from exc
        raise WorkloadError(path, f"importing {module_name!r} failed: {_one_line(exc)}") from exc
    except Exception as exc:  # the user's module may raise anything: said in one line
        raise WorkloadError(path, f"importing {module_name!r} raised {_one_line(exc)}") from exc
    target: object = module
    for part in attribute.split("."):
        target = getattr(target, part, _MISSING)
        if target is _MISSING:
            raise WorkloadError(path, f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(target):
        if options:
            raise WorkloadError(
                path, f"{attribute} is not callable, so it takes no options, got {options}"
            )
        return target
    try:
        return target(**options)
    except Exception as exc:  # the user's constructor may raise anything: said in one line
        arguments = ", ".join(f"{key}={value!r}" for key, value in options.items())
        raise WorkloadError(path, f"{attribute}({arguments}) raised {_one_line(exc)}") from exc


def _search_working_directory() -> None:
    """Let the working directory's modules be imported, after the installed packages (as
    ``python -m`` does, and servers that import an application by path): a console script's
    ``sys.path`` lacks it."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ImportedWorkload(Workload):
    """A :class:`UserWorkload` as a :class:`Workload`: what the training loop, the search and
    the reports use. Made by :func:`import_workload`.

    Its ``name`` is the import path; :attr:`options` are what it was called with.

    Raises:
        WorkloadError: ``user`` breaks the protocol (see :func:`import_workload`).
    """

    takes_data_dir = True

    def __init__(self, path: str, user: object, options: Mapping[str, Any]) -> None:
        self.name = path
        self.user = user
        self.options = dict(options)
        protocol = getattr(user, "protocol", None)
        if not isinstance(protocol, Protocol):
            raise WorkloadError(
                path,
                "protocol must be an adamz.workloads.Protocol(epochs=..., batch_size=...), got "
                f"{protocol!r}",
            )
        self.protocol = protocol
        self.user_metrics = _declared_metrics(path, getattr(user, "metrics", None))
        per_example = self.per_example_metrics
        needed = ["data", "build_model", "loss"] + (["metric_values"] if per_example else [])
        if len(per_example) < len(self.user_metrics):
            needed.append("whole_split_values")
        for method in needed:
            if not callable(getattr(user, method, None)):
                raise WorkloadError(
                    path, f"missing method {method}() (see adamz.workloads.UserWorkload)"
                )
        fraction = getattr(user, "validation_fraction", DEFAULT_VALIDATION_FRACTION)
        if not (isinstance(fraction, float) and 0.0 < fraction < 1.0):
            raise WorkloadError(
                path, f"validation_fraction must be a number in (0, 1), got {fraction!r}"
            )
        self.validation_fraction = fraction
        doc = (type(user).__doc__ or "").strip().splitlines()
        self.summary = str(getattr(user, "summary", None) or (doc[0] if doc else path))
        self.has_stacked_forward = callable(getattr(user, "stacked_forward", None))

    @property
    def identity(self) -> str:
        return _identity(self.name, self.options)

    @property
    def metrics(self) -> dict[str, Metric]:
        return {**self.user_metrics, "loss": Metric("minimize")}

    def build_model(self) -> nn.Module:
        model = self.user.build_model()  # type: ignore[attr-defined]
        if not isinstance(model, nn.Module):
            raise WorkloadError(
                self.name, f"build_model() must return a torch.nn.Module, got {type(model)}"
            )
        return model

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        loss: Tensor = self.user.loss(outputs, targets)  # type: ignore[attr-defined]
        return loss

    @property
    def per_example_metrics(self) -> list[str]:
        """The user's metrics that ``metric_values()`` gives, one value per example."""
        return [name for name, metric in self.user_metrics.items() if not metric.whole_split]

    def metric_sums(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        per_example = self.per_example_metrics
        if not per_example:
            return {}
        values = self.user.metric_values(outputs, targets)  # type: ignore[attr-defined]
        sums: dict[str, Tensor] = {}
        for name in per_example:
            value = values.get(name) if isinstance(values, Mapping) else None
            if not (isinstance(value, Tensor) and value.dim() == 1):
                raise WorkloadError(
                    self.name,
                    f"metric_values() must give {name!r} as a tensor of one value per example, "
                    f"got {None if value is None else _shape_of(value)}",
                )
            sums[name] = value.sum()
        return sums

    def whole_split_values(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        values = self.user.whole_split_values(outputs, targets)  # type: ignore[attr-defined]
        found: dict[str, float] = {}
        for name in self.whole_split_metrics:
            value = values.get(name) if isinstance(values, Mapping) else None
            if isinstance(value, Tensor) and value.numel() == 1:
                value = value.item()
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise WorkloadError(
                    self.name,
                    f"whole_split_values() must give {name!r} as one number for the split, "
                    f"got {None if value is None else _shape_of(value)}",
                )
            found[name] = float(value)
        return found

    def stacked_forward(
        self, params: dict[str, Tensor], inputs: Tensor, *, training: bool
    ) -> Tensor:
        outputs: Tensor = self.user.stacked_forward(params, inputs, training=training)  # type: ignore[attr-defined]
        return outputs

    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        # Not used: the user's data may be datasets and may bring its own validation split,
        # which Splits cannot hold; _held_out_data reads it instead.
        raise NotImplementedError("an imported workload's data are read by _held_out_data")

    def _held_out_data(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> RunData:
        data = self._user_data(data_dir)
        train = _first(_split(self.name, data.train, "train"), train_size, "train_size", "training")
        test = _first(_split(self.name, data.test, "test"), test_size, "test_size", "test")
        if data.validation is None:
            kept, held_out = self.validation_indices(_count(train))
            train, validation = _take(train, kept), _take(train, held_out)
        else:
            validation = _split(self.name, data.validation, "validation")
        _check_alike(self.name, {"train": train, "validation": validation, "test": test})
        if isinstance(train, tuple) and isinstance(validation, tuple) and isinstance(test, tuple):
            return TensorData(*train, *validation, *test)
        return DatasetData(_dataset(train), _dataset(validation), _dataset(test))

    def split_sizes(self, data_dir: Path | None, *, download: bool = False) -> tuple[int, int]:
        """The numbers of examples in ``data()``'s training and test splits."""
        data = self._user_data(data_dir)
        return (
            _count(_split(self.name, data.train, "train")),
            _count(_split(self.name, data.test, "test")),
        )

    def _user_data(self, data_dir: Path | None) -> WorkloadData:
        try:
            data = self.user.data(data_dir)  # type: ignore[attr-defined]
        except FileNotFoundError as exc:
            if isinstance(exc, DataNotFoundError):
                raise
            raise DataNotFoundError(f"{self.name}: data() found no data: {exc}") from exc
        if not isinstance(data, WorkloadData):
            raise WorkloadError(
                self.name, f"data() must return an adamz.workloads.WorkloadData, got {type(data)}"
            )
        return data


def _declared_metrics(path: str, declared: object) -> dict[str, Metric]:
    """``metrics`` as :class:`Metric` declarations, or :class:`WorkloadError` naming the first
    one without a direction."""
    if isinstance(declared, list | tuple | set | frozenset):  # names alone: no directions
        for name in declared:
            raise WorkloadError(
                path,
                f"metric {name!r} has no direction: declare metrics as a mapping, "
                f"{{{name!r}: 'maximize' or 'minimize'}}",
            )
    if not isinstance(declared, Mapping):
        raise WorkloadError(
            path,
            "metrics must be a mapping of each metric's name to its direction, e.g. "
            f"{{'rmse': 'minimize'}} ({{}} for the loss alone), got {declared!r}",
        )
    metrics: dict[str, Metric] = {}
    for name, value in declared.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise WorkloadError(path, f"a metric's name must be an identifier, got {name!r}")
        if name == "loss":
            raise WorkloadError(
                path, "metric 'loss' is always recorded (val_loss, test_loss): do not declare it"
            )
        if isinstance(value, Metric):
            metrics[name] = value
        elif value in DIRECTIONS:
            metrics[name] = Metric(str(value))
        else:
            raise WorkloadError(
                path,
                f"metric {name!r} has no direction: must be 'maximize', 'minimize' or a "
                f"Metric, got {value!r}",
            )
    return metrics


def _split(path: str, value: object, name: str) -> Split:
    """``data()``'s split ``name``, checked: a pair of tensors of equal length, or a dataset."""
    if isinstance(value, Dataset):
        if _count(value) < 1:
            raise WorkloadError(path, f"data().{name} is empty")
        return value
    if not (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(part, Tensor) for part in value)
    ):
        raise WorkloadError(
            path,
            f"data().{name} must be a pair (inputs, targets) of tensors or a "
            f"torch.utils.data.Dataset, got {type(value).__name__}",
        )
    inputs, targets = value
    if inputs.dim() == 0 or targets.dim() == 0 or inputs.shape[0] != targets.shape[0]:
        raise WorkloadError(
            path,
            f"data().{name} holds {_rows(inputs)} inputs but {_rows(targets)} targets: one row "
            "per example in each",
        )
    if inputs.shape[0] < 1:
        raise WorkloadError(path, f"data().{name} is empty")
    return inputs, targets


def _rows(tensor: Tensor) -> int | str:
    return int(tensor.shape[0]) if tensor.dim() else "a scalar of"


def _count(split: Split) -> int:
    if isinstance(split, tuple):
        return int(split[0].shape[0])
    return len(split)  # type: ignore[arg-type]


def _first(split: Split, size: int | None, name: str, which: str) -> Split:
    """The first ``size`` examples of ``split`` (all for ``None``)."""
    if isinstance(split, tuple):
        return (
            first(split[0], size, name=name, split=which),
            first(split[1], size, name=name, split=which),
        )
    if size is None:
        return split
    if size > _count(split):
        raise ValueError(
            f"Invalid {name}: must be at most the {_count(split)} examples of the {which} "
            f"split, got {size}."
        )
    return Subset(split, range(size))


def _take(split: Split, indices: Tensor) -> Split:
    if isinstance(split, tuple):
        return split[0][indices], split[1][indices]
    return Subset(split, indices.tolist())


def _dataset(split: Split) -> Dataset[Any]:
    return TensorDataset(*split) if isinstance(split, tuple) else split


def _example_shapes(path: str, split: Split, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shapes of one input and one target of ``split`` (of its first example, for a
    dataset)."""
    if isinstance(split, tuple):
        return tuple(split[0].shape[1:]), tuple(split[1].shape[1:])
    example = split[0]
    if not (isinstance(example, tuple | list) and len(example) == 2):
        raise WorkloadError(
            path, f"data().{name}[0] must be a pair (input, target), got {type(example).__name__}"
        )
    try:
        return tuple(torch.as_tensor(example[0]).shape), tuple(torch.as_tensor(example[1]).shape)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise WorkloadError(
            path, f"data().{name}[0] must hold tensors (or numbers), got {_one_line(exc)}"
        ) from exc


def _check_alike(path: str, splits: dict[str, Split]) -> None:
    """Every split's examples have the training examples' shapes."""
    train_inputs, train_targets = _example_shapes(path, splits["train"], "train")
    for name, split in splits.items():
        inputs, targets = _example_shapes(path, split, name)
        for what, shape, expected in (
            ("inputs", inputs, train_inputs),
            ("targets", targets, train_targets),
        ):
            if shape != expected:
                raise WorkloadError(
                    path,
                    f"the {name} {what} have shape {shape} per example, the train {what} "
                    f"{expected}",
                )


def _shape_of(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def check_workload(
    workload: Workload,
    data_dir: str | Path | None = None,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    dataset_sizes: Mapping[str, int] | None = None,
) -> None:
    """Check a user's workload before a study of it is stored: its data load with consistent
    shapes, and its model, loss and metrics answer two training examples as the protocol
    says (a 0-dim loss, one value per example of each metric; a whole-split metric one number
    for the validation split). A function that raises is named in the message.

    Where the data is not on this host (:class:`DataNotFoundError`), only the workload's
    declarations are checked: the workers, which have the data, check the rest.

    Raises:
        WorkloadError: what is wrong, in one line.
        ValueError: a size exceeds its split, or the data does not hold ``dataset_sizes``.
    """
    try:
        data = workload.load_data(
            data_dir, "cpu", train_size=train_size, test_size=test_size, dataset_sizes=dataset_sizes
        )
    except DataNotFoundError:
        return
    except ValueError:
        raise
    except Exception as exc:  # the user's data() may raise anything: said in one line
        raise WorkloadError(workload.name, f"data() raised {_one_line(exc)}") from exc
    inputs, targets = data.train_batch(torch.arange(min(2, data.num_train)))
    values: Mapping[str, Tensor] = {}
    with torch.random.fork_rng(), torch.no_grad():
        step, where = "build_model()", "two training examples"
        try:
            model = workload.build_model()
            step = "the model's forward"
            outputs = model(inputs)
            step = "loss()"
            loss = workload.loss(outputs, targets)
            # As evaluation calls it: under vmap, over a stack of one model's outputs.
            step = "metric_values() (under torch.func.vmap)"
            torch.func.vmap(workload.metric_sums, in_dims=(0, None))(outputs[None], targets)
            step = "metric_values()"
            if isinstance(workload, ImportedWorkload) and workload.per_example_metrics:
                values = workload.user.metric_values(outputs, targets)  # type: ignore[attr-defined]
            if workload.whole_split_metrics:
                # On the validation split, where a metric such as ROC AUC needs both classes.
                step, where = "whole_split_values()", "the validation split"
                batches = data.held_out("val", min(data.num_val, 1024))
                val_inputs, val_targets = next(iter(batches))
                workload.whole_split_values(model(val_inputs), val_targets)
        except WorkloadError:
            raise
        except Exception as exc:  # the user's model and functions may raise anything
            raise WorkloadError(
                workload.name,
                f"{step} on {where} raised {_one_line(exc)}",
            ) from exc
    if not (isinstance(loss, Tensor) and loss.dim() == 0):
        raise WorkloadError(
            workload.name,
            f"loss() must return a 0-dim tensor (the batch's mean), got {_shape_of(loss)}",
        )
    for name, value in values.items():
        if value.shape[0] != targets.shape[0]:
            raise WorkloadError(
                workload.name,
                f"metric_values() gave {name!r} {value.shape[0]} values for "
                f"{targets.shape[0]} examples: one per example",
            )
