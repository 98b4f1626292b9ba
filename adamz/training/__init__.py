"""Training: a run and its record, the one loop that trains one run (:func:`train`) or several
(:func:`train_runs`: stacked as one model where it can be, else one at a time), the optimizer
registry, checkpoints.

Example::

    from adamz.training import RunConfig, train

    result = train(RunConfig(workload="digits", optimizer="adamz", hyperparameters={"lr": 0.01}))
    print(result.final_metrics, result.stop_reason, result.controller)
"""

from __future__ import annotations

from adamz.training.checkpoint import load_checkpoint, save_checkpoint
from adamz.training.loop import evaluate
from adamz.training.optimizers import (
    OPTIMIZER_NAMES,
    OPTIMIZERS,
    PAPER_LR,
    SCHEDULED,
    build_optimizer,
    build_schedule,
    library_defaults,
    paper_settings,
    resolve_hyperparameters,
)
from adamz.training.population import train, train_runs
from adamz.training.run import (
    CheckpointMismatchError,
    ResolvedRun,
    RunConfig,
    StopTraining,
    TrainResult,
)

__all__ = [
    "OPTIMIZERS",
    "OPTIMIZER_NAMES",
    "PAPER_LR",
    "SCHEDULED",
    "CheckpointMismatchError",
    "ResolvedRun",
    "RunConfig",
    "StopTraining",
    "TrainResult",
    "build_optimizer",
    "build_schedule",
    "evaluate",
    "library_defaults",
    "load_checkpoint",
    "paper_settings",
    "resolve_hyperparameters",
    "save_checkpoint",
    "train",
    "train_runs",
]
