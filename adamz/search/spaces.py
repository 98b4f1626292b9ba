"""Search spaces: which hyperparameters of an optimizer a study tunes, over which ranges.

A search space is a YAML file a person writes and diffs (``search_spaces/*.yaml``)::

    optimizer: adamz
    parameters:
      lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
      patience: {type: int, low: 30, high: 250, log: true}
      stagnation_period: {type: int, low: 3, high: 30}
      lr_bounds: [{type: float, low: 1.0e-8, high: 1.0e-5, log: true}, {value: 1.0}]
      max_grad_norm: {value: 1.0}

Each parameter is ``float`` or ``int`` (``low``, ``high``, optional ``log`` or ``step``),
``categorical`` (``choices``; ``null`` is a choice where the optimizer accepts ``None``, e.g.
``max_grad_norm: {type: categorical, choices: [1.0, null]}``: clipping on or off), or fixed
(``value``). Names are the optimizer's own keyword
arguments; a pair (``betas``, ``lr_bounds``) is a list of two such entries, sampled by Optuna
as ``lr_bounds[0]`` and ``lr_bounds[1]``. Hyperparameters not named keep their defaults.

Optuna's distributions do the sampling; this module only checks the file and maps names. The
ranges are checked so that *every* sample is a valid configuration (e.g. the largest
``stagnation_period`` is at most the smallest ``patience``), rather than rejecting samples
during the search and wasting trials.

An Optuna objective of one's own samples AdamZ from the project's space with
:func:`suggest_adamz`::

    def objective(trial: optuna.Trial) -> float:
        optimizer = AdamZ(model.parameters(), **suggest_adamz(trial))
        ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from adamz.search.errors import SpecError, read_yaml
from adamz.training.optimizers import library_defaults, resolve_hyperparameters

__all__ = [
    "ADAMZ_SPACE",
    "SHIPPED_SPACES",
    "SearchSpace",
    "load_search_space",
    "shipped_space",
    "shipped_space_names",
    "suggest_adamz",
]

SHIPPED_SPACES = Path(__file__).with_name("search_spaces")
"""The repository's ``search_spaces/*.yaml``, shipped with the package (a test holds the
files equal), so that a study file anywhere may name one: ``search_space: adam``."""
ADAMZ_SPACE = SHIPPED_SPACES / "adamz.yaml"
"""AdamZ's search space, as the project's studies tune it: ``search_spaces/adamz.yaml``."""


def shipped_space(name: str) -> Path | None:
    """The shipped search space called ``name`` (a file's name without ``.yaml``, no folder),
    or None where ``name`` is a path or no shipped space has that name."""
    if not name or "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
        return None
    path = SHIPPED_SPACES / f"{name}.yaml"
    return path if path.is_file() else None


def shipped_space_names() -> list[str]:
    """The names of every shipped search space, sorted."""
    return sorted(path.stem for path in SHIPPED_SPACES.glob("*.yaml"))


_PARAMETER_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


@dataclass(frozen=True)
class SearchSpace:
    """A checked search space.

    Attributes:
        optimizer: registry name of the optimizer it tunes.
        distributions: Optuna parameter name -> distribution, for the sampled parameters.
        fixed: Optuna parameter name -> value, for the fixed ones.
        definition: the file's content as plain data, for storing with the study.
    """

    optimizer: str
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any]
    definition: dict[str, Any]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample ``trial``'s hyperparameters: the optimizer's keyword arguments, pairs joined."""
        values = {name: _suggest(trial, name, dist) for name, dist in self.distributions.items()}
        return self.hyperparameters(values)

    def hyperparameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna parameters (``lr_bounds[0]``...) -> the optimizer's keyword arguments."""
        merged: dict[str, Any] = {}
        for name, value in {**self.fixed, **params}.items():
            if name.endswith("]"):
                base, index = name[:-1].split("[")
                pair = merged.setdefault(base, [None, None])
                pair[int(index)] = value
            else:
                merged[name] = value
        return merged


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    assert isinstance(distribution, CategoricalDistribution)
    return trial.suggest_categorical(name, distribution.choices)


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and check the search space in ``path``.

    Raises:
        SpecError: the file is missing or not YAML, or breaks a rule (see the module docs).
    """
    path = Path(path)
    content = read_yaml(path)
    return parse_search_space(content, source=str(path))


def parse_search_space(content: Any, *, source: str) -> SearchSpace:
    """Check a search space given as plain data (a parsed file); ``source`` names it in errors."""
    if not isinstance(content, dict):
        raise SpecError(source, "file", "must be a mapping with keys optimizer and parameters")
    unknown = set(content) - {"optimizer", "parameters", "description"}
    if unknown:
        raise SpecError(
            source,
            sorted(unknown)[0],
            "unknown key: allowed are optimizer, parameters, description",
        )
    optimizer = str(content.get("optimizer"))
    try:
        defaults = library_defaults(optimizer)
    except ValueError as exc:
        raise SpecError(source, "optimizer", str(exc).rstrip(".")) from exc
    parameters = content.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SpecError(source, "parameters", "must be a non-empty mapping of hyperparameters")

    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for name, spec in parameters.items():
        if name not in defaults:
            raise SpecError(
                source,
                f"parameters.{name}",
                f"unknown hyperparameter of {optimizer}: must be one of {', '.join(defaults)}",
            )
        if isinstance(defaults[name], tuple):
            if not (isinstance(spec, list) and len(spec) == 2):
                raise SpecError(
                    source, f"parameters.{name}", "a pair: must be a list of two parameters", spec
                )
            entries = [(f"{name}[{i}]", item) for i, item in enumerate(spec)]
        else:
            entries = [(name, spec)]
        for key, item in entries:
            value_or_distribution = _parse_parameter(item, source=source, key=f"parameters.{key}")
            if isinstance(value_or_distribution, BaseDistribution):
                distributions[key] = value_or_distribution
            else:
                fixed[key] = value_or_distribution
    space = SearchSpace(optimizer, distributions, fixed, content)
    _check_every_sample_is_valid(space, defaults, source)
    return space


def _parse_parameter(spec: Any, *, source: str, key: str) -> BaseDistribution | Any:
    if not isinstance(spec, dict):
        raise SpecError(source, key, "must be a mapping with type and range, or with value", spec)
    if "value" in spec:
        if set(spec) != {"value"}:
            raise SpecError(source, key, "a fixed parameter has only the key value", sorted(spec))
        return spec["value"]
    kind = spec.get("type")
    if kind not in _PARAMETER_KEYS:
        raise SpecError(source, f"{key}.type", "must be float, int or categorical", kind)
    unknown = set(spec) - _PARAMETER_KEYS[kind]
    if unknown:
        allowed = ", ".join(sorted(_PARAMETER_KEYS[kind]))
        raise SpecError(
            source,
            f"{key}.{sorted(unknown)[0]}",
            f"unknown key for a {kind} parameter: allowed are {allowed}",
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not (isinstance(choices, list) and choices):
            raise SpecError(source, f"{key}.choices", "must be a non-empty list", choices)
        return CategoricalDistribution(choices)
    number = int if kind == "int" else (int, float)
    for bound in ("low", "high"):
        if not isinstance(spec.get(bound), number) or isinstance(spec.get(bound), bool):
            raise SpecError(source, f"{key}.{bound}", f"must be a number ({kind})", spec.get(bound))
    low, high = spec["low"], spec["high"]
    if not low < high:
        raise SpecError(
            source,
            key,
            f"range must not be empty or inverted: low < high, got low={low}, high={high}",
        )
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(source, f"{key}.log", "must be true or false", log)
    step = spec.get("step")
    if log and low <= 0:
        raise SpecError(source, f"{key}.low", "must be > 0 on a log scale", low)
    if step is not None and log:
        raise SpecError(source, f"{key}.step", "cannot be combined with log: true")
    if step is not None and (not isinstance(step, number) or step <= 0):
        raise SpecError(source, f"{key}.step", "must be a positive number", step)
    if kind == "int":
        return IntDistribution(low, high, log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=step)


def _check_every_sample_is_valid(space: SearchSpace, defaults: dict[str, Any], source: str) -> None:
    """The ranges' extremes must satisfy the optimizer's joint rules, and every value its own."""

    def extreme(name: str, which: str) -> Any:
        if name in space.distributions:
            distribution = space.distributions[name]
            if isinstance(distribution, FloatDistribution | IntDistribution):
                return distribution.low if which == "low" else distribution.high
            values = [c for c in distribution.choices if isinstance(c, int | float)]  # type: ignore[attr-defined]
            return (min if which == "low" else max)(values) if values else None
        if name in space.fixed:
            return space.fixed[name]
        if name.endswith("]"):
            base, index = name[:-1].split("[")
            return defaults[base][int(index)]
        return defaults.get(name)

    rules = [
        (
            "stagnation_period",
            "high",
            "patience",
            "low",
            "the largest stagnation_period must be <= the smallest patience",
        ),
        (
            "lr_bounds[0]",
            "high",
            "lr_bounds[1]",
            "low",
            "the largest min rate lr_bounds[0] must be <= the smallest max rate lr_bounds[1]",
        ),
        (
            "lr_bounds[0]",
            "high",
            "lr",
            "low",
            "every lr must lie within lr_bounds: the smallest lr must be >= the largest lr_bounds[0]",
        ),
        (
            "lr",
            "high",
            "lr_bounds[1]",
            "low",
            "every lr must lie within lr_bounds: the largest lr must be <= the smallest lr_bounds[1]",
        ),
    ]
    if space.optimizer == "adamz":
        for small, small_end, large, large_end, rule in rules:
            a, b = extreme(small, small_end), extreme(large, large_end)
            if a is not None and b is not None and a > b:
                raise SpecError(source, f"parameters.{small.split('[')[0]}", rule, (a, b))
    # Each extreme combination must be accepted by the optimizer itself (its own rules).
    for which in ("low", "high"):
        params = {name: extreme(name, which) for name in [*space.distributions, *space.fixed]}
        try:
            resolve_hyperparameters(space.optimizer, space.hyperparameters(params))
        except ValueError as exc:
            raise SpecError(
                source,
                "parameters",
                f"the range's {which} ends are invalid: {str(exc).rstrip('.')}",
            ) from exc
    # And so must every choice of a categorical, the ones the extremes skip (null) included.
    lows = {name: extreme(name, "low") for name in [*space.distributions, *space.fixed]}
    for name, distribution in space.distributions.items():
        if not isinstance(distribution, CategoricalDistribution):
            continue
        for choice in distribution.choices:
            try:
                resolve_hyperparameters(
                    space.optimizer, space.hyperparameters(lows | {name: choice})
                )
            except ValueError as exc:
                raise SpecError(
                    source,
                    f"parameters.{name.split('[')[0]}",
                    f"the choice {choice!r} is invalid: {str(exc).rstrip('.')}",
                ) from exc


def suggest_adamz(
    trial: optuna.Trial, space: str | Path | SearchSpace | None = None
) -> dict[str, Any]:
    """Sample AdamZ's hyperparameters for ``trial`` from the project's search space
    (:data:`ADAMZ_SPACE`), or from ``space`` (a search-space file of AdamZ, or one loaded):
    every keyword argument of ``AdamZ(model.parameters(), **params)``, checked, those the space
    does not tune at their defaults.

    The parameters are named as the project's studies name them (a pair as ``lr_bounds[0]``
    and ``lr_bounds[1]``), so ``adamz-search report`` and ``export`` read a plain Optuna study
    that samples with it as they read the project's own.

    Raises:
        SpecError: ``space`` is not a valid search-space file.
        ValueError: ``space`` tunes another optimizer.
    """
    if space is None:
        space = _adamz_space()
    elif not isinstance(space, SearchSpace):
        space = load_search_space(space)
    if space.optimizer != "adamz":
        raise ValueError(f"Invalid space: must tune adamz, got one of {space.optimizer!r}.")
    return resolve_hyperparameters("adamz", space.suggest(trial))


@cache
def _adamz_space() -> SearchSpace:
    return load_search_space(ADAMZ_SPACE)
