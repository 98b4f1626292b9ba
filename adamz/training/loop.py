"""The one training loop: runs of one workload, trained epoch by epoch, each to its record.

Every single run, search trial and benchmark trains through :func:`train_members`. What
differs between runs trained one at a time (:func:`~adamz.training.population.train`, and
:func:`adamz.training.population.train_runs` where a model cannot be stacked: each run its own
``nn.Module`` and torch optimizer) and K runs trained as one stacked model is only how the runs
take a step and answer inputs, a :class:`Runs`; the rest exists once:

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
from adamz.training.run import ResolvedRun, StopTraining, TrainResult, check_same_run, run_identity
from adamz.workloads import HELD_OUT_SPLITS, RunData, Workload

__all__ = [
    "ALONE_CHECKPOINT_FORMAT",
    "EVAL_BATCH_SIZE",
    "MEMBER_CHECKPOINT_FORMAT",
    "NONFINITE_CHECK_INTERVAL",
    "EpochEnd",
    "Member",
    "OnEpochs",
    "OnStep",
    "OneAtATime",
    "Runs",
    "evaluate",
    "split_means",
    "split_scores",
    "train_members",
]

logger = logging.getLogger(__name__)

NONFINITE_CHECK_INTERVAL = 25
"""Steps between host reads of the recent losses. Reading every step would synchronise an
accelerator with the host each step; a run that turns non-finite trains at most this many
useless steps before it stops (the record names the first non-finite step exactly)."""

EVAL_BATCH_SIZE = 1000
"""Held-out examples per forward pass during evaluation (no gradients: only activations count)."""

OnStep = Callable[[int, int, int], None]
"""``on_step(epoch, step, steps_in_epoch)``, after each step (``step`` counted from 1)."""
ALONE_CHECKPOINT_FORMAT = 2
"""The format of the checkpoint of a run trained on its own model (:class:`OneAtATime`)."""
MEMBER_CHECKPOINT_FORMAT = "population-member-1"
"""The format of a stacked population member's checkpoint: its own slice of the stacks and
optimizer state, its order generator and record. A run finding one of the other format at its
path starts afresh (a trial first trained in a population, resumed alone, say)."""


class EpochEnd(NamedTuple):
    """One member's epoch, evaluated: ``member`` is the index of its run's config."""

    member: int
    epoch: int
    metrics: dict[str, float]


OnEpochs = Callable[[list[EpochEnd]], Mapping[int, StopTraining]]
"""``on_epochs(ends)``: called once per epoch with every member's end, in the members' order,
after their checkpoints; returns the members to stop (by index), each with why."""


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


def train_members(
    runs: Runs,
    resolved: Sequence[ResolvedRun],
    data: RunData,
    paths: Sequence[str | Path | None],
    *,
    on_epochs: OnEpochs | None = None,
    on_step: OnStep | None = None,
    checkpoint_interval_s: float = 0.0,
) -> list[TrainResult]:
    """Train ``resolved`` with ``runs`` (one run of ``runs`` each, in order), each resumed from
    its checkpoint at ``paths`` where one is there, and return their records in their order;
    the arguments are as :func:`~adamz.training.population.train_runs`'.

    Raises:
        CheckpointMismatchError: a checkpoint was written by another run, or in another format.
    """
    members = []
    formats = {ALONE_CHECKPOINT_FORMAT, MEMBER_CHECKPOINT_FORMAT} - {runs.checkpoint_format}
    for index, (run, path) in enumerate(zip(resolved, paths, strict=True)):
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
            if payload is not None and payload.get("format") in formats:
                logger.info("%s: written in another form of training; starting afresh", path)
                payload = None
            if payload is not None:
                identity = run_identity(record)
                check_same_run(payload, identity, member.checkpoint, runs.checkpoint_format)
                member.record = TrainResult(**payload["record"])
                member.record.device = str(run.device)
                member.saved = payload
        members.append(member)
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
        self.members = list(members)
        finished = [p for p, member in enumerate(members) if member.record.stop_reason is not None]
        for position in finished:  # finished before: nothing to train
            logger.info("%s: the run had finished", members[position].checkpoint)
            self.results[members[position].index] = members[position].record
        if finished:
            self._drop(finished)
        self.started = len(self.members)
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

    def _drop(self, positions: list[int]) -> list[int]:
        """Drop the members at ``positions`` and their runs; the positions of those kept."""
        keep = [p for p in range(len(self.members)) if p not in positions]
        self.runs.keep(torch.tensor(keep, dtype=torch.int64, device=self.device))
        self.members = [self.members[p] for p in keep]
        return keep

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
                    keep = self._drop(bad)
                    orders, losses = orders[keep], losses[:, keep]
                    if not self.members:
                        return [], diverged
                checked = step + 1
        for member in self.members:
            member.record.steps += steps
        # Each run's losses contiguous: its mean is summed as its run alone sums it.
        return losses.t().contiguous().mean(dim=1).tolist(), diverged

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
        epochs = self.protocol.epochs
        saved: set[int] = set()
        for position, member in enumerate(self.members):
            member.epoch += 1
            record = member.record
            record.controller = self._controller(position, member, epoch_end=True)
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
            self._drop(ended)

    def _finish(self, member: Member) -> None:
        if self.runs.population:
            member.record.population_size = self.started
        self.results[member.index] = member.record

    def _evaluate(self) -> list[dict[str, float]]:
        """Each member's metrics (:attr:`~adamz.workloads.Workload.metric_names`), in
        ``eval()`` mode (one host read per metric and split)."""
        results: dict[str, list[float]] = {}
        self.runs.train_mode(False)
        try:
            for split in HELD_OUT_SPLITS:
                batches = self.data.held_out(split, EVAL_BATCH_SIZE)
                sums = split_scores(self.workload, self.runs.outputs, batches)
                count = self.data.num_val if split == "val" else self.data.num_test
                for name, values in split_means(self.workload, sums, count).items():
                    results[f"{split}_{name}"] = values
        finally:
            self.runs.train_mode(True)
        names = self.workload.metric_names
        return [{name: results[name][p] for name in names} for p in range(len(self.members))]

    def _controller(
        self, position: int, member: Member, *, epoch_end: bool = False
    ) -> dict[str, Any] | None:
        counts = self.runs.controller(position)
        if counts is None:
            return None
        if epoch_end:
            member.lr_at_epoch_end.append(counts["final_lr"])
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


class _Alone:
    """One run's own model, optimizer and schedule, the model initialised from the run's seed,
    and the state of the generator its random draws (dropout) come from."""

    def __init__(self, run: ResolvedRun, total_steps: int) -> None:
        torch.manual_seed(run.config.seed)
        self.model = run.workload.build_model().to(run.device)
        self.optimizer = build_optimizer(
            run.config.optimizer, self.model.parameters(), run.hyperparameters
        )
        self.schedule = build_schedule(
            run.config.optimizer, self.optimizer, run.hyperparameters, total_steps=total_steps
        )
        self.adamz = self.optimizer if isinstance(self.optimizer, AdamZ) else None
        self.controlled = self.adamz is not None and bool(self.adamz.defaults["lr_controller"])
        self.rng = _rng_state(run.device)


class OneAtATime(Runs):
    """Runs trained one after another at each step, each on its own model and its optimizer
    from the registry (any of them, schedules included): each run trains as it would alone,
    its random draws from a generator state of its own."""

    checkpoint_format = ALONE_CHECKPOINT_FORMAT

    def __init__(self, runs: Sequence[ResolvedRun], data: RunData, total_steps: int) -> None:
        self.device = runs[0].device
        self.workload = runs[0].workload
        self.data = data
        self.runs = [_Alone(run, total_steps) for run in runs]

    def train_mode(self, training: bool) -> None:
        for run in self.runs:
            run.model.train(training)
            set_optimizer_mode(run.optimizer, training=training)

    def step(self, batches: Tensor) -> Tensor:
        data, losses = self.data, []
        for run, index in zip(self.runs, batches, strict=True):
            if len(self.runs) > 1:  # alone, the process's generator is the run's
                _set_rng_state(run.rng, self.device)
            run.optimizer.zero_grad(set_to_none=True)
            inputs, targets = data.train_batch(index)
            loss = self.workload.loss(run.model(inputs), targets)
            loss.backward()
            if run.adamz is not None:  # the one fed the loss
                run.adamz.step(loss=loss)
            else:
                run.optimizer.step()
            if run.schedule is not None:
                run.schedule.after_step(loss.detach())
            if len(self.runs) > 1:
                run.rng = _rng_state(self.device)
            losses.append(loss.detach())
        return torch.stack(losses)

    def outputs(self, inputs: Tensor) -> Tensor:
        return torch.stack([run.model(inputs) for run in self.runs])

    def controller(self, position: int) -> dict[str, Any] | None:
        run = self.runs[position]
        if run.adamz is None or not run.controlled:
            return None
        stats = run.adamz.controller_stats()[0]  # the registry builds one param group
        counts = ("overshoots", "stagnations", "observed", "nonfinite")
        return {**{key: stats[key] for key in counts}, "final_lr": stats["lr"]}

    def keep(self, positions: Tensor) -> None:
        self.runs = [self.runs[position] for position in positions.tolist()]

    def state(self, position: int) -> dict[str, Any]:
        run = self.runs[position]
        return {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "schedule": None if run.schedule is None else run.schedule.state_dict(),
            "rng": _rng_state(self.device) if len(self.runs) == 1 else run.rng,
        }

    def load_state(self, position: int, payload: dict[str, Any]) -> None:
        run = self.runs[position]
        run.model.load_state_dict(payload["model"])
        run.optimizer.load_state_dict(payload["optimizer"])
        if run.schedule is not None:
            run.schedule.load_state_dict(payload["schedule"])
        run.rng = payload["rng"]
        _set_rng_state(run.rng, self.device)


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    """The process's generator states that a run on ``device`` draws from."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _set_rng_state(rng: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


@torch.no_grad()
def split_scores(
    workload: Workload,
    outputs: Callable[[Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
) -> dict[str, Tensor]:
    """Each metric's sum over a split's examples for K runs, shape ``(K,)`` each, in
    float64 on the device: the workload's :meth:`~adamz.workloads.Workload.metric_sums` and
    ``"loss"`` (the batch means times the batch sizes). ``batches`` are the split's inputs and
    targets; ``outputs(inputs)`` gives the runs' outputs, shape ``(K, batch, ...)``.

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
        batches = zip(inputs.split(batch_size), targets.split(batch_size), strict=True)
        sums = split_scores(workload, lambda x: model(x).unsqueeze(0), batches)
    finally:
        model.train(was_training)
    means = split_means(workload, sums, inputs.shape[0])
    return {name: values[0] for name, values in means.items()}
