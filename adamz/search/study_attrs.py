"""What a study stores beside its trials, and what optuna-dashboard shows of it.

``adamz-search create`` stores the checked definition (search space inlined) and its digest as
study *system* attributes: workers, ``status`` and the reports read them there, and
optuna-dashboard, whose "Study User Attributes" panel lists a study's *user* attributes, does
not show them (a definition is about a thousand characters of JSON on one line).
The user attributes hold what a person reads on that panel: the kind of study, the workload,
the optimizer, the metric, the budget, the sampler and pruner, the study file and the package
version.

Studies created before the definition moved keep it among their user attributes; the readers
here look there when the system attributes have none.

A study whose trials diverged says so where a person looks first (:class:`Divergence`):
``status``'s first line, ``studies``' table, and the first line of the study's note in
optuna-dashboard (:func:`note_header`). A diverged trial counts at the workload's chance
value, so the best value of a study whose every trial diverged is a chance value, and is shown
as one.

A replicate study (``kind: replicates``: a confirmation, the paper's tables, a sweep) trains
fixed configurations, each over many seeds: its result is each run's median over its finished
seeds (:func:`run_medians`), which ``status``, ``studies`` and the note's first lines show
instead of a best trial (its luckiest seed). The dashboard's importance panel, which
optuna-dashboard always draws from the parameters ``run`` and ``seed``, does not apply there,
and the note says so (optuna-dashboard 0.21 has no setting to hide it).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from adamz import __version__
from adamz.search.budget import BUDGET_ATTR
from adamz.search.records import TrialRun

if TYPE_CHECKING:  # the readers run in processes without torch (status, the supervisor)
    from adamz.search.studies import AnySpec

__all__ = [
    "DEFINITION_ATTR",
    "DIGEST_ATTR",
    "Divergence",
    "RunMedian",
    "is_diverged",
    "note_header",
    "readable_attrs",
    "require_definition",
    "run_medians",
    "store_definition",
    "stored_definition",
    "stored_digest",
]

DEFINITION_ATTR = "definition"
"""Study system attribute: the definition ``create`` checked, as plain data."""
DIGEST_ATTR = "digest"
"""Study system attribute: SHA-256 of the definition (same digest, same study)."""


def readable_attrs(spec: AnySpec, *, study_file: Path | None = None) -> dict[str, str | int]:
    """The short values the dashboard lists for ``spec``'s study, in the order it lists them
    (five rows a page: what a newcomer asks first comes first)."""
    overrides = [
        f"{key} {' '.join(f'{k} {v}' for k, v in value.items()) if isinstance(value, dict) else value}"
        for key, value in spec.workload.items()
        if key != "name"
    ]
    runs = getattr(spec, "runs", None)  # a replicate study's (isinstance would import torch)
    if runs is None:
        optimizer = spec.optimizer  # type: ignore[union-attr]
        kind = str(spec.definition.get("kind", "search"))  # a search, or a sensitivity study
        search = {"sampler": spec.sampler["name"], "pruner": spec.pruner["name"]}
    else:
        optimizer = ", ".join(dict.fromkeys(run["optimizer"] for run in runs))
        kind, search = "replicates", {}
    return {
        "workload": ", ".join([spec.workload["name"], *overrides]),
        "optimizer": optimizer,
        "metric": spec.metric,
        BUDGET_ATTR: spec.budget,
        **({"study_file": str(study_file)} if study_file is not None else {}),
        "kind": kind,
        **search,
        "adamz_version": __version__,
    }


def store_definition(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    spec: AnySpec,
    *,
    study_file: Path | None = None,
) -> None:
    """Store ``spec`` with the study ``study_name``: definition and digest as system
    attributes, :func:`readable_attrs` as user attributes."""
    study_id = storage.get_study_id_from_name(study_name)
    storage.set_study_system_attr(study_id, DEFINITION_ATTR, spec.definition)
    storage.set_study_system_attr(study_id, DIGEST_ATTR, spec.digest)
    for key, value in readable_attrs(spec, study_file=study_file).items():
        storage.set_study_user_attr(study_id, key, value)


def stored_definition(study: str, storage: BaseStorage) -> dict[str, Any] | None:
    """The definition stored with the study named ``study`` in ``storage`` (read through the
    storage's public interface: a ``Study`` has no public reader of its system attributes);
    None for a study ``create`` did not make."""
    definition = _stored(study, DEFINITION_ATTR, storage)
    return definition if isinstance(definition, dict) else None


def require_definition(study: str, storage: BaseStorage) -> dict[str, Any]:
    """:func:`stored_definition`, for a study that must have one.

    Raises:
        ValueError: the study was not created by ``adamz-search create``.
    """
    definition = stored_definition(study, storage)
    if definition is None:
        raise ValueError(
            f"Study {study!r} was not created by 'adamz-search create': "
            "it has no stored definition to run."
        )
    return definition


def stored_digest(study: str, storage: BaseStorage) -> str | None:
    """The digest of the definition stored with the study named ``study``; None for a study
    ``create`` did not make."""
    digest = _stored(study, DIGEST_ATTR, storage)
    return digest if isinstance(digest, str) else None


def _stored(study: str, key: str, storage: BaseStorage) -> Any:
    """``key`` of study ``study``'s system attributes, else of its user attributes (older
    studies)."""
    study_id = storage.get_study_id_from_name(study)
    system_attrs = storage.get_study_system_attrs(study_id)
    if key in system_attrs:
        return system_attrs[key]
    return storage.get_study_user_attrs(study_id).get(key)


def is_diverged(trial: FrozenTrial) -> bool:
    """Whether ``trial``'s loss diverged (:attr:`~adamz.search.records.TrialRun.diverged`)."""
    run = TrialRun.of(trial)
    return run is not None and run.diverged


