"""What every ``adamz-search`` sub-command is built from."""

from __future__ import annotations

import argparse
import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Command", "UsageError", "log_to_stderr"]


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
def log_to_stderr(level: int = logging.INFO) -> Iterator[None]:
    """Show the package's log records (progress, warnings) on stderr while the block runs."""
    logger = logging.getLogger("adamz")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
