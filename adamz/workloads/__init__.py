"""Workloads: the paper's experiments as training tasks, one module each, one registry.

>>> workload = get_workload("circles")
>>> workload.protocol
Protocol(epochs=10, batch_size=64, train_size=None, test_size=None)
"""

from __future__ import annotations

from adamz.workloads._base import (
    METRICS,
    VALIDATION_SPLIT_SEED,
    DataNotFoundError,
    Protocol,
    Splits,
    TensorData,
    Workload,
    clear_data_cache,
    validation_split,
)
from adamz.workloads.cifar10 import Cifar10
from adamz.workloads.circles import Circles
from adamz.workloads.digits import Digits
from adamz.workloads.mnist import Mnist

__all__ = [
    "METRICS",
    "VALIDATION_SPLIT_SEED",
    "WORKLOADS",
    "DataNotFoundError",
    "Protocol",
    "Splits",
    "TensorData",
    "Workload",
    "clear_data_cache",
    "get_workload",
    "validation_split",
]

WORKLOADS: dict[str, Workload] = {
    workload.name: workload for workload in (Circles(), Mnist(), Cifar10(), Digits())
}
"""Every workload by name."""


def get_workload(name: str) -> Workload:
    """The workload called ``name``.

    Raises:
        ValueError: no workload has that name; the message lists the ones there are.
    """
    try:
        return WORKLOADS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown workload {name!r}: must be one of {', '.join(WORKLOADS)}."
        ) from None
