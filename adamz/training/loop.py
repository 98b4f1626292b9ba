"""The one training loop: runs of one workload, trained epoch by epoch, each to its record.

Every single run, search trial and benchmark trains through :func:`train_runs`. What differs
between a run trained alone (:func:`train`: one ``nn.Module`` and its torch optimizer) and K
runs trained as one stacked model (:func:`adamz.training.population.train_population`) is
only how the runs take a step and answer inputs, a :class:`Runs`; the rest exists once:

1. the workload's data are loaded once per process into tensors on the training device;
2. each run visits the training set in the order its own seeded generator gives, batched by
   index (no ``DataLoader``, no per-sample work); losses stay on the device (one host read
   every :data:`NONFINITE_CHECK_INTERVAL` steps, to stop a run at a non-finite loss);
3. after each epoch every run is evaluated in ``eval()`` mode without gradients on the
   validation and the test split (the workload's metrics and mean loss on each:
   :attr:`~adamz.workloads.Workload.metric_names`, accuracy and loss for the paper's
   workloads), its epoch recorded, its checkpoint written if due, and ``on_epoch`` called (a search passes
   Optuna's ``trial.report`` / ``should_prune`` there, with a validation metric);
4. a run ends after the protocol's epochs, at its first non-finite loss, or when ``on_epoch``
   raises :class:`StopTraining` for it; any other exception from ``on_epoch``
   (``optuna.TrialPruned``) propagates, with every run's epoch checkpoint written.

Runs that end drop out (:meth:`Runs.keep`), so the rest trains at the cost of those left. Runs
may start at different epochs (one resumed from its checkpoint beside fresh ones): every run's
epoch has the same number of steps, so their epochs stay aligned.

On the CPU a run trained alone is a function of its :class:`RunConfig`: same seed, same
result, and a run resumed from its checkpoint ends exactly like an uninterrupted one (with the
same torch build and number of threads: ``torch.set_num_threads`` changes how sums are split,
hence the last bits). The loop leaves the thread count to the process: on a machine shared by
several workers, give each ``cores // workers`` threads, or they spin against each other.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import vmap

from adamz.optim import AdamZ
from adamz.training.checkpoint import load_checkpoint, save_checkpoint
from adamz.training.optimizers import build_optimizer, build_schedule, set_optimizer_mode
from adamz.training.run import (
    CheckpointMismatchError,
    ResolvedRun,
    RunConfig,
    StopTraining,
    TrainResult,
    check_same_run,
    run_identity,
)
from adamz.workloads import HELD_OUT_SPLITS, RunData, Workload

__all__ = [
    "EVAL_BATCH_SIZE",
    "NONFINITE_CHECK_INTERVAL",
    "CheckpointMismatchError",
    "EpochEnd",
    "Member",
    "MemberOnEpoch",
    "OnEpoch",
    "OnEpochs",
    "OnStep",
    "Runs",
    "each_member",
    "evaluate",
    "open_members",
    "split_means",
    "split_scores",
    "train",
    "train_runs",
]

logger = logging.getLogger(__name__)

NONFINITE_CHECK_INTERVAL = 25
"""Steps between host reads of the recent losses. Reading every step would synchronise an
accelerator with the host each step; a run that turns non-finite trains at most this many
useless steps before it stops (the record names the first non-finite step exactly)."""

EVAL_BATCH_SIZE = 1000
"""Held-out examples per forward pass during evaluation (no gradients: only activations count)."""

OnEpoch = Callable[[int, dict[str, float]], None]
"""``on_epoch(epoch, metrics)`` of a run trained alone."""
OnStep = Callable[[int, int, int], None]
"""``on_step(epoch, step, steps_in_epoch)``, after each step (``step`` counted from 1)."""
MemberOnEpoch = Callable[[int, int, dict[str, float]], None]
"""``on_epoch(member, epoch, metrics)``: ``member`` is the index of its run's config."""


