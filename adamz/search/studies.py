"""Study files: what a study trains, how it searches, and how long; the one place they become
Optuna objects.

A study file is YAML (``studies/*.yaml``)::

    name: digits-adamz
    workload: {name: digits, epochs: 10}      # plus batch_size, train_size, test_size, data_dir,
                                              # dataset_sizes: {train: N, test: M}
    optimizer: adamz
    search_space: ../search_spaces/adamz.yaml # relative to this file; or a shipped space by
                                              # name, from anywhere: search_space: adamz
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

The workload may be one of the user's code, by import path (:mod:`adamz.workloads._user`)::

    workload: {name: "my_package.tasks:MyTask", hidden: 64, epochs: 20}
    metric: val_rmse                          # its own metric; the direction is its declaration's

Keys other than the run's settings (``epochs``... ``dataset_sizes``) are the options it is
called with. Reading the file imports it and checks it against the protocol, its data and a
forward pass on two examples (:func:`~adamz.workloads.check_workload`), so that ``create``
refuses a broken one in one line and stores nothing; a stored definition is not imported
again until a worker trains it.

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

A *sensitivity study* (``kind: sensitivity``) maps a space instead of searching it: the atlas
of ``adamz-search report`` (:mod:`adamz.reports`) reads it::

    kind: sensitivity
    name: circles-adamz-atlas
    workload: {name: circles}
    optimizer: adamz
    search_space: ../search_spaces/adamz-atlas.yaml
    metric: val_accuracy
    design: {name: sobol, seed: 0}            # sobol (scrambled) or random
    budget: 1024                              # configurations: a power of two for sobol
    seeds_per_trial: 3                        # at least 3 (the default)
    population: 64

Its configurations are a space-filling design drawn once, at ``create``, by Optuna's own
sampler (``QMCSampler``, scrambled Sobol, or ``RandomSampler``, seeded by ``design.seed``) and
queued as its trials, like a replicate study's runs: every worker and every population then
runs exactly the design's points, none twice, which samplers asked by many workers at once do
not promise (``QMCSampler`` numbers its points through an unlocked study attribute, and draws
the first trial of a study at random). Every configuration trains to the end on the same
``seeds_per_trial`` seeds (the noise floor of the atlas is their spread), so a sensitivity study
takes no pruner, at least 3 seeds, and neither ``sampler`` nor ``enqueue_defaults``: each is
refused with the reason.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import optuna

from adamz.search.definitions import (
    TrialPlan,
    add_optional_keys,
    check_common_keys,
    definition_digest,
    positive_int,
)
from adamz.search.errors import SpecError, read_yaml, referenced_file
from adamz.search.pruners import EqualBracketsHyperbandPruner
from adamz.search.replicates import ReplicateSpec, is_replicate_definition, parse_replicates
from adamz.search.spaces import (
    SearchSpace,
    load_search_space,
    parse_search_space,
    shipped_space,
    shipped_space_names,
)
from adamz.training.optimizers import library_defaults, paper_settings

__all__ = [
    "DESIGNS",
    "LIBRARY_DEFAULTS",
    "MIN_SENSITIVITY_SEEDS",
    "PAPER_SETTINGS",
    "SENSITIVITY",
    "AnySpec",
    "SensitivitySpec",
    "StudySpec",
    "design_points",
    "load_study_file",
    "make_pruner",
    "make_sampler",
    "spec_from_definition",
]

_STUDY_KEYS = {
    "name": "the study's name in the storage",
    "description": "free text",
    "workload": "the workload, its protocol overrides and options",
    "optimizer": "the optimizer's registry name",
    "search_space": "path of the search-space file, a shipped space's name (adam), or the space",
    "direction": "maximize or minimize",
    "metric": "the workload's metric",
    "sampler": "the sampler and its options",
    "pruner": "the pruner and its options",
    "budget": "finished trials the study runs",
    "seeds_per_trial": "seeds each trial trains (the value is their mean)",
    "enqueue_defaults": "run the library defaults and the paper settings first",
    "population": "trials a worker trains at once, in one process (worker --population)",
    "margin": "the report's equivalence margin, in the metric's units (points for an accuracy)",
}
SENSITIVITY = "sensitivity"
"""The ``kind`` of a sensitivity study file."""
MIN_SENSITIVITY_SEEDS = 3
"""Seeds a sensitivity study trains each configuration on, at least: its atlas's noise floor is
the spread between them, and two seeds give one difference per configuration."""
DESIGNS = {"sobol": "scrambled Sobol points (Optuna's QMCSampler)", "random": "random points"}
"""The designs a sensitivity study draws its configurations from."""
_SENSITIVITY_KEYS = {
    "kind": SENSITIVITY,
    **{key: _STUDY_KEYS[key] for key in ("name", "description", "workload", "optimizer")},
    **{key: _STUDY_KEYS[key] for key in ("search_space", "direction", "metric")},
    "design": "the space-filling design: {name: sobol or random, seed: N}",
    "budget": "configurations in the design",
    "seeds_per_trial": f"seeds each configuration trains (at least {MIN_SENSITIVITY_SEEDS})",
    "pruner": "none: every configuration trains to the end",
    "population": _STUDY_KEYS["population"],
}
_REFUSED_IN_SENSITIVITY = {
    "sampler": "a sensitivity study draws its configurations from its design (design: {name: "
    "sobol, seed: 0}), not from a sampler: remove the key",
    "enqueue_defaults": "a sensitivity study runs its design's configurations only: remove the key",
}
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
    # Optuna's brackets, assigned by trial number alone: compared studies prune alike.
    "hyperband": EqualBracketsHyperbandPruner,
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
        """A spec from a stored definition (the search space inlined): a
        :class:`SensitivitySpec` for a sensitivity study's."""
        return _parse(definition, source=source, base_dir=None)


