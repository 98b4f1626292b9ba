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
    from adamz.search.studies import AnySpec

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
        from adamz.reports import EQUIVALENCE_MARGIN, TOP

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
            help="load plotly.js from FILE (written if missing), so several reports share one "
            "copy (default: plotly.min.js beside report.html)",
        )
        parser.add_argument(
            "--margin",
            type=float,
            default=None,
            metavar="M",
            help="the verdict's equivalence margin: two optimizers are called equivalent only "
            "where an equivalence test (TOST) puts their paired difference within it; in points "
            "for an accuracy, in the metric's own units otherwise (default: the study file's "
            f"margin, else {EQUIVALENCE_MARGIN} points for an accuracy, else half the confirmed "
            "runs' median seed standard deviation; the page says which)",
        )
        parser.add_argument(
            "--safe-margin",
            type=float,
            default=None,
            metavar="M",
            help="sensitivity studies: a safe range holds the bins whose median is within M of "
            "the best bin's, in points of accuracy or in a loss's units (default: 0.5 points, "
            "0.01 of a loss)",
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
        parser.add_argument(
            "--search-replicates",
            type=int,
            default=1,
            metavar="R",
            help="first run every study's search R times in all, the study itself and R - 1 "
            "studies NAME~r2 .. NAME~rR made from its definition with other sampler seeds (run "
            "by workers once, then reused), each confirmed on fresh seeds of its own with "
            "--confirm; the verdict then says how often and by how much each optimizer wins "
            "across them, and the budget curves show their spread (default: %(default)s, the "
            "study alone)",
        )
        add_replicate_worker_arguments(parser, "--confirm and --search-replicates")

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
        if args.margin is not None and not args.margin > 0:
            raise UsageError(f"Invalid --margin: must be > 0, got {args.margin}.")
        if args.search_replicates < 1:
            raise UsageError(
                f"Invalid --search-replicates: must be at least 1, got {args.search_replicates}."
            )
        if args.confirm and args.confirm < 2:
            raise UsageError(f"--confirm must be at least 2, got {args.confirm}.")
        writes = bool(args.confirm) or args.search_replicates > 1
        storage = open_storage_or_fail(args.storage, read_only=not writes)
        studies = [load_study_or_fail(name, storage) for name in args.studies]
        if args.confirm:  # refuse studies that cannot be confirmed before running anything
            self._confirmation(args, studies, storage, replicate=1)
        # rounds[r - 1]: the studies of search replicate r, in the order given
        rounds = [studies, *self._replicate(args, studies, storage)]
        confirmations = []
        if args.confirm:
            for replicate, searches in enumerate(rounds, start=1):
                spec = self._confirmation(args, searches, storage, replicate=replicate)
                confirmations.append(run_replicates(spec, args, storage, doing="Confirming"))
        studies = [study for searches in rounds for study in searches] + confirmations
        out = args.out or REPORTS_DIR / "+".join(args.studies)
        with usage_errors(ReportError):
            files = build_report(
                studies,
                out,
                storage=storage,
                importance_repeats=args.repeats,
                fanova_trees=args.fanova_trees,
                save_note=not args.no_note,
                progress=sys.stderr.isatty(),
                plotly_js=args.plotly_js,
                margin=args.margin,
                safe_margin=args.safe_margin,
            )
        print(f"Wrote {files.html} ({files.charts} charts), {files.markdown}, {files.json}")
        return 0

    @staticmethod
    def _confirmation(
        args: argparse.Namespace,
        studies: list[optuna.Study],
        storage: BaseStorage,
        *,
        replicate: int,
    ) -> ReplicateSpec:
        """The confirmation study of ``studies``, search replicate ``replicate`` of the
        compared searches: on seeds of its own for each replicate."""
        # These import torch: see the module docstring.
        from adamz.reports import (
            ReportError,
            confirmation_first_seed,
            confirmation_spec,
            load_study_data,
        )

        with usage_errors(ReportError):
            return confirmation_spec(
                [load_study_data(study, storage) for study in studies],
                args.confirm,
                top=args.candidates,
                first_seed=confirmation_first_seed(replicate, args.confirm),
            )

    @staticmethod
    def _replicate(
        args: argparse.Namespace, studies: list[optuna.Study], storage: BaseStorage
    ) -> list[list[optuna.Study]]:
        """Search replicates 2 .. R of every study, each created once from the study's
        definition and run to the study's budget (one round of all studies after another)."""
        # These import torch: see the module docstring.
        from adamz.reports import ReportError, load_study_data, search_replicate_spec
        from adamz.search.budget import study_budget

        with usage_errors(ReportError):
            datas = [load_study_data(study, storage) for study in studies]
            specs = [
                [search_replicate_spec(data, replicate) for data in datas]
                for replicate in range(2, args.search_replicates + 1)
            ]
        return [
            [
                run_replicates(
                    spec,
                    args,
                    storage,
                    doing="Replicating",
                    budget=study_budget(data.study, spec.budget),
                )
                for spec, data in zip(round_specs, datas, strict=True)
            ]
            for round_specs in specs
        ]


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
        help=f"{option}: the dataset directory, where the study file names none",
    )
    add_population_argument(parser, option)


