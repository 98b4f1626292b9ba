"""The search service's sub-commands: create, worker, status, studies, dashboard."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from adamz import __version__
from adamz.cli._base import VERBOSE, Command, UsageError, current_verbosity, log_to_stderr
from adamz.search.budget import count_states
from adamz.search.errors import SpecError
from adamz.search.storage import STORAGE_ENV, load_study, open_storage, storage_url
from adamz.search.studies import AnySpec, load_study_file, spec_from_definition
from adamz.search.worker import (
    BUDGET_OVERRIDE_ATTR,
    WorkerOptions,
    launch_workers,
    parse_devices,
    run_worker,
    stored_spec,
)

__all__ = [
    "CreateCommand",
    "DashboardCommand",
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
    try:
        return open_storage(url, **kwargs)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def load_study_or_fail(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    try:
        return load_study(name, storage)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


class CreateCommand(Command):
    name = "create"
    help = "Create a study from a study file (idempotent: the same definition is a no-op)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "study_file", type=Path, help="a study file, e.g. studies/digits-adamz.yaml"
        )
        add_storage_argument(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        try:
            spec = load_study_file(args.study_file)
        except SpecError as exc:
            raise UsageError(str(exc)) from exc
        storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
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
        existing = optuna.load_study(study_name=spec.name, storage=storage)
        stored = existing.user_attrs.get("digest")
        if stored == spec.digest:
            return False
        raise UsageError(
            f"Study {spec.name!r} exists in the storage with a different definition "
            f"(stored digest {str(stored)[:12]}, new {spec.digest[:12]}): rename the study in "
            f"{study_file or 'its definition'} or use another storage."
        )
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=spec.name,
            direction=optuna.study.StudyDirection[spec.direction.upper()],
        )
    except optuna.exceptions.DuplicatedStudyError:  # created meanwhile by another process
        return create_study(spec, storage, study_file=study_file)
    study.set_user_attr("definition", spec.definition)
    study.set_user_attr("digest", spec.digest)
    if study_file is not None:
        study.set_user_attr(
            "study_file", {"path": str(study_file), "text": Path(study_file).read_text()}
        )
    study.set_user_attr("adamz_version", __version__)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec.metric])
    for params, user_attrs in spec.queued_trials():
        study.enqueue_trial(params, user_attrs=user_attrs)
    return True


class WorkerCommand(Command):
    name = "worker"
    help = "Run workers that pull trials of STUDY from the storage until its budget is met."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", help="the study's name, or a study file (created if needed)")
        add_storage_argument(parser)
        parser.add_argument("--devices", default="cpu", help="cpu, cuda (all GPUs) or cuda:0,1")
        parser.add_argument("--workers-per-device", type=int, default=1, metavar="K")
        parser.add_argument("--n-trials", type=int, default=None, help="override the budget")
        parser.add_argument("--data-dir", default=None, help="dataset directory (mnist, cifar10)")
        parser.add_argument("--download", action="store_true", help="let torchvision download data")
        parser.add_argument("--checkpoint-dir", default=None)
        parser.add_argument(
            "--checkpoint-interval",
            type=float,
            default=WorkerOptions().checkpoint_interval,
            help="least seconds between two checkpoints of a trial (0: every epoch)",
        )
        defaults = WorkerOptions()
        parser.add_argument("--heartbeat-interval", type=int, default=defaults.heartbeat_interval)
        parser.add_argument("--grace-period", type=int, default=defaults.grace_period)
        parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
        parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)

    def take_action(self, args: argparse.Namespace) -> int:
        for flag in ("workers_per_device", "n_trials", "heartbeat_interval", "grace_period"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise UsageError(f"Invalid --{flag.replace('_', '-')}: must be >= 1, got {value}.")
        if args.checkpoint_interval < 0:
            raise UsageError(
                f"Invalid --checkpoint-interval: must be >= 0, got {args.checkpoint_interval}."
            )
        if args.grace_period <= args.heartbeat_interval:
            raise UsageError(
                f"Invalid --grace-period: must exceed --heartbeat-interval "
                f"({args.heartbeat_interval}), got {args.grace_period}."
            )
        study_name = args.study
        if args.study.endswith((".yaml", ".yml")):
            try:
                spec = load_study_file(args.study)
            except SpecError as exc:
                raise UsageError(str(exc)) from exc
            storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
            create_study(spec, storage, study_file=Path(args.study))
            study_name = spec.name
        options = WorkerOptions(
            storage=args.storage,
            device=args.device,
            n_trials=args.n_trials,
            data_dir=args.data_dir,
            download=args.download,
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_interval=args.checkpoint_interval,
            worker_index=args.worker_index,
            heartbeat_interval=args.heartbeat_interval,
            grace_period=args.grace_period,
        )
        if args.single:
            # The launcher's progress bar is the display; a child speaks only of trouble.
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            with log_to_stderr(logging.WARNING):
                try:
                    return run_worker(study_name, options)
                except ValueError as exc:
                    raise UsageError(str(exc)) from exc
        try:
            devices = parse_devices(args.devices)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
        try:
            stored_spec(load_study_or_fail(study_name, storage))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        return launch_workers(study_name, devices, args.workers_per_device, options)


class StatusCommand(Command):
    name = "status"
    help = "Show a study's trials by state, its best trial and its running trials."

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
        storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
        status = study_status(load_study_or_fail(args.study, storage))
        if args.format == "json":
            print(json.dumps(status, indent=2))
            return 0
        budget = f"budget {status['budget']}"
        if status["budget"] != status["file_budget"]:
            budget += f" from the workers' --n-trials; the file's is {status['file_budget']}"
        print(f"study {status['study']} ({status['direction']}, {budget})")
        print("trials: " + ", ".join(f"{k} {v}" for k, v in status["trials"].items()))
        best = status["best"]
        if best:
            print(f"best: trial {best['number']} value {best['value']:.6g}")
            for key, value in best["params"].items():
                print(f"  {key} = {value}")
        if status["running"]:
            print(f"{'trial':>6}  {'host':<20} {'pid':>7}  {'device':<8} {'age s':>8}")
            for run in status["running"]:
                print(
                    f"{run['number']:>6}  {run['host']!s:<20} {run['pid']!s:>7}  "
                    f"{run['device']!s:<8} {run['age_s']:>8.0f}"
                )
        return 0


def study_status(study: optuna.Study) -> dict[str, Any]:
    """Counts by state, the best trial and the running trials of ``study``, as plain data."""
    counts = count_states(study)
    best = None
    if counts[TrialState.COMPLETE]:
        trial = study.best_trial
        best = {"number": trial.number, "value": trial.value, "params": trial.params}
    now = datetime.datetime.now()
    running = [
        {
            "number": trial.number,
            **{
                key: trial.user_attrs.get("worker", {}).get(key)
                for key in ("host", "pid", "device")
            },
            "age_s": (now - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0,
        }
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    ]
    definition = study.user_attrs.get("definition")
    file_budget = None
    if isinstance(definition, dict):  # a replicate study's budget is runs x seeds
        file_budget = spec_from_definition(definition, source=study.study_name).budget
    override = study.user_attrs.get(BUDGET_OVERRIDE_ATTR)
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "budget": override or file_budget,
        "file_budget": file_budget,
        "trials": {state.name.lower(): count for state, count in counts.items()},
        "best": best,
        "running": running,
    }


class StudiesCommand(Command):
    name = "studies"
    help = "List the studies in the storage with their trial counts."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_storage_argument(parser)
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help="table for a person, json for a program (default: %(default)s)",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
        rows = []
        for name in optuna.get_all_study_names(storage):
            status = study_status(optuna.load_study(study_name=name, storage=storage))
            rows.append({key: status[key] for key in ("study", "direction", "budget", "trials")})
            rows[-1]["best_value"] = status["best"]["value"] if status["best"] else None
        if args.format == "json":
            print(json.dumps(rows, indent=2))
            return 0
        print(
            f"{'study':<32} {'budget':>6} {'complete':>8} {'pruned':>6} {'running':>7} {'failed':>6} {'best':>8}"
        )
        for row in rows:
            trials = row["trials"]
            best = "-" if row["best_value"] is None else f"{row['best_value']:.4f}"
            print(
                f"{row['study']:<32} {row['budget']!s:>6} {trials['complete']:>8} "
                f"{trials['pruned']:>6} {trials['running']:>7} {trials['fail']:>6} {best:>8}"
            )
        return 0


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

        storage = open_storage_or_fail(args.storage, heartbeat_interval=None)
        print(f"optuna-dashboard on http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
        # optuna_dashboard.run_server is this, with the server's banner and a line per request
        # on stderr always; they are shown here at -v only.
        bottle.run(
            wsgi(storage), host=args.host, port=args.port, quiet=current_verbosity() < VERBOSE
        )
        return 0