def load_study_file(path: str | Path) -> AnySpec:
    """Read and check the study file at ``path``: a search, a sensitivity study if its ``kind`` is
    ``sensitivity`` (see the module docs), or a replicate study if it is ``replicates`` (see
    :mod:`adamz.search.replicates`).

    Raises:
        SpecError: the file is unreadable, not YAML, or breaks a rule.
    """
    path = Path(path)
    content = read_yaml(path)
    if is_replicate_definition(content):
        return parse_replicates(content, source=str(path), base_dir=path.parent)
    return _parse(content, source=str(path), base_dir=path.parent)


def spec_from_definition(definition: dict[str, Any], *, source: str) -> AnySpec:
    """The spec a study stored at creation: a search, a sensitivity or a replicate study."""
    if is_replicate_definition(definition):
        return parse_replicates(definition, source=source)
    return StudySpec.from_definition(definition, source=source)


def _parse(content: Any, *, source: str, base_dir: Path | None) -> StudySpec:
    if not isinstance(content, dict):
        raise SpecError(source, "file", "must be a mapping of study keys")
    sensitivity = _is_sensitivity(content, source)
    keys = _SENSITIVITY_KEYS if sensitivity else _STUDY_KEYS
    for key in content:
        if sensitivity and key in _REFUSED_IN_SENSITIVITY:
            raise SpecError(source, str(key), _REFUSED_IN_SENSITIVITY[key])
        if key not in keys:
            raise SpecError(source, str(key), f"unknown key: allowed are {', '.join(keys)}")
    for key in ("name", "workload", "optimizer", "search_space", "budget"):
        if key not in content:
            raise SpecError(source, key, f"is required ({keys[key]})")

    name, workload, direction, metric = check_common_keys(
        content, source, split="val", read_from_file=base_dir is not None
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
        shipped = shipped_space(raw_space)
        bare = not any(mark in raw_space for mark in ("/", "\\", "."))
        if shipped is None and bare and not (base_dir / raw_space).is_file():
            raise SpecError(
                source,
                "search_space",
                f"no shipped search space is called {raw_space!r} (there are "
                f"{', '.join(shipped_space_names())}) and no file {base_dir / raw_space} exists",
            )
        space = load_search_space(
            shipped
            or referenced_file(raw_space, source=source, key="search_space", base_dir=base_dir)
        )
    else:
        space = parse_search_space(raw_space, source=f"{source}: search_space")
    if space.optimizer != optimizer:
        raise SpecError(
            source,
            "search_space",
            f"tunes {space.optimizer!r}, but the study's optimizer is {optimizer!r}",
        )

    budget = positive_int(content["budget"], source, "budget")
    common = {
        "name": name,
        "workload": workload,
        "optimizer": optimizer,
        "search_space": space.definition,
        "direction": direction,
        "metric": metric,
    }
    if sensitivity:
        return _parse_sensitivity(content, source, space, common, budget)
    seeds = positive_int(content.get("seeds_per_trial", 1), source, "seeds_per_trial")
    enqueue_defaults = content.get("enqueue_defaults", False)
    if not isinstance(enqueue_defaults, bool):
        raise SpecError(source, "enqueue_defaults", "must be true or false", enqueue_defaults)
    sampler = _parse_component(
        content.get("sampler", {"name": "tpe", "seed": 0}), SAMPLERS, source, "sampler"
    )
    pruner = _parse_component(content.get("pruner", {"name": "none"}), PRUNERS, source, "pruner")

    definition = {
        **common,
        "sampler": sampler,
        "pruner": pruner,
        "budget": budget,
        "seeds_per_trial": seeds,
        "enqueue_defaults": enqueue_defaults,
    }
    add_optional_keys(definition, content, source)
    return _spec(StudySpec, definition, space=space)


def _is_sensitivity(content: dict[str, Any], source: str) -> bool:
    """Whether ``content`` is a sensitivity study's (``kind: sensitivity``); a search has no
    ``kind`` (replicate files are told apart before, by :func:`load_study_file`)."""
    if "kind" not in content:
        return False
    if content["kind"] != SENSITIVITY:
        raise SpecError(
            source,
            "kind",
            f"must be {SENSITIVITY} or replicates, or absent for a search",
            content["kind"],
        )
    return True


def _parse_sensitivity(
    content: dict[str, Any], source: str, space: SearchSpace, common: dict[str, Any], budget: int
) -> SensitivitySpec:
    """The rest of a sensitivity study: its design, seeds and pruner (none)."""
    if "pruner" in content:
        pruner = _parse_component(content["pruner"], PRUNERS, source, "pruner")
        if pruner["name"] != "none":
            raise SpecError(
                source,
                "pruner",
                "a sensitivity study trains every configuration to the end, so that the atlas "
                "compares finished runs: it takes no pruner (remove the key)",
                pruner["name"],
            )
    seeds = positive_int(
        content.get("seeds_per_trial", MIN_SENSITIVITY_SEEDS), source, "seeds_per_trial"
    )
    if seeds < MIN_SENSITIVITY_SEEDS:
        raise SpecError(
            source,
            "seeds_per_trial",
            f"a sensitivity study trains each configuration on at least {MIN_SENSITIVITY_SEEDS} "
            "seeds: the atlas's noise floor is the spread between the seeds of one configuration",
            seeds,
        )
    design = _parse_design(content.get("design", {"name": "sobol"}), source)
    definition = {
        "kind": SENSITIVITY,
        **common,
        "design": design,
        "budget": budget,
        "seeds_per_trial": seeds,
    }
    add_optional_keys(definition, content, source)
    return _spec(
        SensitivitySpec,
        definition,
        space=space,
        sampler=_design_sampler(design),
        pruner={"name": "none"},
        enqueue_defaults=False,
    )


_Spec = TypeVar("_Spec", bound="StudySpec")


def _spec(cls: type[_Spec], definition: dict[str, Any], **others: Any) -> _Spec:
    """A ``cls`` of ``definition`` (its keys that are fields of ``cls``) and ``others``."""
    fields = {field.name for field in dataclasses.fields(cls)}
    return cls(
        definition=definition, **{k: v for k, v in definition.items() if k in fields}, **others
    )


def _parse_design(raw: Any, source: str) -> dict[str, Any]:
    design = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(design, dict) or "name" not in design:
        raise SpecError(source, "design", "must be a design's name or a mapping with name", raw)
    for key in design:
        if key not in ("name", "seed"):
            raise SpecError(source, f"design.{key}", "unknown key: allowed are name, seed")
    if design["name"] not in DESIGNS:
        raise SpecError(
            source, "design.name", f"must be one of {', '.join(DESIGNS)}", design["name"]
        )
    seed = design.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(source, "design.seed", "must be an integer >= 0", seed)
    return {"name": design["name"], "seed": seed}


def _design_sampler(design: dict[str, Any]) -> dict[str, Any]:
    """The sampler, as a study file names one, that draws ``design``'s points."""
    if design["name"] == "sobol":
        return {"name": "qmc", "qmc_type": "sobol", "scramble": True, "seed": design["seed"]}
    return {"name": "random", "seed": design["seed"]}


def design_points(space: SearchSpace, sampler: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The first ``count`` points that ``sampler`` (a study file's sampler) draws from
    ``space``, as Optuna parameters (``lr_bounds[0]``...); the same arguments, the same points.

    They are drawn in a throw-away in-memory study, one trial at a time and each told before
    the next, which is how a sampler's sequence is meant to be read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning; SciPy's note on Sobol's balance
        study = optuna.create_study(sampler=make_sampler(sampler))
        if sampler["name"] == "qmc":
            # QMCSampler learns the space from a study's first trial, which it draws at random:
            # that one is left out, so the design is the first points of the sequence.
            study.tell(study.ask(space.distributions), 0.0)
        points = []
        for _ in range(count):
            trial = study.ask(space.distributions)
            points.append(dict(trial.params))
            study.tell(trial, 0.0)
    return points


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
    """The pruner a study file names, with its options; ``patient`` wraps ``wrapped_pruner``;
    ``hyperband`` is :class:`~adamz.search.pruners.EqualBracketsHyperbandPruner`, whose
    bracket of a trial is the same in every study.

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


@dataclass(frozen=True)
class SensitivitySpec(StudySpec):
    """A checked sensitivity study (see the module docs): ``design`` is ``{"name": "sobol" or
    "random", "seed": N}``, ``sampler`` the Optuna sampler that draws it, ``budget`` its
    configurations (one trial each); no pruner, no ``enqueue_defaults``."""

    design: dict[str, Any]

    queued_only: ClassVar[bool] = True
    """Every trial is a configuration of the design, queued at creation: a worker samples none."""

    def queued_trials(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(params, user_attrs)`` of every configuration of the design, in its order."""
        return [(params, {}) for params in design_points(self.space, self.sampler, self.budget)]


AnySpec = StudySpec | ReplicateSpec
"""What a study file or a stored definition can be."""


def _nearest_in(distribution: optuna.distributions.BaseDistribution, value: Any) -> Any:
    """``value`` if ``distribution`` contains it, else the nearest end of its range."""
    if isinstance(
        distribution, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution
    ) and not isinstance(value, bool):
        return min(max(value, distribution.low), distribution.high)
    return value
