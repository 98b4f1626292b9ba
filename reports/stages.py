"""The reproduction of ``reports/`` in stages that resume: run one, commit, and whoever comes
next goes on from the last committed stage.

    bash reports/reproduce.sh status            # stages done, those left, estimated minutes
    bash reports/reproduce.sh run [STAGE|next]  # run one stage (default: next)
    bash reports/reproduce.sh report            # rebuild the pages from the storage, no training

(``reproduce.sh`` runs ``python reports/stages.py`` with the same arguments.)

**A stage** (:class:`Stage`) is data: a name, its estimated wall minutes on the project's
2-core machine, the ``adamz-search`` commands it runs (argument lists, from the repository's
root), the stages it needs done first, and the storage its studies live in, a file under
``reports/data/`` committed with the results (``ADAMZ_STORAGE`` for its commands). A stage is
done when every command exited 0. The record ``reports/data/stages.json`` keeps, for each
stage, every attempt's start, wall time, CPU time (its commands' processes and their workers')
and exit status, and marks it done; commit it with the storage after each stage.

**Resuming.** Running a stage again goes on where it stopped: ``create`` keeps a study that
exists with the same definition, workers run a study on to its budget and retry the trials of
a worker that was killed (from its checkpoint, if this machine has it), and ``report
--search-replicates`` / ``--confirm`` reuse every replicate search and confirmation that has
run to its budget. So a stage cut off (a session's end, a reboot) is simply run again.

**A page** (:class:`Page`) is a report built from a storage. ``report`` builds every page whose
stages are all done, and names the others with the stages they wait for; a page's commands
only read what its stages trained.

**Gathering.** One ``adamz-search`` command reads one storage, and each workload keeps its own
(smaller files, and stages of different workloads never share one). Where one command must see
several, a stage or page first copies the studies it needs into its own storage
(:class:`Gather`, Optuna's ``copy_study``): the export of one default from every workload's
AdamZ search, or one verdict page adjusting its p-values over every workload's comparisons.
A stage copies the studies its storage lacks; a page's storage is a scratch file, made anew.

**Adding stages.** The stage lists are the modules ``reports/stages_*.py`` beside this file,
read in the order of their names; each defines ``STAGES`` (a list of :class:`Stage`) and may
define ``PAGES`` (a list of :class:`Page`). Another experiment adds its own module, e.g.
``reports/stages_atlas.py``::

    from stages import Page, Stage

    STORAGE = "sqlite:///reports/data/atlas.db"
    WORKERS = ["--data-dir", "../shared/data", "--workers-per-device", "2"]
    STAGES = [
        Stage(
            "atlas-digits",
            minutes=40,
            storage=STORAGE,
            commands=[
                ["create", "studies/digits-adamz-atlas.yaml"],
                ["worker", "digits-adamz-atlas", *WORKERS],
            ],
        ),
    ]
    PAGES = [
        Page(
            "sensitivity-atlas",
            needs=["atlas-digits"],
            storage=STORAGE,
            commands=[["report", "digits-adamz-atlas", "--out", "reports/sensitivity-atlas"]],
        ),
    ]

and ``status`` lists its stages after those of the modules before it; ``run next`` takes the
first stage left, in that order, whose needs are done. Names are unique across all the lists
(a clash is refused). Estimate a stage's minutes by timing a small run of each of its
workloads and scaling (see ``stages_verdict.py``); ``status`` shows the measured wall time
beside the estimate once it has run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
"""``reports/``: the stage lists are beside this file."""
ROOT = HERE.parent
"""The repository's root: every command runs there."""
RECORD = HERE / "data" / "stages.json"
"""What is done: each stage's attempts, committed with the storage."""
LOCK = ROOT / "out" / "stages.lock"
"""Held while a stage runs: one stage at a time on a machine."""
LISTS = "stages_*.py"
"""The stage lists, beside this file."""
VERSION = 1


@dataclass(frozen=True)
class Gather:
    """Studies to copy from another storage before a stage's or a page's commands run.

    Attributes:
        source: the storage URL they are in.
        studies: a regular expression their whole names match.
    """

    source: str
    studies: str


@dataclass(frozen=True)
class Stage:
    """One step of the reproduction, at most about 45 minutes on the project's machine.

    Attributes:
        name: unique across every stage list.
        minutes: the estimated wall minutes on the project's 2-core machine.
        commands: ``adamz-search`` argument lists, run in order from the repository's root;
            a callable among them is a step of the list's own that the later commands need
            (writing a study file from an earlier stage's results, say), run in this process.
        storage: the storage URL of its studies (``ADAMZ_STORAGE`` for its commands), a file
            under ``reports/data/``, relative to the root.
        needs: stages that must be done first.
        about: one line saying what it does.
        gather: studies copied into ``storage`` first, where it lacks them.
    """

    name: str
    minutes: float
    commands: Sequence[Sequence[str] | Callable[[], None]]
    storage: str
    needs: Sequence[str] = ()
    about: str = ""
    gather: Sequence[Gather] = ()

    def __post_init__(self) -> None:
        if not self.name or any(char.isspace() for char in self.name):
            raise ValueError(f"Invalid stage name: must be one word, got {self.name!r}.")
        if not self.minutes > 0:
            raise ValueError(
                f"Invalid minutes of stage {self.name}: must be > 0, got {self.minutes}."
            )
        if not self.commands:
            raise ValueError(f"Invalid stage {self.name}: it runs no command.")


