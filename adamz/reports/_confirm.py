"""Seed confirmation: re-run tuned configurations with fresh seeds, as a replicate study.

A search study's best value is the luckiest of many draws: it overstates what its configuration
gives on another seed. ``report --confirm K`` therefore builds a replicate study (see
:mod:`adamz.search.replicates`) of every study's top :data:`TOP` configurations by their
validation value (the same number from every study: sending more candidates is itself an
advantage), each trained on the same K seeds, none of which any search trial used
(:data:`FIRST_SEED` on), and the workers run it. Its metric is the test twin of the searches'
validation metric: each run records both. The verdict (:mod:`~adamz.reports._verdict`) picks
each study's winner by its validation median over the fresh seeds (equal medians: the lower
median validation loss) and presents its test numbers, and ``export`` takes that same winner
(:func:`confirmed_choice`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna

from adamz.reports._data import (
    ReportError,
    StudyData,
    goodness,
    hyperparameters_of,
    load_study_data,
)
from adamz.reports._replicates import (
    TIE_RULE,
    median_interval,
    replicate_runs,
    selection_metric,
    summarize_run,
    validation_key,
)
from adamz.search.replicates import ReplicateSpec, parse_replicates
from adamz.search.study_attrs import stored_definition

__all__ = ["FIRST_SEED", "TOP", "confirmation_spec", "confirmed_choice", "fresh_seed_study"]

TOP = 3
FIRST_SEED = 1000
"""Confirmation seeds start here; search trials train seeds 0 .. seeds_per_trial - 1."""


def confirmation_spec(
    datas: list[StudyData], seeds: int, *, top: int = TOP, first_seed: int = FIRST_SEED
) -> ReplicateSpec:
    """The replicate study confirming ``datas``: each study's ``top`` trials by value, trained
    on ``seeds`` seeds from ``first_seed`` on (search replicates confirm each replicate on
    seeds of its own: :mod:`~adamz.reports._search_replicates`).

    Raises:
        ReportError: a study was not made by ``adamz-search`` (its workload is unknown), or the
            studies differ in workload or direction, or ``seeds`` is below 2, or ``top`` below 1.
    """
    if seeds < 2:
        raise ReportError(f"Invalid --confirm {seeds}: needs at least 2 seeds to compare.")
    if top < 1:
        raise ReportError(f"Invalid --candidates {top}: must be at least 1.")
    for data in datas:
        if data.definition is None or data.workload is None:
            raise ReportError(
                f"Study {data.name!r} was not created by adamz-search: its workload is unknown, "
                "so it cannot be re-run."
            )
    workloads = {_workload_key(data) for data in datas}
    if len(workloads) > 1:
        raise ReportError(
            "Seed confirmation compares studies on one workload; got "
            + ", ".join(f"{data.name}: {data.workload}" for data in datas)
            + "."
        )
    if len({data.maximize for data in datas}) > 1:
        raise ReportError("Seed confirmation needs studies with the same direction.")
    first = datas[0]
    chosen = []
    for data in datas:
        order = np.argsort(-goodness(data.values, maximize=data.maximize), kind="stable")
        chosen += [(data, int(i)) for i in order[:top]]
    runs = []
    for data, index in chosen:
        trial = data.completed[index]
        runs.append(
            {
                "label": f"{data.name} #{trial.number}",
                "optimizer": data.optimizer,
                "hyperparameters": _plain(hyperparameters_of(data, index)),
                "source": {"study": data.name, "trial": trial.number, "value": trial.value},
            }
        )
    names = "+".join(data.name for data in datas)
    return fresh_seed_study(
        first,
        runs,
        name=f"confirm-{names}-k{seeds}" + (f"-c{top}" if top != TOP else ""),
        description=f"seed confirmation of {names}: the top {top} of each",
        seeds=seeds,
        first_seed=first_seed,
    )


def fresh_seed_study(
    data: StudyData,
    runs: list[dict[str, Any]],
    *,
    name: str,
    description: str,
    seeds: int,
    first_seed: int,
) -> ReplicateSpec:
    """A replicate study training ``runs`` on ``data``'s workload on fresh seeds, measuring the
    test twin of ``data``'s validation metric (each run records both; the validation one picks).

    Raises:
        ReportError: ``data`` was not made by ``adamz-search`` (its workload is unknown).
    """
    if data.definition is None or data.workload is None:
        raise ReportError(
            f"Study {data.name!r} was not created by adamz-search: its workload is unknown, so "
            "nothing can be re-run on it."
        )
    definition = {
        "kind": "replicates",
        "name": name,
        "description": description,
        "workload": dict(data.definition.get("workload", {})),
        "direction": "maximize" if data.maximize else "minimize",
        "metric": "test_" + data.metric.removeprefix("val_"),
        "seeds": seeds,
        "first_seed": first_seed,
        "runs": runs,
    }
    return parse_replicates(definition, source=description)


def _workload_key(data: StudyData) -> str:
    workload = dict((data.definition or {}).get("workload", {}))
    workload.pop("data_dir", None)
    return repr(sorted(workload.items()))


def _plain(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hyperparameters.items()}


def confirmed_choice(data: StudyData) -> dict[str, Any] | None:
    """The best-confirmed configuration of ``data``'s study, if a confirmation ran it.

    Looks in the study's storage for replicate studies with runs taken from this study; among
    those runs (with at least 2 seeds done), the one with the best validation median wins, as
    in the verdict (:func:`~adamz.reports._replicates.validation_key`: equal medians go to the
    lower median validation loss, then to the run found first). The test median and its
    interval are recorded, never compared.
    """
    storage = data.storage
    best: dict[str, Any] | None = None
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        definition = stored_definition(name, storage)
        if definition is None or definition.get("kind") != "replicates":
            continue
        sources = [run.get("source") or {} for run in definition.get("runs", [])]
        if not any(source.get("study") == data.name for source in sources):
            continue
        try:
            confirmation = load_study_data(study, storage)
        except ReportError:
            continue  # queued, nothing finished yet
        val_metric = selection_metric(confirmation)
        for label, entry in replicate_runs(confirmation).items():
            source = entry["run"].get("source") or {}
            run = summarize_run(entry)
            if source.get("study") != data.name or run["n"] < 2 or run["val_median"] is None:
                continue
            if best is None or validation_key(run, maximize=data.maximize) < validation_key(
                best, maximize=data.maximize
            ):
                low, high = median_interval(np.array(entry["values"], dtype=float))
                best = {
                    "study": name,
                    "run": label,
                    "trial": source.get("trial"),
                    "search_value": source.get("value"),
                    "seeds": run["n"],
                    "diverged": run["diverged"],
                    "selected_on": val_metric,
                    "val_median": run["val_median"],
                    "val_loss_median": run["val_loss_median"],
                    "tie_rule": TIE_RULE,
                    "metric": confirmation.metric,
                    "median": run["median"],
                    "ci95_median": [low, high],
                    "hyperparameters": entry["run"]["hyperparameters"],
                }
    return best
