"""Optimizers: AdamZ and the functions it is built from."""

from adamz.optim.adamz import AdamZ, validate_hyperparameters

__all__ = ["AdamZ", "validate_hyperparameters"]
