"""The search service's sub-commands: create, worker, status, studies, budget, dashboard, proxy.

Checking a study file or a stored definition needs the optimizer registry, and with it torch:
those modules are imported where a command checks one. ``worker NAME`` checks none: it leaves
that to its workers, so that the supervisor runs without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from adamz.cli._base import Command, UsageError, add_population_argument, usage_errors
from adamz.search.budget import QUEUED_ATTR, definition_budget, set_budget, study_budget
from adamz.search.heartbeat import worker_contacts
from adamz.search.interrupts import STOP_CODES
from adamz.search.outage import Outage, StorageUnreachable, patiently
from adamz.search.retries import MAX_DEATHS, MAX_FAULTS, outcomes
from adamz.search.storage import (
    STORAGE_ENV,
    load_study,
    open_storage,
    safe_url,
    storage_url,
)
from adamz.search.study_attrs import (
    NO_IMPORTANCE,
    Divergence,
    RunMedian,
    require_definition,
    run_medians,
    store_definition,
    stored_definition,
    stored_digest,
)
from adamz.verbosity import VERBOSE, current_verbosity, log_to_stderr

if TYPE_CHECKING:
    from adamz.search.studies import AnySpec

__all__ = [
    "BudgetCommand",
    "CreateCommand",
    "DashboardCommand",
    "ProxyCommand",
    "StatusCommand",
    "StudiesCommand",
    "WorkerCommand",
    "add_storage_argument",
    "open_storage_or_fail",
]


def add_storage_argument(parser: argparse.ArgumentParser) -> None:
    """``--storage URL``, falling back to ``$ADAMZ_STORAGE`` and then the SQLite default."""
    parser.add_argument(
        "--storage",
        default=None,
        help=f"storage URL (default: ${STORAGE_ENV}, else sqlite:///adamz-search.db)",
    )


def open_storage_or_fail(url: str | None, **kwargs: Any) -> optuna.storages.BaseStorage:
    """:func:`open_storage`, its errors turned into usage errors."""
    with usage_errors():
        return open_storage(url, **kwargs)


def load_study_or_fail(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    with usage_errors():
        return load_study(name, storage)


class CreateCommand(Command):
    name = "create"
    help = "Create a study from a study file (idempotent: the same definition is a no-op)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "study_file", type=Path, help="a study file, e.g. studies/digits-adamz.yaml"
        )
        add_storage_argument(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        from adamz.search.studies import load_study_file  # checking a file needs torch

        with usage_errors():
            spec = load_study_file(args.study_file)
        storage = open_storage_or_fail(args.storage)
        created = create_study(spec, storage, study_file=args.study_file)
        verb = "Created" if created else "Study already exists, same definition:"
        print(f"{verb} {spec.name} in {storage_url(args.storage)}", file=sys.stderr)
        return 0


def create_study(
    spec: AnySpec, storage: optuna.storages.BaseStorage, *, study_file: Path | None = None
) -> bool:
    """Create ``spec``'s study in ``storage``; False if it exists with the same definition.

    Raises:
        UsageError: a study of that name exists with a different definition.
    """
    if spec.name in optuna.get_all_study_names(storage):
        stored = stored_digest(spec.name, storage)
        if stored == spec.digest:
            return False
        raise UsageError(
            f"Study {spec.name!r} exists in the storage with a different definition "
            f"(stored digest {str(stored)[:12]}, new {spec.digest[:12]}): rename the study in "
            f"{study_file or 'its definition'} or use another storage."
        )
    direction = optuna.study.StudyDirection[spec.direction.upper()]
    try:
        study = optuna.create_study(storage=storage, study_name=spec.name, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:  # created meanwhile by another process
        return create_study(spec, storage, study_file=study_file)
    store_definition(storage, spec.name, spec, study_file=study_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec.metric])
    for params, user_attrs in spec.queued_trials():
        study.enqueue_trial(params, user_attrs={**user_attrs, QUEUED_ATTR: True})
    return True


class WorkerCommand(Command):
    name = "worker"
    help = "Run workers that pull trials of STUDY from the storage until its budget is met."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from adamz.search.worker import WorkerOptions  # only this command's parser needs it

        defaults = WorkerOptions()
        parser.add_argument("study", help="the study's name, or a study file (created if needed)")
        add_storage_argument(parser)
        parser.add_argument(
            "--devices", default="cpu", help="cpu, cuda (every GPU) or cuda:0,1 (default: cpu)"
        )
        parser.add_argument(
            "--workers-per-device",
            type=int,
            default=1,
            metavar="K",
            help="worker processes per device (default: 1)",
        )
        parser.add_argument(
            "--n-trials",
            type=int,
            default=None,
            metavar="N",
            help="run at most N trials in this invocation; the study's budget is unchanged "
            "(default: until the budget is met; see 'adamz-search budget')",
        )
        add_population_argument(parser)
        parser.add_argument(
            "--data-dir",
            default=None,
            help="dataset directory for mnist and cifar10, where the study file names none "
            "(the file's wins; default: the workload's)",
        )
        parser.add_argument(
            "--download",
            action="store_true",
            help="let torchvision download a missing dataset (default: off)",
        )
        parser.add_argument(
            "--checkpoint-dir",
            default=None,
            help="where trials keep checkpoints, shared by workers on several hosts (default: "
            "checkpoints/ beside a SQLite file, else in the working directory)",
        )
        parser.add_argument(
            "--checkpoint-interval",
            type=float,
            default=defaults.checkpoint_interval,
            metavar="S",
            help="least seconds between two checkpoints of a trial, 0: every epoch "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--heartbeat-interval",
            type=float,
            default=defaults.heartbeat_interval,
            metavar="S",
            help=f"seconds between a running trial's heartbeats (default: "
            f"{defaults.heartbeat_interval:g})",
        )
        parser.add_argument(
            "--grace-period",
            type=float,
            default=defaults.grace_period,
            metavar="S",
            help="seconds a trial's heartbeat must be seen unchanged before its worker counts "
            "as dead and the trial is queued again (default: %(default)s)",
        )
        parser.add_argument(
            "--storage-patience",
            type=float,
            default=defaults.storage_patience,
            metavar="S",
            help="seconds a worker waits for an unreachable storage (a database restart) "
            "before it exits with code 75, its trials left to resume (default: %(default)s)",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        # Here, not at module level: the other commands do without the supervisor's imports.
        from adamz.search.launcher import Stop, launch_workers, parse_devices
        from adamz.search.worker import UNREACHABLE_CODE, WorkerOptions

        if args.workers_per_device < 1:
            raise UsageError(
                f"Invalid --workers-per-device: must be >= 1, got {args.workers_per_device}."
            )
        try:
            options = WorkerOptions(
                storage=args.storage,
                n_trials=args.n_trials,
                data_dir=args.data_dir,
                download=args.download,
                checkpoint_dir=args.checkpoint_dir,
                checkpoint_interval=args.checkpoint_interval,
                heartbeat_interval=args.heartbeat_interval,
                grace_period=args.grace_period,
                population=args.population,
                storage_patience=args.storage_patience,
            )
        except ValueError as exc:
            raise UsageError(str(exc).replace("Invalid ", "Invalid --").replace("_", "-")) from exc
        study_name = args.study
        spec: AnySpec | None = None
        if args.study.endswith((".yaml", ".yml")):
            from adamz.search.studies import load_study_file  # checking a file needs torch

            with usage_errors():
                spec = load_study_file(args.study)
            study_name = spec.name
        with usage_errors():
            devices = parse_devices(args.devices)

        # A signal ends the command at once until it creates a study or starts its workers,
        # which it finishes first (launcher.Stop).
        stop = Stop()

        def check() -> None:  # the workers check the rest
            if spec is not None:
                storage = open_storage(args.storage)
                with stop.holding():
                    create_study(spec, storage, study_file=Path(args.study))
            storage = open_storage(args.storage, read_only=True)
            load_study(study_name, storage)
            require_definition(study_name, storage)

        # Started while the database is down (a host's supervisor restarting it in an outage),
        # the command waits for it as its workers would, then exits 75 in one line.
        outage = Outage(safe_url(storage_url(args.storage)), options.storage_patience)
        with log_to_stderr(logging.WARNING), stop:
            try:
                with usage_errors():
                    patiently(check, outage, give_up=lambda: stop.requested)
            except StorageUnreachable as unreachable:
                if stop.requested:
                    return stop.code
                print(f"adamz-search: error: gave up: {unreachable}", file=sys.stderr)
                return UNREACHABLE_CODE
            if stop.requested:
                return stop.code
            return launch_workers(study_name, devices, args.workers_per_device, options, stop=stop)


class BudgetCommand(Command):
    name = "budget"
    help = "Change STUDY's budget of finished trials, for every worker from its next trial."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", help="the study's name")
        parser.add_argument("trials", type=int, help="the new budget: finished trials, >= 1")
        add_storage_argument(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        from adamz.search.worker import stored_spec  # checks the definition: needs torch

        storage = open_storage_or_fail(args.storage, read_only=True)
        study = load_study_or_fail(args.study, storage)
        with usage_errors():
            spec = stored_spec(args.study, storage)
            if spec.queued_only:
                raise ValueError(
                    f"Study {args.study!r} is a replicate study: its budget is its queued runs "
                    f"({spec.budget}) and cannot be changed."
                )
            old = study_budget(study, spec.budget)
            set_budget(study, args.trials)
        print(
            f"Study {args.study}: budget changed from {old} to {args.trials} finished trials "
            f"(the file's is {spec.budget}).",
            file=sys.stderr,
        )
        return 0


class StatusCommand(Command):
    name = "status"
    help = (
        "Show a study's trials by state, its best trial (a replicate study's median per run) "
        "and its running trials."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", help="the study's name in the storage (see: studies)")
        add_storage_argument(parser)
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help="table for a person, json for a program (default: %(default)s)",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        storage = open_storage_or_fail(args.storage, read_only=True)
        status = study_status(load_study_or_fail(args.study, storage), storage)
        if args.format == "json":
            print(json.dumps(status, indent=2))
            return 0
        budget = f"budget {status['budget']}"
        if status["budget"] != status["file_budget"]:
            budget += f", set by 'adamz-search budget'; the file's is {status['file_budget']}"
        divergence = Divergence(**status["diverged"])
        headline = f": {divergence.headline()}" if divergence.diverged else ""
        print(f"study {status['study']} ({status['direction']}, {budget}){headline}")
        print("trials: " + ", ".join(f"{k} {v}" for k, v in status["trials"].items()))
        limits = status["retry_limits"]
        print(
            f"retries: a trial is queued again after up to {limits['deaths']} deaths of its "
            f"worker (and a replicate run after {limits['faults']} errors), then dropped; "
            "stops and refusals are never held against it"
        )
        if status["trials"]["not_run"]:
            print(
                f"not run: {status['trials']['not_run']} queued trials ended when the budget was "
                "met (budget met)"
            )
        if status["trials"]["dropped"]:
            print(
                f"dropped: {status['trials']['dropped']} trials whose workers died "
                f"{MAX_DEATHS + 1} times (or whose replicate run raised {MAX_FAULTS + 1} times)"
            )
        if divergence.diverged:
            print(f"diverged: {divergence.sentence()}")
        best = status["best"]
        if best:
            chance = ""
            if divergence.best_is_chance:
                chance = " (a diverged trial's chance value" + (
                    ", not a result)" if divergence.every_trial else ")"
                )
            print(f"best: trial {best['number']} value {best['value']:.6g}{chance}")
            for key, value in best["params"].items():
                print(f"  {key} = {value}")
        if status["run_medians"] is not None:
            print(
                f"median per run: {status['metric']} over each run's finished seeds (no best "
                f"trial; {NO_IMPORTANCE})"
            )
            for median in status["run_medians"]:
                print(f"  {RunMedian(**median).words('.6g')}")
        if status["running"]:
            print(
                f"{'trial':>6}  {'host':<20} {'pid':>7}  {'device':<8} started (its host's clock)"
            )
            for run in status["running"]:
                print(
                    f"{run['number']:>6}  {run['host']!s:<20} {run['pid']!s:>7}  "
                    f"{run['device']!s:<8} {run['started']}"
                )
        if status["workers"]:
            print(f"{'worker':<28} {'last reached the storage (UTC, its clock)':<42} state")
            for worker, contact in status["workers"].items():
                print(f"{worker:<28} {contact['last_contact']:<42} {contact['state']}")
        return 0


def study_status(study: optuna.Study, storage: optuna.storages.BaseStorage) -> dict[str, Any]:
    """Counts by outcome, the best trial, the running trials and the workers of ``study``
    (in ``storage``), as plain data. A replicate study has no best trial (``best`` is None) but
    its runs' medians (``run_medians``, None for any other study).

    Times are as the hosts that wrote them read their clocks (UTC): no age is computed from
    this host's clock, which need not agree with theirs."""
    trials = study.get_trials(deepcopy=False)
    # Any Optuna study is listed; only those created by 'adamz-search create' have a budget.
    definition = stored_definition(study.study_name, storage)
    medians = run_medians(trials, definition)
    best = None
    best_trial = None
    if medians is None and any(trial.state == TrialState.COMPLETE for trial in trials):
        best_trial = study.best_trial
        best = {
            "number": best_trial.number,
            "value": best_trial.value,
            "params": best_trial.params,
        }
    divergence = Divergence.of(trials, best_trial)
    running = [
        {
            "number": trial.number,
            **{
                key: trial.user_attrs.get("worker", {}).get(key)
                for key in ("host", "pid", "device")
            },
            "started": trial.datetime_start.isoformat(timespec="seconds")
            if trial.datetime_start
            else None,
        }
        for trial in trials
        if trial.state == TrialState.RUNNING
    ]
    contacts = worker_contacts(
        storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    )
    workers = {
        name: {
            "last_contact": datetime.datetime.fromtimestamp(
                contact["last_contact"], tz=datetime.UTC
            ).isoformat(timespec="seconds"),
            "state": contact["state"],
        }
        for name, contact in sorted(contacts.items(), key=lambda item: -item[1]["last_contact"])
    }
    file_budget = definition_budget(definition) if definition is not None else None
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "metric": study.metric_names[0] if study.metric_names else None,
        "budget": study_budget(study, file_budget) if file_budget else None,
        "file_budget": file_budget,
        "trials": outcomes(trials),
        "diverged": dataclasses.asdict(divergence),
        "retry_limits": {"deaths": MAX_DEATHS, "faults": MAX_FAULTS},
        "best": best,
        "run_medians": None if medians is None else list(map(dataclasses.asdict, medians)),
        "running": running,
        "workers": workers,
    }


