"""Training: the one loop that trains a workload, the optimizer registry, checkpoints.

Example::

    from adamz.training import RunConfig, train

    result = train(RunConfig(workload="digits", optimizer="adamz", hyperparameters={"lr": 0.01}))
    print(result.final_metric, result.stop_reason, result.controller)
"""

from __future__ import annotations

from adamz.training.checkpoint import load_checkpoint, save_checkpoint
from adamz.training.loop import (
    CheckpointMismatchError,
    ResolvedRun,
    RunConfig,
    StopTraining,
    TrainResult,
    evaluate,
    train,
)
from adamz.training.optimizers import (
    OPTIMIZERS,
    PAPER_LR,
    build_optimizer,
    default_hyperparameters,
    resolve_hyperparameters,
)

__all__ = [
    "OPTIMIZERS",
    "PAPER_LR",
    "CheckpointMismatchError",
    "ResolvedRun",
    "RunConfig",
    "StopTraining",
    "TrainResult",
    "build_optimizer",
    "default_hyperparameters",
    "evaluate",
    "load_checkpoint",
    "resolve_hyperparameters",
    "save_checkpoint",
    "train",
]
