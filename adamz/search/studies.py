"""Study files: what a study trains, how it searches, and how long; the one place they become
Optuna objects.

A study file is YAML (``studies/*.yaml``)::

    name: digits-adamz
    workload: {name: digits, epochs: 10}      # plus batch_size, train_size, test_size, data_dir
    optimizer: adamz
    search_space: ../search_spaces/adamz.yaml # relative to this file
    metric: val_accuracy                      # or val_loss; the direction follows from it
    sampler: {name: tpe, seed: 0}             # tpe, random, qmc, gp, cmaes; options as keys
    pruner: {name: median, n_warmup_steps: 2} # none, median, percentile, successive-halving,
                                              # hyperband, wilcoxon, patient, threshold
    budget: 40                                # finished (complete + pruned) trials
    seeds_per_trial: 1
    enqueue_defaults: true                    # the first trials run the reference points

A search selects on its metric (the sampler, the pruner, the best trial, the confirmation's
candidates and export all read it), so it must be a validation metric: a file naming a test
metric is refused. Every trial still records the test metrics, for the report to present.

``enqueue_defaults`` queues the optimizer's two reference points as the first trials, each
labelled by name in the trial's ``enqueued`` attribute: ``library defaults`` (the constructor's
own, torch's for the baselines) and ``paper settings`` (the same with lr 0.01, as the paper ran
every optimizer); one trial carries both labels where they coincide (AdamZ).

A pruner sees one step per epoch, numbered from 1: ``n_warmup_steps: 2`` spares a trial's
first epoch, and 0 or 1 let the pruner stop it after any epoch.

Loading checks every key (unknown keys, unknown names, wrong types, empty ranges, the search
space's rules, the sampler's and pruner's options) before anything touches a storage, and
raises :class:`~adamz.search.errors.SpecError` naming the file, the key and the rule.

The checked definition, with the search space inlined, is what a study stores (its hash and
the package version beside it; see :mod:`adamz.search.study_attrs`), so a worker on another
host needs only the storage.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import optuna

from adamz.search.errors import SpecError, read_yaml, referenced_file
from adamz.search.replicates import (
    ReplicateSpec,
    TrialPlan,
    definition_digest,
    is_replicate_definition,
    parse_replicates,
)
from adamz.search.spaces import SearchSpace, load_search_space, parse_search_space
from adamz.training.optimizers import library_defaults, paper_settings
from adamz.workloads import METRICS, WORKLOADS

__all__ = [
    "LIBRARY_DEFAULTS",
    "PAPER_SETTINGS",
    "AnySpec",
    "StudySpec",
    "load_study_file",
    "make_pruner",
    "make_sampler",
    "spec_from_definition",
]

_STUDY_KEYS = {
    "name": "the study's name in the storage",
    "description": "free text",
    "workload": "the workload and its protocol overrides",
    "optimizer": "the optimizer's registry name",
    "search_space": "path of the search-space file, or the space itself",
    "direction": "maximize or minimize",
    "metric": "the workload's metric",
    "sampler": "the sampler and its options",
    "pruner": "the pruner and its options",
    "budget": "finished trials the study runs",
    "seeds_per_trial": "seeds each trial trains (the value is their mean)",
    "enqueue_defaults": "run the library defaults and the paper settings first",
    "population": "trials a worker trains at once, in one process (worker --population)",
}
_WORKLOAD_KEYS = {"name", "epochs", "batch_size", "train_size", "test_size", "data_dir"}
LIBRARY_DEFAULTS = "library defaults"
PAPER_SETTINGS = "paper settings"

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive-halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "patient": optuna.pruners.PatientPruner,
    "threshold": optuna.pruners.ThresholdPruner,
}


@dataclass(frozen=True)
class StudySpec:
    """A checked study file.

    Attributes:
        name, workload, optimizer, direction, metric, budget, seeds_per_trial,
            enqueue_defaults: as in the file (``workload`` a dict with ``name`` and overrides).
        sampler, pruner: ``{"name": ..., **options}``.
        space: the search space.
        definition: the whole study as plain data, search space inlined: what is stored.
        queued_only: ``False``: the sampler proposes the trials (``ReplicateSpec``'s is True).
    """

    name: str
    workload: dict[str, Any]
    optimizer: str
    space: SearchSpace
    direction: str
    metric: str
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    budget: int
    seeds_per_trial: int
    enqueue_defaults: bool
    definition: dict[str, Any]

    queued_only: ClassVar[bool] = False

    @property
    def digest(self) -> str:
        """SHA-256 of the definition: two files define the same study iff their digests match."""
        return definition_digest(self.definition)

    def plan(self, trial: optuna.Trial) -> TrialPlan:
        """What ``trial`` trains: the optimizer with sampled values, over the study's seeds."""
        return TrialPlan(
            self.optimizer, self.space.suggest(trial), list(range(self.seeds_per_trial))
        )

    def queued_trials(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(params, user_attrs)`` of the trials to queue at creation: the reference points.

        With ``enqueue_defaults``, the library defaults and the paper settings, in that order,
        each with ``enqueued``: the list of the reference points it runs (one trial for both
        where their parameters coincide).
        """
        if not self.enqueue_defaults:
            return []
        queued: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for label, reference in (
            (LIBRARY_DEFAULTS, library_defaults(self.optimizer)),
            (PAPER_SETTINGS, paper_settings(self.optimizer)),
        ):
            params, clamped = self._within_space(reference)
            same = next((attrs for other, attrs in queued if other == params), None)
            if same is not None:
                same["enqueued"].append(label)
                continue
            attrs: dict[str, Any] = {"enqueued": [label]}
            if clamped:
                attrs["clamped"] = clamped
            queued.append((params, attrs))
        return queued

    def _within_space(
        self, reference: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """``reference``'s searched values, and those moved into the searched range.

        A value outside the searched range (weight_decay 0 in a log range) runs at the range's
        nearest end, and the trial says so.
        """
        params: dict[str, Any] = {}
        clamped: dict[str, list[Any]] = {}
        for name, distribution in self.space.distributions.items():
            if name.endswith("]"):  # a pair's element, e.g. lr_bounds[0]
                base, index = name[:-1].split("[")
                value = reference[base][int(index)]
            else:
                value = reference[name]
            params[name] = _nearest_in(distribution, value)
            if params[name] != value:
                clamped[name] = [value, params[name]]
        return params, clamped

    @classmethod
    def from_definition(cls, definition: dict[str, Any], *, source: str) -> StudySpec:
        """A spec from a stored definition (the search space inlined)."""
        return _parse(definition, source=source, base_dir=None)


def load_study_file(path: str | Path) -> AnySpec:
    """Read and check the study file at ``path`` (a search, or a replicate study if its
    ``kind`` is ``replicates``: see :mod:`adamz.search.replicates`).

    Raises:
        SpecError: the file is unreadable, not YAML, or breaks a rule.
    """
    path = Path(path)
    content = read_yaml(path)
    if is_replicate_definition(content):
        return parse_replicates(content, source=str(path), base_dir=path.parent)
    return _parse(content, source=str(path), base_dir=path.parent)


def spec_from_definition(definition: dict[str, Any], *, source: str) -> AnySpec:
    """The spec a study stored at creation, a search or a replicate study."""
    if is_replicate_definition(definition):
        return parse_replicates(definition, source=source)
    return StudySpec.from_definition(definition, source=source)


def _parse(content: Any, *, source: str, base_dir: Path | None) -> StudySpec:
    if not isinstance(content, dict):
        raise SpecError(source, "file", "must be a mapping of study keys")
    for key in content:
        if key not in _STUDY_KEYS:
            raise SpecError(source, str(key), f"unknown key: allowed are {', '.join(_STUDY_KEYS)}")
    for key in ("name", "workload", "optimizer", "search_space", "budget"):
        if key not in content:
            raise SpecError(source, key, f"is required ({_STUDY_KEYS[key]})")

    name, workload, direction, metric = check_common_keys(
        content, source, default_metric="val_accuracy"
    )
    if metric.startswith("test_"):
        raise SpecError(
            source,
            "metric",
            "a search selects on its metric, and selecting on the test split makes the test "
            f"numbers the report presents optimistic: use val_{metric.removeprefix('test_')} "
            "(every trial records the test metrics anyway)",
            metric,
        )
    optimizer = content["optimizer"]
    try:
        library_defaults(optimizer)
    except ValueError as exc:
        raise SpecError(source, "optimizer", str(exc).rstrip(".")) from exc

    raw_space = content["search_space"]
    if isinstance(raw_space, str):
        if base_dir is None:
            raise SpecError(source, "search_space", "a stored definition must inline the space")
        space = load_search_space(
            referenced_file(raw_space, source=source, key="search_space", base_dir=base_dir)
        )
    else:
        space = parse_search_space(raw_space, source=f"{source}: search_space")
    if space.optimizer != optimizer:
        raise SpecError(
            source,
            "search_space",
            f"tunes {space.optimizer!r}, but the study's optimizer is {optimizer!r}",
        )

    budget = _positive_int(content["budget"], source, "budget")
    seeds = _positive_int(content.get("seeds_per_trial", 1), source, "seeds_per_trial")
    enqueue_defaults = content.get("enqueue_defaults", False)
    if not isinstance(enqueue_defaults, bool):
        raise SpecError(source, "enqueue_defaults", "must be true or false", enqueue_defaults)
    sampler = _parse_component(
        content.get("sampler", {"name": "tpe", "seed": 0}), SAMPLERS, source, "sampler"
    )
    pruner = _parse_component(content.get("pruner", {"name": "none"}), PRUNERS, source, "pruner")

    definition = {
        "name": name,
        "workload": workload,
        "optimizer": optimizer,
        "search_space": space.definition,
        "direction": direction,
        "metric": metric,
        "sampler": sampler,
        "pruner": pruner,
        "budget": budget,
        "seeds_per_trial": seeds,
        "enqueue_defaults": enqueue_defaults,
    }
    if "description" in content:
        definition["description"] = str(content["description"])
    if "population" in content:  # only when given: older definitions keep their digests
        definition["population"] = _positive_int(content["population"], source, "population")
    return StudySpec(
        name=name,
        workload=workload,
        optimizer=optimizer,
        space=space,
        direction=direction,
        metric=metric,
        sampler=sampler,
        pruner=pruner,
        budget=budget,
        seeds_per_trial=seeds,
        enqueue_defaults=enqueue_defaults,
        definition=definition,
    )


def check_common_keys(
    content: dict[str, Any], source: str, *, default_metric: str
) -> tuple[str, dict[str, Any], str, str]:
    """The keys every study file has: ``name``, ``workload``, ``direction``, ``metric``.

    The direction follows from the metric (accuracies are maximised, losses minimised); a file
    may say it, but not the other way round.
    """
    name = content["name"]
    if not (isinstance(name, str) and name.strip() and "/" not in name):
        raise SpecError(source, "name", "must be a non-empty string without '/'", name)
    workload = _parse_workload(content["workload"], source)
    metric = content.get("metric", default_metric)
    if metric not in METRICS:
        raise SpecError(source, "metric", f"must be one of {', '.join(METRICS)}", metric)
    natural = "maximize" if metric.endswith("_accuracy") else "minimize"
    direction = content.get("direction", natural)
    if direction not in ("maximize", "minimize"):
        raise SpecError(source, "direction", "must be maximize or minimize", direction)
    if direction != natural:
        raise SpecError(source, "direction", f"must be {natural} for metric {metric}", direction)
    return name, workload, direction, metric


def _parse_workload(raw: Any, source: str) -> dict[str, Any]:
    workload = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(workload, dict) or "name" not in workload:
        raise SpecError(source, "workload", "must be a workload name or a mapping with name", raw)
    for key in workload:
        if key not in _WORKLOAD_KEYS:
            raise SpecError(
                source,
                f"workload.{key}",
                f"unknown key: allowed are {', '.join(sorted(_WORKLOAD_KEYS))}",
            )
    if workload["name"] not in WORKLOADS:
        raise SpecError(
            source,
            "workload.name",
            f"unknown workload: must be one of {', '.join(WORKLOADS)}",
            workload["name"],
        )
    for key in ("epochs", "batch_size"):
        if key in workload:
            _positive_int(workload[key], source, f"workload.{key}")
    for key in ("train_size", "test_size"):
        if key in workload and workload[key] != "all":
            _positive_int(workload[key], source, f"workload.{key}")
    if "data_dir" in workload and not isinstance(workload["data_dir"], str):
        raise SpecError(source, "workload.data_dir", "must be a path", workload["data_dir"])
    return dict(workload)


def _parse_component(
    raw: Any, registry: dict[str, type[Any]], source: str, key: str
) -> dict[str, Any]:
    component = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(component, dict) or "name" not in component:
        raise SpecError(source, key, "must be a name or a mapping with name and options", raw)
    if component["name"] not in registry:
        raise SpecError(
            source, f"{key}.name", f"must be one of {', '.join(registry)}", component["name"]
        )
    try:
        (make_sampler if key == "sampler" else make_pruner)(component)
    except (TypeError, ValueError) as exc:
        raise SpecError(source, key, " ".join(str(exc).split()).rstrip(".")) from exc
    return dict(component)


def make_sampler(spec: dict[str, Any], *, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler a study file names, with its options.

    ``seed`` replaces the file's seed: each worker has its own, so that parallel workers do not
    propose the same trials. A QMC sampler keeps the file's seed: its workers draw one sequence.

    Raises:
        TypeError: an option the sampler does not take.
        ValueError: an unknown sampler or an invalid option value.
    """
    options = {k: v for k, v in spec.items() if k != "name"}
    sampler_class = SAMPLERS[spec["name"]]
    _check_options(sampler_class, options)
    if seed is not None and spec["name"] != "qmc":
        options["seed"] = seed
    return sampler_class(**options)


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner a study file names, with its options; ``patient`` wraps ``wrapped_pruner``.

    Raises:
        TypeError: an option the pruner does not take.
        ValueError: an unknown pruner or an invalid option value.
    """
    options = {k: v for k, v in spec.items() if k != "name"}
    pruner_class = PRUNERS[spec["name"]]
    if spec["name"] == "patient":
        wrapped = options.get("wrapped_pruner", "none")
        wrapped = {"name": wrapped} if isinstance(wrapped, str) else wrapped
        if not isinstance(wrapped, dict) or wrapped.get("name") not in PRUNERS:
            raise ValueError(
                f"wrapped_pruner must name one of {', '.join(PRUNERS)}, got {wrapped!r}"
            )
        options["wrapped_pruner"] = make_pruner(wrapped)
        options.setdefault("patience", 1)
    _check_options(pruner_class, options)
    return pruner_class(**options)


def _check_options(component: type[Any], options: dict[str, Any]) -> None:
    accepted = set(inspect.signature(component.__init__).parameters) - {"self"}
    for option in options:
        if option not in accepted:
            raise TypeError(
                f"unknown option {option!r} of {component.__name__}: accepted are {', '.join(sorted(accepted))}"
            )


def _positive_int(value: Any, source: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(source, key, "must be an integer >= 1", value)
    return value


AnySpec = StudySpec | ReplicateSpec
"""What a study file or a stored definition can be."""


def _nearest_in(distribution: optuna.distributions.BaseDistribution, value: Any) -> Any:
    """``value`` if ``distribution`` contains it, else the nearest end of its range."""
    if isinstance(
        distribution, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution
    ) and not isinstance(value, bool):
        return min(max(value, distribution.low), distribution.high)
    return value
