"""The stages of the advice (``reports/README.md`` sections 3 and 4): which of AdamZ's
hyperparameters matter where users stand, one recommended configuration, and its validation
against the paper's defaults and Adam. Read by ``reports/stages.py``
(``bash reports/reproduce.sh status``).

Every stage is made of the project's own commands (``adamz-search create``, ``worker``,
``report``) on study files written under ``reports/data/studies/`` from the results of the
stages before (a sweep's centre at the rate its grid chose), with the studies in
``reports/data/atlas.db`` and ``reports/data/advice.db``, all committed.

The stages, per workload (digits, circles, the MNIST subset):

1. ``atlas-W``: the sensitivity study ``studies/W-adamz-atlas.yaml`` (a Sobol design over
   AdamZ's space, 3 seeds a configuration).
2. ``recommend``: the rule of :func:`adamz.reports._atlas.recommend` on the three atlases'
   good regions gives one configuration, written to ``adamz/optim/presets/recommended.yaml``
   with its provenance; the same rule on each pair of workloads gives the configuration a
   held-out workload is validated with (leave one workload out).
3. ``rates-W-F``: a rate grid (:data:`RATES`, :data:`RATE_SEEDS` seeds, validation accuracy)
   for each family F: AdamZ at the paper's defaults, AdamZ recommended (and, where it
   differs, the recommendation made without W), and Adam at torch's defaults. Each family's
   rate is its best validation median (ties: the lower validation loss): every optimizer gets
   the same rate tuning.
4. ``sweep-W-C``: one-at-a-time sweeps of each controller value and of clipping
   (:data:`SWEEP`, 7 points each, :data:`SWEEP_SEEDS` seeds, validation accuracy) around
   centre C (the paper's defaults, the recommendation), at C's chosen rate.
5. ``validate-W``: each family at its chosen rate on :data:`VALIDATION_SEEDS` fresh seeds
   (test accuracy, never used to choose anything).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from stages import Page, Stage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "reports" / "data"
STUDIES = DATA / "studies"
RECOMMENDATION = DATA / "recommendation.json"
PRESET = ROOT / "adamz" / "optim" / "presets" / "recommended.yaml"
ATLAS_STORAGE = "sqlite:///reports/data/atlas.db"
ADVICE_STORAGE = "sqlite:///reports/data/advice.db"
DATA_DIR = os.environ.get("ADAMZ_DATA_DIR", "../shared/data")
WORKERS = ["--data-dir", DATA_DIR, "--workers-per-device", "2", "-q"]
PLOTLY = ["--plotly-js", "reports/plotly.min.js"]

WORKLOADS: dict[str, dict[str, Any]] = {
    "digits": {"workload": {"name": "digits"}, "population": 64, "minutes_per_100_runs": 0.1},
    "circles": {"workload": {"name": "circles"}, "population": 64, "minutes_per_100_runs": 0.1},
    "mnist": {
        "workload": {
            "name": "mnist", "train_size": 4000, "test_size": 1000,
            "dataset_sizes": {"train": 4000, "test": 1000},
        },
        "population": 16,
        "minutes_per_100_runs": 1.9,
    },
}  # fmt: skip
RATES = [0.001, 0.00178, 0.00316, 0.00562, 0.01, 0.0178, 0.0316, 0.0562, 0.1]
"""The rate grid every family is tuned on: 9 points, evenly spaced on a log scale."""
RATE_SEEDS = 5
SWEEP_SEEDS = 10
VALIDATION_SEEDS = 20
NONINFERIORITY_MARGIN = 0.25
"""Points: the recommendation may be better than Adam, never more than this worse."""
FIRST_VALIDATION_SEED = 1000
"""Fresh seeds: the grids and sweeps train seeds 0 .. 9."""
SWEEP: dict[str, list[Any]] = {
    "overshoot_factor": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.95],
    "stagnation_factor": [1.02, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5],
    "stagnation_threshold": [0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5],
    "patience": [30, 50, 75, 100, 150, 200, 300],
    "stagnation_period": [3, 5, 10, 15, 20, 25, 29],
    "max_grad_norm": [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, None],
}
"""One-at-a-time sweeps: each controller value and clipping over its range, 7 points each
(``None``: no clipping); the period stays below the smallest patience swept."""


def _path(name: str) -> str:
    """The study file of ``name``, relative to the root (as the commands take it)."""
    return f"reports/data/studies/{name}.yaml"


def _write_study(content: dict[str, Any], comment: str) -> Path:
    STUDIES.mkdir(parents=True, exist_ok=True)
    path = ROOT / _path(content["name"])
    lines = "".join(f"# {line}\n" for line in comment.splitlines())
    path.write_text(lines + yaml.safe_dump(content, sort_keys=False, width=100))
    return path


# -- the families and their rates ------------------------------------------------------------


def _preset(name: str) -> dict[str, Any]:
    from adamz.optim.adamz import preset_path

    return dict(yaml.safe_load(preset_path(name).read_text())["hyperparameters"])


def families(workload: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per family: the optimizer and its hyperparameters (the rate is tuned)."""
    found = {
        "adamz-paper": ("adamz", _preset("paper")),
        "adamz-recommended": ("adamz", _preset("recommended")),
        "adam": ("adam", {"lr": 0.001}),
    }
    if RECOMMENDATION.exists():  # the rule judged leaving this workload out
        held_out = json.loads(RECOMMENDATION.read_text())["leave_one_out"][workload]
        found[_held_out(workload)] = ("adamz", held_out)
    return found


