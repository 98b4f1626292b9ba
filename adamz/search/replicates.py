"""Replicate studies: fixed configurations, each trained over many seeds, one trial per seed.

They are how the project answers "how good is this configuration, really": the paper's tables
(its settings over many seeds) and the seed confirmation of tuned configurations
(``adamz-search report --confirm K``) are both replicate studies, run by the same workers as a
search, so they get the same storage, heartbeats, retries, checkpoints and dashboard.

A replicate file (``studies/paper-*.yaml``)::

    kind: replicates
    name: paper-circles
    workload: {name: circles}      # or a workload of your own: {name: "my_package.tasks:MyTask"}
    metric: test_accuracy          # the default (the workload's first metric on the test split):
                                   # replicates select nothing, they measure
    seeds: 20                      # each run trains seeds first_seed .. first_seed + seeds - 1
    first_seed: 0
    runs:
      - {label: AdamZ, optimizer: adamz, hyperparameters: {lr: 0.01}}
      - {label: Adam, optimizer: adam, hyperparameters: {lr: 0.01}}
      - {label: exported, config: ../reports/defaults/robust.yaml}   # or a preset: recommended

A sweep is a replicate study whose runs carry ``family`` (the configuration they vary) and
``varies`` (the one hyperparameter a run changes and its value, ``{}`` for the family's centre):
``report`` draws each family's curves (:mod:`adamz.reports._sweeps`), and picks the best rate of
a rate grid on validation.

A run's ``config`` is a file ``adamz-search export`` wrote (relative to the replicate file) or
the name of a preset of ``AdamZ.from_config``; its optimizer and hyperparameters are copied
into the stored definition, so workers elsewhere need only the storage.

Every (run, seed) pair is queued as a trial when the study is created, with the parameters
``run`` (the label) and ``seed``; the budget is their number. All runs train the same seeds,
so their results pair up seed by seed. A run may carry ``source`` (the study and trial it
came from), which is how ``export`` finds the confirmation of a tuned configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import optuna

from adamz.search.definitions import (
    TrialPlan,
    add_optional_keys,
    check_common_keys,
    definition_digest,
    positive_number,
)
from adamz.search.errors import SpecError, read_yaml, referenced_file
from adamz.training.optimizers import resolve_hyperparameters

__all__ = ["KIND", "ReplicateSpec"]

KIND = "replicates"

_KEYS = {
    "kind": "replicates",
    "name": "the study's name in the storage",
    "description": "free text",
    "workload": "the workload, its protocol overrides and options",
    "direction": "maximize or minimize",
    "metric": "the workload's metric",
    "seeds": "seeds each run trains",
    "first_seed": "the first of them",
    "runs": "the configurations: label, optimizer, hyperparameters (and source)",
    "population": "trials a worker trains at once, in one process (worker --population)",
    "margin": "the report's equivalence margin, in the metric's units (points for an accuracy)",
    "noninferiority": "{reference: a run's label, margin: in the page's units}: every other run "
    "is tested for being no worse than the reference by more than the margin",
}
_RUN_KEYS = {"label", "optimizer", "hyperparameters", "config", "source", "family", "varies"}


@dataclass(frozen=True)
class ReplicateSpec:
    """A checked replicate study; see the module docs for the file it comes from.

    Attributes:
        runs: ``{"label", "optimizer", "hyperparameters"[, "source"]}`` each, labels unique.
        definition: the whole study as plain data: what is stored with it.
    """

    name: str
    workload: dict[str, Any]
    direction: str
    metric: str
    seeds: int
    first_seed: int
    runs: list[dict[str, Any]]
    definition: dict[str, Any]

    # What the worker reads from any spec it runs.
    sampler: ClassVar[dict[str, Any]] = {"name": "random", "seed": 0}  # trials are queued
    pruner: ClassVar[dict[str, Any]] = {"name": "none"}  # a replicate is never cut short
    queued_only: ClassVar[bool] = True
    """Every trial is a queued (run, seed): a worker samples none, and queues a failed one again."""

    @property
    def budget(self) -> int:
        return len(self.runs) * self.seeds

    @property
    def digest(self) -> str:
        return definition_digest(self.definition)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def queued_trials(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(params, user_attrs)`` of every trial to queue at creation: each run, each seed.

        Seed-major, so that the runs progress together and a partial study is balanced.
        """
        return [
            ({"run": run["label"], "seed": seed}, {})
            for seed in self.seed_list
            for run in self.runs
        ]

    def plan(self, trial: optuna.Trial) -> TrialPlan:
        """The run and seed ``trial`` was queued with."""
        label = trial.suggest_categorical("run", [run["label"] for run in self.runs])
        seed = trial.suggest_int("seed", self.first_seed, self.first_seed + self.seeds - 1)
        run = next(run for run in self.runs if run["label"] == label)
        return TrialPlan(run["optimizer"], dict(run["hyperparameters"]), [seed])

    @classmethod
    def from_definition(cls, definition: dict[str, Any], *, source: str) -> ReplicateSpec:
        return parse_replicates(definition, source=source)


def is_replicate_definition(content: Any) -> bool:
    return isinstance(content, dict) and content.get("kind") == KIND


