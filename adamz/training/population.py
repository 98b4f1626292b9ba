"""Population training: K runs of one workload trained at once, in one process, as one model.

On the small workloads a run's cost is almost all per-step overhead (kernel launches, Python,
small-tensor bookkeeping), not arithmetic, and one small model cannot fill an accelerator. A
population stacks the parameters of K runs along a new first dimension
(``torch.func.stack_module_state``) and trains them with the workload's own module, vectorised
over that dimension (``torch.func.vmap`` of ``torch.func.functional_call``): each step is one
batched forward and backward pass and one batched optimizer update
(:mod:`adamz.optim.batched`) for all K.

Each member is the run :func:`adamz.training.train` would train for its :class:`RunConfig`:

- its model is initialised from its seed, exactly as the single run's (the same draws);
- it visits the training set in the order its own seeded generator gives, batch by batch;
- its optimizer has its own hyperparameters and state; AdamZ's controller watches its loss;
- its evaluation, on the validation and test splits after every epoch, is its own, and so is
  its :class:`TrainResult`, with the same fields as a single run's.

What differs, by construction: floating-point sums in batched kernels are split differently
(the first steps' losses agree with the single run's to about 1e-5 relative in float32; see
the tests), and dropout (the MNIST and CIFAR-10 networks) draws each member's masks from one
shared generator, so a member's masks are not its single run's. ``train_time_s`` and
``wall_time_s`` are the member's share: the population's time divided among the members that
trained in it.

Members drop out of the stacks as they end (their epochs done, a non-finite loss, or
``on_epoch`` raising :class:`StopTraining`, which is how a search prunes one), so the rest
trains at the cost of the members left. Members may start at different epochs (one resumed from
its checkpoint beside fresh ones): every member's epoch has the same number of steps, so their
epochs stay aligned.

Each member checkpoints on its own (:data:`MEMBER_CHECKPOINT_FORMAT`): a member of a killed
population resumes in any later population, whoever else is in it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from adamz.optim.batched import BatchedAdamZ, BatchedOptimizer, batched_optimizer
from adamz.training.checkpoint import load_checkpoint, save_checkpoint
from adamz.training.loop import (
    EVAL_BATCH_SIZE,
    NONFINITE_CHECK_INTERVAL,
    ResolvedRun,
    RunConfig,
    StopTraining,
    TrainResult,
    _plain,
    check_same_run,
    run_identity,
)
from adamz.workloads import METRICS, Protocol, TensorData, Workload

__all__ = ["MEMBER_CHECKPOINT_FORMAT", "MemberOnEpoch", "train_population"]

logger = logging.getLogger(__name__)

MEMBER_CHECKPOINT_FORMAT = "population-member-1"
"""The format of a population member's checkpoint: its own slice of the stacks and optimizer
state, its order generator and record. A single run does not read it, nor a member a single
run's (either starts afresh)."""

MemberOnEpoch = Callable[[int, int, dict[str, float]], None]
"""``on_epoch(member, epoch, metrics)``: ``member`` is the index of its config."""


@dataclass
class _Member:
    index: int
    run: ResolvedRun
    record: TrainResult
    generator: torch.Generator
    checkpoint: Path | None
    epoch: int = 0
    lr_at_epoch_end: list[float] = field(default_factory=list)
    last_save: float = field(default_factory=time.perf_counter)
    saved: dict[str, Any] | None = None
    """The checkpoint it resumes from, until its state is in the stacks."""


