"""AdamZ's loss-driven learning-rate controller, as tensor operations with no host reads.

The controller keeps the last ``patience`` finite losses of a parameter group and, once that
window is full, multiplies the group's rate by ``overshoot_factor`` when the newest loss is the
window's maximum and by ``stagnation_factor`` when the losses of the last ``stagnation_period``
steps spread less than ``stagnation_threshold`` times as much as the whole window's; the rate is
then clamped into the group's ``lr_bounds``.

The rule has two implementations over the same state, tested equal:

* :func:`observe_loss_on_device`: tensor operations on the loss's device that never read a value
  back to the host (no ``.item()``, ``bool()`` or Python branch on a tensor), so an optimizer step
  on CUDA does not wait for the device; the rate is then a 0-dim tensor.
* :func:`observe_loss_on_host`: for a loss on the CPU, where reading it costs nothing. Two dozen
  tiny tensor kernels cost more on a CPU than Adam's own Python overhead (about 0.2 ms a step),
  while NumPy views of the same state tensors do the same in microseconds, and the rate stays a
  Python float, which saves the Adam update a pass over the parameters.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import Tensor


class ControllerState(TypedDict):
    """Per-group controller state, stored in the param group under ``"controller"``.

    ``loss_window`` holds the last ``patience`` finite losses, oldest first; before it is full
    its head holds zeros that ``observed`` tells apart. The counters are 0-dim int64 tensors so
    that they can be updated on the device without a host read.
    """

    loss_window: Tensor
    observed: Tensor
    nonfinite: Tensor
    overshoots: Tensor
    stagnations: Tensor


def window_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the loss window and the rate: float64, except on devices without it."""
    return torch.float32 if device.type == "mps" else torch.float64


def new_controller_state(patience: int, device: torch.device) -> ControllerState:
    """An empty controller state for a group with the given ``patience``, on ``device``."""
    zero = torch.zeros((), dtype=torch.int64, device=device)
    return ControllerState(
        loss_window=torch.zeros(patience, dtype=window_dtype(device), device=device),
        observed=zero.clone(),
        nonfinite=zero.clone(),
        overshoots=zero.clone(),
        stagnations=zero.clone(),
    )


def controller_state_to(state: ControllerState, device: torch.device) -> ControllerState:
    """``state`` moved to ``device`` (a checkpoint saved on one device and resumed on another)."""
    return ControllerState(
        loss_window=state["loss_window"].to(device=device, dtype=window_dtype(device)),
        observed=state["observed"].to(device),
        nonfinite=state["nonfinite"].to(device),
        overshoots=state["overshoots"].to(device),
        stagnations=state["stagnations"].to(device),
    )


def resize_window(state: ControllerState, patience: int) -> ControllerState:
    """``state`` with a window of length ``patience``, keeping the most recent losses.

    For a group whose ``patience`` was changed during training: a longer window has to fill
    again before the controller acts.
    """
    old = state["loss_window"]
    kept = min(old.numel(), patience)
    window = old.new_zeros(patience)
    window[patience - kept :] = old[old.numel() - kept :]
    return ControllerState(
        loss_window=window,
        observed=state["observed"].clamp(max=kept),
        nonfinite=state["nonfinite"],
        overshoots=state["overshoots"],
        stagnations=state["stagnations"],
    )


def observe_loss_on_device(
    state: ControllerState,
    loss: Tensor,
    lr: Tensor,
    *,
    overshoot_factor: float,
    stagnation_factor: float,
    stagnation_threshold: float,
    stagnation_period: int,
    lr_bounds: tuple[float, float],
) -> Tensor:
    """Record ``loss`` in ``state`` (updated in place) and return the group's next rate.

    ``loss`` is a 0-dim tensor on the state's device, already detached and cast to the window's
    dtype; ``lr`` is the group's current rate, a 0-dim tensor of the same dtype and device.

    With ``L_t`` the loss, ``W`` the window of the last ``p`` finite losses (``L_t`` included)
    and ``S`` its last ``s`` entries:

    1. a non-finite ``L_t`` is counted and otherwise ignored: the window and rate stay as they are;
    2. else ``L_t`` enters ``W``; until ``p`` finite losses have been seen nothing else happens;
    3. overshoot: ``L_t >= max(W)``  ->  ``lr *= overshoot_factor``;
    4. stagnation: ``std(S) < stagnation_threshold * std(W)`` (population std)
       ->  ``lr *= stagnation_factor``; 3 and 4 are independent, both may fire;
    5. ``lr`` is clamped into ``lr_bounds``.

    This is :func:`observe_losses` for one group, whose window is exactly ``p`` long.
    """
    return observe_losses(
        state,
        loss,
        lr,
        overshoot_factor=overshoot_factor,
        stagnation_factor=stagnation_factor,
        stagnation_threshold=stagnation_threshold,
        patience=state["loss_window"].shape[-1],
        stagnation_period=stagnation_period,
        lr_min=lr_bounds[0],
        lr_max=lr_bounds[1],
    )


PerMember = float | Tensor
"""A hyperparameter: one number for every controller, or a tensor with one per controller."""