class StudiesCommand(Command):
    name = "studies"
    help = (
        "List the studies in the storage with their trial counts and results: a search's best "
        "value, a replicate study's median per run."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_storage_argument(parser)
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help="table for a person, json for a program (default: %(default)s)",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        storage = open_storage_or_fail(args.storage, read_only=True)
        rows = []
        for name in optuna.get_all_study_names(storage):
            status = study_status(optuna.load_study(study_name=name, storage=storage), storage)
            keys = ("study", "direction", "metric", "budget", "trials", "diverged")
            rows.append({key: status[key] for key in keys})
            rows[-1]["best_value"] = status["best"]["value"] if status["best"] else None
            rows[-1]["run_medians"] = status["run_medians"]
        if args.format == "json":
            print(json.dumps(rows, indent=2))
            return 0
        columns = ["complete", "pruned", "running", "waiting", "requeued", "fail", "dropped"]
        table = [["study", "metric", "budget", *columns, "diverged", "result"]]
        for row in rows:
            divergence = Divergence(**row["diverged"])
            if row["run_medians"] is not None:
                result = _medians_cell([RunMedian(**median) for median in row["run_medians"]])
            else:
                result = "-" if row["best_value"] is None else f"best {row['best_value']:.4f}"
            if divergence.best_is_chance:
                result += " (chance)"  # a diverged trial's
            table.append(
                [
                    row["study"],
                    str(row["metric"] or "-"),
                    str(row["budget"] or "-"),
                    *(str(row["trials"][column]) for column in columns),
                    "all" if divergence.every_trial else str(divergence.diverged),
                    result,
                ]
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        for line in table:
            cells = [
                cell.ljust(width) if i < 2 or i == len(line) - 1 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            ]
            print("  ".join(cells).rstrip())
        return 0


SHOWN_RUNS = 3
"""Runs whose medians a row of ``studies`` shows; ``status`` shows every run's."""


def _medians_cell(medians: list[RunMedian]) -> str:
    """``median AdamZ 0.9711 (10 of 10 seeds), Adam ...``: a replicate study's result."""
    shown = ", ".join(median.words() for median in medians[:SHOWN_RUNS])
    more = len(medians) - SHOWN_RUNS
    return f"median {shown}" + (f" and {more} more runs (status)" if more > 0 else "")


class ProxyCommand(Command):
    name = "proxy"
    help = "Serve a storage to many workers through Optuna's gRPC storage proxy."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_storage_argument(parser)
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to listen on; 0.0.0.0 for workers on other hosts (default: 127.0.0.1)",
        )
        parser.add_argument(
            "--port", type=int, default=13000, help="port to listen on (default: 13000)"
        )

    def take_action(self, args: argparse.Namespace) -> int:
        from adamz.search.proxy import serve_proxy

        if storage_url(args.storage).startswith("grpc://"):
            raise UsageError("Invalid --storage: the proxy serves a database, not another proxy.")
        storage = open_storage_or_fail(args.storage)
        print(
            f"gRPC storage proxy for {storage_url(args.storage)} on {args.host}:{args.port}; "
            f"workers use --storage grpc://{args.host}:{args.port}",
            file=sys.stderr,
            flush=True,
        )
        try:
            stopped_by = serve_proxy(
                storage, safe_url(storage_url(args.storage)), args.host, args.port
            )
        except RuntimeError as exc:
            print(f"adamz-search: error: {exc}", file=sys.stderr)
            return 1
        return STOP_CODES[stopped_by]


class DashboardCommand(Command):
    name = "dashboard"
    help = "Serve optuna-dashboard on the study storage (loopback only by default)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_storage_argument(parser)
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to listen on; 0.0.0.0 serves every network the machine is on, "
            "without a password (default: %(default)s, this machine only)",
        )
        parser.add_argument(
            "--port", type=int, default=8080, help="port to listen on (default: %(default)s)"
        )

    def take_action(self, args: argparse.Namespace) -> int:
        import bottle
        from optuna_dashboard import wsgi

        storage = open_storage_or_fail(args.storage, read_only=True)
        print(f"optuna-dashboard on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
        # optuna_dashboard.run_server is this, with the server's banner and a line per request
        # on stderr always; they are shown here at -v only.
        bottle.run(
            wsgi(storage), host=args.host, port=args.port, quiet=current_verbosity() < VERBOSE
        )
        return 0
