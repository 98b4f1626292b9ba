"""Workloads: the paper's experiments as training tasks, one module each, one registry; and
workloads from the user's own code, by import path (:class:`UserWorkload`).

>>> workload = get_workload("circles")
>>> workload.protocol
Protocol(epochs=10, batch_size=64, train_size=None, test_size=None)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adamz.workloads._base import (
    DIRECTIONS,
    HELD_OUT_SPLITS,
    METRICS,
    VALIDATION_SPLIT_SEED,
    DataNotFoundError,
    DatasetData,
    Metric,
    Protocol,
    RunData,
    Splits,
    TensorData,
    Workload,
    clear_data_cache,
    tail_validation_split,
    validation_split,
)
from adamz.workloads._user import (
    DEFAULT_VALIDATION_FRACTION,
    RUN_SETTINGS,
    ImportedWorkload,
    UserWorkload,
    WorkloadData,
    WorkloadError,
    check_workload,
    import_workload,
    is_import_path,
    workload_options,
)
from adamz.workloads.cifar10 import Cifar10
from adamz.workloads.circles import Circles
from adamz.workloads.digits import Digits
from adamz.workloads.mnist import Mnist
from adamz.workloads.pysource import PySource

__all__ = [
    "DEFAULT_VALIDATION_FRACTION",
    "DIRECTIONS",
    "HELD_OUT_SPLITS",
    "METRICS",
    "RUN_SETTINGS",
    "VALIDATION_SPLIT_SEED",
    "WORKLOADS",
    "DataNotFoundError",
    "DatasetData",
    "ImportedWorkload",
    "Metric",
    "Protocol",
    "RunData",
    "Splits",
    "TensorData",
    "UserWorkload",
    "Workload",
    "WorkloadData",
    "WorkloadError",
    "check_workload",
    "clear_data_cache",
    "get_workload",
    "import_workload",
    "is_import_path",
    "tail_validation_split",
    "validation_split",
    "workload_of",
    "workload_options",
]

WORKLOADS: dict[str, Workload] = {
    workload.name: workload for workload in (Circles(), Mnist(), Cifar10(), Digits(), PySource())
}
"""Every built-in workload by name."""


def get_workload(name: str, options: Mapping[str, Any] | None = None) -> Workload:
    """The workload called ``name``: a built-in one, or one of the user's code by its import
    path ``module:attribute``, called with ``options`` (:func:`import_workload`).

    Raises:
        ValueError: no built-in workload has that name (the message lists the ones there are),
            or options are given to a built-in one.
        WorkloadError: an import path that cannot be imported, or breaks the protocol.
    """
    if is_import_path(name):
        return import_workload(name, options)
    try:
        workload = WORKLOADS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown workload {name!r}: must be one of {', '.join(WORKLOADS)}, or the import "
            "path module:attribute of a workload of your own."
        ) from None
    if options:
        raise ValueError(
            f"Invalid workload options: {name} takes none (a workload of your own does), got "
            f"{', '.join(sorted(options))}."
        )
    return workload


def workload_of(entry: str | Mapping[str, Any]) -> Workload:
    """The workload a study file's ``workload`` entry names: ``{name: ..., **options}`` (its
    :data:`RUN_SETTINGS` are the run's, not the workload's), or a bare name.

    Raises:
        ValueError: as :func:`get_workload`.
    """
    if isinstance(entry, str):
        return get_workload(entry)
    return get_workload(entry["name"], workload_options(entry))