def observe_losses(
    state: ControllerState,
    loss: Tensor,
    lr: Tensor,
    *,
    overshoot_factor: PerMember,
    stagnation_factor: PerMember,
    stagnation_threshold: PerMember,
    patience: int | Tensor,
    stagnation_period: int | Tensor,
    lr_min: PerMember,
    lr_max: PerMember,
    masks: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """The rule of :func:`observe_loss_on_device` for many controllers at once, on the device.

    A population of ``K`` AdamZ runs (:mod:`adamz.optim.batched`) keeps one controller per
    member: ``loss`` and ``lr`` have shape ``(K,)``, the state's counters too, and its
    ``loss_window`` has shape ``(K, P)`` with ``P`` the largest patience. Member ``k`` uses the
    last ``patience[k]`` entries of its row (the rest is padding, masked out of the maximum and
    the variances) and the last ``stagnation_period[k]`` of those; every hyperparameter is a
    number or a ``(K,)`` tensor. One controller is the case ``K`` absent: 0-dim loss and rate, a
    window of length ``patience``. No value is read back to the host. ``masks``: what
    :func:`window_masks` gives for these windows, when the caller keeps them between steps.
    """
    window = state["loss_window"]
    size = window.shape[-1]
    finite = torch.isfinite(loss)
    shifted = torch.cat((window[..., 1:], loss.unsqueeze(-1)), dim=-1)
    window = torch.where(finite.unsqueeze(-1), shifted, window)
    observed = state["observed"] + finite
    active = finite & (observed >= patience)
    if isinstance(patience, int) and isinstance(stagnation_period, int) and patience == size:
        # One window exactly ``patience`` long: plain reductions, no masks.
        newest_max = window.amax(-1)
        recent_var = window[..., size - stagnation_period :].var(dim=-1, correction=0)
        window_var = window.var(dim=-1, correction=0)
    else:
        if masks is None:
            masks = window_masks(size, patience, stagnation_period, window)
        outside, in_both = masks
        newest_max = window.masked_fill(outside, -math.inf).amax(-1)
        recent_var, window_var = _masked_variance(window, in_both)
    overshoot = active & (loss >= newest_max)
    # Variances compared against the squared threshold: the same test as on standard
    # deviations for a non-negative threshold, two square roots fewer.
    stagnation = active & (recent_var < stagnation_threshold**2 * window_var)
    # Multiplying inside ``where`` keeps the factors in the rate's dtype (a float32 1.2 is not 1.2).
    lr = torch.where(overshoot, lr * overshoot_factor, lr)
    lr = torch.where(stagnation, lr * stagnation_factor, lr)
    state["loss_window"] = window
    state["observed"] = observed
    state["nonfinite"] = state["nonfinite"] + ~finite
    state["overshoots"] = state["overshoots"] + overshoot
    state["stagnations"] = state["stagnations"] + stagnation
    return lr.clamp(lr_min, lr_max)  # type: ignore[arg-type]  # a float bound is fine too


def window_masks(
    size: int, patience: int | Tensor, stagnation_period: int | Tensor, like: Tensor
) -> tuple[Tensor, Tensor]:
    """Masks of windows ``size`` long (right-aligned, on ``like``'s device): which entries are
    not among the last ``patience`` losses (padding), and, stacked, which are the last
    ``stagnation_period`` and which the last ``patience`` (both variances in one pass)."""
    position = torch.arange(size, device=like.device)
    in_window = position >= size - torch.as_tensor(patience, device=like.device)[..., None]
    in_recent = position >= size - torch.as_tensor(stagnation_period, device=like.device)[..., None]
    return ~in_window, torch.stack((in_recent, in_window))


def _masked_variance(values: Tensor, mask: Tensor) -> Tensor:
    """Population variance along the last dimension of the entries where ``mask`` holds
    (``mask`` may have leading dimensions more than ``values``: one variance per mask)."""
    count = mask.sum(-1)
    mean = torch.where(mask, values, 0).sum(-1) / count
    deviations = torch.where(mask, values - mean.unsqueeze(-1), 0)
    return deviations.square().sum(-1) / count


def observe_loss_on_host(
    state: ControllerState,
    loss: float,
    lr: float,
    *,
    overshoot_factor: float,
    stagnation_factor: float,
    stagnation_threshold: float,
    stagnation_period: int,
    lr_bounds: tuple[float, float],
) -> float:
    """:func:`observe_loss_on_device` for CPU state, a Python float loss and rate.

    The state's tensors are updated in place through NumPy views of their memory.
    """
    window = state["loss_window"].numpy()
    if not math.isfinite(loss):
        state["nonfinite"].numpy()[()] += 1
    else:
        window[:-1] = window[1:]
        window[-1] = loss
        observed = state["observed"].numpy()
        observed[()] += 1
        if observed >= window.size:
            if loss >= window.max():
                lr *= overshoot_factor
                state["overshoots"].numpy()[()] += 1
            recent_var = window[window.size - stagnation_period :].var()
            if recent_var < stagnation_threshold**2 * window.var():
                lr *= stagnation_factor
                state["stagnations"].numpy()[()] += 1
    return min(max(lr, lr_bounds[0]), lr_bounds[1])