NOTE_MARK = "> **Diverged:**"
"""How the divergence line of a study's dashboard note begins (:func:`note_header`)."""


@dataclass(frozen=True)
class Divergence:
    """How many of a study's finished trials diverged, and whether its best value is one's.

    Args:
        diverged: finished trials whose loss turned non-finite (each counted at the
            workload's chance value).
        finished: the study's finished trials (complete or pruned).
        best_is_chance: the best trial is a diverged one: its value is the chance value.
    """

    diverged: int
    finished: int
    best_is_chance: bool

    @classmethod
    def of(cls, trials: Sequence[FrozenTrial], best: FrozenTrial | None) -> Divergence:
        """The divergence of a study with ``trials`` whose best trial is ``best``."""
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        return cls(
            diverged=sum(map(is_diverged, finished)),
            finished=len(finished),
            best_is_chance=best is not None and is_diverged(best),
        )

    @property
    def every_trial(self) -> bool:
        return self.diverged > 0 and self.diverged == self.finished

    def headline(self) -> str:
        """A few words for a study's first line: ``every trial diverged (12 of 12 finished)``
        or ``3 of 40 finished trials diverged``; empty if none did."""
        if not self.diverged:
            return ""
        if self.every_trial:
            return f"every trial diverged ({self.diverged} of {self.finished} finished)"
        return f"{self.diverged} of {self.finished} finished trials diverged"

    def sentence(self) -> str:
        """:meth:`headline`, with what it means for the best value; empty if none diverged."""
        if not self.diverged:
            return ""
        meaning = "their loss turned non-finite, and each counts at the workload's chance value"
        if self.best_is_chance:
            meaning += "; the best value is a diverged trial's chance value"
            meaning += ", not a result" if self.every_trial else ""
        return f"{self.headline().capitalize()}: {meaning}."


@dataclass(frozen=True)
class RunMedian:
    """One run of a replicate study: the median of the study's metric over its finished seeds.

    Args:
        run: the run's label.
        median: over its finished seeds (a diverged seed at the workload's chance value);
            None before the first.
        finished: its seeds finished so far.
        seeds: the seeds it trains.
    """

    run: str
    median: float | None
    finished: int
    seeds: int

    def words(self, spec: str = ".4f") -> str:
        """``AdamZ 0.9711 (10 of 10 seeds)``, the median formatted by ``spec``."""
        median = "-" if self.median is None else format(self.median, spec)
        return f"{self.run} {median} ({self.finished} of {self.seeds} seeds)"


def run_medians(
    trials: Sequence[FrozenTrial], definition: dict[str, Any] | None
) -> list[RunMedian] | None:
    """Each run's :class:`RunMedian`, in the definition's order, for a replicate study with
    ``trials`` and ``definition``; None for any other study."""
    if definition is None or definition.get("kind") != "replicates":
        return None
    by_run: dict[str, dict[Any, float]] = {run["label"]: {} for run in definition["runs"]}
    for trial in trials:
        label = trial.params.get("run")
        if trial.state == TrialState.COMPLETE and trial.value is not None and label in by_run:
            by_run[label][trial.params.get("seed")] = trial.value  # a seed counts once
    seeds = int(definition["seeds"])
    return [
        RunMedian(label, statistics.median(values.values()) if values else None, len(values), seeds)
        for label, values in by_run.items()
    ]


MEDIANS_MARK = "> **Median per run:**"
"""How the line of a replicate study's dashboard note with its runs' medians begins."""
NO_IMPORTANCE = "importance does not apply: fixed configurations"
"""What the note of a replicate study says of the dashboard's importance panel."""


def note_header(study: optuna.Study, storage: BaseStorage) -> None:
    """Keep the first lines of ``study``'s optuna-dashboard note saying what a person needs
    before the rest (a report's summary): how many of its trials diverged
    (:meth:`Divergence.sentence`), and for a replicate study its runs' medians
    (:func:`run_medians`) and that the dashboard's importance does not apply. A note with
    nothing to say there is left as it is."""
    trials = study.get_trials(deepcopy=False)
    medians = run_medians(trials, stored_definition(study.study_name, storage))
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if completed and medians is None else None
    header = []
    if sentence := Divergence.of(trials, best).sentence():
        header.append(f"{NOTE_MARK} {sentence}")
    if medians is not None:
        metric = study.metric_names[0] if study.metric_names else "the metric"
        header.append(
            f"{MEDIANS_MARK} {', '.join(median.words() for median in medians)} "
            f"({metric} over each run's finished seeds; no best trial; {NO_IMPORTANCE})"
        )
    if not header:  # nothing diverged, nor ever did (a finished trial does not change)
        return
    import optuna_dashboard  # only when a note is written

    note = optuna_dashboard.get_note(study)
    lines = note.splitlines()
    while lines and lines[0].startswith((NOTE_MARK, MEDIANS_MARK)):
        lines = lines[2:]  # the line and the blank one after it
    new = "\n\n".join([*header, "\n".join(lines)])
    if new.rstrip() != note.rstrip():
        optuna_dashboard.save_note(study, new)
