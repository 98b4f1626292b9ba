"""What a training run is: its configuration, the checks on it, and the record it leaves.

A :class:`RunConfig` names a workload, an optimizer configuration and a seed;
:meth:`RunConfig.resolve` checks it and looks up what it names (a :class:`ResolvedRun`); the
training loop (:mod:`adamz.training.loop`) turns it into a :class:`TrainResult`, the record a
trial stores and ``adamz-search train`` prints. A checkpoint carries the run's identity
(:func:`run_identity`), so a run never resumes from another's (:func:`check_same_run`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from adamz.training.optimizers import resolve_hyperparameters
from adamz.workloads import METRICS, Protocol, RunData, Workload, get_workload

__all__ = [
    "CheckpointMismatchError",
    "ResolvedRun",
    "RunConfig",
    "StopReason",
    "StopTraining",
    "TrainResult",
    "check_same_run",
    "plain",
    "run_identity",
]

StopReason = Literal["completed", "nonfinite_loss", "stopped_by_callback"]
SubsetSize = int | Literal["all"] | None


class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to end the run after the current epoch.

    :func:`train` catches it and returns the record with ``stop_reason="stopped_by_callback"``
    (and the exception's message in ``stop_detail``). Other exceptions propagate.
    """


class CheckpointMismatchError(ValueError):
    """The checkpoint at the given path was written by a different run (or format)."""


