"""The ``adamz-search`` command line, in the style of Optuna's: one class per sub-command.

Add a sub-command by writing a :class:`Command` subclass in its own module and listing it in
:data:`COMMANDS`. Bad input raises :class:`UsageError`; :func:`main` prints it as
``adamz-search: error: <message>`` and returns 2, as argparse does for its own errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from adamz import __version__
from adamz.cli._base import Command, UsageError
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


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-parser per command in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Tune AdamZ and compare it fairly with other optimizers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command_class in COMMANDS:
        command = command_class()
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(subparser)
        subparser.set_defaults(command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``adamz-search`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return command.take_action(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
