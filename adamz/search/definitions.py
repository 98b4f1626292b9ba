"""What every study file shares, whatever its kind: its common keys, its workload entry, what a
trial trains, and the digest that names a definition.

A leaf of the search package: the study kinds (:mod:`~adamz.search.studies`,
:mod:`~adamz.search.replicates`) both build on it, and it imports neither.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from adamz.search.errors import SpecError
from adamz.workloads import (
    DIRECTIONS,
    HELD_OUT_SPLITS,
    WORKLOADS,
    DataNotFoundError,
    WorkloadError,
    check_workload,
    is_import_path,
    workload_of,
)

__all__ = ["TrialPlan", "check_common_keys", "definition_digest", "positive_int"]

_WORKLOAD_KEYS = {
    "name",
    "epochs",
    "batch_size",
    "train_size",
    "test_size",
    "data_dir",
    "dataset_sizes",  # the data the study's results hold for (Workload.load_data)
}


@dataclass(frozen=True)
class TrialPlan:
    """What one trial trains: an optimizer with its keyword arguments, over some seeds."""

    optimizer: str
    hyperparameters: dict[str, Any]
    seeds: list[int]


def definition_digest(definition: dict[str, Any]) -> str:
    """SHA-256 of a stored definition: two files define the same study iff their digests match."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_common_keys(
    content: dict[str, Any], source: str, *, split: str, read_from_file: bool
) -> tuple[str, dict[str, Any], str, str]:
    """The keys every study file has: ``name``, ``workload``, ``direction``, ``metric``.

    The metric must be one the workload records (by default its first, on ``split``), and the
    direction follows from the metric's declaration (accuracies are maximised, losses and a
    user's RMSE minimised); a file may say it, but not the other way round.

    ``read_from_file``: ``content`` is a file's, whose workload of the user's code is imported
    and checked; a stored definition's was checked at creation and is taken as it is (a host
    that only reports need not hold the code).
    """
    name = content["name"]
    if not (isinstance(name, str) and name.strip() and "/" not in name):
        raise SpecError(source, "name", "must be a non-empty string without '/'", name)
    workload = _parse_workload(content["workload"], source, check=read_from_file)
    if is_import_path(workload["name"]) and not read_from_file:
        metric, direction = content.get("metric"), content.get("direction")
        if not (isinstance(metric, str) and metric.partition("_")[0] in HELD_OUT_SPLITS):
            raise SpecError(source, "metric", "must be a val_ or test_ metric", metric)
        if direction not in DIRECTIONS:
            raise SpecError(source, "direction", "must be maximize or minimize", direction)
        return name, workload, direction, metric
    declared = workload_of(workload)
    names = declared.metric_names
    metric = content.get("metric", f"{split}_{next(iter(declared.metrics))}")
    if metric not in names:
        raise SpecError(source, "metric", f"must be one of {', '.join(names)}", metric)
    natural = declared.metric(metric).direction
    direction = content.get("direction", natural)
    if direction not in DIRECTIONS:
        raise SpecError(source, "direction", "must be maximize or minimize", direction)
    if direction != natural:
        raise SpecError(source, "direction", f"must be {natural} for metric {metric}", direction)
    return name, workload, direction, metric


def _parse_workload(raw: Any, source: str, *, check: bool) -> dict[str, Any]:
    """The workload entry, checked; a workload of the user's code is imported and checked
    (:func:`~adamz.workloads.check_workload`) where ``check``."""
    workload = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(workload, dict) or "name" not in workload:
        raise SpecError(source, "workload", "must be a workload name or a mapping with name", raw)
    imported = is_import_path(workload["name"])
    for key in workload:
        if key not in _WORKLOAD_KEYS and not imported:
            raise SpecError(
                source,
                f"workload.{key}",
                f"unknown key: allowed are {', '.join(sorted(_WORKLOAD_KEYS))} (a workload of "
                "your own, by import path module:attribute, takes options)",
            )
    if not imported and workload["name"] not in WORKLOADS:
        raise SpecError(
            source,
            "workload.name",
            f"unknown workload: must be one of {', '.join(WORKLOADS)}, or the import path "
            "module:attribute of a workload of your own",
            workload["name"],
        )
    for key in ("epochs", "batch_size"):
        if key in workload:
            positive_int(workload[key], source, f"workload.{key}")
    for key in ("train_size", "test_size"):
        if key in workload and workload[key] != "all":
            positive_int(workload[key], source, f"workload.{key}")
    sizes = workload.get("dataset_sizes", {"train": 1, "test": 1})
    if not (
        isinstance(sizes, dict)
        and set(sizes) == {"train", "test"}
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values())
    ):
        raise SpecError(
            source, "workload.dataset_sizes", "must be {train: N, test: M}, integers >= 1", sizes
        )
    if "data_dir" in workload and not isinstance(workload["data_dir"], str):
        raise SpecError(source, "workload.data_dir", "must be a path", workload["data_dir"])
    if imported and check:
        _check_imported(workload, source)
    return dict(workload)


def _check_imported(workload: dict[str, Any], source: str) -> None:
    """Import the user's workload and check it, or :class:`SpecError` in one line."""
    try:
        imported = workload_of(workload)
    except WorkloadError as exc:
        raise SpecError(source, "workload.name", exc.problem, workload["name"]) from exc
    sizes = {key: workload.get(key) for key in ("train_size", "test_size")}
    try:
        check_workload(
            imported,
            workload.get("data_dir"),
            train_size=None if sizes["train_size"] == "all" else sizes["train_size"],
            test_size=None if sizes["test_size"] == "all" else sizes["test_size"],
            dataset_sizes=workload.get("dataset_sizes"),
        )
    except WorkloadError as exc:
        raise SpecError(source, "workload", exc.problem) from exc
    except (ValueError, DataNotFoundError) as exc:
        raise SpecError(source, "workload", " ".join(str(exc).split()).rstrip(".")) from exc


def positive_int(value: Any, source: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(source, key, "must be an integer >= 1", value)
    return value


def positive_number(value: Any, source: str, key: str) -> float:
    """``value`` as a float if it is a number > 0, else :class:`SpecError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SpecError(source, key, "must be a positive number", value)
    return float(value)


def add_optional_keys(definition: dict[str, Any], content: dict[str, Any], source: str) -> None:
    """A study file's optional ``description``, ``population`` and ``margin`` into its
    ``definition``, only when the file gives them: older definitions keep their digests."""
    if "description" in content:
        definition["description"] = str(content["description"])
    if "population" in content:
        definition["population"] = positive_int(content["population"], source, "population")
    if "margin" in content:
        definition["margin"] = positive_number(content["margin"], source, "margin")