@dataclass(frozen=True)
class RunConfig:
    """One training run: what to train, with which optimizer, how, and from which seed.

    Attributes:
        workload: registry name (``circles``, ``mnist``, ``cifar10``, ``digits``,
            ``pysource``), or the import path ``module:attribute`` of a workload of the user's
            code (:class:`adamz.workloads.UserWorkload`).
        workload_options: keyword arguments that path is called with (a built-in workload
            takes none).
        optimizer: registry name (see :data:`adamz.training.optimizers.OPTIMIZERS`).
        hyperparameters: the optimizer's hyperparameters; missing ones take their defaults.
        seed: initialises the model and orders the batches (default: 0).
        device: where to train, e.g. ``"cpu"`` or ``"cuda:0"`` (default: ``"cpu"``).
        data_dir: directory holding the dataset, for workloads that read files.
        download: let torchvision download missing files (default: False).
        epochs: override the workload's number of epochs.
        batch_size: override the workload's batch size.
        train_size: use the first ``train_size`` training examples; ``"all"`` for all of them;
            ``None`` for the workload's default.
        test_size: the same for the test examples.
        dataset_sizes: ``{"train": N, "test": M}``: refuse a dataset whose own splits hold
            other numbers of examples (``Workload.load_data``); ``None`` takes any.
    """

    workload: str
    optimizer: str = "adamz"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    train_size: SubsetSize = None
    test_size: SubsetSize = None
    dataset_sizes: Mapping[str, int] | None = None
    workload_options: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self) -> ResolvedRun:
        """Check every field and look up what it names, before anything is trained.

        Raises:
            ValueError: unknown workload or optimizer, unknown or invalid hyperparameter, an
                invalid seed, device or protocol override; a workload of the user's code that
                cannot be imported or breaks the protocol
                (:class:`~adamz.workloads.WorkloadError`); one line naming it and the value.
        """
        workload = get_workload(self.workload, self.workload_options)
        hyperparameters = resolve_hyperparameters(self.optimizer, self.hyperparameters)
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0):
            raise ValueError(f"Invalid seed: must be an integer >= 0, got {self.seed!r}.")
        default = workload.protocol
        protocol = Protocol(
            epochs=default.epochs if self.epochs is None else self.epochs,
            batch_size=default.batch_size if self.batch_size is None else self.batch_size,
            train_size=_subset_size(self.train_size, default.train_size),
            test_size=_subset_size(self.test_size, default.test_size),
        )
        return ResolvedRun(self, workload, hyperparameters, protocol, _device(self.device))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain values (JSON-ready)."""
        return plain(asdict(self))


@dataclass(frozen=True)
class ResolvedRun:
    """A checked :class:`RunConfig` with what its names refer to."""

    config: RunConfig
    workload: Workload
    hyperparameters: dict[str, Any]
    """Every hyperparameter of the optimizer, defaults filled in."""
    protocol: Protocol
    """The workload's protocol with the config's overrides (``None`` sizes: whole split)."""
    device: torch.device

    def load_data(self) -> RunData:
        """The run's data on its device (cached per process; see ``Workload.load_data``).

        Raises:
            adamz.workloads.DataNotFoundError: the dataset's files are missing.
            ValueError: no data directory was given, or a subset size exceeds its split.
        """
        return self.workload.load_data(
            self.config.data_dir,
            self.device,
            train_size=self.protocol.train_size,
            test_size=self.protocol.test_size,
            download=self.config.download,
            dataset_sizes=self.config.dataset_sizes,
        )


@dataclass
class TrainResult:
    """What a run did and reached: the record a trial stores and ``adamz-search train`` prints.

    Attributes:
        workload, optimizer, seed, device: as configured.
        workload_options: what a workload of the user's code was called with (left out of
            :meth:`to_dict` where there are none).
        hyperparameters: every optimizer hyperparameter, defaults included.
        protocol: what was actually used: epochs, batch_size, and train_size / val_size /
            test_size as the numbers of examples trained on and evaluated on.
        final_metrics: the workload's metrics (:attr:`~adamz.workloads.Workload.
            metric_names`, :data:`METRICS` for the paper's) after the last completed epoch
            (accuracies are fractions in [0, 1], losses means over the split); ``None`` when
            the run stopped on a non-finite loss (the model is then no longer meaningful).
        epoch_metrics: each of those metrics, a list with one value per completed epoch.
        epoch_losses: the mean of each completed epoch's per-step (batch-mean) training losses.
        epochs_completed: epochs trained and evaluated.
        steps: optimizer steps taken, over all epochs (including a stopped epoch's).
        train_time_s: seconds spent in optimizer steps (the authors' "training duration").
        wall_time_s: seconds spent in optimizer steps and evaluations (over all sessions of
            a resumed run; loading the data, checkpoints and callbacks excluded).
        stop_reason: ``"completed"``, ``"nonfinite_loss"`` or ``"stopped_by_callback"``.
        stop_detail: one sentence: which epoch and step, or the callback's message.
        controller: for AdamZ, its rate controller's summary: ``overshoots`` and
            ``stagnations`` (adjustments made), ``observed`` and ``nonfinite`` (losses seen),
            ``initial_lr``, ``final_lr`` and ``lr_at_epoch_end``; ``None`` for other
            optimizers.
        resumed_from_epoch: the checkpoint's epoch if this run resumed from one.
        population_size: for a run trained in a population
            (:func:`adamz.training.population.train_runs`), how many runs the population
            started with; its times are then its share of the population's. ``None``: alone.
        torch_version: the torch that ran it.
    """

    workload: str
    optimizer: str
    hyperparameters: dict[str, Any]
    seed: int
    device: str
    protocol: dict[str, Any]
    final_metrics: dict[str, float] | None = None
    epoch_metrics: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in METRICS}
    )
    epoch_losses: list[float] = field(default_factory=list)
    epochs_completed: int = 0
    steps: int = 0
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    stop_reason: StopReason | None = None
    stop_detail: str = ""
    controller: dict[str, Any] | None = None
    resumed_from_epoch: int | None = None
    population_size: int | None = None
    torch_version: str = str(torch.__version__)  # a str subclass that weights_only refuses
    workload_options: dict[str, Any] = field(default_factory=dict)

    def stop_nonfinite(
        self, loss: float, epoch: int, step: int, steps: int, steps_run: int
    ) -> None:
        """Record the run stopped by a non-finite ``loss`` at ``step`` of ``steps`` of
        ``epoch`` (the check ran after ``steps_run``): one wording for every training path."""
        self.final_metrics = None
        self.stop_reason = "nonfinite_loss"
        self.stop_detail = (
            f"non-finite loss ({loss}) at epoch {epoch}, step {step} of {steps} "
            f"(stopped after step {steps_run})"
        )

    def end_epoch(
        self, epoch: int, metrics: dict[str, float], mean_loss: float, epochs: int
    ) -> None:
        """Record ``epoch`` (of ``epochs``), evaluated: its ``metrics`` and mean training loss;
        the last epoch completes the run."""
        for name, values in self.epoch_metrics.items():
            values.append(metrics[name])
        self.epoch_losses.append(mean_loss)
        self.epochs_completed = epoch
        self.final_metrics = metrics
        if epoch == epochs:
            self.stop_reason = "completed"
            self.stop_detail = f"completed {epochs} epochs"

    def stop_by_callback(self, reason: StopTraining) -> None:
        """Record the run ended by ``on_epoch`` raising ``reason`` after its last epoch."""
        self.stop_reason = "stopped_by_callback"
        self.stop_detail = f"stopped by on_epoch after epoch {self.epochs_completed}" + (
            f": {reason}" if str(reason) else ""
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as plain values (JSON-ready: pairs become lists)."""
        record = plain(asdict(self))
        if not record["workload_options"]:  # a built-in workload's record reads as it always has
            del record["workload_options"]
        return record

    @classmethod
    def start(cls, run: ResolvedRun, data: RunData) -> TrainResult:
        """The empty record of ``run`` on ``data``: what was configured and the protocol as it
        is actually used (the sizes of the splits loaded)."""
        protocol = run.protocol
        return cls(
            workload=run.workload.name,
            workload_options=plain(dict(run.config.workload_options)),
            optimizer=run.config.optimizer,
            hyperparameters=plain(run.hyperparameters),
            seed=run.config.seed,
            device=str(run.device),
            protocol={
                **Protocol(
                    protocol.epochs, protocol.batch_size, data.num_train, data.num_test
                ).to_dict(),
                "val_size": data.num_val,
            },
            epoch_metrics={name: [] for name in run.workload.metric_names},
        )


def run_identity(record: TrainResult) -> dict[str, Any]:
    """What must match for a checkpoint to belong to this run (a user's workload's options
    included, where it has some)."""
    identity = {
        "workload": record.workload,
        "optimizer": record.optimizer,
        "hyperparameters": record.hyperparameters,
        "seed": record.seed,
        "protocol": record.protocol,
    }
    if record.workload_options:
        identity["workload_options"] = record.workload_options
    return plain(identity)


def check_same_run(
    payload: dict[str, Any],
    identity: dict[str, Any],
    path: str | Path,
    checkpoint_format: int | str,
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``payload`` is a checkpoint of the run
    ``identity`` names, in ``checkpoint_format``."""
    if payload.get("format") != checkpoint_format:
        raise CheckpointMismatchError(
            f"Invalid checkpoint_path: {path} has format {payload.get('format')!r}, this "
            f"version reads format {checkpoint_format!r} here."
        )
    saved = payload["run"]
    for key, value in identity.items():
        if saved.get(key) != value:
            raise CheckpointMismatchError(
                f"Invalid checkpoint_path: {path} belongs to another run ({key} there: "
                f"{saved.get(key)!r}, here: {value!r}); delete it or choose another path."
            )


def _subset_size(value: SubsetSize, default: int | None) -> int | None:
    if value is None:
        return default
    if value == "all":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"Invalid subset size: must be an integer >= 1 or 'all', got {value!r}.")


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"Invalid device: {' '.join(str(exc).split())}, got {name!r}.") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(device.type, False):
        here = ", ".join(kind for kind, present in available.items() if present)
        raise ValueError(f"Invalid device: must be available here ({here}), got {name!r}.")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"Invalid device: this machine has {torch.cuda.device_count()} CUDA devices, "
            f"got {name!r}."
        )
    return device


def plain(value: Any) -> Any:
    """``value`` with tuples as lists, recursively (what JSON and YAML round-trip)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
