"""How much the package shows on the terminal: one verbosity for a command and the processes it
starts (workers), and the package's log records on stderr.

Used by the command line and by the worker supervisor, which starts worker processes that must
run at the command's verbosity; it imports nothing of the package.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

__all__ = [
    "DEBUG",
    "DEFAULT",
    "QUIET",
    "VERBOSE",
    "VERBOSITY_ENV",
    "current_verbosity",
    "log_to_stderr",
    "verbosity",
]

QUIET, DEFAULT, VERBOSE, DEBUG = 0, 1, 2, 3
"""Verbosity levels: ``-q``, none, ``-v``, ``-vv``. Optuna's CLI counts the same way, except that
at the default level this one keeps Optuna's info logs ("A new study created") and experimental
warnings off the terminal: the project's own progress says what happens."""

VERBOSITY_ENV = "ADAMZ_VERBOSITY"
"""The verbosity a command runs at, in the environment so that the processes it starts (workers)
run at the same one: :func:`verbosity_from` reads it when neither ``-v`` nor ``-q`` is given."""


def current_verbosity() -> int:
    """The verbosity in ``$ADAMZ_VERBOSITY`` (set by :func:`verbosity` for the processes a
    command starts); :data:`DEFAULT` if it is unset or not one of the levels."""
    text = os.environ.get(VERBOSITY_ENV, "")
    return (
        int(text) if text in {str(level) for level in (QUIET, DEFAULT, VERBOSE, DEBUG)} else DEFAULT
    )


@contextmanager
def verbosity(level: int) -> Iterator[None]:
    """Run the block at verbosity ``level``, and the processes it starts too.

    Below :data:`VERBOSE`, Optuna logs only warnings and errors, and its experimental warnings
    (``heartbeat_interval``, ``set_metric_names``, ...) are not shown: they speak to Optuna's
    users, not to this CLI's. The settings are undone when the block ends.
    """
    previous_env = os.environ.get(VERBOSITY_ENV)
    previous_optuna = optuna.logging.get_verbosity()
    os.environ[VERBOSITY_ENV] = str(level)
    optuna_level = {QUIET: logging.WARNING, DEFAULT: logging.WARNING, VERBOSE: logging.INFO}
    optuna.logging.set_verbosity(optuna_level.get(level, logging.DEBUG))
    try:
        with warnings.catch_warnings():
            if level < VERBOSE:
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(previous_optuna)
        if previous_env is None:
            os.environ.pop(VERBOSITY_ENV, None)
        else:
            os.environ[VERBOSITY_ENV] = previous_env


@contextmanager
def log_to_stderr(level: int = logging.INFO) -> Iterator[None]:
    """Show the package's log records (progress, warnings) on stderr while the block runs.

    ``level`` is the threshold at the default verbosity; ``-q`` raises it to warnings, ``-v``
    lowers it to at most info, and ``-vv`` to debug.
    """
    logger = logging.getLogger("adamz")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    shown = current_verbosity()
    if shown == QUIET:
        level = max(level, logging.WARNING)
    elif shown == VERBOSE:
        level = min(level, logging.INFO)
    elif shown >= DEBUG:
        level = logging.DEBUG
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