def run_replicates(
    spec: AnySpec,
    args: argparse.Namespace,
    storage: BaseStorage,
    *,
    doing: str,
    budget: int | None = None,
) -> optuna.Study:
    """Create ``spec``'s study (once) and run it to its budget with the command's workers;
    a study an earlier invocation ran to its budget is used as it is.

    ``budget``: the study's budget where it is not the spec's (a search replicate takes its
    search's, which ``adamz-search budget`` may have changed).
    """
    # These import torch: see the module docstring.
    from adamz.search.budget import FINISHED, count_states, set_budget, study_budget
    from adamz.search.launcher import launch_workers, parse_devices
    from adamz.search.worker import WorkerOptions

    if args.workers_per_device < 1:
        raise UsageError(f"--workers-per-device must be at least 1, got {args.workers_per_device}.")
    with usage_errors():
        devices = parse_devices(args.devices)
    created = create_study(spec, storage)
    study = load_study_or_fail(spec.name, storage)
    if budget is not None and study_budget(study, spec.budget) != budget:
        set_budget(study, budget)
    budget = study_budget(study, spec.budget)
    runs = getattr(spec, "runs", None)  # a replicate study's (isinstance would import torch)
    what = (
        f"{budget} trials, sampler seed {spec.sampler.get('seed')}"
        if runs is None
        else f"{len(runs)} configurations x {spec.seeds} seeds"  # type: ignore[union-attr]
    )
    if runs is not None:  # a replicate study: seeds another one trained are not run again
        from adamz.reports import reuse_finished_runs

        reused = reuse_finished_runs(spec, storage)  # type: ignore[arg-type]
        if reused:
            print(
                f"{doing}: reusing "
                + ", ".join(f"{count} finished runs of {name}" for name, count in reused.items())
                + " (the same configurations, workload and seeds)",
                file=sys.stderr,
            )
    if not created:
        states = count_states(study)
        finished = sum(states[state] for state in FINISHED)
        if finished >= budget:
            print(f"{doing}: study {spec.name} has run its {what} already", file=sys.stderr)
            return study
    print(f"{doing} in study {spec.name}: {what}", file=sys.stderr)
    with usage_errors():
        options = WorkerOptions(
            storage=args.storage, data_dir=args.data_dir, population=args.population
        )
    code = launch_workers(spec.name, devices, args.workers_per_device, options)
    if code != 0:
        raise UsageError(f"The workers of {spec.name} failed (exit {code}): see their log.")
    return load_study_or_fail(spec.name, storage)


def _metric_margin(margin: float | None, metric: str) -> float:
    """``export --margin`` (in the page's unit, as ``report --margin``: points for an
    accuracy) in the metric's own units; None: :data:`~adamz.reports.MARGIN`."""
    from adamz.reports import MARGIN, page_unit

    if margin is None:
        return float(MARGIN)
    if not margin > 0:
        raise UsageError(f"Invalid --margin: must be > 0, got {margin}.")
    return margin / page_unit(metric)[0]


def _beside_the_recommendation() -> str:
    """One line naming the project's recommended AdamZ configuration, which ``export``'s
    winner (tuned on the given studies alone) stands beside."""
    import yaml

    from adamz.optim.adamz import preset_path  # the presets ship with the optimizer

    values = yaml.safe_load(preset_path("recommended").read_text())["hyperparameters"]
    shown = ", ".join(
        f"{name} {value}" for name, value in values.items() if name not in ("betas", "eps")
    )
    return (
        "This is the winner of the studies given. The project's one recommended AdamZ "
        f'configuration is AdamZ.from_config("recommended", params): {shown} (tune lr; '
        "tested against Adam with the same rate tuning on digits, circles and MNIST: "
        "reports/README.md section 4)."
    )


class ExportCommand(Command):
    name = "export"
    help = (
        "Write the recommended configuration of STUDY, or a default for several studies "
        "validated on every workload."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # These import torch: see the module docstring.
        from adamz.reports import MARGIN

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
            default=None,
            metavar="M",
            help="several studies: largest loss to the paper defaults' validation median on "
            "any workload that a recommendation may have, in the unit of report --margin: "
            f"points for an accuracy, the metric's own units otherwise (default: {MARGIN * 100:g} "
            f"point, {MARGIN:g} of another metric)",
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
        from adamz.reports import (
            ReportError,
            export_config,
            load_study_data,
            save_config,
            validation_table,
            write_config,
        )

        # Several studies are validated by replicate studies it writes; one is only read.
        writes = len(args.studies) > 1 or args.leave_one_out
        storage = open_storage_or_fail(args.storage, read_only=not writes)
        studies = [load_study_or_fail(name, storage) for name in args.studies]
        with usage_errors(ReportError):
            datas = [load_study_data(study, storage) for study in studies]
            args.margin = _metric_margin(args.margin, datas[0].metric)
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
        confirmation = config.get("provenance", {}).get("confirmation")
        if isinstance(confirmation, dict):
            print(
                f"Chosen by confirmation {confirmation['study']}: run {confirmation['run']}, "
                f"the best {confirmation['selected_on']} median over {confirmation['seeds']} "
                "seeds.",
                file=sys.stderr,
            )
        if config.get("optimizer", "adamz") == "adamz":
            print(_beside_the_recommendation(), file=sys.stderr)
        return 0

    @staticmethod
    def _validate(
        args: argparse.Namespace, datas: list[StudyData], storage: BaseStorage, *, tag: str
    ) -> list[StudyData]:
        """Train the candidates of ``datas`` and the paper defaults on each of their workloads."""
        # These import torch: see the module docstring.
        from adamz.reports import load_study_data, robust_candidates, validation_spec

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
                load_study_data(run_replicates(spec, args, storage, doing="Validating"), storage)
            )
        return validation

    def _leave_one_out(
        self, args: argparse.Namespace, datas: list[StudyData], storage: BaseStorage
    ) -> int:
        """For each study: a default validated on the others, then trained on its workload."""
        # These import torch: see the module docstring.
        from adamz.reports import PAPER_DEFAULTS, fresh_seed_study, validated_choice

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
