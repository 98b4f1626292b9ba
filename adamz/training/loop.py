"""The one training loop: a workload, an optimizer configuration and a seed -> a result record.

Every single run, search trial and benchmark trains through :func:`train`:

1. the workload's data are loaded once per process into tensors on the training device;
2. the model is initialised from the seed, the optimizer built from the registry;
3. each epoch visits the training set in a seeded random order, batched by index (no
   ``DataLoader``, no per-sample work); losses stay on the device (one host read every
   :data:`NONFINITE_CHECK_INTERVAL` steps, to stop on a non-finite loss);
4. after each epoch the model is evaluated in ``eval()`` mode without gradients on the
   validation and the test split (accuracy and mean loss on each: :data:`METRICS`), a
   checkpoint is written if asked, and ``on_epoch(epoch, metrics)`` is called (a search passes
   Optuna's ``trial.report`` / ``should_prune`` there, with a validation metric);
5. the run ends after the protocol's epochs, at the first non-finite loss, or when ``on_epoch``
   raises :class:`StopTraining`; any other exception from ``on_epoch`` (``optuna.TrialPruned``)
   propagates, with the epoch's checkpoint already written.

On the CPU a run is a function of its :class:`RunConfig`: same seed, same result, and a run
resumed from its checkpoint ends exactly like an uninterrupted one (with the same torch build
and number of threads: ``torch.set_num_threads`` changes how sums are split, hence the last
bits). The loop leaves the thread count to the process: on a machine shared by several
workers, give each ``cores // workers`` threads, or they spin against each other.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from adamz.optim import AdamZ
from adamz.training.checkpoint import load_checkpoint, save_checkpoint
from adamz.training.optimizers import build_optimizer, build_schedule, resolve_hyperparameters
from adamz.training.schedules import Schedule
from adamz.workloads import METRICS, Protocol, TensorData, Workload, get_workload

__all__ = [
    "NONFINITE_CHECK_INTERVAL",
    "CheckpointMismatchError",
    "ResolvedRun",
    "RunConfig",
    "StopTraining",
    "TrainResult",
    "evaluate",
    "evaluate_splits",
    "train",
]

logger = logging.getLogger(__name__)

NONFINITE_CHECK_INTERVAL = 25
"""Steps between host reads of the recent losses. Reading every step would synchronise an
accelerator with the host each step; a run that turns non-finite trains at most this many
useless steps before it stops (the record names the first non-finite step exactly)."""

EVAL_BATCH_SIZE = 1000
"""Held-out examples per forward pass during evaluation (no gradients: only activations count)."""

CHECKPOINT_FORMAT = 2

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
        workload: registry name (``circles``, ``mnist``, ``cifar10``, ``digits``).
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

    def resolve(self) -> ResolvedRun:
        """Check every field and look up what it names, before anything is trained.

        Raises:
            ValueError: unknown workload or optimizer, unknown or invalid hyperparameter, an
                invalid seed, device or protocol override; one line naming it and the value.
        """
        workload = get_workload(self.workload)
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
        return _plain(asdict(self))


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

    def load_data(self) -> TensorData:
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
        )


@dataclass
class TrainResult:
    """What a run did and reached: the record a trial stores and ``adamz-search train`` prints.

    Attributes:
        workload, optimizer, seed, device: as configured.
        hyperparameters: every optimizer hyperparameter, defaults included.
        protocol: what was actually used: epochs, batch_size, and train_size / val_size /
            test_size as the numbers of examples trained on and evaluated on.
        final_metrics: :data:`METRICS` after the last completed epoch (accuracies are
            fractions in [0, 1], losses means over the split); ``None`` when the run stopped
            on a non-finite loss (the model is then no longer meaningful).
        epoch_metrics: each of :data:`METRICS`, a list with one value per completed epoch.
        epoch_losses: the mean of each completed epoch's per-step (batch-mean) training losses.
        epochs_completed: epochs trained and evaluated.
        steps: optimizer steps taken, over all epochs (including a stopped epoch's).
        train_time_s: seconds spent in optimizer steps (the authors' "training duration").
        wall_time_s: seconds from the first step to the end, evaluation and checkpoints
            included (over all sessions of a resumed run; loading the data excluded).
        stop_reason: ``"completed"``, ``"nonfinite_loss"`` or ``"stopped_by_callback"``.
        stop_detail: one sentence: which epoch and step, or the callback's message.
        controller: for AdamZ, its rate controller's summary: ``overshoots`` and
            ``stagnations`` (adjustments made), ``observed`` and ``nonfinite`` (losses seen),
            ``initial_lr``, ``final_lr`` and ``lr_at_epoch_end``; ``None`` for other
            optimizers.
        resumed_from_epoch: the checkpoint's epoch if this run resumed from one.
        population_size: for a run trained in a population
            (:func:`adamz.training.population.train_population`), how many runs the population
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

    def to_dict(self) -> dict[str, Any]:
        """The record as plain values (JSON-ready: pairs become lists)."""
        return _plain(asdict(self))


OnEpoch = Callable[[int, dict[str, float]], None]
OnStep = Callable[[int, int, int], None]


def train(
    config: RunConfig,
    *,
    on_epoch: OnEpoch | None = None,
    on_step: OnStep | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_interval_s: float = 0.0,
) -> TrainResult:
    """Train ``config``'s workload with its optimizer and return the result record.

    Args:
        config: the run.
        on_epoch: called as ``on_epoch(epoch, metrics)`` after each epoch (counted from 1) has
            been evaluated and checkpointed (``metrics``: each of :data:`METRICS`). Raise :class:`StopTraining` to end the run with a
            record; any other exception propagates out of :func:`train`.
        on_step: called as ``on_step(epoch, step, steps_in_epoch)`` after each optimizer step
            (``step`` counted from 1), e.g. to drive a progress bar.
        checkpoint_path: if given, a checkpoint (model, optimizer, schedule, epoch, RNG states,
            record so far) is written there after every epoch, and a run finding one there resumes after
            its epoch; a finished run's checkpoint returns its record without training.
        checkpoint_interval_s: write an epoch's checkpoint only if this many seconds have
            passed since the last one (default 0: every epoch). With short epochs, checkpoints
            cost more than the work they save; a stopped run's last state is always written.

    The caller's RNG state is left as it was: the run draws from its own, seeded copies.

    Raises:
        ValueError: an invalid config (see :meth:`RunConfig.resolve`).
        CheckpointMismatchError: the checkpoint was written by a different run.
        adamz.workloads.DataNotFoundError: the dataset's files are missing.
    """
    run = config.resolve()
    data = run.load_data()
    device = run.device
    cuda_devices = [device] if device.type == "cuda" else []
    # enable_grad: a caller inside torch.no_grad() (an evaluation script) still trains.
    with torch.random.fork_rng(devices=cuda_devices), torch.enable_grad():
        return _train(run, data, on_epoch, on_step, checkpoint_path, checkpoint_interval_s)


@torch.no_grad()
def evaluate(
    workload: Workload,
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
) -> tuple[float, float]:
    """``model``'s accuracy (correct predictions / examples) and mean loss on ``inputs``.

    The model runs in ``eval()`` mode (dropout off) under ``torch.no_grad()``; its previous
    mode is restored afterwards. Two values are read back from the device, at the end.
    """
    was_training = model.training
    model.eval()
    try:
        correct = torch.zeros((), dtype=torch.int64, device=inputs.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
        for start in range(0, inputs.shape[0], batch_size):
            outputs = model(inputs[start : start + batch_size])
            batch_targets = targets[start : start + batch_size]
            correct += workload.count_correct(outputs, batch_targets)
            loss_sum += workload.loss(outputs, batch_targets).double() * batch_targets.shape[0]
    finally:
        model.train(was_training)
    return int(correct.item()) / inputs.shape[0], float(loss_sum.item()) / inputs.shape[0]


def evaluate_splits(workload: Workload, model: nn.Module, data: TensorData) -> dict[str, float]:
    """Each of :data:`METRICS`: accuracy and mean loss on the validation and test splits."""
    val_accuracy, val_loss = evaluate(workload, model, data.val_inputs, data.val_targets)
    test_accuracy, test_loss = evaluate(workload, model, data.test_inputs, data.test_targets)
    return {
        "val_accuracy": val_accuracy,
        "val_loss": val_loss,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
    }


@dataclass(frozen=True)
class _EpochOutcome:
    steps: int
    mean_loss: float
    nonfinite_step: int | None = None
    nonfinite_loss: float | None = None


def _train(
    run: ResolvedRun,
    data: TensorData,
    on_epoch: OnEpoch | None,
    on_step: OnStep | None,
    checkpoint_path: str | Path | None,
    checkpoint_interval_s: float = 0.0,
) -> TrainResult:
    config, workload, protocol = run.config, run.workload, run.protocol
    torch.manual_seed(config.seed)
    model = workload.build_model().to(run.device)
    optimizer = build_optimizer(config.optimizer, model.parameters(), run.hyperparameters)
    steps_per_epoch = math.ceil(data.num_train / protocol.batch_size)
    schedule = build_schedule(
        config.optimizer,
        optimizer,
        run.hyperparameters,
        total_steps=protocol.epochs * steps_per_epoch,
    )
    order_generator = torch.Generator().manual_seed(config.seed)
    record = TrainResult(
        workload=workload.name,
        optimizer=config.optimizer,
        hyperparameters=_plain(run.hyperparameters),
        seed=config.seed,
        device=str(run.device),
        protocol={
            **Protocol(
                protocol.epochs, protocol.batch_size, data.num_train, data.num_test
            ).to_dict(),
            "val_size": data.num_val,
        },
    )
    identity = run_identity(record)
    first_epoch = 1

    if checkpoint_path is not None and (payload := load_checkpoint(checkpoint_path)) is not None:
        check_same_run(payload, identity, checkpoint_path)
        saved = TrainResult(**payload["record"])
        if saved.stop_reason is not None:
            logger.info("%s: the run had finished (%s)", checkpoint_path, saved.stop_detail)
            return saved
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(payload["schedule"])
        _set_rng_state(payload["rng"], order_generator, run.device)
        record = saved
        record.device = str(run.device)
        record.resumed_from_epoch = int(payload["epoch"])
        first_epoch = record.resumed_from_epoch + 1
        logger.info("%s: resuming after epoch %d", checkpoint_path, payload["epoch"])

    session_start = time.perf_counter()
    wall_time_before = record.wall_time_s

    last_save = [time.perf_counter()]

    def save(epoch: int, *, always: bool = True) -> None:
        record.wall_time_s = wall_time_before + time.perf_counter() - session_start
        if checkpoint_path is None:
            return
        if not always and time.perf_counter() - last_save[0] < checkpoint_interval_s:
            return
        last_save[0] = time.perf_counter()
        save_checkpoint(
            checkpoint_path,
            {
                "format": CHECKPOINT_FORMAT,
                "run": identity,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": None if schedule is None else schedule.state_dict(),
                "rng": _rng_state(order_generator, run.device),
                "record": record.to_dict(),
            },
        )

    lr_at_epoch_end = list(record.controller["lr_at_epoch_end"]) if record.controller else []
    for epoch in range(first_epoch, protocol.epochs + 1):
        epoch_start = time.perf_counter()
        outcome = _train_epoch(
            workload,
            model,
            optimizer,
            schedule,
            data,
            protocol.batch_size,
            order_generator,
            epoch,
            on_step,
        )
        record.train_time_s += time.perf_counter() - epoch_start
        record.steps += outcome.steps
        if outcome.nonfinite_step is not None and outcome.nonfinite_loss is not None:
            record.controller = _controller_summary(optimizer, run, lr_at_epoch_end)
            record.stop_nonfinite(
                outcome.nonfinite_loss,
                epoch,
                outcome.nonfinite_step,
                math.ceil(data.num_train / protocol.batch_size),
                outcome.steps,
            )
            logger.warning("%s/%s: %s", workload.name, config.optimizer, record.stop_detail)
            break

        metrics = evaluate_splits(workload, model, data)
        for name in METRICS:
            record.epoch_metrics[name].append(metrics[name])
        record.epoch_losses.append(outcome.mean_loss)
        record.epochs_completed = epoch
        record.final_metrics = metrics
        if isinstance(optimizer, AdamZ):
            lr_at_epoch_end.append(float(optimizer.param_groups[0]["lr"]))
        record.controller = _controller_summary(optimizer, run, lr_at_epoch_end)
        if epoch == protocol.epochs:  # so that the last epoch's checkpoint is the final record
            record.stop_reason = "completed"
            record.stop_detail = f"completed {protocol.epochs} epochs"
        save(epoch, always=False)
        logger.info(
            "%s/%s epoch %d/%d: loss %.4f, val_accuracy %.4f",
            workload.name,
            config.optimizer,
            epoch,
            protocol.epochs,
            outcome.mean_loss,
            metrics["val_accuracy"],
        )
        if on_epoch is not None:
            try:
                on_epoch(epoch, metrics)
            except StopTraining as exc:
                record.stop_reason = "stopped_by_callback"
                record.stop_detail = f"stopped by on_epoch after epoch {epoch}" + (
                    f": {exc}" if str(exc) else ""
                )
                break
    if record.stop_reason != "completed" or first_epoch > protocol.epochs:
        save(record.epochs_completed)
    return record


def _train_epoch(
    workload: Workload,
    model: nn.Module,
    optimizer: Optimizer,
    schedule: Schedule | None,
    data: TensorData,
    batch_size: int,
    order_generator: torch.Generator,
    epoch: int,
    on_step: OnStep | None,
) -> _EpochOutcome:
    """One pass over the training set in a seeded random order; stops at a non-finite loss."""
    model.train()
    inputs, targets = data.train_inputs, data.train_targets
    device = inputs.device
    steps = math.ceil(data.num_train / batch_size)
    order = torch.randperm(data.num_train, generator=order_generator).to(device)
    # Each step's loss is written here on the device: no host read per step.
    losses = torch.empty(steps, device=device)
    adamz = optimizer if isinstance(optimizer, AdamZ) else None  # the one fed the loss
    checked = 0
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = workload.loss(model(inputs.index_select(0, index)), targets.index_select(0, index))
        loss.backward()
        if adamz is not None:
            adamz.step(loss=loss)
        else:
            optimizer.step()
        if schedule is not None:
            schedule.after_step(loss.detach())
        losses[step] = loss.detach()
        if on_step is not None:
            on_step(epoch, step + 1, steps)
        if step + 1 - checked == NONFINITE_CHECK_INTERVAL or step + 1 == steps:
            finite = torch.isfinite(losses[checked : step + 1])
            if not bool(finite.all()):
                first_bad = checked + int((~finite).nonzero()[0, 0])
                return _EpochOutcome(
                    steps=step + 1,
                    mean_loss=math.nan,
                    nonfinite_step=first_bad + 1,
                    nonfinite_loss=float(losses[first_bad]),
                )
            checked = step + 1
    return _EpochOutcome(steps=steps, mean_loss=float(losses.mean()))


def _controller_summary(
    optimizer: Optimizer, run: ResolvedRun, lr_at_epoch_end: list[float]
) -> dict[str, Any] | None:
    """AdamZ's controller counts and rates (the registry builds one param group)."""
    if not isinstance(optimizer, AdamZ):
        return None
    stats = optimizer.controller_stats()[0]
    return {
        "overshoots": stats["overshoots"],
        "stagnations": stats["stagnations"],
        "observed": stats["observed"],
        "nonfinite": stats["nonfinite"],
        "initial_lr": float(run.hyperparameters["lr"]),
        "final_lr": stats["lr"],
        "lr_at_epoch_end": list(lr_at_epoch_end),
    }


def run_identity(record: TrainResult) -> dict[str, Any]:
    """What must match for a checkpoint to belong to this run."""
    return _plain(
        {
            "workload": record.workload,
            "optimizer": record.optimizer,
            "hyperparameters": record.hyperparameters,
            "seed": record.seed,
            "protocol": record.protocol,
        }
    )


def check_same_run(
    payload: dict[str, Any],
    identity: dict[str, Any],
    path: str | Path,
    checkpoint_format: int | str = CHECKPOINT_FORMAT,
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


def _rng_state(order_generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state(), "order": order_generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(
    state: dict[str, Tensor], order_generator: torch.Generator, device: torch.device
) -> None:
    torch.set_rng_state(state["torch"])
    order_generator.set_state(state["order"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


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


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, recursively (what JSON and YAML round-trip)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