class EpochEnd(NamedTuple):
    """One member's epoch, evaluated: ``member`` is the index of its run's config."""

    member: int
    epoch: int
    metrics: dict[str, float]


OnEpochs = Callable[[list[EpochEnd]], Mapping[int, StopTraining]]
"""``on_epochs(ends)``: called once per epoch with every member's end, in the members' order,
after their checkpoints; returns the members to stop (by index), each with why."""


def each_member(on_epoch: MemberOnEpoch) -> OnEpochs:
    """``on_epoch`` called for each member in turn, its :class:`StopTraining` stopping that
    member alone (any other exception propagates)."""

    def on_epochs(ends: list[EpochEnd]) -> dict[int, StopTraining]:
        stops = {}
        for end in ends:
            try:
                on_epoch(*end)
            except StopTraining as reason:
                stops[end.member] = reason
        return stops

    return on_epochs


class Runs(ABC):
    """How the runs of one :func:`train_runs` take a step and answer inputs.

    Position ``p`` is the ``p``-th of the runs still training, in their configs' order;
    :meth:`keep` drops the others. Everything a run keeps between steps (its model's weights,
    its optimizer's state) lives here, and :meth:`state` / :meth:`load_state` are its part of
    the run's checkpoint.
    """

    checkpoint_format: ClassVar[int | str]
    """The format of the checkpoints these runs write and read."""
    population: ClassVar[bool] = False
    """Whether the runs train as a population (their records say how large it started)."""

    @property
    @abstractmethod
    def size(self) -> int:
        """The number of runs still training."""

    @abstractmethod
    def train_mode(self, training: bool) -> None:
        """Switch the model between training and evaluation (``nn.Module.train``: dropout),
        and the optimizer with it where it has modes (schedule-free AdamW evaluates at its
        averaged weights)."""

    @abstractmethod
    def step(self, batches: Tensor) -> Tensor:
        """One optimizer step of every run on its batch: ``batches`` holds, per run, the
        indices of its batch in the training split, shape ``(size, batch)``; returns the
        runs' batch losses, shape ``(size,)``, detached, on the device."""

    @abstractmethod
    def outputs(self, inputs: Tensor) -> Tensor:
        """Every run's outputs for the same ``inputs``, shape ``(size, batch, ...)``."""

    def rates(self) -> list[float] | None:
        """Each run's current rate, for AdamZ (its controller moves it); else ``None``."""
        return None

    def controller(self, position: int) -> dict[str, Any] | None:
        """AdamZ's controller counts (``overshoots``, ``stagnations``, ``observed``,
        ``nonfinite``) and ``final_lr`` of the run at ``position``; ``None`` for others."""
        return None

    @abstractmethod
    def keep(self, positions: Tensor) -> None:
        """Keep only the runs at ``positions``: the others stop costing anything."""

    @abstractmethod
    def state(self, position: int) -> dict[str, Any]:
        """The run's part of its checkpoint."""

    @abstractmethod
    def load_state(self, position: int, payload: dict[str, Any]) -> None:
        """Restore the run at ``position`` from its checkpoint ``payload``."""


@dataclass
class Member:
    """One run of a :func:`train_runs`: its config, record and place in the loop."""

    index: int
    """The position of its config among all the configs."""
    run: ResolvedRun
    record: TrainResult
    generator: torch.Generator
    """Orders its batches, seeded with its seed."""
    checkpoint: Path | None
    epoch: int = 0
    lr_at_epoch_end: list[float] = field(default_factory=list)
    last_save: float = field(default_factory=time.perf_counter)
    saved: dict[str, Any] | None = None
    """The checkpoint it resumes from, until its state is loaded."""


@dataclass(frozen=True)
class _Divergence:
    member: Member
    steps_run: int
    first_bad: int
    loss: float
    controller: dict[str, Any] | None


