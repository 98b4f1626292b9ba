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

import json
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

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

__all__ = [
    "FIRST_SEED",
    "TOP",
    "confirmation_spec",
    "confirmed_choice",
    "fresh_seed_study",
    "reuse_finished_runs",
]

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
    if "margin" in data.definition:  # the report's equivalence margin, from the study file
        definition["margin"] = data.definition["margin"]
    return parse_replicates(definition, source=description)


def _workload_key(data: StudyData) -> str:
    workload = dict((data.definition or {}).get("workload", {}))
    workload.pop("data_dir", None)
    return repr(sorted(workload.items()))


def _plain(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hyperparameters.items()}


def confirmed_choice(data: StudyData) -> dict[str, Any] | None:
    """The best-confirmed configuration of ``data``'s study, if a confirmation ran it.

    Looks in the study's storage for replicate studies with runs taken from this study and
    uses one of them, named in the result (``study``): the one whose runs have the most seeds,
    then the one created last (a comparison's confirmation reuses the seeds of an earlier one,
    :func:`reuse_confirmed`). Among its runs of this study (with at least 2 seeds done), the
    one with the best validation median wins, as in the verdict
    (:func:`~adamz.reports._replicates.validation_key`: equal medians go to the lower median
    validation loss, then to the run listed first). The test median and its interval are
    recorded, never compared.
    """
    storage = data.storage
    found: list[tuple[tuple[int, int], dict[str, Any]]] = []
    for name in optuna.get_all_study_names(storage):
        best: dict[str, Any] | None = None
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
        if best is not None:
            found.append(((int(best["seeds"]), storage.get_study_id_from_name(name)), best))
    return max(found, key=lambda item: item[0])[1] if found else None


def _run_key(definition: dict[str, Any], run: dict[str, Any], seed: int) -> str:
    """What makes two replicate trials the same training: workload (with its protocol
    overrides), metric, optimizer, hyperparameters and seed."""
    workload = dict(definition.get("workload", {}))
    workload.pop("data_dir", None)
    key = [workload, definition.get("metric"), run["optimizer"], run["hyperparameters"], seed]
    return json.dumps(key, sort_keys=True, default=repr)


def reuse_finished_runs(spec: ReplicateSpec, storage: BaseStorage) -> dict[str, int]:
    """Fill ``spec``'s study (created, its trials queued) with the finished seeds of other
    replicate studies in ``storage`` that trained the same configuration on the same workload
    and seed (:func:`_run_key`), so that the workers train only the rest: ``report A B
    --confirm 10`` after ``report A --confirm 10`` trains B's runs alone.

    A queued trial is claimed as Optuna's workers claim one (WAITING to RUNNING, which only one
    caller can do), then given the finished trial's parameters, epoch values, attributes (and
    ``reused_from``: its study and number) and value. Returns how many trials were reused from
    each study.
    """
    wanted = {run["label"]: run for run in spec.runs}
    distributions = {
        "run": CategoricalDistribution([run["label"] for run in spec.runs]),
        "seed": IntDistribution(spec.first_seed, spec.first_seed + spec.seeds - 1),
    }
    study_id = storage.get_study_id_from_name(spec.name)
    queued = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    if not queued:
        return {}
    finished: dict[str, tuple[str, FrozenTrial]] = {}
    for name in optuna.get_all_study_names(storage):
        definition = stored_definition(name, storage)
        if name == spec.name or definition is None or definition.get("kind") != "replicates":
            continue
        if definition.get("direction") != spec.direction:
            continue
        runs = {run["label"]: run for run in definition.get("runs", [])}
        other = storage.get_study_id_from_name(name)
        for trial in storage.get_all_trials(other, states=(TrialState.COMPLETE,)):
            run = runs.get(trial.params.get("run"))
            if run is not None and trial.value is not None:  # COMPLETE: it has a value
                key = _run_key(definition, run, int(trial.params["seed"]))
                finished.setdefault(key, (name, trial))
    reused: dict[str, int] = {}
    for trial in queued:
        fixed = trial.system_attrs.get("fixed_params") or {}
        run = wanted.get(fixed.get("run"))
        if run is None or "seed" not in fixed:
            continue
        source = finished.get(_run_key(spec.definition, run, int(fixed["seed"])))
        if source is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if not storage.set_trial_state_values(trial_id, TrialState.RUNNING):
            continue
        name, done = source
        for param, value in (("run", run["label"]), ("seed", int(fixed["seed"]))):
            distribution = distributions[param]
            storage.set_trial_param(
                trial_id, param, distribution.to_internal_repr(value), distribution
            )
        for step, value in done.intermediate_values.items():
            storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in done.user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        storage.set_trial_user_attr(trial_id, "reused_from", f"{name} #{done.number}")
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [float(done.value or 0)])
        reused[name] = reused.get(name, 0) + 1
    return reused
