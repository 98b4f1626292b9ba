"""One registry of optimizers: AdamZ, its ablations, the paper's baselines, scheduled Adam and
today's optimizers, from plain dicts.

A configuration is a name and a flat dict of hyperparameters, as a search space or a study
file writes it. Names are the constructors' own keyword arguments (the paper's names for
AdamZ); pairs stay pairs: ``betas`` and AdamZ's ``lr_bounds`` are given as two-element lists
(``lr_bounds: [1.0e-7, 1.0]``), never as separate ``beta1`` / ``min_lr`` keys, so a
configuration reads the same here, in the optimizer's signature and in an exported config.

Kinds of names:

- :data:`OPTIMIZERS`: AdamZ, torch's optimizers, and :class:`~adamz.optim.ClippedAdam`
  (``adam-clip``: Adam after AdamZ's global gradient-norm clipping).
- :data:`VARIANTS`: a setting of another optimizer under a name of its own, with only the
  hyperparameters it uses: ``adamz-no-controller`` is AdamZ with ``lr_controller=False``, the
  ablation that keeps AdamZ's code and turns its controller off.
- :data:`EXTERNAL`: today's optimizers from their authors' packages, imported only when used
  (``pip install 'adamz-search[optimizers]'``): schedule-free AdamW, Prodigy and Lion, and
  NovoGrad from the pytorch-optimizer collection (its authors' code lives in NVIDIA's NeMo
  and apex, neither of which installs as a small package). torch's own Adafactor is among
  :data:`OPTIMIZERS`.
- :data:`SCHEDULED`: ``adam-cosine``, ``adam-plateau``, ``torch.optim.Adam`` with a torch
  scheduler (:mod:`~adamz.training.schedules`); their hyperparameters are Adam's and the
  scheduler's, in one flat dict under torch's names.

Two reference points: :func:`library_defaults`, the constructors' own defaults (torch's for
the baselines, e.g. Adam's lr 1e-3, and ``SGD``'s 1e-3 since torch 2.2; the authors' packages'
for today's optimizers; the paper's for AdamZ), and :func:`paper_settings`, the same at the
paper's lr 0.01. A missing hyperparameter takes its library default; implementation switches
(``foreach``, ``fused``... see :data:`_NOT_HYPERPARAMETERS`) and ``maximize`` are not accepted.
Schedule-free AdamW has training and evaluation modes: see :func:`set_optimizer_mode`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from adamz.optim import AdamZ, ClippedAdam
from adamz.training.schedules import SCHEDULES, Schedule

__all__ = [
    "EXTERNAL",
    "INSTALL_OPTIMIZERS",
    "OPTIMIZERS",
    "OPTIMIZER_NAMES",
    "PAPER_LR",
    "SCHEDULED",
    "VARIANTS",
    "ExternalOptimizer",
    "Variant",
    "build_optimizer",
    "build_schedule",
    "library_defaults",
    "optimizer_class",
    "paper_settings",
    "resolve_hyperparameters",
    "set_optimizer_mode",
]

logger = logging.getLogger(__name__)

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adamz": AdamZ,
    "adam": torch.optim.Adam,
    "adam-clip": ClippedAdam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "asgd": torch.optim.ASGD,
    "adafactor": torch.optim.Adafactor,
}
"""Registry name -> optimizer class, for the classes of this package and of torch."""


@dataclass(frozen=True)
class ExternalOptimizer:
    """An optimizer class from its authors' package, imported when first used.

    Attributes:
        module: the module to import.
        attribute: the class's name in it.
        package: the PyPI package that installs the module.
    """

    module: str
    attribute: str
    package: str
    refusals: tuple[str, ...] = ()
    """Exceptions (``module.Class``) besides ``ValueError`` and ``TypeError`` with which the
    constructor refuses an argument: pytorch-optimizer's ``NegativeLRError`` derives from
    ``Exception`` alone."""


INSTALL_OPTIMIZERS = "pip install 'adamz-search[optimizers]'"
"""The command that installs every package of :data:`EXTERNAL`."""

EXTERNAL: dict[str, ExternalOptimizer] = {
    "adamw-schedulefree": ExternalOptimizer("schedulefree", "AdamWScheduleFree", "schedulefree"),
    "prodigy": ExternalOptimizer("prodigyopt", "Prodigy", "prodigyopt"),
    "lion": ExternalOptimizer("lion_pytorch", "Lion", "lion-pytorch"),
    "novograd": ExternalOptimizer(
        "pytorch_optimizer",
        "NovoGrad",
        "pytorch-optimizer",
        refusals=("pytorch_optimizer.base.exception.NegativeLRError",),
    ),
}
"""Registry name -> where today's optimizers come from (the ``optimizers`` extra)."""