def open_members(
    runs: Sequence[ResolvedRun],
    data: RunData,
    paths: Sequence[str | Path | None],
    checkpoint_format: int | str,
) -> list[Member]:
    """The members of a loop over ``runs``, each resumed from its checkpoint at ``paths``
    where one is there.

    Raises:
        CheckpointMismatchError: a checkpoint was written by another run, or in another format.
    """
    members = []
    for index, (run, path) in enumerate(zip(runs, paths, strict=True)):
        record = TrainResult.start(run, data)
        member = Member(
            index,
            run,
            record,
            torch.Generator().manual_seed(run.config.seed),
            None if path is None else Path(path),
        )
        if member.checkpoint is not None:
            payload = load_checkpoint(member.checkpoint)
            if payload is not None:
                check_same_run(payload, run_identity(record), member.checkpoint, checkpoint_format)
                member.record = TrainResult(**payload["record"])
                member.record.device = str(run.device)
                member.saved = payload
        members.append(member)
    return members


def train_runs(
    runs: Runs,
    members: list[Member],
    data: RunData,
    *,
    on_epochs: OnEpochs | None = None,
    on_step: OnStep | None = None,
    checkpoint_interval_s: float = 0.0,
) -> list[TrainResult]:
    """Train ``members`` with ``runs`` (one run of ``runs`` per member, in order) and return
    their records in the members' order.

    ``on_step`` and ``checkpoint_interval_s`` are as :func:`train`'s; ``on_epochs`` sees every
    member's epoch at once (:data:`OnEpochs`). A member whose checkpoint holds a finished run
    returns that record without training. An exception from ``on_epochs`` propagates with
    every member's epoch checkpoint written, whatever the interval.
    """
    return _Loop(runs, members, data, checkpoint_interval_s).train(on_epochs, on_step)