@dataclass(frozen=True)
class Page:
    """Reports built from a storage once the stages they need are done.

    Attributes:
        name: what it builds (a folder under ``reports/``, say).
        needs: the stages whose studies it reads.
        storage: the storage its commands read (``ADAMZ_STORAGE``).
        commands: ``adamz-search`` argument lists; they must train nothing.
        gather: studies copied first into ``storage``, then a scratch SQLite file under
            ``out/``, made anew each time.
    """

    name: str
    needs: Sequence[str]
    storage: str
    commands: Sequence[Sequence[str]]
    gather: Sequence[Gather] = ()


@dataclass(frozen=True)
class Plan:
    """Every stage list's stages and pages, in order."""

    stages: list[Stage]
    pages: list[Page]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise UsageError(f"No stage {name!r}: `status` lists them.")


class UsageError(Exception):
    """A command that cannot be carried out as given: one line, exit 2."""


def load_plan(directory: Path = HERE) -> Plan:
    """The stages and pages of every ``stages_*.py`` in ``directory``, in name order.

    Raises:
        UsageError: a list defines no ``STAGES``, two stages share a name, or a stage or page
            needs a stage that no list defines.
    """
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))  # the lists import Stage and Page from here
    stages: list[Stage] = []
    pages: list[Page] = []
    for path in sorted(directory.glob(LISTS)):
        module = _import(path)
        found = getattr(module, "STAGES", None)
        if not isinstance(found, list):
            raise UsageError(f"{path.name} defines no STAGES list.")
        stages += found
        pages += list(getattr(module, "PAGES", []))
    names = [stage.name for stage in stages]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise UsageError(f"Stage names defined twice: {', '.join(clashes)}.")
    items: list[Stage | Page] = [*stages, *pages]
    for item in items:
        unknown = [need for need in item.needs if need not in names]
        if unknown:
            raise UsageError(f"{item.name} needs unknown stages: {', '.join(unknown)}.")
    return Plan(stages, pages)


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"Cannot import stage list {path}.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_record() -> dict[str, Any]:
    """The record of what is done (an empty one where none was written)."""
    path = RECORD
    if not path.exists():
        return {"version": VERSION, "stages": {}}
    record: dict[str, Any] = json.loads(path.read_text())
    if record.get("version") != VERSION:
        raise UsageError(f"{path}: record version {record.get('version')}, expected {VERSION}.")
    return record


def write_record(record: dict[str, Any]) -> None:
    path = RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    scratch.replace(path)  # never half a record, whatever stops the run


def done(record: dict[str, Any], name: str) -> bool:
    return bool(record["stages"].get(name, {}).get("done"))


def status_lines(plan: Plan, record: dict[str, Any]) -> list[str]:
    """The table ``status`` prints: each stage with its state, estimated and measured
    minutes, then the totals done and left, and the next stage."""
    lines = [f"{'stage':<44} {'state':<9} {'est. min':>8} {'wall min':>8} {'cpu min':>8}"]
    left_minutes = done_minutes = 0.0
    for stage in plan.stages:
        entry = record["stages"].get(stage.name, {})
        attempts = entry.get("attempts", [])
        wall = sum(attempt["wall_s"] for attempt in attempts) / 60
        cpu = sum(attempt["cpu_s"] for attempt in attempts) / 60
        if done(record, stage.name):
            state = "done"
            done_minutes += stage.minutes
        else:
            state = "half-run" if attempts else "left"
            left_minutes += stage.minutes
        measured = (f"{wall:8.1f} {cpu:8.1f}") if attempts else f"{'':>8} {'':>8}"
        lines.append(f"{stage.name:<44} {state:<9} {stage.minutes:8.0f} {measured}")
    left = [stage for stage in plan.stages if not done(record, stage.name)]
    lines.append(
        f"done: {len(plan.stages) - len(left)} of {len(plan.stages)} stages "
        f"(estimated {done_minutes:.0f} min); left: {len(left)}, about {left_minutes:.0f} min "
        f"({left_minutes / 60:.1f} h)"
    )
    upcoming = next_stage(plan, record)
    if upcoming is not None:
        lines.append(f"next: {upcoming.name} (about {upcoming.minutes:.0f} min): {upcoming.about}")
    elif left:
        lines.append("next: none runnable: " + ", ".join(stage.name for stage in left))
    return lines


