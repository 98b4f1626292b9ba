"""One registry of optimizers: AdamZ and the paper's baselines, built from plain dicts.

A configuration is a name and a flat dict of hyperparameters, as a search space or a study
file writes it. Names are the constructors' own keyword arguments (the paper's names for
AdamZ); pairs stay pairs: ``betas`` and AdamZ's ``lr_bounds`` are given as two-element lists
(``lr_bounds: [1.0e-7, 1.0]``), never as separate ``beta1`` / ``min_lr`` keys, so a
configuration reads the same here, in the optimizer's signature and in an exported config.

Every optimizer's default rate is the paper's 0.01 (its experiments ran every optimizer at
0.01 with torch's other defaults); everything else defaults to the constructor's default.
Implementation switches (``foreach``, ``fused``, ``capturable``, ``differentiable``) and
``maximize`` are not hyperparameters and are not accepted.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from adamz.optim import AdamZ

__all__ = [
    "OPTIMIZERS",
    "PAPER_LR",
    "build_optimizer",
    "default_hyperparameters",
    "resolve_hyperparameters",
]

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adamz": AdamZ,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "asgd": torch.optim.ASGD,
}
"""Registry name -> optimizer class."""

PAPER_LR = 0.01
"""The rate at which the paper ran every optimizer; the default ``lr`` here."""

_NOT_HYPERPARAMETERS = frozenset(
    {"self", "params", "foreach", "fused", "capturable", "differentiable", "maximize"}
)
# Names people reach for when a pair is meant; the error points them to the pair.
_PAIR_HINTS = {
    "beta1": "betas",
    "beta2": "betas",
    "min_lr": "lr_bounds",
    "max_lr": "lr_bounds",
    "lr_min": "lr_bounds",
    "lr_max": "lr_bounds",
}


def _optimizer_class(name: str) -> type[Optimizer]:
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown optimizer {name!r}: must be one of {', '.join(OPTIMIZERS)}."
        ) from None


def _signature_defaults(name: str) -> tuple[dict[str, Any], set[str]]:
    """The hyperparameters' defaults from the constructor, and which of them accept ``None``."""
    signature = inspect.signature(_optimizer_class(name).__init__)
    defaults: dict[str, Any] = {}
    nullable: set[str] = set()
    for parameter in signature.parameters.values():
        if parameter.name in _NOT_HYPERPARAMETERS or parameter.default is inspect.Parameter.empty:
            continue
        defaults[parameter.name] = parameter.default
        # Annotations are strings under postponed evaluation, types otherwise; both print
        # "None" for an optional argument (AdamZ's max_grad_norm).
        if "None" in str(parameter.annotation):
            nullable.add(parameter.name)
    defaults["lr"] = PAPER_LR
    return defaults, nullable


def default_hyperparameters(name: str) -> dict[str, Any]:
    """Every hyperparameter of optimizer ``name`` with its default (``lr``: the paper's 0.01).

    Raises:
        ValueError: unknown optimizer.
    """
    return _signature_defaults(name)[0]


def resolve_hyperparameters(name: str, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``hyperparameters`` for optimizer ``name`` and fill in the defaults.

    Checks, in order: the optimizer exists; every key is one of its hyperparameters; every value
    has the default's kind (a number, ``true``/``false``, or a pair of numbers as a list or
    tuple); and the optimizer's own constructor accepts the values (torch's checks, and AdamZ's
    ``validate_hyperparameters``). Pairs come back as tuples of floats, whole numbers as
    ``int`` and other numbers as ``float``, so the result is what the constructor expects.

    Returns:
        The complete hyperparameters, ready for :func:`build_optimizer` and for recording.

    Raises:
        ValueError: one line naming the optimizer or hyperparameter, the rule and the value.
    """
    defaults, nullable = _signature_defaults(name)
    resolved = dict(defaults)
    for key, value in hyperparameters.items():
        if key not in defaults:
            hint = f" (give {_PAIR_HINTS[key]} as a pair)" if key in _PAIR_HINTS else ""
            raise ValueError(
                f"Unknown hyperparameter {key!r} for optimizer {name!r}{hint}: must be one of "
                f"{', '.join(defaults)}."
            )
        resolved[key] = _coerce(key, value, defaults[key], nullable=key in nullable)
    probe = torch.zeros(1, requires_grad=True)
    try:
        _optimizer_class(name)([probe], **resolved)
    except (ValueError, TypeError) as exc:
        raise ValueError(" ".join(str(exc).split())) from exc  # torch's message, on one line
    return resolved


def build_optimizer(
    name: str, params: Iterable[Tensor], hyperparameters: Mapping[str, Any]
) -> Optimizer:
    """Optimizer ``name`` over ``params`` (one param group) with the given hyperparameters.

    Missing hyperparameters take :func:`default_hyperparameters`.

    Raises:
        ValueError: as :func:`resolve_hyperparameters`.
    """
    resolved = resolve_hyperparameters(name, hyperparameters)
    return _optimizer_class(name)(params, **resolved)


def _coerce(key: str, value: Any, default: Any, *, nullable: bool) -> Any:
    """``value`` in the kind of ``default``, or ValueError naming ``key``, the rule and value."""
    if value is None:
        if nullable:
            return None
        raise ValueError(f"Invalid {key}: must not be null, got None.")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"Invalid {key}: must be true or false, got {value!r}.")
    if isinstance(default, tuple):
        if (
            isinstance(value, list | tuple)
            and len(value) == len(default)
            and all(_is_number(item) for item in value)
        ):
            return tuple(float(item) for item in value)
        raise ValueError(f"Invalid {key}: must be a list of {len(default)} numbers, got {value!r}.")
    if _is_number(value):
        return _number(value)
    raise ValueError(f"Invalid {key}: must be a number, got {value!r}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any) -> int | float:
    return int(value) if isinstance(value, numbers.Integral) else float(value)
