"""``adamz-search COMMAND --help``: every option says what it does, and its default."""

from __future__ import annotations

import argparse

import pytest

from adamz.cli import COMMANDS, build_parser, main

DOCUMENTED = [command.name for command in COMMANDS]


def subparser(name: str) -> argparse.ArgumentParser:
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


def is_shown(action: argparse.Action) -> bool:
    return action.help is not argparse.SUPPRESS and not isinstance(
        action, argparse._HelpAction | argparse._VersionAction
    )


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_option_has_help_that_shows_its_default(name: str) -> None:
    parser = subparser(name)
    for action in filter(is_shown, parser._actions):
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"{name} {label} has no help"
        if action.default not in (None, False, [], argparse.SUPPRESS):
            assert "%(default)s" in action.help or str(action.default) in action.help, (
                f"{name} {label}: its help does not show its default {action.default!r}"
            )


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["status", "--help"], ["study ", "the study's name", "--format", "(default: table)"]),
        (["dashboard", "--help"], ["--port", "(default: 8080)", "(default: 127.0.0.1"]),
        (["report", "--help"], ["--repeats", "(default: 5)", "--fanova-trees", "(default: 16)"]),
        (["--help"], ["-v, --verbose", "-q, --quiet"]),
    ],
)
def test_help_shows_the_defaults(
    argv: list[str], shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width
    for fragment in shown:
        assert fragment in text