class _Loop:
    def __init__(
        self, runs: Runs, members: list[Member], data: RunData, checkpoint_interval_s: float
    ) -> None:
        first = members[0].run
        self.runs = runs
        self.workload: Workload = first.workload
        self.protocol = first.protocol
        self.data = data
        self.device = first.device
        self.checkpoint_interval_s = checkpoint_interval_s
        self.steps = math.ceil(data.num_train / self.protocol.batch_size)
        self.results: list[TrainResult | None] = [None] * len(members)
        self.members: list[Member] = []
        for member in members:
            if member.record.stop_reason is not None:  # finished before: nothing to train
                logger.info("%s: the run had finished", member.checkpoint)
                self.results[member.index] = member.record
            else:
                self.members.append(member)
        self.started = len(self.members)
        if self.started < len(members):
            self._keep([members.index(member) for member in self.members])
        for position, member in enumerate(self.members):
            if member.saved is not None:
                self._resume(position, member)

    def _resume(self, position: int, member: Member) -> None:
        payload, member.saved = member.saved, None
        assert payload is not None
        self.runs.load_state(position, payload)
        member.generator.set_state(payload["rng"]["order"])
        member.epoch = int(payload["epoch"])
        member.record.resumed_from_epoch = member.epoch
        controller = member.record.controller
        member.lr_at_epoch_end = list(controller["lr_at_epoch_end"]) if controller else []
        logger.info("%s: resuming after epoch %d", member.checkpoint, member.epoch)

    def _keep(self, positions: list[int]) -> None:
        self.runs.keep(torch.tensor(positions, dtype=torch.int64, device=self.device))

    def train(self, on_epochs: OnEpochs | None, on_step: OnStep | None) -> list[TrainResult]:
        while self.members:
            trained = list(self.members)
            start = time.perf_counter()
            mean_losses, diverged = self._train_epoch(on_step)
            self._charge(trained, time.perf_counter() - start, train=True)
            for divergence in diverged:
                self._diverged(divergence)
            if self.members:
                self._end_epoch(mean_losses, on_epochs)
        return [result for result in self.results if result is not None]

    def _charge(self, members: list[Member], seconds: float, *, train: bool) -> None:
        """Each of ``members``' share of ``seconds`` the runs spent together."""
        share = seconds / len(members)
        for member in members:
            member.record.wall_time_s += share
            if train:
                member.record.train_time_s += share

    def _train_epoch(self, on_step: OnStep | None) -> tuple[list[float], list[_Divergence]]:
        """One epoch of every member: the mean training loss of each member left, and the
        members whose loss turned non-finite, dropped."""
        self.runs.train_mode(True)
        data, batch_size, steps = self.data, self.protocol.batch_size, self.steps
        orders = torch.stack(
            [torch.randperm(data.num_train, generator=m.generator) for m in self.members]
        ).to(self.device)
        losses = torch.empty(steps, len(self.members), device=self.device)
        epoch = self.members[0].epoch + 1
        diverged: list[_Divergence] = []
        checked = 0
        for step in range(steps):
            losses[step] = self.runs.step(orders[:, step * batch_size : (step + 1) * batch_size])
            if on_step is not None:
                on_step(epoch, step + 1, steps)
            if step + 1 - checked == NONFINITE_CHECK_INTERVAL or step + 1 == steps:
                finite = torch.isfinite(losses[checked : step + 1])
                bad = (~finite.all(dim=0)).nonzero().flatten().tolist()
                if bad:
                    for position in bad:
                        first_bad = checked + int((~finite[:, position]).nonzero()[0, 0])
                        diverged.append(
                            _Divergence(
                                self.members[position],
                                step + 1,
                                first_bad,
                                float(losses[first_bad, position]),
                                self._controller(position, self.members[position]),
                            )
                        )
                    keep = [p for p in range(len(self.members)) if p not in bad]
                    self._keep(keep)
                    orders, losses = orders[keep], losses[:, keep]
                    self.members = [self.members[p] for p in keep]
                    if not self.members:
                        return [], diverged
                checked = step + 1
        for member in self.members:
            member.record.steps += steps
        return losses.mean(dim=0).tolist(), diverged

    def _diverged(self, divergence: _Divergence) -> None:
        member, record = divergence.member, divergence.member.record
        record.steps += divergence.steps_run
        record.controller = divergence.controller
        record.stop_nonfinite(
            divergence.loss,
            member.epoch + 1,
            divergence.first_bad + 1,
            self.steps,
            divergence.steps_run,
        )
        logger.warning("%s/%s: %s", record.workload, record.optimizer, record.stop_detail)
        self._finish(member)
        if member.checkpoint is not None:  # its state is out of the stacks: the record alone
            self._write(member, {})

    def _end_epoch(self, mean_losses: list[float], on_epochs: OnEpochs | None) -> None:
        """Evaluate, record and checkpoint each member's epoch; drop the members that end."""
        start = time.perf_counter()
        metrics = self._evaluate()
        self._charge(self.members, time.perf_counter() - start, train=False)
        rates = self.runs.rates()
        epochs = self.protocol.epochs
        saved: set[int] = set()
        for position, member in enumerate(self.members):
            member.epoch += 1
            record = member.record
            if rates is not None:
                member.lr_at_epoch_end.append(rates[position])
            record.controller = self._controller(position, member)
            record.end_epoch(member.epoch, metrics[position], mean_losses[position], epochs)
            if self._save(position, member, always=record.stop_reason is not None):
                saved.add(position)
            first_metric = next(iter(metrics[position]))  # val_accuracy for the paper's
            logger.log(
                logging.DEBUG if self.runs.population else logging.INFO,
                "%s/%s epoch %d/%d: loss %.4f, %s %.4f",
                record.workload,
                record.optimizer,
                member.epoch,
                epochs,
                record.epoch_losses[-1],
                first_metric,
                metrics[position][first_metric],
            )
        if on_epochs is not None:  # after the last epoch too
            ends = [
                EpochEnd(member.index, member.epoch, metrics[position])
                for position, member in enumerate(self.members)
            ]
            try:
                stops = on_epochs(ends)
            except BaseException:
                for position, member in enumerate(self.members):  # a resume starts here
                    if position not in saved:
                        self._save(position, member, always=True)
                raise
            for position, member in enumerate(self.members):
                if member.index in stops and member.record.stop_reason is None:
                    member.record.stop_by_callback(stops[member.index])
                    self._save(position, member, always=True)
        ended = [p for p, member in enumerate(self.members) if member.record.stop_reason]
        for position in ended:
            self._finish(self.members[position])
        if ended:
            keep = [p for p in range(len(self.members)) if p not in ended]
            self._keep(keep)
            self.members = [self.members[p] for p in keep]

    def _finish(self, member: Member) -> None:
        if self.runs.population:
            member.record.population_size = self.started
        self.results[member.index] = member.record

    def _evaluate(self) -> list[dict[str, float]]:
        """Each member's metrics (:attr:`~adamz.workloads.Workload.metric_names`), in
        ``eval()`` mode (one host read per metric and split)."""
        size = self.runs.size
        results: dict[str, list[float]] = {}
        self.runs.train_mode(False)
        try:
            for split in HELD_OUT_SPLITS:
                batches = self.data.held_out(split, EVAL_BATCH_SIZE)
                sums = split_scores(self.workload, self.runs.outputs, batches, size)
                count = self.data.num_val if split == "val" else self.data.num_test
                for name, values in split_means(self.workload, sums, count).items():
                    results[f"{split}_{name}"] = values
        finally:
            self.runs.train_mode(True)
        names = self.workload.metric_names
        return [{name: results[name][position] for name in names} for position in range(size)]

    def _controller(self, position: int, member: Member) -> dict[str, Any] | None:
        counts = self.runs.controller(position)
        if counts is None:
            return None
        return {
            **counts,
            "initial_lr": float(member.run.hyperparameters["lr"]),
            "lr_at_epoch_end": list(member.lr_at_epoch_end),
        }

    def _save(self, position: int, member: Member, *, always: bool) -> bool:
        """Write ``member``'s checkpoint if it has one and it is due (or ``always``); whether
        it was written."""
        if member.checkpoint is None:
            return False
        if not always and time.perf_counter() - member.last_save < self.checkpoint_interval_s:
            return False
        self._write(member, self.runs.state(position))
        return True

    def _write(self, member: Member, state: dict[str, Any]) -> None:
        """Write ``member``'s checkpoint: its ``state`` (:meth:`Runs.state`), its epoch, batch
        order and record."""
        assert member.checkpoint is not None
        member.last_save = time.perf_counter()
        rng = {"order": member.generator.get_state(), **state.pop("rng", {})}
        save_checkpoint(
            member.checkpoint,
            {
                "format": self.runs.checkpoint_format,
                "run": run_identity(member.record),
                "epoch": member.epoch,
                **state,
                "rng": rng,
                "record": member.record.to_dict(),
            },
        )


