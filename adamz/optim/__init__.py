"""Optimizers: AdamZ and the functions it is built from."""

from adamz.optim.adamz import AdamZ, presets, validate_hyperparameters

__all__ = ["AdamZ", "presets", "validate_hyperparameters"]
