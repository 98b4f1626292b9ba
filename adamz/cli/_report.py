"""The ``report`` and ``export`` sub-commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from adamz.cli._base import Command, UsageError
from adamz.cli._study_commands import (
    add_storage_argument,
    create_study,
    load_study_or_fail,
    open_storage_or_fail,
)
from adamz.reports import ReportError, build_report, load_study_data
from adamz.reports._confirm import TOP, confirmation_spec
from adamz.reports._export import export_config, save_config, write_config
from adamz.search.launcher import launch_workers, parse_devices
from adamz.search.worker import WorkerOptions

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
            "--plotly-js",
            type=Path,
            default=None,
            metavar="FILE",
            help="load plotly.js from FILE (written if missing) instead of inlining it, so "
            "several reports share one copy",
        )
        parser.add_argument(
            "--confirm",
            type=int,
            default=0,
            metavar="K",
            help=f"first re-run the first study's top {TOP} configurations and the other "
            "studies' best with K fresh seeds (a replicate study run by workers)",
        )
        parser.add_argument(
            "--devices", default="cpu", help="--confirm: cpu, cuda or cuda:0,1 (as worker)"
        )
        parser.add_argument(
            "--workers-per-device", type=int, default=1, help="--confirm: processes per device"
        )
        parser.add_argument("--data-dir", default=None, help="--confirm: the dataset directory")

    def take_action(self, args: argparse.Namespace) -> int:
        # The importance evaluators create throw-away in-memory studies: keep their logs quiet.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if args.repeats < 1 or args.fanova_trees < 1:
            raise UsageError(
                f"--repeats and --fanova-trees must be at least 1, got {args.repeats} and "
                f"{args.fanova_trees}."
            )
        storage = open_storage_or_fail(args.storage, read_only=not args.confirm)
        studies = [load_study_or_fail(name, storage) for name in args.studies]
        if args.confirm:
            studies.append(self._confirm(args, studies, storage))
        out = args.out or REPORTS_DIR / "+".join(args.studies)
        try:
            files = build_report(
                studies,
                out,
                importance_repeats=args.repeats,
                fanova_trees=args.fanova_trees,
                save_note=not args.no_note,
                progress=sys.stderr.isatty(),
                plotly_js=args.plotly_js,
            )
        except ReportError as exc:
            raise UsageError(str(exc)) from exc
        print(f"Wrote {files.html} ({files.charts} charts), {files.markdown}, {files.json}")
        return 0

    @staticmethod
    def _confirm(
        args: argparse.Namespace, studies: list[optuna.Study], storage: BaseStorage
    ) -> optuna.Study:
        """Create the confirmation study of ``studies`` (once) and run it to its budget."""
        if args.confirm < 2 or args.workers_per_device < 1:
            raise UsageError(
                f"--confirm must be at least 2 and --workers-per-device at least 1, got "
                f"{args.confirm} and {args.workers_per_device}."
            )
        try:
            devices = parse_devices(args.devices)
            spec = confirmation_spec([load_study_data(study) for study in studies], args.confirm)
        except (ValueError, ReportError) as exc:
            raise UsageError(str(exc)) from exc
        create_study(spec, storage)
        print(
            f"Confirming in study {spec.name}: {len(spec.runs)} configurations x "
            f"{spec.seeds} seeds",
            file=sys.stderr,
        )
        options = WorkerOptions(storage=args.storage, data_dir=args.data_dir)
        code = launch_workers(spec.name, devices, args.workers_per_device, options)
        if code != 0:
            raise UsageError(f"The confirmation workers failed (exit {code}): see their log.")
        return load_study_or_fail(spec.name, storage)


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
        storage = open_storage_or_fail(args.storage, read_only=True)
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
