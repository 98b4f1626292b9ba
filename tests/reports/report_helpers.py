"""Helpers for the report tests: studies with a known structure, built without training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution

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
) -> optuna.Study:
    """A maximised study of ``n_trials`` random trials; trials 0 and 1 are flagged as the
    library defaults and the paper settings.

    With ``with_records`` each trial carries the user attributes our workers write (worker,
    result with a controller record), the better trials with fewer overshoots.
    """
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="maximize", storage=storage, study_name=name)
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
