"""What every ``adamz-search`` sub-command is built from, and how much it shows on the terminal."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

__all__ = [
    "DEBUG",
    "DEFAULT",
    "QUIET",
    "VERBOSE",
    "VERBOSITY_ENV",
    "Command",
    "UsageError",
    "add_verbosity_arguments",
    "current_verbosity",
    "log_to_stderr",
    "usage_errors",
    "verbosity",
    "verbosity_from",
]

QUIET, DEFAULT, VERBOSE, DEBUG = 0, 1, 2, 3
"""Verbosity levels: ``-q``, none, ``-v``, ``-vv``. Optuna's CLI counts the same way, except that
at the default level this one keeps Optuna's info logs ("A new study created") and experimental
warnings off the terminal: the project's own progress says what happens."""

VERBOSITY_ENV = "ADAMZ_VERBOSITY"
"""The verbosity a command runs at, in the environment so that the processes it starts (workers)
run at the same one: :func:`verbosity_from` reads it when neither ``-v`` nor ``-q`` is given."""


class UsageError(Exception):
    """Bad input on the command line: ``main`` prints its one-line message and exits 2."""


class Command(ABC):
    """One sub-command: ``adamz-search NAME ...``.

    Subclasses set :attr:`name` and :attr:`help`, declare their options in
    :meth:`add_arguments` and do their work in :meth:`take_action`, raising
    :class:`UsageError` for input they cannot use.
    """

    name: str
    help: str

    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this command's options to its sub-parser."""

    @abstractmethod
    def take_action(self, args: argparse.Namespace) -> int:
        """Run the command; return the exit code."""


@contextmanager
def usage_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Raise :class:`UsageError`, with the same one-line message, for an exception of ``kinds``
    (default: ``ValueError``, the package's error for bad input) that the block raises."""
    caught = kinds or (ValueError,)
    try:
        yield
    except caught as exc:
        raise UsageError(str(exc)) from exc


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """``-v``/``--verbose`` (repeatable) and ``-q``/``--quiet``, as in Optuna's CLI.

    They are added to the main parser and to every sub-command's, so that they may come before
    or after the command's name. Their defaults are suppressed: a sub-parser's default would
    otherwise overwrite a ``-v`` given before the command.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="show more: Optuna's info logs and experimental warnings, the dashboard's access "
        "log; twice (-vv): debug logs too",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show only warnings and errors",
    )


def verbosity_from(args: argparse.Namespace) -> int:
    """The verbosity ``-q``/``-v`` ask for; without either, :func:`current_verbosity`."""
    if getattr(args, "quiet", False):
        return QUIET
    verbose: int = getattr(args, "verbose", 0)
    return min(DEFAULT + verbose, DEBUG) if verbose else current_verbosity()


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


def add_population_argument(parser: argparse.ArgumentParser, option: str = "") -> None:
    """``--population K``: trials each worker trains at once (:mod:`adamz.search.population`)."""
    parser.add_argument(
        "--population",
        type=int,
        default=None,
        metavar="K",
        help=(f"{option}: " if option else "")
        + "trials each worker process trains at once, as one batched model: many times the "
        "trials per hour on small models (default: the study file's 'population', else 1)",
    )
