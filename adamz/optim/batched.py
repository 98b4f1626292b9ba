"""Optimizers for a population: K runs of one model, stacked, each with its own hyperparameters.

A population (:mod:`adamz.training.population`) stacks the parameters of K runs of one model
along a new first dimension, so that one batched kernel trains all of them: parameter ``i`` of
run ``k`` is ``params[i][k]``. The optimizers here update such stacks with every
hyperparameter per run, so K trials of a search, each with its own sampled configuration, train
in one process.

Each is the arithmetic of its single-run counterpart on each run's slice:

* :class:`BatchedAdamZ`: :class:`adamz.optim.AdamZ` through the same functions: gradient
  clipping over each run's own parameters (:func:`~adamz.optim._update.member_grad_norms`,
  :func:`~adamz.optim._update.clip_coefficient`), the Adam update
  (:func:`~adamz.optim._update.adam_update` with per-run tensors), and the rate controller
  (:func:`~adamz.optim._controller.observe_losses`, one controller per run, windows of
  different patience padded and masked). Nothing is read back to the host.
* :class:`BatchedAdam` and :class:`BatchedAdamW`: ``torch.optim.Adam`` / ``AdamW`` (without
  ``amsgrad``), with AdamZ's Adam update, which is the same algebra in a form that differs in
  the last bits of float32.
* :class:`BatchedClippedAdam`: :class:`adamz.optim.ClippedAdam`, each run's gradients clipped
  by their own norm, then :class:`BatchedAdam`'s update. It is also the batched form of AdamZ
  with its controller off (registry name ``adamz-no-controller``), the same arithmetic.
* :class:`BatchedSGD` and :class:`BatchedRMSprop`: ``torch.optim.SGD`` / ``RMSprop``, their
  update written out on stacks, because torch's functional forms take one learning rate.

Every hyperparameter lives in :attr:`BatchedOptimizer.hyper` as a float64 tensor of shape
``(K,)``, every state tensor in :attr:`BatchedOptimizer.state` with ``K`` first, so that
dropping runs (:meth:`BatchedOptimizer.keep`) and checkpointing one run
(:meth:`BatchedOptimizer.member_state`) are the same operation for all of them.

An optimizer, or a setting, with no batched form here raises :class:`NotBatchableError` from
:func:`batched_optimizer`; the caller trains those runs one at a time.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from adamz.optim._controller import observe_losses, window_dtype, window_masks
from adamz.optim._update import adam_update, clip_coefficient, member_grad_norms

__all__ = [
    "BATCHED_OPTIMIZERS",
    "BatchedAdam",
    "BatchedAdamW",
    "BatchedAdamZ",
    "BatchedClippedAdam",
    "BatchedOptimizer",
    "BatchedRMSprop",
    "BatchedSGD",
    "NotBatchableError",
    "batched_optimizer",
]


class NotBatchableError(ValueError):
    """These runs cannot share a batched optimizer: train them one at a time."""


def per_run(values: Tensor, like: Tensor) -> Tensor:
    """``values`` (one per run, shape ``(K,)``) shaped to broadcast against stack ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class BatchedOptimizer(ABC):
    """The optimizer of K stacked runs; one ``step`` updates all of them.

    Args:
        params: the stacked parameters, leaf tensors with the K runs along dimension 0.
        hyperparameters: one mapping per run, every key of the single-run optimizer present
            (:func:`adamz.training.optimizers.resolve_hyperparameters`).

    Raises:
        NotBatchableError: a setting with no batched form (``amsgrad``, say).
    """

    FIXED: ClassVar[dict[str, Any]] = {}
    """Settings that must keep these values (others have no batched form)."""
    PAIRS: ClassVar[dict[str, tuple[str, str]]] = {}
    """Pair-valued hyperparameters and the names of their two halves in :attr:`hyper`."""

    def __init__(self, params: list[Tensor], hyperparameters: Sequence[Mapping[str, Any]]) -> None:
        if not params or any(p.shape[0] != len(hyperparameters) for p in params):
            raise ValueError(
                f"Invalid params: must be stacks of {len(hyperparameters)} runs, got shapes "
                f"{[tuple(p.shape) for p in params]}."
            )
        for key, value in self.FIXED.items():
            found = sorted({repr(h.get(key, value)) for h in hyperparameters} - {repr(value)})
            if found:
                raise NotBatchableError(
                    f"{type(self).__name__} has no batched form for {key}={found[0]}"
                )
        self.params = params
        device = params[0].device
        self.hyper: dict[str, Tensor] = {}
        for key in hyperparameters[0]:
            if key in self.FIXED:
                continue
            values = [h[key] for h in hyperparameters]
            if key in self.PAIRS:
                first, second = self.PAIRS[key]
                self.hyper[first] = _tensor([v[0] for v in values], device)
                self.hyper[second] = _tensor([v[1] for v in values], device)
            else:
                self.hyper[key] = _tensor(values, device)
        self.state: dict[str, Tensor] = {
            "step": torch.zeros(len(hyperparameters), dtype=torch.float64, device=device),
            "lr": self.hyper["lr"].to(window_dtype(device)).clone(),
        }
        self._values: dict[tuple[str, int, torch.dtype], float | Tensor] = {}
        self._step: int | None = 0
        """The step count of every run, while they all share one (kept on the host)."""

    @property
    def size(self) -> int:
        """The number of runs, K."""
        return self.params[0].shape[0]

    @property
    def rates(self) -> Tensor:
        """Each run's current learning rate, shape ``(K,)``."""
        return self.state["lr"]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self, losses: Tensor) -> None:
        """One update of every run; ``losses`` (shape ``(K,)``) are this step's batch losses."""
        self.state["step"] += 1
        if self._step is not None:
            self._step += 1
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self._update(grads, losses.detach())

    def _steps(self, like: Tensor) -> int | Tensor:
        """The runs' step counts: one number while they share it (the scalar path of the
        update), else per run, shaped against ``like``."""
        return self._step if self._step is not None else per_run(self.state["step"], like)

    @abstractmethod
    def _update(self, grads: list[Tensor], losses: Tensor) -> None: ...

    def _state_like(self, name: str, index: int) -> Tensor:
        """State tensor ``name`` of parameter ``index``, created as zeros on first use."""
        key = f"{name}.{index}"
        if key not in self.state:
            self.state[key] = torch.zeros_like(self.params[index])
        return self.state[key]

    def _per_run(self, name: str, like: Tensor, dtype: torch.dtype | None = None) -> float | Tensor:
        """Hyperparameter ``name`` for an update of stack ``like``: a number when every run has
        the same value (the update's scalar path, no kernel), else one per run, shaped against
        ``like``, in ``dtype`` (default: ``like``'s). Kept until the runs change."""
        key = (name, like.dim(), dtype or like.dtype)
        if key not in self._values:
            values = self.hyper[name]
            first = float(values[0])
            self._values[key] = (
                first
                if bool((values == first).all())
                else per_run(values.to(dtype or like.dtype), like)
            )
        return self._values[key]

    @torch.no_grad()
    def keep(self, runs: Tensor) -> None:
        """Keep only the runs at indices ``runs`` (in that order); the others stop.

        The parameters are replaced by new leaf tensors: read :attr:`params` again afterwards.
        """
        self.params = [p.detach()[runs].requires_grad_() for p in self.params]
        self.hyper = {key: value[runs] for key, value in self.hyper.items()}
        self.state = {key: value[runs] for key, value in self.state.items()}
        self._values.clear()
        self._step = self._shared_step()

    def _shared_step(self) -> int | None:
        steps = self.state["step"]
        return int(steps[0]) if len(steps) and bool((steps == steps[0]).all()) else None

    def member_state(self, run: int) -> dict[str, Any]:
        """Run ``run``'s share of the optimizer: its state and hyperparameters, as copies."""
        return {
            "state": {key: value[run].clone() for key, value in self.state.items()},
            "hyper": {key: value[run].clone() for key, value in self.hyper.items()},
        }

    @torch.no_grad()
    def load_member_state(self, run: int, saved: Mapping[str, Any]) -> None:
        """Put a state saved by :meth:`member_state` into run ``run`` (a resumed run)."""
        for index in range(len(self.params)):  # create lazily made state before filling it
            for key in saved["state"]:
                name, _, number = key.rpartition(".")
                if number == str(index):
                    self._state_like(name, index)
        for key, value in saved["state"].items():
            self._load_row(self.state[key], run, value)
        self._step = self._shared_step()

    @staticmethod
    def _load_row(target: Tensor, run: int, value: Tensor) -> None:
        target[run] = value.to(target.device, target.dtype)


