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

**Stopping.** SIGTERM or SIGINT stops a launcher at any moment of its life. While it holds
nothing (it imports, opens the storage, waits out an outage) it ends at once, as there is
nothing to finish. From its first child's start, and while it creates a study, its handler
(:class:`Stop`) raises nothing: it records the signal and passes it on. The first signal
reaches every child as SIGTERM, which a child obeys at any moment of its life: until its worker
handles signals (while it imports torch, opens the storage) SIGTERM ends it at once, since it
holds no trial and has written nothing; from then on it queues its trials to resume and exits
(:mod:`~adamz.search.interrupts`). A second signal is passed on as SIGINT, which a stopping
worker obeys at once. The launcher waits for its children, then exits (:func:`launch_workers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess
from types import FrameType

import optuna
from tqdm import tqdm

from adamz.search.budget import FINISHED, definition_budget, study_budget
from adamz.search.interrupts import SIGNALS, STOP_CODES
from adamz.search.outage import Outage, StorageUnreachable, is_unreachable, patiently
from adamz.search.retries import outcomes
from adamz.search.storage import load_study, open_storage, safe_url, storage_url
from adamz.search.study_attrs import is_diverged, note_header, require_definition
from adamz.search.worker import UNREACHABLE_CODE, Tickets, WorkerOptions, run_worker
from adamz.verbosity import current_verbosity, log_to_stderr, verbosity

__all__ = ["Stop", "launch_workers", "parse_devices", "worker_process"]

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


def worker_process(study_name: str, options: WorkerOptions, tickets: Tickets, parent: int) -> None:
    """A worker child's entry: dies with its ``parent``, runs, prints its summary, exits.

    It runs in a process group of its own: Ctrl-C on the terminal reaches the launcher alone,
    which passes the stop on (see the module docs).
    """
    os.setpgid(0, 0)
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent(parent)

    # The launcher's -v/-q reach the child through the environment it was started with.
    with verbosity(current_verbosity()), log_to_stderr(logging.WARNING):
        try:
            summary = run_worker(study_name, options, tickets, exit_on_stop=True)
        except ValueError as exc:
            print(f"adamz-search: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except StorageUnreachable as exc:  # down since before the worker could start
            print(f"adamz-search: error: gave up: {exc}", file=sys.stderr)
            sys.exit(UNREACHABLE_CODE)
    summary.exit()


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this process when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Stop:
    """A launcher's SIGTERM and SIGINT handler for a ``with`` block; nothing raises. While the
    launcher holds nothing (:meth:`holding`), a signal ends it at once; then each is passed on
    to the children (:meth:`adopt`), as the module docs say."""

    def __init__(self) -> None:
        self.received: list[str] = []
        """The names of the signals received, in order."""
        self.children: list[BaseProcess] = []
        self._holding = 0
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        """Whether a signal asked the launcher to stop."""
        return bool(self.received)

    @property
    def code(self) -> int:
        """The exit code of a launcher stopped by the first signal: 143 or 130."""
        return STOP_CODES[self.received[0]]

    def __enter__(self) -> Stop:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """A block that a signal must not cut short (a study being created, children being
        started and run): meanwhile a signal is recorded and passed on."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    def adopt(self, child: BaseProcess) -> None:
        """Pass the stop on to ``child`` (started) from now on, and now if it was asked for."""
        self.children.append(child)
        if self.received:  # a repeated SIGTERM, if the handler sent it too, changes nothing
            self._send(child)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        if not self._holding and not self.children:
            sys.stderr.flush()
            os._exit(self.code)
        for child in list(self.children):
            self._send(child)

    def _send(self, child: BaseProcess) -> None:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM if len(self.received) == 1 else signal.SIGINT)


def launch_workers(
    study_name: str,
    devices: list[str],
    workers_per_device: int,
    options: WorkerOptions,
    *,
    stop: Stop | None = None,
) -> int:
    """Run ``workers_per_device`` worker processes per device with a progress bar; exit code.

    ``stop``: the caller's :class:`Stop`, installed since before its own storage calls; by
    default one is installed here.

    Returns:
        130 or 143 if the launcher was stopped by SIGINT or SIGTERM; 75 if the storage stayed
        unreachable past ``options.storage_patience`` (at the start, or for a worker); else 1
        if any worker failed or was killed (each is named in the log), else 0.

    Raises:
        ValueError: the storage cannot be opened, or the study is unknown or has no stored
            definition.
    """
    if stop is None:
        with Stop() as own:
            return launch_workers(study_name, devices, workers_per_device, options, stop=own)

    def open_() -> tuple[optuna.Study, int, bool]:
        storage = open_storage(options.storage, read_only=True)
        study = load_study(study_name, storage)
        definition = require_definition(study_name, storage)
        replicates = definition.get("kind") == "replicates"
        return study, study_budget(study, definition_budget(definition)), replicates

    # Started while the database is down (a host's supervisor restarting it in an outage),
    # it waits for the database as its workers would, then exits 75 in one line.
    outage = Outage(safe_url(storage_url(options.storage)), options.storage_patience)
    try:
        study, budget, replicates = patiently(open_, outage, give_up=lambda: stop.requested)
    except StorageUnreachable as unreachable:
        if stop.requested:
            return stop.code
        logger.error("Gave up: %s.", unreachable)
        return UNREACHABLE_CODE
    if stop.requested:
        return stop.code
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
    tickets = Tickets(options.n_trials)
    with stop.holding():
        for index in range(total):
            if stop.requested:
                break
            device = devices[index % len(devices)]
            # A GPU worker sees only its own GPU, as cuda:0.
            seen = "cuda:0" if device.startswith("cuda:") else device
            child = SPAWN.Process(
                target=worker_process,
                args=(study_name, dataclasses.replace(options, device=seen), tickets, os.getpid()),
                name=f"worker {index} ({device})",
            )
            _start(child, _child_env(device, total))
            stop.adopt(child)
        _show_progress(study, budget, stop, best=not replicates)
        for process in stop.children:
            process.join()
    if not stop.requested:  # a stop leaves at once
        try:  # the dashboard note's header: the trials that diverged, a replicate study's medians
            storage = open_storage(options.storage)
            note_header(load_study(study_name, storage), storage)
        except Exception as exc:  # the note only informs; the workers' results are stored
            logger.warning("The dashboard note was not updated: %s", exc)
    return _exit_code(stop.children, stop.received[0] if stop.requested else None)


def _start(child: BaseProcess, env: dict[str, str]) -> None:
    """Start ``child`` with ``env`` added to the environment it inherits.

    The child starts with SIGINT ignored, until :func:`worker_process` restores it: a
    terminal's Ctrl-C, which reaches a child still in the launcher's process group, would
    otherwise raise KeyboardInterrupt in the middle of its imports (the launcher passes the
    stop on as SIGTERM). The launcher's own SIGINT is blocked meanwhile, so that one sent to it
    then waits instead of being ignored.
    """
    # Started, the resource tracker unblocks SIGINT in the launcher: it must run already.
    resource_tracker.ensure_running()
    saved = dict(os.environ)
    os.environ.update(env)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _child_env(device: str, total: int) -> dict[str, str]:
    if device.startswith("cuda:"):
        return {"CUDA_VISIBLE_DEVICES": device.removeprefix("cuda:")}
    if "OMP_NUM_THREADS" in os.environ:  # the user's choice
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // total))}


def _exit_code(children: list[BaseProcess], stopped_by: str | None) -> int:
    # A stopped child exits with a stop code, or by the signal itself if it was still starting.
    stopped = {*STOP_CODES.values(), *(-signal.Signals[name] for name in STOP_CODES)}
    expected = {0, *stopped} if stopped_by else {0}
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


def _finished(counts: dict[str, int]) -> int:
    return sum(counts[state.name.lower()] for state in FINISHED)


def _show_progress(study: optuna.Study, budget: int, stop: Stop, *, best: bool) -> None:
    """A bar of finished / budget with the running, requeued and failed trials and, with
    ``best`` (a search, not a replicate study's luckiest seed), the best value, until the
    children end (it returns as soon as the last one does). Once stopped, it only waits for
    them."""
    with tqdm(total=budget, unit="trial", desc=study.study_name, dynamic_ncols=True) as bar:
        while alive := [child.sentinel for child in stop.children if child.is_alive()]:
            multiprocessing.connection.wait(alive, timeout=POLL_S)
            if stop.requested:
                continue
            try:
                trials = study.get_trials(deepcopy=False)
                counts = outcomes(trials)
                best_value = study.best_value if best and counts["complete"] else None
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
            if diverged := sum(map(is_diverged, trials)):
                postfix["diverged"] = diverged
            if best_value is not None:
                postfix["best"] = f"{best_value:.4f}"
            bar.set_postfix(postfix)
