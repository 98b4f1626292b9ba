"""What every ``adamz-search`` sub-command is built from, and how much it shows on the terminal."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

from adamz.verbosity import DEBUG, DEFAULT, QUIET, current_verbosity

__all__ = [
    "Command",
    "UsageError",
    "add_verbosity_arguments",
    "usage_errors",
    "verbosity_from",
]


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


def add_population_argument(parser: argparse.ArgumentParser, option: str = "") -> None:
    """``--population K``: trials each worker trains at once, as one stacked model where the
    model allows (:mod:`adamz.search.objective`)."""
    parser.add_argument(
        "--population",
        type=int,
        default=None,
        metavar="K",
        help=(f"{option}: " if option else "")
        + "trials each worker process trains at once, as one batched model: many times the "
        "trials per hour on small models (default: the study file's 'population', else 1)",
    )
