"""The search service: study and search-space files, storages, trials and workers.

Import direction: ``adamz.search`` uses ``adamz.training`` (and through it the workloads and the
optimizer); nothing below it imports the search service. The names below are imported on first
use, so that a module of the package that only reads the storage (the worker supervisor,
``status``) does not load the training code, and torch with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adamz.search.errors import SpecError
    from adamz.search.launcher import launch_workers
    from adamz.search.objective import TrialObjective
    from adamz.search.spaces import SearchSpace, load_search_space, suggest_adamz
    from adamz.search.storage import load_study, open_storage, storage_url
    from adamz.search.studies import StudySpec, load_study_file, make_pruner, make_sampler
    from adamz.search.worker import WorkerOptions, run_worker

__all__ = [
    "SearchSpace",
    "SpecError",
    "StudySpec",
    "TrialObjective",
    "WorkerOptions",
    "launch_workers",
    "load_search_space",
    "load_study",
    "load_study_file",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "run_worker",
    "storage_url",
    "suggest_adamz",
]

_MODULES = {
    "errors": ("SpecError",),
    "launcher": ("launch_workers",),
    "objective": ("TrialObjective",),
    "spaces": ("SearchSpace", "load_search_space", "suggest_adamz"),
    "storage": ("load_study", "open_storage", "storage_url"),
    "studies": ("StudySpec", "load_study_file", "make_pruner", "make_sampler"),
    "worker": ("WorkerOptions", "run_worker"),
}


def __getattr__(name: str) -> Any:
    for module, names in _MODULES.items():
        if name in names:
            return getattr(import_module(f"adamz.search.{module}"), name)
    raise AttributeError(f"module 'adamz.search' has no attribute {name!r}")
