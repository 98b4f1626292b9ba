"""A trial's run record: the ``run`` user attribute a worker writes when the trial ends.

One type for its writer (:mod:`~adamz.search.objective`) and its readers (the reports):
:meth:`TrialRun.of` reads a stored trial's record, older ones (before ``format``) included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from optuna.trial import FrozenTrial

__all__ = ["RUN_ATTR", "RUN_FORMAT", "TrialRun"]

RUN_ATTR = "run"
"""The user attribute that holds a trial's :class:`TrialRun`."""
RUN_FORMAT = 1
"""The version of :class:`TrialRun`'s fields; a record without one was written before it."""


@dataclass
class TrialRun:
    """What a trial's seeds trained and reached, however it ended.

    Attributes:
        seeds: the seeds it trains (its plan's).
        epochs_run: epochs trained in this trial, over all its seeds.
        wall_time_s: its share of the training's seconds.
        metrics: the mean over its seeds of every metric the training records, validation and
            test (:data:`~adamz.workloads.METRICS` for the paper's workloads); ``None`` unless
            every seed completed.
        seed_metrics: the same per seed that completed, in the seeds' order.
        last_epoch_metrics: every metric after the last epoch its first seed reported (what a
            pruned trial reached).
        stop_reason: why it ended early: pruned, diverged, interrupted, or its error.
        diverged: a seed's loss turned non-finite (its value is then the chance value).
        result: its first seed's :class:`~adamz.training.TrainResult` as a dict (for AdamZ,
            the controller's adjustments).
        format: :data:`RUN_FORMAT` when it was written; 0 for older records.
    """

    seeds: list[int] = field(default_factory=list)
    epochs_run: int = 0
    wall_time_s: float = 0.0
    metrics: dict[str, float] | None = None
    seed_metrics: list[dict[str, float]] = field(default_factory=list)
    last_epoch_metrics: dict[str, float] | None = None
    stop_reason: str | None = None
    diverged: bool = False
    result: dict[str, Any] | None = None
    format: int = RUN_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """The record as stored: plain values, the empty fields left out."""
        return {key: value for key, value in asdict(self).items() if value not in (None, False)}

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRun | None:
        """``trial``'s record, or ``None`` where it has none (a trial of another tool, or one
        still running)."""
        stored = trial.user_attrs.get(RUN_ATTR)
        if not isinstance(stored, dict):
            return None
        known = {item.name for item in fields(cls)}
        record = cls(**{key: value for key, value in stored.items() if key in known})
        record.format = int(stored.get("format", 0))
        if not record.diverged and str(record.stop_reason or "").startswith("diverged"):
            record.diverged = True  # recorded as a pruned trial's reason, before the field
        return record