class BatchedAdam(BatchedOptimizer):
    """``torch.optim.Adam`` for K stacked runs (L2 ``weight_decay`` added to the gradient)."""

    FIXED: ClassVar[dict[str, Any]] = {"amsgrad": False, "decoupled_weight_decay": False}
    PAIRS: ClassVar[dict[str, tuple[str, str]]] = {"betas": ("beta1", "beta2")}
    decoupled = False

    def _update(self, grads: list[Tensor], losses: Tensor) -> None:
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            lr = per_run(self.state["lr"], param).to(param.dtype)
            weight_decay = self._per_run("weight_decay", param)
            if self.decoupled:  # AdamW: theta <- theta (1 - lr lambda), then Adam without L2
                param.mul_(1 - lr * weight_decay)
                weight_decay = 0.0
            adam_update(
                [param],
                [grad],
                [self._state_like("exp_avg", index)],
                [self._state_like("exp_avg_sq", index)],
                [self._steps(param)],
                lr=lr,
                beta1=self._per_run("beta1", param),
                beta2=self._per_run("beta2", param),
                eps=self._per_run("eps", param),
                weight_decay=weight_decay,
                foreach=False,
            )


class BatchedClippedAdam(BatchedAdam):
    """:class:`adamz.optim.ClippedAdam` for K stacked runs (one param group per run): each
    run's gradients clipped by their own norm, then :class:`BatchedAdam`'s update."""

    def __init__(self, params: list[Tensor], hyperparameters: Sequence[Mapping[str, Any]]) -> None:
        hyperparameters = [
            {**h, "max_grad_norm": math.inf if h["max_grad_norm"] is None else h["max_grad_norm"]}
            for h in hyperparameters
        ]
        super().__init__(params, hyperparameters)

    def _update(self, grads: list[Tensor], losses: Tensor) -> None:
        # One norm per run over its own parameters; an unclipped run has max_grad_norm inf.
        norms = member_grad_norms(grads)
        coefficients = clip_coefficient(norms, self.hyper["max_grad_norm"].to(norms.dtype))
        for grad in grads:
            grad.mul_(per_run(coefficients, grad))
        super()._update(grads, losses)


