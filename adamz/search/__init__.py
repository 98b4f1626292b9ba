"""The search service: study and search-space files, storages, trials and workers.

Import direction: ``adamz.search`` uses ``adamz.training`` (and through it the workloads and the
optimizer); nothing below it imports the search service.
"""

from adamz.search.errors import SpecError
from adamz.search.launcher import launch_workers
from adamz.search.objective import TrialObjective
from adamz.search.spaces import SearchSpace, load_search_space
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
]
