"""The Adam half of an AdamZ step: gradient clipping and the bias-corrected moment update.

Two implementations of the same arithmetic: :func:`_single_tensor_update`, a plain loop that is
the ground truth, and :func:`_multi_tensor_update`, the same operations on lists of tensors with
``torch._foreach_*`` kernels. Both are tested equal in float64.

The update is Adam's (Kingma & Ba, 2015, section 2) in its "efficient" form, which folds the
second bias correction into the step size and epsilon and so saves one pass over the moments::

    m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
    v_t = beta2 * v_{t-1} + (1 - beta2) * g_t**2
    theta_t = theta_{t-1} - lr * c_t * m_t / (sqrt(v_t) + eps * b_t)
    where b_t = sqrt(1 - beta2**t) and c_t = b_t / (1 - beta1**t)

which is algebraically ``lr * m_hat / (sqrt(v_hat) + eps)``, torch.optim.Adam's form.

``lr`` is a float or a 0-dim tensor. A tensor rate (set by AdamZ's controller without reading it
back to the host) is divided into the denominator instead of being passed as a Python scalar,
which would need a host read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

PerMember = float | Tensor
"""A hyperparameter of :func:`_single_tensor_update`: a number, or (for a population of stacked
runs, :mod:`adamz.optim.batched`) a tensor of one value per run, shaped to broadcast against the
parameter (``(K, 1, ..., 1)``)."""


def _sqrt(value: PerMember) -> PerMember:
    return value.sqrt() if isinstance(value, Tensor) else math.sqrt(value)


def _step_sizes(
    steps: Sequence[int | Tensor], beta1: PerMember, beta2: PerMember
) -> tuple[list[PerMember], list[PerMember]]:
    """Per-parameter ``c_t`` and ``b_t`` (see the module docstring) for step counts ``steps``."""
    sqrt_corrections: list[PerMember] = []
    step_sizes: list[PerMember] = []
    for step in steps:
        sqrt_correction = _sqrt(1 - beta2**step)
        sqrt_corrections.append(sqrt_correction)
        step_sizes.append(sqrt_correction / (1 - beta1**step))
    return step_sizes, sqrt_corrections


def _single_tensor_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: Sequence[int | Tensor],
    *,
    lr: PerMember,
    beta1: PerMember,
    beta2: PerMember,
    eps: PerMember,
    weight_decay: PerMember,
) -> None:
    step_sizes, sqrt_corrections = _step_sizes(steps, beta1, beta2)
    for i, param in enumerate(params):
        grad, exp_avg, exp_avg_sq = grads[i], exp_avgs[i], exp_avg_sqs[i]
        if isinstance(weight_decay, Tensor):
            grad = grad.addcmul(param, weight_decay.to(param.dtype))
        elif weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        if isinstance(beta1, Tensor):
            exp_avg.lerp_(grad, (1 - beta1).to(param.dtype))
        else:
            exp_avg.lerp_(grad, 1 - beta1)
        if isinstance(beta2, Tensor):
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad * (1 - beta2).to(param.dtype))
        else:
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt().add_(eps * sqrt_corrections[i])
        step_size = step_sizes[i]
        if isinstance(lr, Tensor) or isinstance(step_size, Tensor):
            # The factor in the parameter's dtype: a float64 one (the controller's rate) would
            # make the division run in float64 over every element.
            denom.div_(torch.as_tensor(lr * -step_size).to(denom.dtype))
            param.addcdiv_(exp_avg, denom)
        else:
            param.addcdiv_(exp_avg, denom, value=-lr * step_size)


def _multi_tensor_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    sizes, corrections = _step_sizes(steps, beta1, beta2)
    step_sizes, sqrt_corrections = cast(list[float], sizes), cast(list[float], corrections)
    if weight_decay != 0:
        grads = list(torch._foreach_add(grads, params, alpha=weight_decay))  # noqa: SLF001
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    denoms = torch._foreach_sqrt(exp_avg_sqs)  # noqa: SLF001
    torch._foreach_add_(denoms, [eps * b for b in sqrt_corrections])
    if isinstance(lr, Tensor):
        if len(set(steps)) == 1:
            torch._foreach_mul_(denoms, 1 / (lr * -step_sizes[0]))
        else:
            torch._foreach_div_(denoms, [lr * -c for c in step_sizes])
        torch._foreach_addcdiv_(params, exp_avgs, denoms)
    else:
        torch._foreach_addcdiv_(params, exp_avgs, denoms, [-lr * c for c in step_sizes])


def adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: Sequence[int | Tensor],
    *,
    lr: PerMember,
    beta1: PerMember,
    beta2: PerMember,
    eps: PerMember,
    weight_decay: PerMember,
    foreach: bool,
) -> None:
    """Apply one Adam update in place to ``params``, ``exp_avgs`` and ``exp_avg_sqs``.

    ``steps`` are the step counts *including* this step, one per parameter (a parameter that
    had no gradient on some steps lags behind its group). ``weight_decay`` is L2 added to the
    gradient, as in ``torch.optim.Adam``; ``grads`` themselves are not modified. Complex
    parameters are updated as pairs of reals, like torch.optim.Adam does.

    A population of stacked runs passes tensors (one value per run, shaped to broadcast against
    the parameter) for the hyperparameters and the step counts, and ``foreach=False``.
    """
    if not params:
        return
    if any(torch.is_complex(p) for p in params):
        params, grads, exp_avgs, exp_avg_sqs = (
            [torch.view_as_real(t) if torch.is_complex(t) else t for t in tensors]
            for tensors in (params, grads, exp_avgs, exp_avg_sqs)
        )
    if foreach:
        if any(isinstance(h, Tensor) for h in (beta1, beta2, eps, weight_decay)) or any(
            isinstance(step, Tensor) for step in steps
        ):
            raise ValueError("Invalid foreach: per-run hyperparameters need foreach=False.")
        _multi_tensor_update(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            cast(list[int], steps),
            lr=lr,
            beta1=cast(float, beta1),
            beta2=cast(float, beta2),
            eps=cast(float, eps),
            weight_decay=cast(float, weight_decay),
        )
        return
    _single_tensor_update(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
    )


def member_grad_norms(grads: list[Tensor]) -> Tensor:
    """The 2-norm of each run's gradients in a population: ``grads`` are stacked, one run per
    index of their first dimension; the result has one norm per run.

    :func:`total_grad_norm`'s arithmetic (the norm of the per-tensor norms) within each run.
    """
    norms = [torch.linalg.vector_norm(grad.flatten(1), dim=1) for grad in grads]
    return torch.linalg.vector_norm(torch.stack(norms, dim=1), dim=1)


def total_grad_norm(grads: list[Tensor], *, foreach: bool) -> Tensor:
    """The 2-norm of all ``grads`` together, as a 0-dim tensor on the first gradient's device.

    The same arithmetic as ``torch.nn.utils.clip_grad_norm_``, without reading the norm back.
    """
    device = grads[0].device
    # torch._foreach_*: the kernels torch.optim's own foreach paths run (torch has no public
    # name for them); the for-loop path beside them is the reference.
    norms = torch._foreach_norm(grads) if foreach else [torch.linalg.vector_norm(g) for g in grads]  # noqa: SLF001
    return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))


def clip_coefficient(total_norm: Tensor, max_norm: float | Tensor) -> Tensor:
    """The factor that scales gradients of norm ``total_norm`` down to at most ``max_norm``.

    As in ``torch.nn.utils.clip_grad_norm_``: ``min(1, max_norm / (total_norm + 1e-6))``.
    """
    return (max_norm / (total_norm + 1e-6)).clamp(max=1.0)
