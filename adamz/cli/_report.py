"""The ``report`` and ``export`` sub-commands.

The reports are imported where a command uses them: they import the training code, and torch
with it, which the other commands (the worker supervisor above all) do without.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.storages import BaseStorage

from adamz.cli._base import Command, UsageError, add_population_argument, usage_errors
from adamz.cli._study_commands import (
    add_storage_argument,
    create_study,
    load_study_or_fail,
    open_storage_or_fail,
)

if TYPE_CHECKING:
    from adamz.reports import StudyData
    from adamz.search.replicates import ReplicateSpec

__all__ = ["ExportCommand", "ReportCommand"]

HOLDOUT_FIRST_SEED = 2000
"""Seeds of the held-out runs of ``export --leave-one-out`` start here (searches use 0 on,
confirmations 1000 on, the export's validation 3000 on)."""

REPORTS_DIR = Path("out/reports")
"""Where reports go by default: scratch output, git-ignored (``reports/`` holds shipped ones)."""


class ReportCommand(Command):
    name = "report"
    help = "Write an HTML report, a Markdown summary and the numbers as JSON for STUDY(s)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # These import torch: see the module docstring.
        from adamz.reports._confirm import TOP

        parser.add_argument("studies", nargs="+", metavar="STUDY", help="studies in the storage")
        add_storage_argument(parser)
        parser.add_argument(
            "--out", type=Path, default=None, help=f"output folder (default: {REPORTS_DIR}/NAME)"
        )
        parser.add_argument(
            "--repeats",
            type=int,
            default=5,
            help="how many times each importance is estimated (fANOVA with another seed, "
            "PED-ANOVA on a bootstrap sample); the report shows their spread "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--fanova-trees",
            type=int,
            default=16,
            help="trees in each fANOVA random forest: more is steadier and slower "
            "(default: %(default)s)",
        )
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
            help="first re-run every study's top --candidates configurations (by validation) "
            "with K fresh seeds (a replicate study run by workers); the verdict picks each "
            "study's winner by its validation median and reports its test numbers (default: "
            "%(default)s, no re-runs)",
        )
        parser.add_argument(
            "--candidates",
            type=int,
            default=TOP,
            metavar="N",
            help="--confirm: configurations re-run from each study, the same for every "
            "optimizer (default: %(default)s)",
        )
        add_replicate_worker_arguments(parser, "--confirm")

    def take_action(self, args: argparse.Namespace) -> int:
        # These import torch: see the module docstring.
        from adamz.reports import ReportError, build_report

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
        with usage_errors(ReportError):
            files = build_report(
                studies,
                out,
                importance_repeats=args.repeats,
                fanova_trees=args.fanova_trees,
                save_note=not args.no_note,
                progress=sys.stderr.isatty(),
                plotly_js=args.plotly_js,
            )
        print(f"Wrote {files.html} ({files.charts} charts), {files.markdown}, {files.json}")
        return 0

    @staticmethod
    def _confirm(
        args: argparse.Namespace, studies: list[optuna.Study], storage: BaseStorage
    ) -> optuna.Study:
        """Create the confirmation study of ``studies`` (once) and run it to its budget."""
        # These import torch: see the module docstring.
        from adamz.reports import ReportError, load_study_data
        from adamz.reports._confirm import confirmation_spec

        if args.confirm < 2:
            raise UsageError(f"--confirm must be at least 2, got {args.confirm}.")
        with usage_errors(ReportError):
            spec = confirmation_spec(
                [load_study_data(study) for study in studies], args.confirm, top=args.candidates
            )
        return run_replicates(spec, args, storage, doing="Confirming")


