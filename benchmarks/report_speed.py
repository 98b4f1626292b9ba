"""Time the report of a 1,000-trial synthetic study (target: <= 20 s on the project's machine).

Run: ``python benchmarks/report_speed.py [--trials N]``. The study lives in memory (no storage
reads are timed); its objective depends on lr only, with noise, over the AdamZ search space's
seven parameters; every trial carries a controller record and two intermediate values.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution

from adamz.reports import build_report

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 0.1, log=True),
    "patience": IntDistribution(10, 200, log=True),
    "stagnation_period": IntDistribution(2, 10),
    "overshoot_factor": FloatDistribution(0.1, 0.9),
    "stagnation_factor": FloatDistribution(1.05, 2.0),
    "stagnation_threshold": FloatDistribution(0.01, 0.5),
    "lr_bounds[0]": FloatDistribution(1e-8, 1e-5, log=True),
}


def synthetic_study(
    n_trials: int, storage: optuna.storages.BaseStorage, seed: int = 0
) -> optuna.Study:
    rng = np.random.default_rng(seed)
    study = optuna.create_study(
        storage=storage, direction="maximize", study_name=f"synthetic-{n_trials}"
    )
    trials = []
    for number in range(n_trials):
        params: dict[str, Any] = {}
        for name, dist in DISTRIBUTIONS.items():
            if isinstance(dist, IntDistribution):
                params[name] = int(rng.integers(dist.low, dist.high + 1))
            elif dist.log:
                params[name] = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
            else:
                params[name] = float(rng.uniform(dist.low, dist.high))
        value = float(0.9 - 0.1 * (np.log10(params["lr"]) + 2) ** 2 + 0.01 * rng.normal())
        controller = {"overshoots": int(rng.integers(0, 5)), "stagnations": 1,
                      "lr_at_epoch_end": [params["lr"], params["lr"] / 2]}  # fmt: skip
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=DISTRIBUTIONS,
                value=value,
                intermediate_values={0: value - 0.1, 1: value},
                user_attrs={"result": {"controller": controller}}
                | ({"enqueued": ["library defaults", "paper settings"]} if number == 0 else {}),
            )
        )
    study.add_trials(trials)
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    study = synthetic_study(args.trials, storage)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        files = build_report([study], Path(out), save_note=False, progress=False, storage=storage)
        elapsed = time.perf_counter() - started
        size_mb = files.html.stat().st_size / 1e6
    print(
        f"report of {args.trials} trials: {elapsed:.1f} s (target <= 20 s), "
        f"{files.charts} charts, page {size_mb:.1f} MB"
    )


if __name__ == "__main__":
    main()