def next_stage(plan: Plan, record: dict[str, Any]) -> Stage | None:
    """The first stage not done whose needs are all done (None where there is none)."""
    for stage in plan.stages:
        if not done(record, stage.name) and all(done(record, need) for need in stage.needs):
            return stage
    return None


def storage_env(storage: str) -> dict[str, str]:
    """The environment of a command on ``storage``, its folder made."""
    path = _storage_path(storage)
    if path is not None:
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "ADAMZ_STORAGE": storage}


def _storage_path(storage: str) -> Path | None:
    """The file of a SQLite or journal storage URL, relative to the root (None for others)."""
    if storage.startswith("sqlite:///"):
        return Path(storage.removeprefix("sqlite:///"))
    if storage.startswith("journal:") or storage.endswith(".journal"):
        return Path(storage.removeprefix("journal:"))
    return None


class _Stop:
    """SIGTERM sets a flag and passes the signal on to the running command (whose workers
    stop cleanly and queue their trials to resume); the stage then stops between commands and
    records its attempt. A handler that raised would land anywhere, the record's write too."""

    requested = False
    child: subprocess.Popen[bytes] | None = None

    @classmethod
    def handle(cls, signum: int, frame: object) -> None:
        cls.requested = True
        if cls.child is not None and cls.child.poll() is None:
            cls.child.send_signal(signum)


def run_command(arguments: Sequence[str] | Callable[[], None], env: dict[str, str]) -> int:
    """``adamz-search ARGUMENTS`` from the root, or a list's own step; its exit status (a step
    that raised: 1, its error on one line)."""
    if callable(arguments):
        print(f"+ {arguments.__doc__ or arguments}".splitlines()[0], file=sys.stderr, flush=True)
        try:
            arguments()
        except (ValueError, OSError, KeyError) as exc:
            print(f"stages: error: {exc}", file=sys.stderr)
            return 1
        return 0
    command = [sys.executable, "-m", "adamz.cli", *arguments]
    print("+ adamz-search " + " ".join(arguments), file=sys.stderr, flush=True)
    with subprocess.Popen(command, cwd=ROOT, env=env) as child:
        _Stop.child = child
        try:
            return child.wait()
        finally:
            _Stop.child = None


