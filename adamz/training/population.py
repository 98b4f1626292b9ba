"""Training several runs: K runs of one workload, stacked as one model where it can be.

:func:`train_runs` is the one entry for any number of runs. On the small workloads a run's
cost is almost all per-step overhead (kernel launches, Python, small-tensor bookkeeping), not
arithmetic, and one small model cannot fill an accelerator. So it stacks the parameters of K
runs along a new first dimension (``torch.func.stack_module_state``) and trains them with the
workload's own module, vectorised over that dimension (``torch.func.vmap`` of
``torch.func.functional_call``): each step is one batched forward and backward pass and one
batched optimizer update (:mod:`adamz.optim.batched`) for all K.

Whether the runs can be stacked is found out for the model actually built: an optimizer (or a
setting) without a batched form, a model that ``stack_module_state`` refuses (a class defined
inside ``build_model()`` is a new class at each call) or that ``vmap`` cannot run (a GRU,
data-dependent control flow, in-place updates of buffers) raises while the stack is built,
before anything trains. The runs then train one at a time, each on its own model
(:class:`~adamz.training.loop.OneAtATime`), and the reason is logged once per process.

A stacked member is the run :func:`adamz.training.train` would train for its
:class:`RunConfig`:

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

Members drop out as they end (their epochs done, a non-finite loss, or ``on_epochs`` stopping
them, which is how a search prunes one), so the rest trains at the cost of the members left.
Each member checkpoints on its own (:data:`~adamz.training.loop.MEMBER_CHECKPOINT_FORMAT`): a
member of a killed population resumes in any later population, whoever else is in it.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from adamz.optim.batched import (
    BatchedAdamZ,
    BatchedOptimizer,
    NotBatchableError,
    batched_optimizer,
)
from adamz.training.loop import (
    MEMBER_CHECKPOINT_FORMAT,
    EpochEnd,
    OneAtATime,
    OnEpochs,
    OnStep,
    Runs,
    train_members,
)
from adamz.training.run import ResolvedRun, RunConfig, StopTraining, TrainResult
from adamz.workloads import RunData, Workload

__all__ = ["MEMBER_CHECKPOINT_FORMAT", "OnEpoch", "train", "train_runs"]

logger = logging.getLogger(__name__)

_SAID: set[str] = set()  # the reasons for training one at a time, said once per process

OnEpoch = Callable[[int, dict[str, float]], None]
"""``on_epoch(epoch, metrics)`` of a run trained alone."""


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

    def on_epochs(ends: list[EpochEnd]) -> dict[int, StopTraining]:
        try:
            if on_epoch is not None:
                on_epoch(ends[0].epoch, ends[0].metrics)
        except StopTraining as reason:
            return {0: reason}
        return {}

    (record,) = train_runs(
        [config],
        stack=False,
        on_epochs=None if on_epoch is None else on_epochs,
        on_step=on_step,
        checkpoint_paths=[checkpoint_path],
        checkpoint_interval_s=checkpoint_interval_s,
    )
    return record


def train_runs(
    configs: Sequence[RunConfig],
    *,
    stack: bool = True,
    on_epochs: OnEpochs | None = None,
    on_step: OnStep | None = None,
    checkpoint_paths: Sequence[str | Path | None] | None = None,
    checkpoint_interval_s: float = 0.0,
) -> list[TrainResult]:
    """Train every config and return their records, in the order of ``configs``: stacked as
    one model if ``stack`` and this model and optimizer allow it, else one at a time.

    Args:
        configs: the runs: one workload, optimizer, device and protocol, any hyperparameters
            and seeds.
        stack: try to stack the runs; ``False``: train each on its own model, as
            :func:`adamz.training.train` would.
        on_epochs: called once per epoch with every run's end, after their checkpoints
            (:data:`adamz.training.loop.OnEpochs`); it returns the runs to stop, each with its
            :class:`~adamz.training.StopTraining`. Any exception it raises propagates, with
            every run's epoch checkpoint written.
        on_step: called as ``on_step(epoch, step, steps_in_epoch)`` after each step of all
            the runs.
        checkpoint_paths: one path (or ``None``) per run; as ``train``'s ``checkpoint_path``.
        checkpoint_interval_s: as :func:`adamz.training.train`'s.

    Raises:
        ValueError: the configs differ in workload, optimizer, device, data or protocol, or
            one of them is invalid.
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
    # enable_grad: a caller inside torch.no_grad() (an evaluation script) still trains.
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        torch.enable_grad(),
    ):
        trained: Runs | None = _stacked(runs, data) if stack else None
        if trained is None:
            steps = math.ceil(data.num_train / runs[0].protocol.batch_size)
            trained = OneAtATime(runs, data, total_steps=runs[0].protocol.epochs * steps)
        return train_members(
            trained,
            runs,
            data,
            paths,
            on_epochs=on_epochs,
            on_step=on_step,
            checkpoint_interval_s=checkpoint_interval_s,
        )


