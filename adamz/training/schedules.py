"""Learning-rate schedules of the scheduled baselines, stepped the way users step them.

AdamZ is Adam plus a loss-driven rate controller, so the first question a reviewer asks is
whether a standard schedule on Adam does as well. Two baselines answer it, each torch's own
scheduler on ``torch.optim.Adam``:

- ``cosine``: :class:`torch.optim.lr_scheduler.CosineAnnealingLR` from ``lr`` down to
  ``eta_min`` over the run's optimizer steps (``T_max`` = epochs x steps per epoch), stepped
  after every optimizer step;
- ``plateau``: :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` fed each step's training
  loss, the same signal AdamZ's controller reads, so ``patience`` and ``cooldown`` count steps
  as AdamZ's ``patience`` does. Per-epoch stepping, torch's usual example, would let it act at
  most a few times in the workloads' 5 to 10 epochs. ``ReduceLROnPlateau`` reads the loss as a
  Python float, one host read per step: on an accelerator that costs a synchronisation that
  AdamZ avoids, which the time columns of a comparison then show.

A schedule's state is the scheduler's ``state_dict()``, checkpointed with the optimizer's.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau

__all__ = ["SCHEDULES", "Schedule"]

SCHEDULES: dict[str, dict[str, Any]] = {
    "cosine": {"eta_min": 0.0},
    # ``eps`` is left out: Adam has an ``eps`` of its own, and the name would be ambiguous.
    "plateau": {"factor": 0.1, "patience": 10, "threshold": 1e-4, "cooldown": 0, "min_lr": 0.0},
}
"""Schedule name -> its scheduler's keyword arguments that a search may tune, with torch's
defaults."""


class Schedule:
    """One run's scheduler, stepped by the training loop after every optimizer step.

    Args:
        kind: a key of :data:`SCHEDULES`.
        optimizer: the optimizer whose ``lr`` it drives.
        hyperparameters: the scheduler's tunable arguments (missing ones take torch's defaults).
        total_steps: the run's optimizer steps, the length of a cosine.

    Raises:
        ValueError: an invalid argument (torch's message).
    """

    def __init__(
        self,
        kind: str,
        optimizer: Optimizer,
        hyperparameters: dict[str, Any],
        *,
        total_steps: int,
    ) -> None:
        arguments = {**SCHEDULES[kind], **hyperparameters}
        self.scheduler: LRScheduler | ReduceLROnPlateau
        if kind == "cosine":
            self.scheduler = CosineAnnealingLR(optimizer, T_max=max(1, total_steps), **arguments)
        else:
            self.scheduler = ReduceLROnPlateau(optimizer, mode="min", **arguments)

    def after_step(self, loss: Tensor) -> None:
        """Advance after one optimizer step whose batch loss was ``loss``."""
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(float(loss))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)
