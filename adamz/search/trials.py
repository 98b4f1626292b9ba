"""A live trial's record in the storage, read through Optuna's public storage interface.

``optuna.Trial`` exposes neither its storage id nor the system attributes it was queued with
(``fixed_params``, ``failed_trial``). Both are fixed once the trial runs, so each is read once
per trial and kept.
"""

from __future__ import annotations

import functools
from typing import Any

import optuna
from optuna.storages import BaseStorage

__all__ = ["queued_attrs", "trial_id"]

QUEUE_KEYS = ("fixed_params", "failed_trial")


def trial_id(trial: optuna.Trial) -> int:
    """``trial``'s id in its storage, for ``BaseStorage`` methods."""
    return _trial_id(trial.storage, trial.study.study_name, trial.number)


def queued_attrs(trial: optuna.Trial) -> dict[str, Any]:
    """The system attributes ``trial`` was queued with (:data:`QUEUE_KEYS`); empty if sampled."""
    return _queued_attrs(trial.storage, trial.study.study_name, trial.number)


@functools.lru_cache(maxsize=16)
def _study_id(storage: BaseStorage, study_name: str) -> int:
    return storage.get_study_id_from_name(study_name)


@functools.lru_cache(maxsize=64)
def _trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(_study_id(storage, study_name), number)


@functools.lru_cache(maxsize=64)
def _queued_attrs(storage: BaseStorage, study_name: str, number: int) -> dict[str, Any]:
    system_attrs = storage.get_trial_system_attrs(_trial_id(storage, study_name, number))
    return {key: system_attrs[key] for key in QUEUE_KEYS if key in system_attrs}