def _stacked(runs: list[ResolvedRun], data: RunData) -> _Stacked | None:
    """``runs`` stacked as one model, or ``None`` (the reason logged once) where they cannot
    be: whatever fails while the stack is built, the runs can still train one at a time."""
    try:
        return _Stacked(runs, data)
    except Exception as exc:
        reason = (
            str(exc)
            if isinstance(exc, NotBatchableError)
            else f"the models of workload {runs[0].workload.name} cannot be stacked "
            f"({type(exc).__name__}: {_first_sentence(exc)})"
        )
        if reason not in _SAID:
            _SAID.add(reason)
            # On lines of their own: a progress bar may be mid-line on the same terminal.
            logger.warning(
                "\n%s.\nNo population: these runs train one at a time, each alone (no "
                "speed-up from --population).",
                reason,
            )
        return None


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of ``exc``'s message: torch's go on to ask for an issue to be filed."""
    return " ".join(str(exc).split()).split(". ")[0].rstrip(" .")[:200]


class _Stacked(Runs):
    """K runs of one model as one: their parameters stacked in one ``(K, N)`` leaf tensor,
    one batched forward and backward pass and one batched optimizer update per step."""

    checkpoint_format = MEMBER_CHECKPOINT_FORMAT
    population = True

    def __init__(self, runs: list[ResolvedRun], data: RunData) -> None:
        first = runs[0]
        self.workload: Workload = first.workload
        self.data = data
        models: list[nn.Module] = []
        for run in runs:
            # As the single run seeds before building its model: the same initial weights. The
            # CPU generator alone: the model is built on the CPU, and torch.manual_seed would
            # also seed every accelerator's (a few milliseconds per member).
            torch.random.default_generator.manual_seed(run.config.seed)
            models.append(self.workload.build_model().to(first.device))
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
        if not self.workload.has_stacked_forward:
            self._check_vmap()
        # Dropout's masks: one generator for the population, from its members' seeds.
        torch.manual_seed(hash(tuple(run.config.seed for run in runs)) % 2**63)

    def _check_vmap(self) -> None:
        """Raise :class:`NotBatchableError` unless ``vmap`` runs the model's forward and the
        loss on a batch of two, for every member (the RNG left as it was)."""
        index = torch.arange(min(2, self.data.num_train), device=self.optimizer.params[0].device)
        inputs, targets = self.data.train_batch(index.expand(self.optimizer.size, -1))
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            try:
                self._losses(self._params(self.optimizer.params[0].detach()), inputs, targets)
            except (RuntimeError, ValueError, NotImplementedError) as exc:
                raise NotBatchableError(
                    f"the model of workload {self.workload.name} does not run under "
                    f"torch.func.vmap ({type(exc).__name__}: {_first_sentence(exc)})"
                ) from exc

    def train_mode(self, training: bool) -> None:
        self.base.train(training)

    def step(self, batches: Tensor) -> Tensor:
        self.optimizer.zero_grad()
        params = self._params(self.optimizer.params[0])
        inputs, targets = self.data.train_batch(batches)
        losses = self._losses(params, inputs, targets)
        losses.sum().backward()  # members are independent: each gets its own gradient
        self.optimizer.step(losses)
        return losses.detach()

    def outputs(self, inputs: Tensor) -> Tensor:
        params = self._params(self.optimizer.params[0].detach())
        return self._outputs(params, inputs, evaluating=True)

    def controller(self, position: int) -> dict[str, Any] | None:
        if not isinstance(self.optimizer, BatchedAdamZ):
            return None
        return {
            **self.optimizer.controller_counts(position),
            "final_lr": float(self.optimizer.rates[position]),
        }

    def keep(self, positions: Tensor) -> None:
        self.optimizer.keep(positions)
        self.buffers = {name: value[positions] for name, value in self.buffers.items()}

    def state(self, position: int) -> dict[str, Any]:
        row = self.optimizer.params[0][position : position + 1]
        return {
            "params": {
                name: value[0].detach().clone() for name, value in self._params(row).items()
            },
            "optimizer": self.optimizer.member_state(position),
        }

    def load_state(self, position: int, payload: dict[str, Any]) -> None:
        with torch.no_grad():
            row = self.optimizer.params[0][position : position + 1]
            for name, value in self._params(row).items():
                value.copy_(payload["params"][name].unsqueeze(0))
        self.optimizer.load_member_state(position, payload["optimizer"])

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


def _check_alike(runs: list[ResolvedRun]) -> None:
    """The members must share everything but their hyperparameters and seeds."""
    first = runs[0]
    for run in runs[1:]:
        for name in ("workload", "workload_options", "optimizer", "device", "data_dir", "download"):
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