class BatchedAdamZ(BatchedClippedAdam):
    """:class:`adamz.optim.AdamZ` for K stacked runs (one param group per run):
    :class:`BatchedClippedAdam`'s clipping and update, then the rate controller on each run's
    loss. Runs with the controller off (``lr_controller=False``) train with
    :class:`BatchedClippedAdam` itself (registry name ``adamz-no-controller``).

    The controller's loss window has shape ``(K, P)``, ``P`` the largest patience of the
    population; run ``k`` uses its last ``patience[k]`` entries.
    """

    FIXED: ClassVar[dict[str, Any]] = {**BatchedAdam.FIXED, "lr_controller": True}
    PAIRS: ClassVar[dict[str, tuple[str, str]]] = {
        "betas": ("beta1", "beta2"),
        "lr_bounds": ("lr_min", "lr_max"),
    }

    def __init__(self, params: list[Tensor], hyperparameters: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(params, hyperparameters)
        device = params[0].device
        window = int(self.hyper["patience"].max())
        counter = torch.zeros(self.size, dtype=torch.int64, device=device)
        self.state.update(
            loss_window=torch.zeros(self.size, window, dtype=window_dtype(device), device=device),
            observed=counter.clone(),
            nonfinite=counter.clone(),
            overshoots=counter.clone(),
            stagnations=counter.clone(),
        )
        self.patience = self.hyper["patience"].to(torch.int64)
        self.stagnation_period = self.hyper["stagnation_period"].to(torch.int64)
        self._masks: tuple[Tensor, Tensor] | None = None

    def keep(self, runs: Tensor) -> None:
        super().keep(runs)
        self.patience = self.patience[runs]
        self.stagnation_period = self.stagnation_period[runs]
        self._masks = None

    def _update(self, grads: list[Tensor], losses: Tensor) -> None:
        super()._update(grads, losses)
        controller = {
            key: self.state[key]
            for key in ("loss_window", "observed", "nonfinite", "overshoots", "stagnations")
        }
        window = self.state["loss_window"]
        if self._masks is None:
            self._masks = window_masks(
                window.shape[-1], self.patience, self.stagnation_period, window
            )
        dtype = window.dtype
        self.state["lr"] = observe_losses(
            controller,  # type: ignore[arg-type]
            losses.to(dtype),
            self.state["lr"],
            overshoot_factor=self._per_run("overshoot_factor", window[:, 0], dtype),
            stagnation_factor=self._per_run("stagnation_factor", window[:, 0], dtype),
            stagnation_threshold=self._per_run("stagnation_threshold", window[:, 0], dtype),
            patience=self.patience,
            stagnation_period=self.stagnation_period,
            lr_min=self._per_run("lr_min", window[:, 0], dtype),
            lr_max=self._per_run("lr_max", window[:, 0], dtype),
            masks=self._masks,
        )
        self.state.update(controller)

    def member_state(self, run: int) -> dict[str, Any]:
        saved = super().member_state(run)
        patience = int(self.patience[run])
        saved["state"]["loss_window"] = saved["state"]["loss_window"][-patience:].clone()
        return saved

    @staticmethod
    def _load_row(target: Tensor, run: int, value: Tensor) -> None:
        if target.dim() == 2 and value.dim() == 1:  # a loss window: right-aligned, zero-padded
            target[run] = 0
            target[run, target.shape[1] - value.shape[0] :] = value.to(target.device, target.dtype)
        else:
            target[run] = value.to(target.device, target.dtype)

    def controller_counts(self, run: int) -> dict[str, int]:
        """Run ``run``'s controller counts: ``observed``, ``nonfinite``, ``overshoots``,
        ``stagnations`` (host reads)."""
        return {
            key: int(self.state[key][run])
            for key in ("observed", "nonfinite", "overshoots", "stagnations")
        }


class BatchedAdamW(BatchedAdam):
    """``torch.optim.AdamW`` for K stacked runs (decoupled weight decay)."""

    FIXED: ClassVar[dict[str, Any]] = {"amsgrad": False}
    decoupled = True


class BatchedSGD(BatchedOptimizer):
    """``torch.optim.SGD`` for K stacked runs: momentum, dampening, Nesterov, L2 decay.

    As torch: ``g += lambda theta``; with momentum ``mu``, ``b = g`` on the first step, else
    ``b = mu b + (1 - dampening) g``, and the step uses ``g + mu b`` (Nesterov) or ``b``; a run
    with ``mu = 0`` steps with ``g`` (its buffer is then ``g`` too: the same update).
    """

    def _update(self, grads: list[Tensor], losses: Tensor) -> None:
        first = self.state["step"] == 1
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            momentum = self._per_run("momentum", param)
            grad = grad + self._per_run("weight_decay", param) * param
            buffer = self._state_like("momentum_buffer", index)
            dampening = self._per_run("dampening", param)
            plain = per_run(first, param) | torch.as_tensor(momentum == 0)
            buffer.copy_(torch.where(plain, grad, buffer * momentum + (1 - dampening) * grad))
            nesterov = torch.as_tensor(self._per_run("nesterov", param)).bool()
            direction = torch.where(nesterov, grad + momentum * buffer, buffer)
            param.sub_(direction * per_run(self.state["lr"], param).to(param.dtype))


class BatchedRMSprop(BatchedOptimizer):
    """``torch.optim.RMSprop`` for K stacked runs: smoothing ``alpha``, momentum, centred."""

    def _update(self, grads: list[Tensor], losses: Tensor) -> None:
        for index, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            grad = grad + self._per_run("weight_decay", param) * param
            alpha = self._per_run("alpha", param)
            square_avg = self._state_like("square_avg", index)
            square_avg.mul_(alpha).addcmul_(grad, grad * (1 - alpha))
            grad_avg = self._state_like("grad_avg", index)
            grad_avg.lerp_(grad, 1 - alpha)
            centered = torch.as_tensor(self._per_run("centered", param)).bool()
            variance = torch.where(centered, square_avg - grad_avg * grad_avg, square_avg)
            average = variance.sqrt().add_(self._per_run("eps", param))
            buffer = self._state_like("momentum_buffer", index)
            buffer.mul_(self._per_run("momentum", param)).add_(grad / average)
            param.sub_(buffer * per_run(self.state["lr"], param).to(param.dtype))


BATCHED_OPTIMIZERS: dict[str, type[BatchedOptimizer]] = {
    "adamz": BatchedAdamZ,
    "adamz-no-controller": BatchedClippedAdam,
    "adam": BatchedAdam,
    "adam-clip": BatchedClippedAdam,
    "adamw": BatchedAdamW,
    "sgd": BatchedSGD,
    "rmsprop": BatchedRMSprop,
}
"""Registry names with a batched form (the others train one run at a time)."""


def batched_optimizer(
    name: str, params: list[Tensor], hyperparameters: Sequence[Mapping[str, Any]]
) -> BatchedOptimizer:
    """The batched form of registry optimizer ``name`` over stacked ``params``.

    Raises:
        NotBatchableError: ``name`` or one of its settings has no batched form.
    """
    if name not in BATCHED_OPTIMIZERS:
        raise NotBatchableError(
            f"{name} has no batched form (batched: {', '.join(BATCHED_OPTIMIZERS)})"
        )
    return BATCHED_OPTIMIZERS[name](params, hyperparameters)


def _tensor(values: list[Any], device: torch.device) -> Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
