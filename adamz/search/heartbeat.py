"""A running trial's heartbeat, written so that it does not slow the trial down.

Optuna's RDB storages detect a dead worker by its trial's heartbeat: a RUNNING trial whose last
beat is older than the grace period is failed by ``fail_stale_trials``, and the storage's
``RetryHeartbeatStaleTrialCallback`` queues it again. Optuna's own ``study.optimize`` starts a
thread per trial that writes the first beat at once, while the trial itself writes its
parameters and attributes. On SQLite the two writers take turns on one lock, and each turn
waits for Python's GIL switch interval: about 10 ms per trial, measured, or 10 % of a
one-epoch digits trial. :class:`Heartbeat` writes the first beat in line, before the trial
starts, and leaves only the later beats (one per interval) to a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from optuna.storages import BaseStorage

__all__ = ["Heartbeat"]


class Heartbeat:
    """Beats for one trial at a time on ``storage``, every ``storage``'s heartbeat interval.

    A storage without heartbeats (Optuna's journal storage, or an RDB storage opened without an
    interval) makes :meth:`beating` a no-op.
    """

    def __init__(self, storage: BaseStorage) -> None:
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self._storage = storage
        self.interval: float | None = interval

    @contextmanager
    def beating(self, trial_id: int) -> Iterator[None]:
        """Record a beat for ``trial_id`` now, then every interval until the block ends.

        The first beat is written before the block runs: a trial never runs without one, so a
        worker killed at any point inside the block leaves a trial that goes stale.
        """
        if self.interval is None:
            yield
            return
        self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        stop = threading.Event()
        thread = threading.Thread(
            target=self._beat,
            args=(trial_id, self.interval, stop),
            name=f"heartbeat-{trial_id}",
            daemon=True,
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _beat(self, trial_id: int, interval: float, stop: threading.Event) -> None:
        while not stop.wait(interval):
            self._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
