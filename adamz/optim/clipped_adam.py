"""Adam after global gradient-norm clipping: the ablation of AdamZ without its controller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils import clip_grads_with_norm_, get_total_norm

__all__ = ["ClippedAdam"]


class ClippedAdam(torch.optim.Adam):
    r"""``torch.optim.Adam`` whose gradients are first clipped by their norm over all groups.

    Each step, before Adam's update:

    .. math::
        g \leftarrow g \min\!\left(1, \tfrac{N_{max}}{\lVert g \rVert + 10^{-6}}\right)
        \qquad \text{one norm over every group's gradients}

    which is step 1 of :class:`adamz.optim.AdamZ`, built from torch's own
    ``torch.nn.utils.get_total_norm`` and ``clip_grads_with_norm_`` (the two halves of
    ``clip_grad_norm_``, split so that one norm serves every group). AdamZ is this plus its
    loss-driven rate controller, so a comparison of the two tells the controller's share of a
    result from the clipping's; ``AdamZ(..., lr_controller=False)`` does the same arithmetic.

    Args:
        params, lr, betas, eps, weight_decay, amsgrad: as ``torch.optim.Adam`` (defaults:
            1e-3, (0.9, 0.999), 1e-8, 0, False).
        max_grad_norm: :math:`N_{max}`, the total gradient norm to clip to, or ``None`` for no
            clipping (plain Adam); per group, like every hyperparameter (default: 1.0, AdamZ's).
        foreach: as ``torch.optim.Adam``'s, also for the norm and the scaling (default: None).

    Raises:
        ValueError: an invalid ``max_grad_norm`` (naming the rule and the value), or torch's
            own message for Adam's arguments.
    """

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        max_grad_norm: float | None = 1.0,
        *,
        foreach: bool | None = None,
    ) -> None:
        _check_max_grad_norm(max_grad_norm)
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            foreach=foreach,
        )
        # torch.optim.Adam builds its defaults itself: max_grad_norm joins them, and the groups
        # made so far, here (groups added later take it from the defaults).
        self.defaults["max_grad_norm"] = max_grad_norm
        for group in self.param_groups:
            group.setdefault("max_grad_norm", max_grad_norm)
            _check_max_grad_norm(group["max_grad_norm"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, checking its ``max_grad_norm`` (the defaults fill the rest)."""
        super().add_param_group(param_group)
        if "max_grad_norm" in self.param_groups[-1]:
            _check_max_grad_norm(self.param_groups[-1]["max_grad_norm"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Clip the gradients of the clipping groups together, then take Adam's step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        clipping = [
            (group, [p for p in group["params"] if p.grad is not None])
            for group in self.param_groups
            if group["max_grad_norm"] is not None
        ]
        grads = [p.grad for _, params in clipping for p in params if p.grad is not None]
        if grads:
            foreach = self.param_groups[0]["foreach"]
            total_norm = get_total_norm(grads, foreach=foreach)
            for group, params in clipping:
                if params:
                    clip_grads_with_norm_(
                        params, group["max_grad_norm"], total_norm, foreach=foreach
                    )
        super().step()
        return loss


def _check_max_grad_norm(value: Any) -> None:
    valid = value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    )
    if not valid:
        raise ValueError(
            f"Invalid max_grad_norm: must be > 0 (or None for no clipping), got {value!r}."
        )