def add_replicate_worker_arguments(parser: argparse.ArgumentParser, option: str) -> None:
    """The options of the workers that run a command's replicate studies."""
    parser.add_argument(
        "--devices",
        default="cpu",
        help=f"{option}: cpu, cuda or cuda:0,1 (as worker) (default: %(default)s)",
    )
    parser.add_argument(
        "--workers-per-device",
        type=int,
        default=1,
        help=f"{option}: processes per device (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"{option}: the dataset directory (default: the study file's, if any)",
    )
    add_population_argument(parser, option)


def run_replicates(
    spec: ReplicateSpec, args: argparse.Namespace, storage: BaseStorage, *, doing: str
) -> optuna.Study:
    """Create ``spec``'s study (once) and run it to its budget with the command's workers;
    a study an earlier invocation ran to its budget is used as it is."""
    # These import torch: see the module docstring.
    from adamz.search.budget import FINISHED, count_states, study_budget
    from adamz.search.launcher import launch_workers, parse_devices
    from adamz.search.worker import WorkerOptions

    if args.workers_per_device < 1:
        raise UsageError(f"--workers-per-device must be at least 1, got {args.workers_per_device}.")
    with usage_errors():
        devices = parse_devices(args.devices)
    created = create_study(spec, storage)
    runs = f"{len(spec.runs)} configurations x {spec.seeds} seeds"
    if not created:
        study = load_study_or_fail(spec.name, storage)
        states = count_states(study)
        finished = sum(states[state] for state in FINISHED)
        if finished >= study_budget(study, spec.budget):
            print(f"{doing}: study {spec.name} has run its {runs} already", file=sys.stderr)
            return study
    print(f"{doing} in study {spec.name}: {runs}", file=sys.stderr)
    with usage_errors():
        options = WorkerOptions(
            storage=args.storage, data_dir=args.data_dir, population=args.population
        )
    code = launch_workers(spec.name, devices, args.workers_per_device, options)
    if code != 0:
        raise UsageError(f"The workers of {spec.name} failed (exit {code}): see their log.")
    return load_study_or_fail(spec.name, storage)


class ExportCommand(Command):
    name = "export"
    help = (
        "Write the recommended configuration of STUDY, or a default for several studies "
        "validated on every workload."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # These import torch: see the module docstring.
        from adamz.reports._export import MARGIN

        parser.add_argument("studies", nargs="+", metavar="STUDY", help="studies in the storage")
        add_storage_argument(parser)
        parser.add_argument(
            "--format",
            choices=("yaml", "json"),
            default="yaml",
            help="the file's format; AdamZ.from_config reads both (default: %(default)s)",
        )
        parser.add_argument(
            "--out", type=Path, default=None, help="file to write (default: standard output)"
        )
        parser.add_argument(
            "--seeds",
            type=int,
            default=5,
            metavar="K",
            help="several studies: fresh seeds each candidate trains on every workload "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--margin",
            type=float,
            default=MARGIN,
            help="several studies: largest loss to the paper defaults' validation median on "
            "any workload that a recommendation may have (default: %(default)s)",
        )
        parser.add_argument(
            "--leave-one-out",
            action="store_true",
            help="several studies: for each, export from the others and train that default "
            "and the paper defaults on the held-out workload (a replicate study each; report "
            "them with adamz-search report)",
        )
        add_replicate_worker_arguments(parser, "several studies")

    def take_action(self, args: argparse.Namespace) -> int:
        # These import torch: see the module docstring.
        from adamz.reports import ReportError, load_study_data
        from adamz.reports._export import export_config, save_config, validation_table, write_config

        # Several studies are validated by replicate studies it writes; one is only read.
        writes = len(args.studies) > 1 or args.leave_one_out
        storage = open_storage_or_fail(args.storage, read_only=not writes)
        studies = [load_study_or_fail(name, storage) for name in args.studies]
        with usage_errors(ReportError):
            datas = [load_study_data(study) for study in studies]
            if args.leave_one_out:
                return self._leave_one_out(args, datas, storage)
            validation = None
            if len(datas) > 1:
                validation = self._validate(args, datas, storage, tag="+".join(args.studies))
            config = export_config(datas, validation=validation, margin=args.margin)
        if validation is not None:
            choice = config["provenance"]
            print(validation_table(choice), file=sys.stderr)
            if choice["paper_defaults_recommended"]:
                print(
                    "No candidate beat the paper defaults on every workload: recommending the "
                    "paper defaults (the table above is the evidence).",
                    file=sys.stderr,
                )
        if args.out is None:
            sys.stdout.write(write_config(config, args.format))
        else:
            save_config(config, args.format, args.out)
            print(f"Wrote {args.out}", file=sys.stderr)
        return 0

    @staticmethod
    def _validate(
        args: argparse.Namespace, datas: list[StudyData], storage: BaseStorage, *, tag: str
    ) -> list[StudyData]:
        """Train the candidates of ``datas`` and the paper defaults on each of their workloads."""
        # These import torch: see the module docstring.
        from adamz.reports import load_study_data
        from adamz.reports._export import robust_candidates, validation_spec

        if len({data.workload for data in datas}) != len(datas):
            raise UsageError(
                "A default for several studies is validated per workload: give one study per "
                "workload, got " + ", ".join(f"{d.name} ({d.workload})" for d in datas) + "."
            )
        candidates = robust_candidates(datas)
        validation = []
        for data in datas:
            spec = validation_spec(
                data,
                candidates,
                args.seeds,
                name=f"validate-{tag}-on-{data.workload}-k{args.seeds}",
            )
            validation.append(
                load_study_data(run_replicates(spec, args, storage, doing="Validating"))
            )
        return validation

    def _leave_one_out(
        self, args: argparse.Namespace, datas: list[StudyData], storage: BaseStorage
    ) -> int:
        """For each study: a default validated on the others, then trained on its workload."""
        # These import torch: see the module docstring.
        from adamz.reports._confirm import fresh_seed_study
        from adamz.reports._export import PAPER_DEFAULTS, validated_choice

        if len(datas) < 3:
            raise UsageError(
                f"--leave-one-out needs at least 3 studies (2 to export from, 1 held out), got "
                f"{len(datas)}."
            )
        lines = []
        for held in datas:
            others = [data for data in datas if data is not held]
            tag = "+".join(data.name for data in others)
            validation = self._validate(args, others, storage, tag=tag)
            choice = validated_choice(validation, margin=args.margin)
            runs = [
                {
                    "label": f"default from {tag}",
                    "optimizer": held.optimizer,
                    "hyperparameters": choice["hyperparameters"],
                    "source": {"exported_from": tag, "recommended": choice["recommended"]},
                },
                {"label": PAPER_DEFAULTS, "config": "paper"},
            ]
            if choice["paper_defaults_recommended"]:
                runs = runs[1:]
            spec = fresh_seed_study(
                held,
                runs,
                name=f"holdout-{held.workload}-from-{tag}-k{args.seeds}",
                description=f"the default exported from {tag}, on held-out {held.workload}",
                seeds=args.seeds,
                first_seed=HOLDOUT_FIRST_SEED,
            )
            run_replicates(spec, args, storage, doing="Testing on the held-out workload")
            lines.append(
                f"{held.workload}: exported from {tag}: {choice['recommended']}; held-out runs "
                f"in study {spec.name} (adamz-search report {spec.name})"
            )
        print("\n".join(lines))
        return 0
