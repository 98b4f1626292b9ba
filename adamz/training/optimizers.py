"""One registry of optimizers: AdamZ, the paper's baselines and scheduled Adam, from plain dicts.

A configuration is a name and a flat dict of hyperparameters, as a search space or a study
file writes it. Names are the constructors' own keyword arguments (the paper's names for
AdamZ); pairs stay pairs: ``betas`` and AdamZ's ``lr_bounds`` are given as two-element lists
(``lr_bounds: [1.0e-7, 1.0]``), never as separate ``beta1`` / ``min_lr`` keys, so a
configuration reads the same here, in the optimizer's signature and in an exported config.

The scheduled baselines (:data:`SCHEDULED`: ``adam-cosine``, ``adam-plateau``) are
``torch.optim.Adam`` with a torch scheduler (:mod:`~adamz.training.schedules`); their
hyperparameters are Adam's and the scheduler's, in one flat dict under torch's names.

Two reference points, named for what they are:

- :func:`library_defaults`: the constructors' own defaults (torch's for the baselines, e.g.
  Adam's lr 1e-3; AdamZ's constructor defaults, which are the paper's). torch's ``SGD`` has
  had a default rate (1e-3) since torch 2.2; older releases required one.
- :func:`paper_settings`: the same with lr 0.01, the rate at which the paper ran every
  optimizer in its tables.

A missing hyperparameter takes its library default. Implementation switches (``foreach``,
``fused``, ``capturable``, ``differentiable``) and ``maximize`` are not hyperparameters and
are not accepted.
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
from adamz.training.schedules import SCHEDULES, Schedule

__all__ = [
    "OPTIMIZERS",
    "OPTIMIZER_NAMES",
    "PAPER_LR",
    "SCHEDULED",
    "build_optimizer",
    "build_schedule",
    "library_defaults",
    "paper_settings",
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

SCHEDULED: dict[str, tuple[str, str]] = {
    "adam-cosine": ("adam", "cosine"),
    "adam-plateau": ("adam", "plateau"),
}
"""Scheduled baselines: registry name -> (optimizer name, schedule name)."""

OPTIMIZER_NAMES: tuple[str, ...] = (*OPTIMIZERS, *SCHEDULED)
"""Every name a run, a study or a search space may use."""

PAPER_LR = 0.01
"""The rate at which the paper ran every optimizer (:func:`paper_settings`)."""

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


def _parts(name: str) -> tuple[str, str | None]:
    """(optimizer, schedule or None) of registry name ``name``."""
    if isinstance(name, str) and name in SCHEDULED:
        return SCHEDULED[name]
    if isinstance(name, str) and name in OPTIMIZERS:
        return name, None
    raise ValueError(f"Unknown optimizer {name!r}: must be one of {', '.join(OPTIMIZER_NAMES)}.")


def _optimizer_class(name: str) -> type[Optimizer]:
    return OPTIMIZERS[_parts(name)[0]]


def _signature_defaults(name: str) -> tuple[dict[str, Any], set[str]]:
    """The hyperparameters' library defaults, and which of them accept ``None``."""
    optimizer, schedule = _parts(name)
    signature = inspect.signature(OPTIMIZERS[optimizer].__init__)
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
    if schedule is not None:
        defaults.update(SCHEDULES[schedule].hyperparameters)
    return defaults, nullable


def library_defaults(name: str) -> dict[str, Any]:
    """Every hyperparameter of optimizer ``name`` at its constructor's (and scheduler's) default.

    Raises:
        ValueError: unknown optimizer.
    """
    return _signature_defaults(name)[0]


def paper_settings(name: str) -> dict[str, Any]:
    """:func:`library_defaults` with the paper's rate, lr 0.01.

    Raises:
        ValueError: unknown optimizer.
    """
    return {**library_defaults(name), "lr": PAPER_LR}


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
        optimizer = _optimizer_class(name)([probe], **_optimizer_part(name, resolved))
        if (schedule := _parts(name)[1]) is not None:
            Schedule(schedule, optimizer, _schedule_part(name, resolved), total_steps=1)
    except (ValueError, TypeError) as exc:
        raise ValueError(" ".join(str(exc).split())) from exc  # torch's message, on one line
    return resolved


def build_optimizer(
    name: str, params: Iterable[Tensor], hyperparameters: Mapping[str, Any]
) -> Optimizer:
    """Optimizer ``name`` over ``params`` (one param group) with the given hyperparameters.

    Missing hyperparameters take :func:`library_defaults`. For a scheduled baseline this is
    its optimizer; :func:`build_schedule` adds the schedule.

    Raises:
        ValueError: as :func:`resolve_hyperparameters`.
    """
    resolved = resolve_hyperparameters(name, hyperparameters)
    return _optimizer_class(name)(params, **_optimizer_part(name, resolved))


def build_schedule(
    name: str, optimizer: Optimizer, hyperparameters: Mapping[str, Any], *, total_steps: int
) -> Schedule | None:
    """The schedule of optimizer ``name`` over ``optimizer`` (``None`` for unscheduled ones).

    Raises:
        ValueError: as :func:`resolve_hyperparameters`.
    """
    schedule = _parts(name)[1]
    if schedule is None:
        return None
    resolved = resolve_hyperparameters(name, hyperparameters)
    return Schedule(schedule, optimizer, _schedule_part(name, resolved), total_steps=total_steps)


def _schedule_part(name: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
    schedule = _parts(name)[1]
    tunable = SCHEDULES[schedule].hyperparameters if schedule else {}
    return {key: value for key, value in resolved.items() if key in tunable}


def _optimizer_part(name: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
    schedule = _parts(name)[1]
    tunable = SCHEDULES[schedule].hyperparameters if schedule else {}
    return {key: value for key, value in resolved.items() if key not in tunable}


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