def settle(storage: str) -> None:
    """Fold a SQLite storage's write-ahead log into its file, so that the committed file alone
    holds every result (a journal file is complete as it is)."""
    path = _storage_path(storage)
    if path is None or not storage.startswith("sqlite:///") or not (ROOT / path).exists():
        return
    with sqlite3.connect(ROOT / path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def run_stage(plan: Plan, name: str, *, force: bool = False, again: bool = False) -> int:
    """Run stage ``name`` (``next``: :func:`next_stage`), recording the attempt; its commands'
    first non-zero exit status, or 0.

    Raises:
        UsageError: no such stage, its needs are not done (without ``force``), it is done
            (without ``again``), or nothing is left to run.
    """
    record = read_record()
    if name == "next":
        stage = next_stage(plan, record)
        if stage is None:
            left = [s.name for s in plan.stages if not done(record, s.name)]
            raise UsageError("Nothing left to run." if not left else "No stage is runnable.")
    else:
        stage = plan.stage(name)
    if done(record, stage.name) and not again:
        raise UsageError(f"Stage {stage.name} is done already (--again runs it once more).")
    missing = [need for need in stage.needs if not done(record, need)]
    if missing and not force:
        raise UsageError(f"Stage {stage.name} needs {', '.join(missing)} first (or --force).")
    with _lock():
        print(f"Stage {stage.name} (about {stage.minutes:.0f} min): {stage.about}", file=sys.stderr)
        env = storage_env(stage.storage)
        if stage.gather:
            gather(stage.gather, stage.storage)
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        cpu = _children_cpu()
        code = 0
        try:
            for arguments in stage.commands:
                code = run_command(arguments, env)
                if code == 0 and _Stop.requested:
                    code = 128 + signal.SIGTERM
                if code != 0:
                    break
        except KeyboardInterrupt:
            code = 130
        finally:
            settle(stage.storage)
            attempt: dict[str, Any] = {
                "started": started.isoformat(timespec="seconds"),
                "wall_s": round(time.monotonic() - clock, 1),
                "cpu_s": round(_children_cpu() - cpu, 1),
                "exit": code,
            }
            record = read_record()  # as it is now: another list's stage may have run meanwhile
            entry = record["stages"].setdefault(stage.name, {"attempts": []})
            entry["attempts"].append(attempt)
            entry["estimated_minutes"] = stage.minutes
            entry["done"] = code == 0
            write_record(record)
    minutes = attempt["wall_s"] / 60
    if code == 0:
        print(
            f"Stage {stage.name} done in {minutes:.1f} min (estimated {stage.minutes:.0f}); "
            f"commit {os.path.relpath(RECORD, ROOT)} and its storage.",
            file=sys.stderr,
        )
    else:
        print(
            f"Stage {stage.name} stopped (exit {code}) after {minutes:.1f} min: run it again to "
            "resume.",
            file=sys.stderr,
        )
    return code


def _children_cpu() -> float:
    """CPU seconds of this process's finished children and theirs (the workers), and its own
    (a list's own steps run here)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime


class _lock:
    """Held while a stage runs; a lock whose process is gone is taken over."""

    def __enter__(self) -> None:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = LOCK.read_text().strip()
            if holder.isdigit() and _alive(int(holder)):
                raise UsageError(f"A stage is running already (process {holder}).") from None
            LOCK.unlink(missing_ok=True)
            descriptor = os.open(LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)

    def __exit__(self, *exc: object) -> None:
        LOCK.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_pages(plan: Plan, only: Sequence[str] = ()) -> int:
    """Build every page whose stages are done (those in ``only``, where given); the first
    non-zero exit status, or 0."""
    record = read_record()
    unknown = sorted(set(only) - {page.name for page in plan.pages})
    if unknown:
        raise UsageError(
            f"No page {', '.join(unknown)}: pages are "
            + ", ".join(p.name for p in plan.pages)
            + "."
        )
    code = 0
    for page in plan.pages:
        if only and page.name not in only:
            continue
        missing = [need for need in page.needs if not done(record, need)]
        if missing:
            print(f"Page {page.name}: waits for {', '.join(missing)}", file=sys.stderr)
            continue
        env = storage_env(page.storage)
        if page.gather:
            path = _storage_path(page.storage)
            if path is None or not page.storage.startswith("sqlite:///"):
                raise UsageError(
                    f"Page {page.name} gathers into a SQLite file, got {page.storage!r}."
                )
            (ROOT / path).unlink(missing_ok=True)
            gather(page.gather, page.storage)
        for arguments in page.commands:
            code = run_command(arguments, env) or code
    return code


def gather(sources: Sequence[Gather], target: str) -> None:
    """Copy the studies ``sources`` name into storage ``target`` (made where missing), skipping
    those it holds already; storages opened as the CLI opens them (journal files included).

    Raises:
        UsageError: two sources hold a study of one name, or a source cannot be opened.
    """
    import optuna  # only here: status and run import neither Optuna nor torch

    from adamz.search import open_storage

    storage_env(target)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        into = open_storage(_absolute(target))
        present = {study.study_name for study in into.get_all_studies()}
        seen: dict[str, str] = {}
        for source in sources:
            pattern = re.compile(source.studies)
            opened = open_storage(_absolute(source.source), read_only=True)
            for study in opened.get_all_studies():
                name = study.study_name
                if not pattern.fullmatch(name):
                    continue
                if name in seen and seen[name] != source.source:
                    raise UsageError(f"Study {name} is in both {seen[name]} and {source.source}.")
                seen[name] = source.source
                if name not in present:
                    optuna.copy_study(from_study_name=name, from_storage=opened, to_storage=into)
                    present.add(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"Gathered {len(seen)} studies into {target}", file=sys.stderr)


def _absolute(storage: str) -> str:
    """``storage`` with a file's path made absolute from the root (the driver may run from
    anywhere; its commands run from the root)."""
    path = _storage_path(storage)
    if path is None or path.is_absolute():
        return storage
    prefix = "sqlite:///" if storage.startswith("sqlite:///") else "journal:"
    return prefix + str(ROOT / path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reproduce.sh", description="The reproduction of reports/, in stages that resume."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="the stages done, those left and their minutes")
    run = commands.add_parser("run", help="run one stage (resuming it where it stopped)")
    run.add_argument("stage", nargs="?", default="next", help="a stage, or next (default)")
    run.add_argument("--force", action="store_true", help="run it though its needs are not done")
    run.add_argument("--again", action="store_true", help="run it though it is done")
    report = commands.add_parser("report", help="rebuild the pages from the storage, no training")
    report.add_argument("pages", nargs="*", help="only these pages (default: all)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _Stop.handle)
    try:
        plan = load_plan()
        if args.command == "status":
            print("\n".join(status_lines(plan, read_record())))
            return 0
        if args.command == "run":
            return run_stage(plan, args.stage, force=args.force, again=args.again)
        return build_pages(plan, args.pages)
    except UsageError as exc:
        print(f"reproduce.sh: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.modules.setdefault("stages", sys.modules[__name__])  # the lists' `from stages import`
    sys.exit(main())