def _held_out(workload: str) -> str:
    """The family of the recommendation made without ``workload``."""
    return f"adamz-without-{workload}"


def _rate_study(workload: str, family: str) -> None:
    optimizer, hyperparameters = families(workload)[family]
    runs = [
        {
            "label": f"{family} lr={rate:g}",
            "optimizer": optimizer,
            "hyperparameters": {**hyperparameters, "lr": rate},
            "family": family,
            "varies": {"lr": rate},
        }
        for rate in RATES
    ]
    spec = WORKLOADS[workload]
    _write_study(
        {
            "kind": "replicates",
            "name": f"{workload}-rates-{family}",
            "description": f"{family}: its rate tuned on validation ({len(RATES)} rates)",
            "workload": spec["workload"],
            "direction": "maximize",
            "metric": "val_accuracy",
            "seeds": RATE_SEEDS,
            "first_seed": 0,
            "runs": runs,
            "population": spec["population"],
        },
        f"Written by reports/stages_advice.py: {family} on {workload}, the rate grid.",
    )


def chosen_rate(workload: str, family: str) -> float:
    """The family's rate: the best validation median of its grid (ties: lower val loss).

    Raises:
        ValueError: the grid has not run.
    """
    import optuna

    from adamz.reports import load_study_data
    from adamz.reports._replicates import by_validation, replicate_runs, summarize_run
    from adamz.search import open_storage

    storage = open_storage(_absolute(ADVICE_STORAGE), read_only=True)
    study = optuna.load_study(study_name=f"{workload}-rates-{family}", storage=storage)
    data = load_study_data(study, storage)
    summaries = {label: summarize_run(entry) for label, entry in replicate_runs(data).items()}
    best = by_validation(summaries, maximize=True)[0]
    return float(summaries[best]["hyperparameters"]["lr"])


# -- sweeps and validation -------------------------------------------------------------------


def _sweep_study(workload: str, centre: str) -> None:
    optimizer, hyperparameters = families(workload)[centre]
    base = {**hyperparameters, "lr": chosen_rate(workload, centre)}
    runs = [{"label": "centre", "optimizer": optimizer, "hyperparameters": base,
             "family": centre, "varies": {}}]  # fmt: skip
    for name, points in SWEEP.items():
        for value in points:
            if base.get(name) == value:
                continue  # the centre
            runs.append(
                {
                    "label": f"{name}={value}",
                    "optimizer": optimizer,
                    "hyperparameters": {**base, name: value},
                    "family": centre,
                    "varies": {name: value},
                }
            )
    spec = WORKLOADS[workload]
    _write_study(
        {
            "kind": "replicates",
            "name": f"{workload}-sweep-{centre}",
            "description": f"one-at-a-time sweeps around {centre} at its chosen rate {base['lr']:g}",
            "workload": spec["workload"],
            "direction": "maximize",
            "metric": "val_accuracy",
            "seeds": SWEEP_SEEDS,
            "first_seed": 0,
            "runs": runs,
            "population": spec["population"],
        },
        f"Written by reports/stages_advice.py: sweeps around {centre} on {workload}, at the rate its "
        "grid chose on validation.",
    )