def parse_replicates(content: Any, *, source: str, base_dir: Path | None = None) -> ReplicateSpec:
    """Check a replicate definition (a file's content or a stored one).

    Raises:
        SpecError: naming the key and the rule it breaks.
    """
    if not is_replicate_definition(content):
        raise SpecError(source, "kind", f"must be {KIND!r} for a replicate study")
    for key in content:
        if key not in _KEYS:
            raise SpecError(source, str(key), f"unknown key: allowed are {', '.join(_KEYS)}")
    for key in ("name", "workload", "runs", "seeds"):
        if key not in content:
            raise SpecError(source, key, f"is required ({_KEYS[key]})")
    name, workload, direction, metric = check_common_keys(
        content, source, split="test", read_from_file=base_dir is not None
    )
    seeds = content["seeds"]
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SpecError(source, "seeds", "must be a positive integer", seeds)
    first_seed = content.get("first_seed", 0)
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or first_seed < 0:
        raise SpecError(source, "first_seed", "must be a non-negative integer", first_seed)
    raw_runs = content["runs"]
    if not isinstance(raw_runs, list) or not raw_runs:
        raise SpecError(source, "runs", "must be a non-empty list of runs", raw_runs)
    runs = [_parse_run(raw, index, source, base_dir) for index, raw in enumerate(raw_runs)]
    labels = [run["label"] for run in runs]
    if len(set(labels)) != len(labels):
        duplicate = next(label for label in labels if labels.count(label) > 1)
        raise SpecError(source, "runs", "labels must be unique", duplicate)
    definition: dict[str, Any] = {
        "kind": KIND,
        "name": name,
        "workload": workload,
        "direction": direction,
        "metric": metric,
        "seeds": seeds,
        "first_seed": first_seed,
        "runs": runs,
    }
    add_optional_keys(definition, content, source)  # a confirmation copies its searches' margin
    if "noninferiority" in content:
        definition["noninferiority"] = _noninferiority(content["noninferiority"], labels, source)
    return ReplicateSpec(name, workload, direction, metric, seeds, first_seed, runs, definition)


def _noninferiority(raw: Any, labels: list[str], source: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) != {"reference", "margin"}:
        raise SpecError(source, "noninferiority", "must be {reference: LABEL, margin: NUMBER}", raw)
    if raw["reference"] not in labels:
        raise SpecError(
            source, "noninferiority.reference", f"must be a run's label ({', '.join(labels)})",
            raw["reference"],
        )  # fmt: skip
    margin = positive_number(raw["margin"], source, "noninferiority.margin")
    return {"reference": raw["reference"], "margin": margin}


def _parse_run(raw: Any, index: int, source: str, base_dir: Path | None) -> dict[str, Any]:
    key = f"runs[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(
            source, key, "must be a mapping with label, optimizer, hyperparameters", raw
        )
    if "config" in raw:
        raw = _run_from_config(raw, f"{key}.config", source, base_dir)
    for field in raw:
        if field not in _RUN_KEYS:
            raise SpecError(
                source, f"{key}.{field}", f"unknown key: allowed are {', '.join(sorted(_RUN_KEYS))}"
            )
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        raise SpecError(source, f"{key}.label", "must be a non-empty string", label)
    optimizer = raw.get("optimizer")
    if not isinstance(optimizer, str):
        raise SpecError(source, f"{key}.optimizer", "must be an optimizer's name", optimizer)
    hyperparameters = raw.get("hyperparameters", {})
    if not isinstance(hyperparameters, dict):
        raise SpecError(source, f"{key}.hyperparameters", "must be a mapping", hyperparameters)
    try:  # the registry's checks: known optimizer and keys, values its constructor accepts
        resolve_hyperparameters(optimizer, hyperparameters)
    except ValueError as exc:
        raise SpecError(source, f"{key}", str(exc).rstrip(".")) from exc
    run = {"label": label, "optimizer": optimizer, "hyperparameters": dict(hyperparameters)}
    if "source" in raw:
        run["source"] = raw["source"]
    # A sweep: the runs of one family share a configuration and differ in what ``varies``
    # names (a rate grid: the rate; a one-at-a-time sweep: one value, ``{}`` at the centre).
    if "family" in raw or "varies" in raw:
        family, varies = raw.get("family"), raw.get("varies", {})
        if not isinstance(family, str) or not family.strip():
            raise SpecError(source, f"{key}.family", "must be a non-empty string", family)
        if not isinstance(varies, dict) or len(varies) > 1:
            raise SpecError(
                source, f"{key}.varies", "must map at most one name to its value", varies
            )
        for name, value in varies.items():
            if hyperparameters.get(name.split("[")[0]) is None and value is not None:
                raise SpecError(
                    source, f"{key}.varies", f"names {name!r}, which the run's hyperparameters lack"
                )
        run.update(family=family, varies=dict(varies))
    return run


def _run_from_config(
    raw: dict[str, Any], key: str, source: str, base_dir: Path | None
) -> dict[str, Any]:
    """``raw`` with its ``config`` replaced by the optimizer and hyperparameters it names."""
    from adamz.optim.adamz import preset_path  # the presets ship with the optimizer

    if "optimizer" in raw or "hyperparameters" in raw:
        raise SpecError(source, key, "a run gives either config or optimizer + hyperparameters")
    name = raw["config"]
    if not isinstance(name, str):
        raise SpecError(source, key, "must be a file path or a preset name", name)
    if not Path(name).suffix:
        try:
            path = preset_path(name)
        except ValueError as exc:
            raise SpecError(source, key, str(exc).rstrip(".")) from exc
    else:
        path = referenced_file(name, source=source, key=key, base_dir=base_dir or Path())
    content = read_yaml(path)
    if not isinstance(content, dict) or not isinstance(content.get("hyperparameters"), dict):
        raise SpecError(source, key, "must be a file written by adamz-search export", name)
    run = {k: v for k, v in raw.items() if k != "config"}
    run.update(
        optimizer=content.get("optimizer", "adamz"), hyperparameters=content["hyperparameters"]
    )
    run.setdefault("source", {"config": name, "provenance": content.get("provenance")})
    return run