def train_population(
    configs: Sequence[RunConfig],
    *,
    on_epoch: MemberOnEpoch | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    checkpoint_paths: Sequence[str | Path | None] | None = None,
    checkpoint_interval_s: float = 0.0,
) -> list[TrainResult]:
    """Train every config at once and return their records, in the order of ``configs``.

    Args:
        configs: the members: one workload, optimizer, device and protocol, any
            hyperparameters and seeds.
        on_epoch: called as ``on_epoch(member, epoch, metrics)`` after each member's epoch has
            been evaluated and checkpointed. :class:`StopTraining` ends that member alone; any
            other exception propagates, with every member's epoch checkpoint written.
        on_step: called as ``on_step(epoch, step, steps_in_epoch)`` after each batched step.
        checkpoint_paths: one path (or ``None``) per member; as ``train``'s ``checkpoint_path``.
        checkpoint_interval_s: as :func:`adamz.training.train`'s.

    Raises:
        ValueError: the configs differ in workload, optimizer, device, data or protocol, or
            one of them is invalid.
        adamz.optim.batched.NotBatchableError: the optimizer (or a setting) has no batched
            form; train these configs one at a time.
        adamz.training.CheckpointMismatchError: a checkpoint was written by another run.
    """
    if not configs:
        return []
    runs = [config.resolve() for config in configs]
    _check_alike(runs)
    paths: list[str | Path | None] = (
        list(checkpoint_paths) if checkpoint_paths is not None else [None] * len(configs)
    )
    if len(paths) != len(configs):
        raise ValueError(
            f"Invalid checkpoint_paths: must have one per config ({len(configs)}), "
            f"got {len(paths)}."
        )
    data = runs[0].load_data()
    device = runs[0].device
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        torch.enable_grad(),
    ):
        return _Population(runs, data, paths, checkpoint_interval_s).train(on_epoch, on_step)


