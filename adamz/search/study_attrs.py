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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from adamz import __version__
from adamz.search.budget import BUDGET_ATTR
from adamz.search.studies import AnySpec, StudySpec

__all__ = [
    "DEFINITION_ATTR",
    "DIGEST_ATTR",
    "readable_attrs",
    "store_definition",
    "stored_definition",
    "stored_digest",
]

DEFINITION_ATTR = "definition"
"""Study system attribute: the definition ``create`` checked, as plain data."""
DIGEST_ATTR = "digest"
"""Study system attribute: SHA-256 of the definition (same digest, same study)."""


def readable_attrs(spec: AnySpec, *, study_file: Path | None = None) -> dict[str, str | int]:
    """The short values the dashboard lists for ``spec``'s study, in the order it lists them."""
    overrides = [f"{key} {value}" for key, value in spec.workload.items() if key != "name"]
    attrs: dict[str, str | int] = {
        "kind": "search" if isinstance(spec, StudySpec) else "replicates",
        "workload": ", ".join([spec.workload["name"], *overrides]),
    }
    if isinstance(spec, StudySpec):
        attrs["optimizer"] = spec.optimizer
    else:
        attrs["optimizer"] = ", ".join(dict.fromkeys(run["optimizer"] for run in spec.runs))
    attrs["metric"] = spec.metric
    attrs[BUDGET_ATTR] = spec.budget
    if isinstance(spec, StudySpec):
        attrs["sampler"] = spec.sampler["name"]
        attrs["pruner"] = spec.pruner["name"]
    if study_file is not None:
        attrs["study_file"] = str(study_file)
    attrs["adamz_version"] = __version__
    return attrs


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
    # The worker (adamz.search.worker.stored_spec) still reads the definition among the user
    # attributes: a copy stays there until it reads stored_definition.
    storage.set_study_user_attr(study_id, DEFINITION_ATTR, spec.definition)
    for key, value in readable_attrs(spec, study_file=study_file).items():
        storage.set_study_user_attr(study_id, key, value)


def stored_definition(study: optuna.Study) -> dict[str, Any] | None:
    """The definition stored with ``study``; None for a study ``create`` did not make."""
    definition = _stored(study, DEFINITION_ATTR)
    return definition if isinstance(definition, dict) else None


def stored_digest(study: optuna.Study) -> str | None:
    """The digest of the definition stored with ``study``; None for a study ``create`` did not
    make."""
    digest = _stored(study, DIGEST_ATTR)
    return digest if isinstance(digest, str) else None


def _stored(study: optuna.Study, key: str) -> Any:
    """``key`` of the study's system attributes, else of its user attributes (older studies)."""
    # A Study has no public reader of its system attributes; its storage has one.
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    return system_attrs[key] if key in system_attrs else study.user_attrs.get(key)