def _validation_study(workload: str) -> None:
    runs = []
    for family, (optimizer, hyperparameters) in families(workload).items():
        rate = chosen_rate(workload, family)
        runs.append(
            {
                "label": family,
                "optimizer": optimizer,
                "hyperparameters": {**hyperparameters, "lr": rate},
            }
        )
    spec = WORKLOADS[workload]
    _write_study(
        {
            "kind": "replicates",
            "name": f"{workload}-validate",
            "description": "each family at its chosen rate, on fresh seeds",
            "workload": spec["workload"],
            "direction": "maximize",
            "metric": "test_accuracy",
            "seeds": VALIDATION_SEEDS,
            "first_seed": FIRST_VALIDATION_SEED,
            "runs": runs,
            "noninferiority": {"reference": "adam", "margin": NONINFERIORITY_MARGIN},
            "population": spec["population"],
        },
        f"Written by reports/stages_advice.py: the validation on {workload} (test accuracy, fresh "
        "seeds; the rates were chosen on validation).",
    )


# -- the recommendation ----------------------------------------------------------------------


def _atlases() -> dict[str, Any]:
    import optuna

    from adamz.reports import load_study_data
    from adamz.reports._atlas_report import study_atlas
    from adamz.search import open_storage

    storage = open_storage(_absolute(ATLAS_STORAGE), read_only=True)
    found = {}
    for workload in WORKLOADS:
        study = optuna.load_study(study_name=f"{workload}-adamz-atlas", storage=storage)
        found[workload] = study_atlas(load_study_data(study, storage))
    return found


def _absolute(storage: str) -> str:
    return "sqlite:///" + str(ROOT / storage.removeprefix("sqlite:///"))


def recommend_stage() -> None:
    """write the recommended preset from the three atlases (and one without each)"""
    from adamz.reports._atlas_report import recommendation

    atlases = _atlases()
    shipped = recommendation(list(atlases.values()))
    leave_one_out = {
        held: recommendation([a for w, a in atlases.items() if w != held])["hyperparameters"]
        for held in atlases
    }
    RECOMMENDATION.write_text(
        json.dumps({"recommended": shipped, "leave_one_out": leave_one_out}, indent=2) + "\n"
    )
    preset = yaml.safe_dump(
        {
            "format": "adamz-config/1",
            "optimizer": "adamz",
            "hyperparameters": shipped["hyperparameters"],
            "provenance": {"rule": shipped["rule"], "from": shipped["from"]},
        },
        sort_keys=False,
        width=96,
    )
    PRESET.write_text(
        '# AdamZ\'s recommended configuration: AdamZ.from_config("recommended", params).\n'
        "# Made by the stage recommend of reports/stages_advice.py from the sensitivity atlases; tune lr.\n"
        "# Its validation against the paper's defaults and Adam: reports/README.md, section 4.\n"
        + preset
    )


# -- stages ---------------------------------------------------------------------------------


def _minutes(workload: str, runs: int) -> float:
    return round(runs / 100 * WORKLOADS[workload]["minutes_per_100_runs"] + 0.5, 1)


def _step(function: Any, *args: str, doc: str) -> Any:
    """``function(*args)`` as a stage's own step, named for the log by ``doc``."""

    def step() -> None:
        function(*args)

    step.__doc__ = doc
    return step


def _train(name: str) -> list[list[str]]:
    return [["create", _path(name)], ["worker", name, *WORKERS]]