@dataclass(frozen=True)
class Variant:
    """An optimizer at a fixed setting, under a name of its own.

    Attributes:
        optimizer: the registry name of the optimizer it is a setting of.
        fixed: the constructor arguments that make it the variant.
        hyperparameters: the optimizer's hyperparameters it keeps; the others, which the
            fixed setting leaves unused, take their defaults and are not accepted.
    """

    optimizer: str
    fixed: dict[str, Any] = field(default_factory=dict)
    hyperparameters: tuple[str, ...] = ()


VARIANTS: dict[str, Variant] = {
    "adamz-no-controller": Variant(
        "adamz",
        {"lr_controller": False},
        ("lr", "betas", "eps", "weight_decay", "max_grad_norm"),
    ),
}
"""Registry name -> the setting of another optimizer it names (the ablations)."""

SCHEDULED: dict[str, tuple[str, str]] = {
    "adam-cosine": ("adam", "cosine"),
    "adam-plateau": ("adam", "plateau"),
}
"""Scheduled baselines: registry name -> (optimizer name, schedule name)."""

OPTIMIZER_NAMES: tuple[str, ...] = (*OPTIMIZERS, *VARIANTS, *EXTERNAL, *SCHEDULED)
"""Every name a run, a study or a search space may use."""

PAPER_LR = 0.01
"""The rate at which the paper ran every optimizer (:func:`paper_settings`)."""

_LR_FREE = frozenset({"prodigy"})
"""Optimizers whose ``lr`` is a factor on a rate they estimate, not a rate."""

