"""Helpers for the report tests: studies with a known structure, built without training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 0.1, log=True),
    "patience": IntDistribution(10, 200, log=True),
    "stagnation_period": IntDistribution(2, 10),
    "overshoot_factor": FloatDistribution(0.1, 0.9),
    "lr_bounds[0]": FloatDistribution(1e-8, 1e-5, log=True),
}


def lr_only(params: dict[str, Any]) -> float:
    """An objective of lr alone, best at lr = 0.01."""
    return float(0.9 - 0.1 * (np.log10(params["lr"]) + 2) ** 2)


def synthetic_study(
    objective: Callable[[dict[str, Any]], float] = lr_only,
    *,
    n_trials: int = 60,
    storage: str | None = None,
    name: str = "synthetic",
    seed: int = 0,
    with_records: bool = True,
    direction: str = "maximize",
) -> optuna.Study:
    """A study (maximised unless ``direction`` says otherwise) of ``n_trials`` random trials;
    trials 0 and 1 are flagged as the library defaults and the paper settings.

    With ``with_records`` each trial carries the user attributes our workers write (worker,
    result with a controller record), the better trials with fewer overshoots.
    """
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction=direction, storage=storage, study_name=name)
    trials = []
    for number in range(n_trials):
        params: dict[str, Any] = {}
        for key, dist in DISTRIBUTIONS.items():
            if isinstance(dist, IntDistribution):
                params[key] = int(rng.integers(dist.low, dist.high + 1))
            elif dist.log:
                params[key] = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
            else:
                params[key] = float(rng.uniform(dist.low, dist.high))
        value = objective(params)
        attrs: dict[str, Any] = {}
        if number < 2:
            attrs["enqueued"] = [["library defaults"], ["paper settings"]][number]
        if with_records:
            attrs["worker"] = {"host": "h", "pid": number % 2, "torch_version": "t"}
            attrs["run"] = {
                "result": {
                    "hyperparameters": {
                        "lr": params["lr"],
                        "patience": params["patience"],
                        "stagnation_period": params["stagnation_period"],
                        "overshoot_factor": params["overshoot_factor"],
                        "lr_bounds": [params["lr_bounds[0]"], 1.0],
                    },
                    "controller": {
                        "overshoots": round(10 * (1 - value)),
                        "stagnations": 1,
                        "lr_at_epoch_end": [params["lr"], params["lr"] / 2],
                    },
                }
            }
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=DISTRIBUTIONS,
                value=value,
                intermediate_values={0: value - 0.1, 1: value},
                user_attrs=attrs,
            )
        )
    study.add_trials(trials)
    return study


SEEDS = list(range(1000, 1010))


def replicate_study(
    runs: dict[str, dict[str, Any]],
    *,
    workload: str = "digits",
    name: str = "confirm",
    storage: str | optuna.storages.BaseStorage | None = None,
    metric: str = "test_accuracy",
    direction: str = "maximize",
    extra: dict[str, Any] | None = None,
) -> optuna.Study:
    """A finished replicate study: per run label, ``val`` and ``test`` values per seed (lists),
    ``val_loss`` (a list, optional), ``source``, ``optimizer``, ``hyperparameters``, ``time``,
    ``diverged`` seeds and ``controller`` (the record of each seed's run, optional); ``extra``:
    more keys of its definition."""
    study = optuna.create_study(direction=direction, study_name=name, storage=storage)
    definition = {
        "kind": "replicates",
        "name": name,
        "workload": {"name": workload},
        "direction": direction,
        "metric": metric,
        "seeds": len(SEEDS),
        "first_seed": SEEDS[0],
        "runs": [
            {
                "label": label,
                "optimizer": run.get("optimizer", "adamz"),
                "hyperparameters": run.get("hyperparameters", {"lr": 0.01}),
                **({"source": run["source"]} if "source" in run else {}),
            }
            for label, run in runs.items()
        ],
        **(extra or {}),
    }
    study.set_user_attr("definition", definition)
    distributions = {
        "run": CategoricalDistribution(list(runs)),
        "seed": IntDistribution(SEEDS[0], SEEDS[-1]),
    }
    trials = []
    for label, run in runs.items():
        for index, seed in enumerate(SEEDS):
            diverged = seed in run.get("diverged", ())
            record: dict[str, Any] = {"result": {"train_time_s": run.get("time", 1.0)}}
            if "controller" in run:
                record["result"]["controller"] = run["controller"]
            if diverged:
                record["diverged"] = True
            else:
                record["metrics"] = {"val_" + metric.removeprefix("test_"): run["val"][index]}
                if "val_loss" in run:
                    record["metrics"]["val_loss"] = run["val_loss"][index]
            trials.append(
                optuna.trial.create_trial(
                    params={"run": label, "seed": seed},
                    distributions=distributions,
                    value=0.1 if diverged else run["test"][index],
                    user_attrs={"run": record},
                )
            )
    study.add_trials(trials)
    return study


def constant(value: float, spread: float = 0.002) -> list[float]:
    return list(value + spread * np.linspace(-1, 1, len(SEEDS)))


def search_study(
    name: str,
    *,
    optimizer: str = "adamz",
    storage: str | optuna.storages.BaseStorage | None = None,
    sampler_seed: int | None = 0,
    seed: int = 0,
    n_trials: int = 8,
) -> optuna.Study:
    """A search as ``adamz-search create`` stores it (its definition: digits, lr searched, a
    TPE sampler seeded by ``sampler_seed``, a budget of ``n_trials``), with ``n_trials``
    completed trials of made-up values."""
    from adamz.search.studies import spec_from_definition
    from adamz.search.study_attrs import store_definition

    lr = FloatDistribution(1e-3, 0.05, log=True)
    sampler = {"name": "tpe", **({"seed": sampler_seed} if sampler_seed is not None else {})}
    definition = {
        "name": name,
        "workload": {"name": "digits", "epochs": 1},
        "optimizer": optimizer,
        "search_space": {
            "optimizer": optimizer,
            "parameters": {"lr": {"type": "float", "low": lr.low, "high": lr.high, "log": True}},
        },
        "metric": "val_accuracy",
        "sampler": sampler,
        "budget": n_trials,
    }
    spec = spec_from_definition(definition, source=name)
    if not isinstance(storage, optuna.storages.BaseStorage):
        storage = optuna.storages.get_storage(storage or optuna.storages.InMemoryStorage())
    study = optuna.create_study(direction="maximize", storage=storage, study_name=name)
    store_definition(storage, name, spec)
    rng = np.random.default_rng(seed)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"lr": float(np.exp(rng.uniform(np.log(lr.low), np.log(lr.high))))},
                distributions={"lr": lr},
                value=(value := float(rng.uniform(0.8, 0.95))),
                intermediate_values={1: value},
            )
            for _ in range(n_trials)
        ]
    )
    return study


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` was made on (a test may look inside; the package passes it)."""
    return study._storage


def with_storage(study: optuna.Study) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """``study`` and its storage, as ``load_study_data`` takes them."""
    return study, storage_of(study)