def _stages() -> list[Stage]:
    found = []
    sweep_runs = (1 + sum(len(points) - 1 for points in SWEEP.values())) * SWEEP_SEEDS
    for workload in WORKLOADS:
        atlas = yaml.safe_load((ROOT / "studies" / f"{workload}-adamz-atlas.yaml").read_text())
        found.append(
            Stage(
                f"atlas-{workload}",
                minutes=_minutes(workload, atlas["budget"] * atlas["seeds_per_trial"]),
                storage=ATLAS_STORAGE,
                commands=[
                    ["create", f"studies/{workload}-adamz-atlas.yaml"],
                    ["worker", f"{workload}-adamz-atlas", *WORKERS],
                ],
                about=f"the sensitivity atlas of AdamZ on {workload}",
            )
        )
    found.append(
        Stage(
            "recommend",
            minutes=8,
            storage=ATLAS_STORAGE,
            commands=[_step(recommend_stage, doc=recommend_stage.__doc__ or "")],
            needs=[f"atlas-{w}" for w in WORKLOADS],
            about="the recommended preset, by the atlas's rule, and one without each workload",
        )
    )
    for workload in WORKLOADS:
        grid = _minutes(workload, len(RATES) * RATE_SEEDS)
        for family in ("adamz-paper", "adam", "adamz-recommended"):
            name = f"{workload}-rates-{family}"
            found.append(
                Stage(
                    f"rates-{workload}-{family}",
                    minutes=grid,
                    storage=ADVICE_STORAGE,
                    commands=[
                        _step(_rate_study, workload, family, doc=f"write {_path(name)}"),
                        *_train(name),
                    ],
                    needs=["recommend"] if family == "adamz-recommended" else [],
                    about=f"{family}'s rate grid on {workload}",
                )
            )
        found.append(
            Stage(
                f"rates-{workload}-held-out",
                minutes=grid,
                storage=ADVICE_STORAGE,
                commands=[
                    _step(
                        _rate_study,
                        workload,
                        _held_out(workload),
                        doc=f"write {_path(f'{workload}-rates-{_held_out(workload)}')}",
                    ),
                    *_train(f"{workload}-rates-{_held_out(workload)}"),
                ],
                needs=["recommend"],
                about=f"the rate grid of the recommendation made without {workload}",
            )
        )
        for centre in ("adamz-paper", "adamz-recommended"):
            name = f"{workload}-sweep-{centre}"
            found.append(
                Stage(
                    f"sweep-{workload}-{centre}",
                    minutes=_minutes(workload, sweep_runs),
                    storage=ADVICE_STORAGE,
                    commands=[
                        _step(_sweep_study, workload, centre, doc=f"write {_path(name)}"),
                        *_train(name),
                    ],
                    needs=[f"rates-{workload}-{centre}"],
                    about=f"one-at-a-time sweeps around {centre} on {workload}",
                )
            )
        name = f"{workload}-validate"
        found.append(
            Stage(
                f"validate-{workload}",
                minutes=_minutes(workload, 4 * VALIDATION_SEEDS),
                storage=ADVICE_STORAGE,
                commands=[
                    _step(_validation_study, workload, doc=f"write {_path(name)}"),
                    *_train(name),
                ],
                needs=[
                    *(
                        f"rates-{workload}-{f}"
                        for f in ("adamz-paper", "adam", "adamz-recommended")
                    ),
                    f"rates-{workload}-held-out",
                ],
                about=f"every family at its rate on {workload}, 20 fresh seeds, against Adam",
            )
        )
    return found


STAGES = _stages()
PAGES = [
    Page(
        "sensitivity-atlas",
        needs=[f"atlas-{w}" for w in WORKLOADS],
        storage=ATLAS_STORAGE,
        commands=[
            ["report", *(f"{w}-adamz-atlas" for w in WORKLOADS), "--out",
             "reports/sensitivity-atlas", *PLOTLY]
        ],
    ),
    Page(
        "sweeps",
        needs=[f"sweep-{w}-{c}" for w in WORKLOADS for c in ("adamz-paper", "adamz-recommended")],
        storage=ADVICE_STORAGE,
        commands=[
            ["report", *(f"{w}-sweep-{c}" for w in WORKLOADS
                         for c in ("adamz-paper", "adamz-recommended")),
             *(f"{w}-rates-{f}" for w in WORKLOADS
               for f in ("adamz-paper", "adam", "adamz-recommended")),
             "--out", "reports/sweeps", *PLOTLY]
        ],
    ),
    Page(
        "recommendation",
        needs=[f"validate-{w}" for w in WORKLOADS],
        storage=ADVICE_STORAGE,
        commands=[
            ["report", *(f"{w}-validate" for w in WORKLOADS), "--out",
             "reports/recommendation", *PLOTLY]
        ],
    ),
]  # fmt: skip