_NOT_HYPERPARAMETERS = frozenset(
    {
        "self",
        "params",
        "foreach",
        "fused",
        "capturable",
        "differentiable",
        "maximize",
        "use_triton",  # Lion: a Triton kernel for the same update
        "fsdp_in_use",  # Prodigy: sharded parameters
        "slice_p",  # Prodigy: estimates on every p-th entry to save memory
    }
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


def set_optimizer_mode(optimizer: object, *, training: bool) -> None:
    """Put ``optimizer`` in training or evaluation mode, where it has modes; else do nothing.

    Schedule-free optimizers take gradients at one point of the parameters and are evaluated
    at another, and swap the model's parameters between the two in their ``train()`` and
    ``eval()``: call this where the model's ``train()`` and ``eval()`` are called, and before
    a checkpoint is written (in evaluation mode). Any optimizer with ``train`` and ``eval``
    methods is switched, so every schedule-free class is; torch's optimizers and the batched
    ones have none.
    """
    switch = getattr(optimizer, "train" if training else "eval", None)
    if callable(switch) and callable(getattr(optimizer, "eval" if training else "train", None)):
        switch()


def _parts(name: str) -> tuple[str, str | None]:
    """(optimizer, schedule or None) of registry name ``name``; the optimizer is a key of
    :data:`OPTIMIZERS`, :data:`VARIANTS` or :data:`EXTERNAL`."""
    if isinstance(name, str) and name in SCHEDULED:
        return SCHEDULED[name]
    if isinstance(name, str) and (name in OPTIMIZERS or name in VARIANTS or name in EXTERNAL):
        return name, None
    raise ValueError(f"Unknown optimizer {name!r}: must be one of {', '.join(OPTIMIZER_NAMES)}.")


def optimizer_class(name: str) -> type[Optimizer]:
    """The class that registry name ``name`` builds (a variant's optimizer's, a scheduled
    baseline's optimizer's), importing an external package on first use.

    Raises:
        ValueError: unknown optimizer, or its package is not installed (one line naming the
            command that installs it).
    """
    optimizer = _parts(name)[0]
    if optimizer in VARIANTS:
        optimizer = VARIANTS[optimizer].optimizer
    if optimizer in OPTIMIZERS:
        return OPTIMIZERS[optimizer]
    external = EXTERNAL[optimizer]
    try:
        module = importlib.import_module(external.module)
    except ImportError as exc:
        # A ValueError, the package's error for input it cannot act on: the command line's
        # usage errors and the study checks then report it in one line, as any unknown name.
        raise ValueError(
            f"Optimizer {name!r} needs the package {external.package}, which is not "
            f"installed: {INSTALL_OPTIMIZERS} (or pip install {external.package})."
        ) from exc
    return getattr(module, external.attribute)


def _refusals(name: str) -> tuple[type[BaseException], ...]:
    """The exceptions besides ValueError and TypeError that ``name``'s constructor refuses an
    argument with (:attr:`ExternalOptimizer.refusals`), imported."""
    optimizer = _parts(name)[0]
    if optimizer not in EXTERNAL:
        return ()
    found = []
    for path in EXTERNAL[optimizer].refusals:
        module, _, attribute = path.rpartition(".")
        found.append(getattr(importlib.import_module(module), attribute))
    return tuple(found)


def _signature_defaults(name: str) -> tuple[dict[str, Any], set[str]]:
    """The hyperparameters' library defaults, and which of them accept ``None``."""
    optimizer, schedule = _parts(name)
    signature = inspect.signature(optimizer_class(optimizer).__init__)
    variant = VARIANTS.get(optimizer)
    defaults: dict[str, Any] = {}
    nullable: set[str] = set()
    for parameter in signature.parameters.values():
        if parameter.name in _NOT_HYPERPARAMETERS or parameter.default is inspect.Parameter.empty:
            continue
        if variant is not None and parameter.name not in variant.hyperparameters:
            continue
        defaults[parameter.name] = parameter.default
        # Annotations are strings under postponed evaluation, types otherwise; both print
        # "None" for an optional argument (AdamZ's max_grad_norm). An unannotated argument
        # whose default is None (Prodigy's beta3) accepts it too.
        if "None" in str(parameter.annotation) or parameter.default is None:
            nullable.add(parameter.name)
    if schedule is not None:
        defaults.update(SCHEDULES[schedule])
    return defaults, nullable


def library_defaults(name: str) -> dict[str, Any]:
    """Every hyperparameter of optimizer ``name`` at its constructor's (and scheduler's) default.

    Raises:
        ValueError: unknown optimizer, or its package is not installed.
    """
    return _signature_defaults(name)[0]


def paper_settings(name: str) -> dict[str, Any]:
    """:func:`library_defaults` with the paper's rate, lr 0.01; for a learning-rate-free
    optimizer (Prodigy), whose ``lr`` is a factor on the rate it estimates and which its
    authors run at 1, its library defaults: lr 0.01 would not be the paper's rate there but a
    hundredth of Prodigy's own.

    Raises:
        ValueError: unknown optimizer, or its package is not installed.
    """
    if _parts(name)[0] in _LR_FREE:
        return library_defaults(name)
    return {**library_defaults(name), "lr": PAPER_LR}


def resolve_hyperparameters(name: str, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``hyperparameters`` for optimizer ``name`` and fill in the defaults.

    Checks, in order: the optimizer exists (and its package is installed); every key is one of
    its hyperparameters; every value has the default's kind (a number, ``true``/``false``, or
    a pair of numbers as a list or tuple); and the optimizer's own constructor accepts the
    values (torch's and the authors' checks, and AdamZ's ``validate_hyperparameters``). Pairs
    come back as tuples of floats, whole numbers as ``int`` and other numbers as ``float``,
    so the result is what the constructor expects.

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
    refused: tuple[type[BaseException], ...] = (ValueError, TypeError, *_refusals(name))
    try:
        optimizer = _construct(name, [probe], resolved)
        if (schedule := _parts(name)[1]) is not None:
            Schedule(schedule, optimizer, _schedule_part(name, resolved), total_steps=1)
    except refused as exc:
        raise ValueError(" ".join(str(exc).split())) from exc  # the library's message, one line
    except AssertionError as exc:  # Lion checks its arguments with assert, without a message
        raise ValueError(
            f"Invalid hyperparameters for optimizer {name!r}: refused by "
            f"{type(exc).__name__} in its constructor, got {_optimizer_part(name, resolved)}."
        ) from exc
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
    return _construct(name, params, resolved)


def _construct(name: str, params: Iterable[Tensor], resolved: Mapping[str, Any]) -> Optimizer:
    """The optimizer of ``name`` over ``params``, with a variant's fixed setting.

    Prodigy prints a line when weight decay is on; printed to stdout, it would corrupt the
    JSON record that ``adamz-search train`` writes there, so what a constructor prints is
    logged at debug level instead.
    """
    optimizer = _parts(name)[0]
    fixed = VARIANTS[optimizer].fixed if optimizer in VARIANTS else {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        built = optimizer_class(name)(params, **_optimizer_part(name, resolved), **fixed)
    if printed.getvalue().strip():
        logger.debug("%s: %s", name, printed.getvalue().strip())
    return built


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
    tunable = SCHEDULES[schedule] if schedule else {}
    return {key: value for key, value in resolved.items() if key in tunable}


def _optimizer_part(name: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
    scheduled = _schedule_part(name, resolved)
    return {key: value for key, value in resolved.items() if key not in scheduled}


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
        # An element may be null where the default's is (Adafactor's eps: (None, 1e-3)).
        if (
            isinstance(value, list | tuple)
            and len(value) == len(default)
            and all(
                _is_number(item) or (item is None and fallback is None)
                for item, fallback in zip(value, default, strict=True)
            )
        ):
            return tuple(None if item is None else float(item) for item in value)
        raise ValueError(f"Invalid {key}: must be a list of {len(default)} numbers, got {value!r}.")
    if _is_number(value):
        return _number(value)
    raise ValueError(f"Invalid {key}: must be a number, got {value!r}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any) -> int | float:
    return int(value) if isinstance(value, numbers.Integral) else float(value)
