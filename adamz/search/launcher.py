"""The worker supervisor: starts worker processes, shows progress, and reports how they ended.

:func:`launch_workers` starts ``workers_per_device`` processes per device with
``multiprocessing`` (spawned: a fresh interpreter, safe with CUDA and threads), each given the
same :class:`~adamz.search.worker.WorkerOptions` object with its device. A GPU worker sees only
its GPU (``CUDA_VISIBLE_DEVICES``); CPU workers share the cores (``OMP_NUM_THREADS``, unless the
user set it). Each child asks the kernel to stop it with SIGTERM if the launcher dies
(``PR_SET_PDEATHSIG`` on Linux), so no worker runs on without its supervisor.

The launcher itself never imports torch, which each worker imports (hundreds of MB a process):
it reads the study's budget from the stored definition, unchecked (its workers check it), and
counts GPUs in a spawned process.

SIGTERM and SIGINT are passed on to the children, each signal once (a child still starting,
which ignores signals until its worker handles them, is sent it again until it stops); they
requeue their trials and exit, and the launcher then exits 143 or 130. A second signal stops
the children at once (it is passed on as SIGINT, which a stopping worker obeys at once). The launcher exits 75 if a child gave up on an unreachable storage
(start it again when the storage is back), else 1, naming them, if any child failed or was
killed.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess
from types import FrameType

import optuna
from tqdm import tqdm

from adamz.search.budget import FINISHED, definition_budget, study_budget
from adamz.search.interrupts import SIGNALS
from adamz.search.outage import Outage, StorageUnreachable, is_unreachable, patiently
from adamz.search.retries import outcomes
from adamz.search.storage import load_study, open_storage, safe_url, storage_url
from adamz.search.study_attrs import require_definition
from adamz.search.worker import (
    STOP_CODES,
    UNREACHABLE_CODE,
    Tickets,
    WorkerOptions,
    run_worker,
)
from adamz.verbosity import current_verbosity, log_to_stderr, verbosity

__all__ = ["launch_workers", "parse_devices", "worker_process"]

logger = logging.getLogger(__name__)

POLL_S = 1.0
PR_SET_PDEATHSIG = 1
SPAWN = multiprocessing.get_context("spawn")


def parse_devices(devices: str) -> list[str]:
    """``cpu``, ``cuda`` (every visible GPU) or ``cuda:0,1`` -> one device string per device.

    Raises:
        ValueError: an unknown device, or CUDA asked for where none is available.
    """
    if devices == "cpu":
        return ["cpu"]
    if devices == "cuda" or devices.startswith("cuda:"):
        available = _gpu_count()
        if available == 0:
            raise ValueError(f"Invalid --devices {devices!r}: no CUDA device is available here.")
        if devices == "cuda":
            return [f"cuda:{i}" for i in range(available)]
        indices = devices.removeprefix("cuda:").split(",")
        if not all(i.isdigit() and int(i) < available for i in indices):
            raise ValueError(
                f"Invalid --devices {devices!r}: indices must be in 0..{available - 1}."
            )
        return [f"cuda:{i}" for i in indices]
    raise ValueError(f"Invalid --devices {devices!r}: must be cpu, cuda or cuda:0,1,...")


def _gpu_count() -> int:
    """The GPUs torch sees, counted in a spawned process: torch stays out of the launcher."""
    with ProcessPoolExecutor(1, mp_context=SPAWN) as pool:
        return pool.submit(_torch_gpu_count).result()


def _torch_gpu_count() -> int:
    import torch  # in the counting process only

    return torch.cuda.device_count()


def worker_process(
    study_name: str,
    options: WorkerOptions,
    tickets: Tickets,
    parent: int,
    ready: multiprocessing.synchronize.Event,
) -> None:
    """A worker child's entry: dies with its ``parent``, runs, prints its summary, exits.

    It runs in a process group of its own: Ctrl-C on the terminal reaches the launcher alone,
    which passes it on once (a second signal would stop the worker at once).
    """
    os.setpgid(0, 0)
    _die_with_parent(parent)

    # The launcher's -v/-q reach the child through the environment it was started with.
    with verbosity(current_verbosity()), log_to_stderr(logging.WARNING):
        try:
            summary = run_worker(study_name, options, tickets, on_ready=ready.set)
        except ValueError as exc:
            print(f"adamz-search: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except StorageUnreachable as exc:  # down since before the worker could start
            print(f"adamz-search: error: gave up: {exc}", file=sys.stderr)
            sys.exit(UNREACHABLE_CODE)
    # On a line of its own: the launcher's progress bar may be mid-line on the same terminal.
    print("\n" + summary.line(), file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Every result is in the storage: skip the interpreter's teardown (torch's takes a second
    # or more), so that a stopped worker is gone well within a container's grace period.
    os._exit(summary.code)


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this process when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def launch_workers(
    study_name: str, devices: list[str], workers_per_device: int, options: WorkerOptions
) -> int:
    """Run ``workers_per_device`` worker processes per device with a progress bar; exit code.

    Returns:
        130 or 143 if the launcher was stopped by SIGINT or SIGTERM; 75 if the storage stayed
        unreachable past ``options.storage_patience`` (at the start, or for a worker); else 1
        if any worker failed or was killed (each is named in the log), else 0.

    Raises:
        ValueError: the storage cannot be opened, or the study is unknown or has no stored
            definition.
    """

    def open_() -> tuple[optuna.Study, int]:
        storage = open_storage(options.storage, read_only=True)
        study = load_study(study_name, storage)
        return study, study_budget(
            study, definition_budget(require_definition(study_name, storage))
        )

    # Started while the database is down (a host's supervisor restarting it in an outage),
    # it waits for the database as its workers would, then exits 75 in one line.
    outage = Outage(safe_url(storage_url(options.storage)), options.storage_patience)
    try:
        study, budget = patiently(open_, outage)
    except StorageUnreachable as unreachable:
        logger.error("Gave up: %s.", unreachable)
        return UNREACHABLE_CODE
    finished = _finished(outcomes(study.get_trials(deepcopy=False)))
    if finished >= budget:
        logger.warning(
            "Nothing to do: study %s has met its budget (%d of %d trials finished; "
            "'adamz-search budget' raises it).",
            study_name,
            finished,
            budget,
        )
        return 0
    total = len(devices) * workers_per_device
    tickets = Tickets.shared(options.n_trials)
    children: list[BaseProcess] = []
    ready: list[multiprocessing.synchronize.Event] = []
    stopped_by: list[str] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum).name)
        _stop(children, signum if len(stopped_by) == 1 else signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        for index in range(total):
            device = devices[index % len(devices)]
            # A GPU worker sees only its own GPU, as cuda:0.
            seen = "cuda:0" if device.startswith("cuda:") else device
            ready.append(SPAWN.Event())
            child = SPAWN.Process(
                target=worker_process,
                args=(
                    study_name,
                    dataclasses.replace(options, device=seen),
                    tickets,
                    os.getpid(),
                    ready[-1],
                ),
                name=f"worker {index} ({device})",
            )
            _start(child, _child_env(device, total))
            children.append(child)
            if stopped_by:
                break
        _show_progress(study, budget, children, ready, stopped_by)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for process in children:
        process.join()
    return _exit_code(children, stopped_by[0] if stopped_by else None)


def _start(child: BaseProcess, env: dict[str, str]) -> None:
    """Start ``child`` with ``env`` added to the environment it inherits, and with SIGTERM and
    SIGINT ignored until its worker handles them (the launcher sends SIGTERM again until it
    stops): a signal during its imports loses no trial."""
    saved = dict(os.environ)
    os.environ.update(env)
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
    try:
        child.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for sig, handler in ignored.items():
            signal.signal(sig, handler)


def _child_env(device: str, total: int) -> dict[str, str]:
    if device.startswith("cuda:"):
        return {"CUDA_VISIBLE_DEVICES": device.removeprefix("cuda:")}
    if "OMP_NUM_THREADS" in os.environ:  # the user's choice
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // total))}


def _exit_code(children: list[BaseProcess], stopped_by: str | None) -> int:
    expected = {0, *STOP_CODES.values()} if stopped_by else {0}
    if any(child.exitcode == UNREACHABLE_CODE for child in children) and not stopped_by:
        return UNREACHABLE_CODE  # each child said why, in one line
    failed = [child for child in children if child.exitcode not in expected]
    for child in failed:
        code = child.exitcode
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exited with {code}"
        )
        logger.error("Worker failed: %s, pid %s, %s.", child.name, child.pid, how)
    if stopped_by:
        return STOP_CODES[stopped_by]
    return 1 if failed else 0


def _stop(children: list[BaseProcess], signum: int = signal.SIGTERM) -> None:
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signum)


def _finished(counts: dict[str, int]) -> int:
    return sum(counts[state.name.lower()] for state in FINISHED)


def _show_progress(
    study: optuna.Study,
    budget: int,
    children: list[BaseProcess],
    ready: list[multiprocessing.synchronize.Event],
    stopped_by: list[str],
) -> None:
    """A bar of finished / budget with the running, requeued and failed trials and the best
    value, until the children end (it returns as soon as the last one does). Once stopped, a
    child that was still starting (it ignores signals until its worker handles them) is sent
    the signal again."""
    with tqdm(total=budget, unit="trial", desc=study.study_name, dynamic_ncols=True) as bar:
        while alive := [child.sentinel for child in children if child.is_alive()]:
            multiprocessing.connection.wait(alive, timeout=POLL_S)
            if stopped_by:
                starting = [c for c, r in zip(children, ready, strict=True) if not r.is_set()]
                _stop(starting, signal.Signals[stopped_by[0]])
            try:
                counts = outcomes(study.get_trials(deepcopy=False))
                best = study.best_value if counts["complete"] else None
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                continue  # the storage is down: the workers say so, and ride it out
            bar.update(min(_finished(counts), budget) - bar.n)
            postfix: dict[str, object] = {
                "running": counts["running"],
                "requeued": counts["requeued"],
                "failed": counts["fail"] + counts["dropped"],
            }
            if best is not None:
                postfix["best"] = f"{best:.4f}"
            bar.set_postfix(postfix)
