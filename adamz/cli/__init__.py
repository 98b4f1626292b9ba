"""The ``adamz-search`` command line, in the style of Optuna's: one class per sub-command.

Add a sub-command by writing a :class:`Command` subclass in its own module and listing it in
:data:`COMMANDS`. Bad input raises :class:`UsageError`; :func:`main` prints it as
``adamz-search: error: <message>`` and returns 2, as argparse does for its own errors.

``-v`` and ``-q`` set how much a command shows (see :mod:`adamz.cli._base`). Output cut short by
its reader (``adamz-search studies | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from adamz import __version__
from adamz.cli._base import Command, UsageError, add_verbosity_arguments, verbosity_from
from adamz.cli._report import ExportCommand, ReportCommand
from adamz.cli._study_commands import (
    BudgetCommand,
    CreateCommand,
    DashboardCommand,
    ProxyCommand,
    StatusCommand,
    StudiesCommand,
    WorkerCommand,
)
from adamz.cli._train import TrainCommand
from adamz.verbosity import verbosity

__all__ = ["COMMANDS", "Command", "UsageError", "main"]

PROG = "adamz-search"

COMMANDS: list[type[Command]] = [
    CreateCommand,
    WorkerCommand,
    StatusCommand,
    StudiesCommand,
    BudgetCommand,
    DashboardCommand,
    ProxyCommand,
    TrainCommand,
    ReportCommand,
    ExportCommand,
]
"""Every sub-command, in the order ``--help`` lists them."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with one sub-parser per command in :data:`COMMANDS`; with ``only``, a
    command's name, only that command's options are declared.

    Declaring some commands' options imports what their help lists (``train``: the workloads
    and optimizers, and torch with them); a command run on its own declares only its own.
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="Tune AdamZ and compare it fairly with other optimizers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_verbosity_arguments(parser)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command_class in COMMANDS:
        command = command_class()
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        if only in (None, command.name):
            command.add_arguments(subparser)
        add_verbosity_arguments(subparser)
        subparser.set_defaults(command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``adamz-search`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command is the first word that is not an option: the main parser's take no values.
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return 2
    with verbosity(verbosity_from(args)):
        try:
            code = command.take_action(args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit where it cannot be caught
            return code
        except UsageError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            # The reader stopped reading (``| head``): what is left of the output has nowhere to
            # go. Point stdout at /dev/null so that Python's flush at exit fails no more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
