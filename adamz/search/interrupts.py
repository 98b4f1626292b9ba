"""SIGTERM and Ctrl-C in a worker: they stop training at once, but never a storage write.

A signal that arrives while a trial trains interrupts it (``WorkerStopped``), and the worker
records the trial failed and queues it to resume from its checkpoints. One that arrives
anywhere else (asking for a trial, its first heartbeat, telling its outcome, counting the
study's trials) waits until that step is done, so that no trial is left RUNNING without a
heartbeat (it would never go stale) and no finished result is thrown away. The worker then
sees :attr:`Interrupts.pending` and stops before it asks for another trial.

Blocking the signals with ``pthread_sigmask`` would not do this: the kernel hands a
process-directed signal to any thread that does not block it (torch's, the heartbeat's), and
Python runs the handler in the main thread whatever that thread's mask is.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

__all__ = ["Interrupts", "WorkerStopped"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerStopped(KeyboardInterrupt):
    """Raised in a worker's training by SIGTERM/SIGINT; its message is the signal's name."""


class Interrupts:
    """Installs the worker's SIGTERM and SIGINT handler for a ``with`` block.

    Args:
        on_stop: called once, from the handler, when the first signal arrives (the worker
            keeps its trial's checkpoints from then on).
    """

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._allowed = False
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

    @contextmanager
    def allowed(self) -> Iterator[None]:
        """A block that a signal interrupts with :class:`WorkerStopped` (at once if one came)."""
        if self.pending is not None:
            raise WorkerStopped(self.pending)
        self._allowed = True
        try:
            yield
        finally:
            self._allowed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        for sig in SIGNALS:  # the first signal stops the worker; more would only interrupt that
            signal.signal(sig, signal.SIG_IGN)
        self.pending = signal.Signals(signum).name
        self._on_stop()
        if self._allowed:
            raise WorkerStopped(self.pending)
