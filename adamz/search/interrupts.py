"""SIGTERM and Ctrl-C in a worker: the handler sets a flag, and the worker stops at a safe point.

An exception raised from a signal handler lands wherever the program happens to be, including
inside a database driver mid-transaction, which it leaves unusable. So the handler raises
nothing: it records the signal (:attr:`Interrupts.pending`), and the worker checks it at points
where stopping loses nothing (:meth:`Interrupts.check`): between training steps (the trial's
training ends with :class:`WorkerStopped`, and its checkpoints are kept) and between trials.
Storage calls always finish. The worker then fails its trials and queues each to resume, and
exits 143 or 130.

A second Ctrl-C (SIGINT) exits at once (``os._exit``, with the first signal's code): a user who
presses it twice wants out now; the trials left RUNNING are found by their missing heartbeats.
A repeated SIGTERM changes nothing: it says again what the first one said (the kernel's
parent-death signal, ``PR_SET_PDEATHSIG``, arrives once per thread of the worker), and a
supervisor that wants out now sends SIGKILL.

Before the handler is installed, a worker launched by ``adamz-search worker`` ends at once on
either signal (:func:`adamz.search.launcher.worker_process`): until then it has taken no trial
and written nothing, so nothing is lost, and a stop during its imports or while it opens the
storage takes no longer than the kernel takes. Once installed, a wait for an unreachable storage
is given up as soon as a signal comes (:class:`~adamz.search.outage.PatientStorage`).

Blocking the signals with ``pthread_sigmask`` would not do this: the kernel hands a
process-directed signal to any thread that does not block it (torch's, the heartbeat's), and
Python runs the handler in the main thread whatever that thread's mask is.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType, TracebackType

__all__ = ["SIGNALS", "STOP_CODES", "Interrupts", "WorkerStopped"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_CODES = {"SIGINT": 130, "SIGTERM": 143}
"""A stopped worker's exit code, as shells report a process ended by the signal."""


class WorkerStopped(KeyboardInterrupt):
    """Raised at a safe point after SIGTERM or SIGINT; its message is the signal's name."""


class Interrupts:
    """Installs the worker's SIGTERM and SIGINT handler for a ``with`` block.

    Args:
        on_stop: called once, from the handler, when the first signal arrives (the worker
            keeps its trials' checkpoints from then on). It must not raise nor do I/O.
    """

    def __init__(self, on_stop: Callable[[], None] = lambda: None) -> None:
        self._on_stop = on_stop
        self._previous: dict[int, object] = {}
        self.pending: str | None = None
        """The name of the signal that asked the worker to stop, once one has."""

    def __enter__(self) -> Interrupts:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def check(self, *_: object) -> None:
        """Raise :class:`WorkerStopped` if a signal asked the worker to stop (a safe point);
        it takes and ignores arguments, so that it can be a training loop's ``on_step``."""
        if self.pending is not None:
            raise WorkerStopped(self.pending)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.pending is not None:
            if name == "SIGINT":  # a second Ctrl-C: out now
                sys.stderr.flush()
                os._exit(STOP_CODES.get(self.pending, 1))
            return  # a repeated SIGTERM asks for the stop already under way
        self.pending = name
        self._on_stop()
