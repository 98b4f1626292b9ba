"""Optimizers: AdamZ, the functions it is built from, and Adam with AdamZ's clipping."""

from adamz.optim.adamz import AdamZ, presets, validate_hyperparameters
from adamz.optim.clipped_adam import ClippedAdam

__all__ = ["AdamZ", "ClippedAdam", "presets", "validate_hyperparameters"]