class _Population:
    def __init__(
        self,
        runs: list[ResolvedRun],
        data: TensorData,
        paths: list[str | Path | None],
        checkpoint_interval_s: float,
    ) -> None:
        first = runs[0]
        self.workload: Workload = first.workload
        self.protocol = first.protocol
        self.data = data
        self.device = first.device
        self.checkpoint_interval_s = checkpoint_interval_s
        self.results: list[TrainResult | None] = [None] * len(runs)
        models: list[nn.Module] = []
        for run in runs:
            # As the single run seeds before building its model: the same initial weights. The
            # CPU generator alone: the model is built on the CPU, and torch.manual_seed would
            # also seed every accelerator's (a few milliseconds per member).
            torch.random.default_generator.manual_seed(run.config.seed)
            models.append(self.workload.build_model().to(self.device))
        self.base = copy.deepcopy(models[0])
        params, buffers = stack_module_state(models)
        # All of a member's parameters in one row of one (K, N) leaf tensor: the optimizer then
        # updates the population with a dozen kernels per step, whatever the model's layers.
        self.shapes = {name: tuple(value.shape[1:]) for name, value in params.items()}
        flat = torch.cat([value.detach().flatten(1) for value in params.values()], dim=1)
        self.buffers = dict(buffers)
        self.optimizer: BatchedOptimizer = batched_optimizer(
            first.config.optimizer,
            [flat.requires_grad_()],
            [run.hyperparameters for run in runs],
        )
        # Dropout's masks: one generator for the population, from its members' seeds.
        torch.manual_seed(hash(tuple(run.config.seed for run in runs)) % 2**63)
        self.members: list[_Member] = []
        keep: list[int] = []
        for index, (run, path) in enumerate(zip(runs, paths, strict=True)):
            member = self._member(index, run, None if path is None else Path(path))
            if member.record.stop_reason is not None:  # finished before: nothing to train
                self.results[index] = member.record
                continue
            keep.append(index)
            self.members.append(member)
        self._keep(torch.tensor(keep, dtype=torch.int64, device=self.device))
        for position, member in enumerate(self.members):
            self._resume(position, member)

    def _member(self, index: int, run: ResolvedRun, path: Path | None) -> _Member:
        config, data = run.config, self.data
        record = TrainResult(
            workload=run.workload.name,
            optimizer=config.optimizer,
            hyperparameters=_plain(run.hyperparameters),
            seed=config.seed,
            device=str(run.device),
            protocol={
                **Protocol(
                    run.protocol.epochs, run.protocol.batch_size, data.num_train, data.num_test
                ).to_dict(),
                "val_size": data.num_val,
            },
        )
        member = _Member(index, run, record, torch.Generator().manual_seed(config.seed), path)
        if path is not None and (payload := load_checkpoint(path)) is not None:
            check_same_run(payload, run_identity(record), path, MEMBER_CHECKPOINT_FORMAT)
            member.record = TrainResult(**payload["record"])
            member.record.device = str(run.device)
            member.saved = payload
        return member

    def _resume(self, position: int, member: _Member) -> None:
        payload, member.saved = member.saved, None
        if payload is None:
            return
        with torch.no_grad():
            for name, row in self._params(
                self.optimizer.params[0][position : position + 1]
            ).items():
                row.copy_(payload["params"][name].unsqueeze(0))
        self.optimizer.load_member_state(position, payload["optimizer"])
        member.generator.set_state(payload["rng"]["order"])
        member.epoch = int(payload["epoch"])
        member.record.resumed_from_epoch = member.epoch
        controller = member.record.controller
        member.lr_at_epoch_end = list(controller["lr_at_epoch_end"]) if controller else []
        logger.info("%s: resuming after epoch %d", member.checkpoint, member.epoch)

    def _keep(self, positions: Tensor) -> None:
        """Keep only the members at stack ``positions``: the others stop costing anything."""
        self.optimizer.keep(positions)
        self.buffers = {name: value[positions] for name, value in self.buffers.items()}

    def _params(self, flat: Tensor) -> dict[str, Tensor]:
        """The stacked parameters by name, views into the rows of ``flat``."""
        params, start = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            params[name] = flat[:, start : start + size].unflatten(1, shape)
            start += size
        return params

    def _output(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: Tensor
    ) -> Tensor:
        """One member's model output (called under ``vmap``)."""
        return functional_call(self.base, (params, buffers), (inputs,))

    def _loss(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: Tensor, targets: Tensor
    ) -> Tensor:
        """One member's batch loss (called under ``vmap``: one vectorised call per step)."""
        return self.workload.loss(self._output(params, buffers, inputs), targets)

    def _outputs(self, params: dict[str, Tensor], inputs: Tensor, *, evaluating: bool) -> Tensor:
        """Every member's outputs for its batch of ``inputs``; ``evaluating``: one batch for
        all, in ``eval()`` mode (no dropout).

        The workload's hand-written stacked forward where it has one, else ``vmap`` of the
        model's own forward (measured in ``benchmarks/population.py``).
        """
        if self.workload.has_stacked_forward:
            if evaluating:
                inputs = inputs.expand(self.optimizer.size, *inputs.shape)
            return self.workload.stacked_forward(params, inputs, training=not evaluating)
        batched = vmap(
            self._output, in_dims=(0, 0, None if evaluating else 0), randomness="different"
        )
        return batched(params, self.buffers, inputs)

    def _losses(self, params: dict[str, Tensor], inputs: Tensor, targets: Tensor) -> Tensor:
        """Every member's loss on its batch, shape ``(K,)``."""
        if self.workload.has_stacked_forward:
            outputs = self._outputs(params, inputs, evaluating=False)
            return self.workload.stacked_loss(outputs, targets)
        return vmap(self._loss, randomness="different")(params, self.buffers, inputs, targets)

    def train(
        self, on_epoch: MemberOnEpoch | None, on_step: Callable[[int, int, int], None] | None
    ) -> list[TrainResult]:
        while self.members:
            epoch_start = time.perf_counter()
            trained = list(self.members)
            self._train_epoch(on_step)
            train_time = time.perf_counter() - epoch_start
            if self.members:
                self._end_epoch(on_epoch)
            wall_time = time.perf_counter() - epoch_start
            for member in trained:  # each member's share of the population's time
                member.record.train_time_s += train_time / len(trained)
                member.record.wall_time_s += wall_time / len(trained)
        return [result for result in self.results if result is not None]

    def _train_epoch(self, on_step: Callable[[int, int, int], None] | None) -> None:
        """One epoch of every member; members whose loss turns non-finite drop out."""
        self.base.train()
        data, batch_size = self.data, self.protocol.batch_size
        steps = math.ceil(data.num_train / batch_size)
        orders = torch.stack(
            [torch.randperm(data.num_train, generator=m.generator) for m in self.members]
        ).to(self.device)
        losses = torch.empty(steps, len(self.members), device=self.device)
        checked = 0
        for step in range(steps):
            batch = orders[:, step * batch_size : (step + 1) * batch_size]
            self.optimizer.zero_grad()
            params = self._params(self.optimizer.params[0])
            step_losses = self._losses(params, data.train_inputs[batch], data.train_targets[batch])
            step_losses.sum().backward()  # members are independent: each gets its own gradient
            self.optimizer.step(step_losses)
            losses[step] = step_losses.detach()
            if on_step is not None:
                on_step(self.members[0].epoch + 1, step + 1, steps)
            if step + 1 - checked == NONFINITE_CHECK_INTERVAL or step + 1 == steps:
                finite = torch.isfinite(losses[checked : step + 1])
                bad = (~finite.all(dim=0)).nonzero().flatten().tolist()
                if bad:
                    for position in bad:
                        first_bad = checked + int((~finite[:, position]).nonzero()[0, 0])
                        self._diverged(position, step + 1, first_bad, losses, steps)
                    keep = [p for p in range(len(self.members)) if p not in bad]
                    kept = torch.tensor(keep, dtype=torch.int64, device=self.device)
                    self._keep(kept)
                    orders, losses = orders[kept], losses[:, kept]
                    self.members = [self.members[p] for p in keep]
                    if not self.members:
                        return
                checked = step + 1
        means = losses.mean(dim=0).tolist()
        for member, mean in zip(self.members, means, strict=True):
            member.record.steps += steps
            member.record.epoch_losses.append(mean)

    def _diverged(
        self, position: int, steps_run: int, first_bad: int, losses: Tensor, steps: int
    ) -> None:
        member = self.members[position]
        record = member.record
        record.steps += steps_run
        record.controller = self._controller(position, member)
        record.stop_nonfinite(
            float(losses[first_bad, position]), member.epoch + 1, first_bad + 1, steps, steps_run
        )
        logger.warning("%s/%s: %s", record.workload, record.optimizer, record.stop_detail)
        self._finish(member, save=True)

    def _end_epoch(self, on_epoch: MemberOnEpoch | None) -> None:
        """Evaluate, record and checkpoint each member's epoch; drop the members that end."""
        metrics = self._evaluate()
        rates = self.optimizer.rates.tolist()
        ended: list[int] = []
        for position, member in enumerate(self.members):
            member.epoch += 1
            record = member.record
            for name in METRICS:
                record.epoch_metrics[name].append(metrics[position][name])
            record.epochs_completed = member.epoch
            record.final_metrics = metrics[position]
            if isinstance(self.optimizer, BatchedAdamZ):
                member.lr_at_epoch_end.append(rates[position])
            record.controller = self._controller(position, member)
            if member.epoch == self.protocol.epochs:
                record.stop_reason = "completed"
                record.stop_detail = f"completed {self.protocol.epochs} epochs"
            self._save(position, member, always=record.stop_reason is not None)
        for position, member in enumerate(self.members):
            if on_epoch is not None:  # after the last epoch too, as a single run's
                try:
                    on_epoch(member.index, member.epoch, metrics[position])
                except StopTraining as exc:
                    member.record.stop_reason = "stopped_by_callback"
                    member.record.stop_detail = (
                        f"stopped by on_epoch after epoch {member.epoch}"
                        + (f": {exc}" if str(exc) else "")
                    )
                    self._save(position, member, always=True)
            if member.record.stop_reason is not None:
                ended.append(position)
                self._finish(member, save=False)
        if ended:
            keep = [p for p in range(len(self.members)) if p not in ended]
            self._keep(torch.tensor(keep, dtype=torch.int64, device=self.device))
            self.members = [self.members[p] for p in keep]

    def _finish(self, member: _Member, *, save: bool) -> None:
        member.record.population_size = self.optimizer.size
        self.results[member.index] = member.record
        if save:
            self._save(self.members.index(member), member, always=True)

    @torch.no_grad()
    def _evaluate(self) -> list[dict[str, float]]:
        """Each member's :data:`METRICS`, in ``eval()`` mode (two host reads per split)."""
        self.base.eval()
        params = self._params(self.optimizer.params[0].detach())
        workload, data = self.workload, self.data

        def scores(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
            correct = workload.count_correct(outputs, targets)
            return correct, workload.loss(outputs, targets).double() * targets.shape[0]

        batched_scores = vmap(scores, in_dims=(0, None))
        results: dict[str, list[float]] = {}
        for split, inputs, targets in (
            ("val", data.val_inputs, data.val_targets),
            ("test", data.test_inputs, data.test_targets),
        ):
            correct = torch.zeros(self.optimizer.size, dtype=torch.int64, device=self.device)
            loss_sum = torch.zeros(self.optimizer.size, dtype=torch.float64, device=self.device)
            for start in range(0, inputs.shape[0], EVAL_BATCH_SIZE):
                outputs = self._outputs(
                    params, inputs[start : start + EVAL_BATCH_SIZE], evaluating=True
                )
                batch_correct, batch_loss = batched_scores(
                    outputs, targets[start : start + EVAL_BATCH_SIZE]
                )
                correct += batch_correct
                loss_sum += batch_loss
            results[f"{split}_accuracy"] = (correct.double() / inputs.shape[0]).tolist()
            results[f"{split}_loss"] = (loss_sum / inputs.shape[0]).tolist()
        self.base.train()
        return [
            {name: results[name][position] for name in METRICS}
            for position in range(self.optimizer.size)
        ]

    def _controller(self, position: int, member: _Member) -> dict[str, Any] | None:
        if not isinstance(self.optimizer, BatchedAdamZ):
            return None
        return {
            **self.optimizer.controller_counts(position),
            "initial_lr": float(member.run.hyperparameters["lr"]),
            "final_lr": float(self.optimizer.rates[position]),
            "lr_at_epoch_end": list(member.lr_at_epoch_end),
        }

    def _save(self, position: int, member: _Member, *, always: bool) -> None:
        if member.checkpoint is None:
            return
        now = time.perf_counter()
        if not always and now - member.last_save < self.checkpoint_interval_s:
            return
        member.last_save = now
        save_checkpoint(
            member.checkpoint,
            {
                "format": MEMBER_CHECKPOINT_FORMAT,
                "run": run_identity(member.record),
                "epoch": member.epoch,
                "params": {
                    name: row[0].detach().clone()
                    for name, row in self._params(
                        self.optimizer.params[0][position : position + 1]
                    ).items()
                },
                "optimizer": self.optimizer.member_state(position),
                "rng": {"order": member.generator.get_state()},
                "record": member.record.to_dict(),
            },
        )


def _check_alike(runs: list[ResolvedRun]) -> None:
    """The members must share everything but their hyperparameters and seeds."""
    first = runs[0]
    for run in runs[1:]:
        for name in ("workload", "optimizer", "device", "data_dir", "download"):
            if getattr(run.config, name) != getattr(first.config, name):
                raise ValueError(
                    f"Invalid configs: a population trains one {name}, got "
                    f"{getattr(first.config, name)!r} and {getattr(run.config, name)!r}."
                )
        if run.protocol != first.protocol:
            raise ValueError(
                f"Invalid configs: a population trains one protocol, got {first.protocol} and "
                f"{run.protocol}."
            )
