"""The ``report`` and ``export`` sub-commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from adamz.cli._base import Command, UsageError
from adamz.cli._study_commands import (
    add_storage_argument,
    load_study_or_fail,
    open_storage_or_fail,
)
from adamz.reports import ReportError, build_report, load_study_data
from adamz.reports._export import export_config, save_config, write_config

__all__ = ["ExportCommand", "ReportCommand"]

REPORTS_DIR = Path("out/reports")
"""Where reports go by default: scratch output, git-ignored (``reports/`` holds shipped ones)."""


class ReportCommand(Command):
    name = "report"
    help = "Write an HTML report, a Markdown summary and the numbers as JSON for STUDY(s)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("studies", nargs="+", metavar="STUDY", help="studies in the storage")
        add_storage_argument(parser)
        parser.add_argument(
            "--out", type=Path, default=None, help=f"output folder (default: {REPORTS_DIR}/NAME)"
        )
        parser.add_argument(
            "--repeats", type=int, default=5, help="importance repeats (seeds, bootstraps)"
        )
        parser.add_argument("--fanova-trees", type=int, default=16, help="trees per fANOVA fit")
        parser.add_argument(
            "--no-note", action="store_true", help="do not save the summary as the dashboard note"
        )
        parser.add_argument(
            "--confirm",
            type=int,
            default=0,
            metavar="K",
            help="re-run the top configurations with K fresh seeds (not implemented yet)",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        # The importance evaluators create throw-away in-memory studies: keep their logs quiet.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if args.confirm:
            raise UsageError("--confirm is not implemented yet: report without it.")
        if args.repeats < 1 or args.fanova_trees < 1:
            raise UsageError(
                f"--repeats and --fanova-trees must be at least 1, got {args.repeats} and "
                f"{args.fanova_trees}."
            )
        storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
        studies = [load_study_or_fail(name, storage) for name in args.studies]
        out = args.out or REPORTS_DIR / "+".join(args.studies)
        try:
            files = build_report(
                studies,
                out,
                importance_repeats=args.repeats,
                fanova_trees=args.fanova_trees,
                save_note=not args.no_note,
                progress=sys.stderr.isatty(),
            )
        except ReportError as exc:
            raise UsageError(str(exc)) from exc
        print(f"Wrote {files.html} ({files.charts} charts), {files.markdown}, {files.json}")
        return 0


class ExportCommand(Command):
    name = "export"
    help = "Write the recommended configuration of STUDY (or a robust default of several)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("studies", nargs="+", metavar="STUDY", help="studies in the storage")
        add_storage_argument(parser)
        parser.add_argument("--format", choices=("yaml", "json"), default="yaml")
        parser.add_argument(
            "--out", type=Path, default=None, help="file to write (default: standard output)"
        )

    def take_action(self, args: argparse.Namespace) -> int:
        storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
        studies = [load_study_or_fail(name, storage) for name in args.studies]
        try:
            config = export_config([load_study_data(study) for study in studies])
        except ReportError as exc:
            raise UsageError(str(exc)) from exc
        if args.out is None:
            sys.stdout.write(write_config(config, args.format))
        else:
            save_config(config, args.format, args.out)
            print(f"Wrote {args.out}", file=sys.stderr)
        return 0