class _Alone(Runs):
    """One run alone: its workload's ``nn.Module`` and its optimizer from the registry (any of
    them, schedules included), the model initialised from the run's seed."""

    checkpoint_format = 2

    def __init__(self, run: ResolvedRun, data: RunData, total_steps: int) -> None:
        torch.manual_seed(run.config.seed)
        self.device = run.device
        self.workload = run.workload
        self.data = data
        self.model = run.workload.build_model().to(run.device)
        self.optimizer = build_optimizer(
            run.config.optimizer, self.model.parameters(), run.hyperparameters
        )
        self.schedule = build_schedule(
            run.config.optimizer, self.optimizer, run.hyperparameters, total_steps=total_steps
        )
        self.adamz = self.optimizer if isinstance(self.optimizer, AdamZ) else None
        self.controlled = self.adamz is not None and bool(self.adamz.defaults["lr_controller"])

    @property
    def size(self) -> int:
        return 1

    def train_mode(self, training: bool) -> None:
        self.model.train(training)
        set_optimizer_mode(self.optimizer, training=training)

    def step(self, batches: Tensor) -> Tensor:
        index, data = batches[0], self.data
        self.optimizer.zero_grad(set_to_none=True)
        inputs, targets = data.train_batch(index)
        loss = self.workload.loss(self.model(inputs), targets)
        loss.backward()
        if self.adamz is not None:  # the one fed the loss
            self.adamz.step(loss=loss)
        else:
            self.optimizer.step()
        if self.schedule is not None:
            self.schedule.after_step(loss.detach())
        return loss.detach().reshape(1)

    def outputs(self, inputs: Tensor) -> Tensor:
        return self.model(inputs).unsqueeze(0)

    def rates(self) -> list[float] | None:
        if self.adamz is None or not self.controlled:
            return None
        return [float(self.adamz.param_groups[0]["lr"])]

    def controller(self, position: int) -> dict[str, Any] | None:
        if self.adamz is None or not self.controlled:
            return None
        stats = self.adamz.controller_stats()[0]  # the registry builds one param group
        return {
            "overshoots": stats["overshoots"],
            "stagnations": stats["stagnations"],
            "observed": stats["observed"],
            "nonfinite": stats["nonfinite"],
            "final_lr": stats["lr"],
        }

    def keep(self, positions: Tensor) -> None:
        pass  # one run: it ends with the loop

    def state(self, position: int) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "rng": rng,
        }

    def load_state(self, position: int, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(payload["schedule"])
        torch.set_rng_state(payload["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in payload["rng"]:
            torch.cuda.set_rng_state(payload["rng"]["cuda"], self.device)


def train(
    config: RunConfig,
    *,
    on_epoch: OnEpoch | None = None,
    on_step: OnStep | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_interval_s: float = 0.0,
) -> TrainResult:
    """Train ``config``'s workload with its optimizer, alone, and return the result record.

    Args:
        config: the run.
        on_epoch: called as ``on_epoch(epoch, metrics)`` after each epoch (counted from 1) has
            been evaluated and checkpointed (``metrics``: each of the workload's
            :attr:`~adamz.workloads.Workload.metric_names`). Raise
            :class:`StopTraining` to end the run with a record; any other exception propagates
            out of :func:`train`.
        on_step: called as ``on_step(epoch, step, steps_in_epoch)`` after each optimizer step
            (``step`` counted from 1), e.g. to drive a progress bar.
        checkpoint_path: if given, a checkpoint (model, optimizer, schedule, epoch, RNG states,
            record so far) is written there after every epoch, and a run finding one there
            resumes after its epoch; a finished run's checkpoint returns its record without
            training.
        checkpoint_interval_s: write an epoch's checkpoint only if this many seconds have
            passed since the last one (default 0: every epoch). With short epochs, checkpoints
            cost more than the work they save; a run's last state is always written.

    The caller's RNG state is left as it was: the run draws from its own, seeded copies.

    Raises:
        ValueError: an invalid config (see :meth:`RunConfig.resolve`).
        CheckpointMismatchError: the checkpoint was written by a different run.
        adamz.workloads.DataNotFoundError: the dataset's files are missing.
    """
    run = config.resolve()
    data = run.load_data()
    cuda_devices = [run.device] if run.device.type == "cuda" else []
    # enable_grad: a caller inside torch.no_grad() (an evaluation script) still trains.
    with torch.random.fork_rng(devices=cuda_devices), torch.enable_grad():
        members = open_members([run], data, [checkpoint_path], _Alone.checkpoint_format)
        steps = math.ceil(data.num_train / run.protocol.batch_size)
        runs = _Alone(run, data, total_steps=run.protocol.epochs * steps)
        each_epoch = None if on_epoch is None else each_member(_alone(on_epoch))
        (record,) = train_runs(
            runs,
            members,
            data,
            on_epochs=each_epoch,
            on_step=on_step,
            checkpoint_interval_s=checkpoint_interval_s,
        )
        return record


def _alone(on_epoch: OnEpoch) -> MemberOnEpoch:
    def each_epoch(member: int, epoch: int, metrics: dict[str, float]) -> None:
        on_epoch(epoch, metrics)

    return each_epoch


@torch.no_grad()
def split_scores(
    workload: Workload,
    outputs: Callable[[Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    size: int,
) -> dict[str, Tensor]:
    """Each metric's sum over a split's examples for ``size`` runs, shape ``(size,)`` each, in
    float64 on the device: the workload's :meth:`~adamz.workloads.Workload.metric_sums` and
    ``"loss"`` (the batch means times the batch sizes). ``batches`` are the split's inputs and
    targets; ``outputs(inputs)`` gives the runs' outputs, shape ``(size, batch, ...)``.

    A ``whole_split`` metric (:class:`~adamz.workloads.Metric`) is no sum: its entry holds each
    run's value, from :meth:`~adamz.workloads.Workload.whole_split_values` on all of the
    split's outputs (kept for that), NaN for a run whose outputs are not all finite."""
    totals: dict[str, Tensor] = {}
    whole = workload.whole_split_metrics
    kept_outputs: list[Tensor] = []
    kept_targets: list[Tensor] = []

    def scores(outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        sums = workload.metric_sums(outputs, targets)
        sums["loss"] = workload.loss(outputs, targets).double() * targets.shape[0]
        return {name: value.double() for name, value in sums.items()}

    batched_scores = vmap(scores, in_dims=(0, None))
    for inputs, targets in batches:
        batch_outputs = outputs(inputs)
        for name, value in batched_scores(batch_outputs, targets).items():
            totals[name] = totals[name] + value if name in totals else value
        if whole:
            kept_outputs.append(batch_outputs)
            kept_targets.append(targets)
    if whole:
        every_output, every_target = torch.cat(kept_outputs, dim=1), torch.cat(kept_targets)
        values: dict[str, list[float]] = {name: [] for name in whole}
        for run_outputs in every_output:
            finite = bool(torch.isfinite(run_outputs).all())
            run_values = workload.whole_split_values(run_outputs, every_target) if finite else {}
            for name in whole:
                values[name].append(float(run_values[name]) if finite else math.nan)
        for name in whole:
            totals[name] = torch.tensor(values[name], dtype=torch.float64)
    return totals


def split_means(workload: Workload, sums: dict[str, Tensor], count: int) -> dict[str, list[float]]:
    """The runs' value of each metric on a split of ``count`` examples, from
    :func:`split_scores`' ``sums``: their means, each then its metric's ``finish``
    (:class:`~adamz.workloads.Metric`), in the workload's order of its metrics; a
    ``whole_split`` metric's values as they are."""
    means: dict[str, list[float]] = {}
    for name, declared in workload.metrics.items():
        if declared.whole_split:  # a value, not a sum
            means[name] = sums[name].tolist()
            continue
        values = (sums[name] / count).tolist()
        means[name] = values if declared.finish is None else [declared.finish(v) for v in values]
    return means


def evaluate(
    workload: Workload,
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, float]:
    """``model``'s metrics on ``inputs``: each of the workload's (:attr:`~adamz.workloads.
    Workload.metrics`, accuracy and loss for the paper's workloads) by name.

    The model runs in ``eval()`` mode (dropout off) under ``torch.no_grad()``; its previous
    mode is restored afterwards. One value per metric is read back from the device, at the end.
    """
    was_training = model.training
    model.eval()
    try:
        batches = (
            (inputs[start : start + batch_size], targets[start : start + batch_size])
            for start in range(0, inputs.shape[0], batch_size)
        )
        sums = split_scores(workload, lambda x: model(x).unsqueeze(0), batches, 1)
    finally:
        model.train(was_training)
    means = split_means(workload, sums, inputs.shape[0])
    return {name: values[0] for name, values in means.items()}
