"""The gRPC storage proxy (``adamz-search proxy``): Optuna's server in front of a database,
which a restart does not break and a stop does not cut short.

The proxy serves the database through :class:`~adamz.search.outage.PatientStorage` that does
not wait: while the database is down, each call is answered at once with an error naming the
outage ("storage unreachable ..."), which the workers behind the proxy wait out with their
storage patience, rather than with Optuna's generic commit error.

**A proxy killed and started again.** Its workers' calls fail as unavailable, or with the
connection reset, meanwhile: they wait for it as for a database outage
(:mod:`~adamz.search.outage`), and carry on once a proxy listens on the port again. Optuna's
proxy keeps nothing of its own (every call goes to the database), so the new one serves them
as the old one did.

**A proxy stopped** (SIGTERM, Ctrl-C): it finishes the calls it is serving, for up to
:data:`DRAIN_S` seconds, and answers any that comes after the signal with "storage
unreachable: the proxy is stopping", which the workers wait out like an outage until a proxy
is back. Optuna's ``run_grpc_proxy_server`` keeps its gRPC server to itself (no stop with a
grace period), so the calls are counted here, in the thread pool it serves them from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from optuna.storages import BaseStorage, run_grpc_proxy_server

from adamz.search.interrupts import Interrupts
from adamz.search.outage import STOP_CHECK_S, Outage, PatientStorage

__all__ = ["DRAIN_S", "ProxyStopping", "serve_proxy"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

DRAIN_S = 8.0
"""Seconds a stopped proxy waits for the calls it was serving: within ``docker stop``'s 10."""
THREADS = 10
"""Calls served at once (Optuna's default)."""


class ProxyStopping(RuntimeError):
    """A call that came after the proxy was told to stop; its message reads as an outage."""


class _ServedStorage(PatientStorage):
    """The database as the proxy serves it: no waiting through an outage, and, once
    :attr:`closing`, no new call."""

    def __init__(self, storage: BaseStorage, url: str) -> None:
        super().__init__(storage, Outage(url), stopping=lambda: True)
        self.closing = False

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.closing:
            raise ProxyStopping(f"storage unreachable: the proxy for {self.outage.url} is stopping")
        return super()._call(method, *args, **kwargs)


class _Calls(ThreadPoolExecutor):
    """The proxy's thread pool, which knows the calls it is serving: gRPC runs each call,
    its answer sent included, as one task."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads, thread_name_prefix="proxy")
        self._changed = threading.Condition()
        self._serving: set[int] = set()
        self._count = 0

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        with self._changed:
            token = self._count
            self._count += 1
            self._serving.add(token)

        def serve() -> _T:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._changed:
                    self._serving.discard(token)
                    self._changed.notify_all()

        return super().submit(serve)

    def finish(self, seconds: float) -> int:
        """Wait up to ``seconds`` for the calls being served now; how many did not end."""
        deadline = time.monotonic() + seconds
        with self._changed:
            now = set(self._serving)
            while now & self._serving and time.monotonic() < deadline:
                self._changed.wait(min(STOP_CHECK_S, deadline - time.monotonic()))
            return len(now & self._serving)


def serve_proxy(
    storage: BaseStorage, url: str, host: str, port: int, *, drain_s: float = DRAIN_S
) -> str:
    """Serve ``storage`` (at ``url``, as messages show it) on ``host:port`` until SIGTERM or
    SIGINT; the name of the signal that stopped it, once the calls it was serving have ended
    (see the module docs).

    Raises:
        RuntimeError: the server could not start (the address cannot be listened on).
    """
    served = _ServedStorage(storage, url)
    calls = _Calls(THREADS)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_grpc_proxy_server(served, host=host, port=port, thread_pool=calls)
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    with Interrupts() as interrupts:
        server = threading.Thread(target=run, name="grpc-proxy", daemon=True)
        server.start()
        while interrupts.pending is None and server.is_alive():
            time.sleep(STOP_CHECK_S)
        if interrupts.pending is None:
            cause = failed[0] if failed else "its server ended"
            raise RuntimeError(f"the proxy could not serve on {host}:{port}: {cause}")
        served.closing = True
        left = calls.finish(drain_s)
    if left:
        logger.warning("Stopped with %d call(s) still being served after %.0f s.", left, drain_s)
    return interrupts.pending
