"""The one function that opens a study storage, and where its URL comes from.

* default: a SQLite file ``adamz-search.db`` in the working directory, in WAL mode, so that
  readers never block the writer. A worker begins each transaction with ``BEGIN IMMEDIATE``
  (SQLite has no ``SELECT ... FOR UPDATE``: two workers could otherwise both read a queued trial
  as WAITING and both take it); a reader (``read_only``: status, studies, reports, the
  dashboard, the progress bar) never takes the write lock. The busy timeout,
  :data:`SQLITE_BUSY_TIMEOUT_S`, is shorter than the grace period, and a heartbeat that still
  finds the file locked tries again (:mod:`~adamz.search.heartbeat`);
* ``--storage URL`` or ``$ADAMZ_STORAGE``: any SQLAlchemy URL Optuna's RDB storage accepts;
  ``postgresql://`` and ``postgres://`` are read as ``postgresql+psycopg://`` (psycopg 3). A
  worker keeps a pool of at most :data:`POOL_SIZE` + :data:`POOL_OVERFLOW` connections; a reader
  keeps none open between reads;
* ``grpc://HOST:PORT``: Optuna's gRPC storage proxy (``adamz-search proxy``), which holds the
  database connections for any number of workers;
* ``journal:PATH`` (or a path ending in ``.journal``): Optuna's journal file storage.

Every storage works the same for the workers: heartbeats, stale trials and retries use only
Optuna's public storage interface (:mod:`~adamz.search.heartbeat`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, GrpcStorageProxy, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

__all__ = [
    "DEFAULT_STORAGE",
    "GRACE_PERIOD_S",
    "HEARTBEAT_INTERVAL_S",
    "STORAGE_ENV",
    "load_study",
    "open_storage",
    "safe_url",
    "storage_url",
]

STORAGE_ENV = "ADAMZ_STORAGE"
DEFAULT_STORAGE = "sqlite:///adamz-search.db"
POOL_SIZE = 2
POOL_OVERFLOW = 2
HEARTBEAT_INTERVAL_S = 20
"""Seconds between a running trial's heartbeats."""
GRACE_PERIOD_S = 60
"""Seconds without a heartbeat after which a trial counts as stale."""
SQLITE_BUSY_TIMEOUT_S = 20
"""Seconds a SQLite statement waits for the write lock: below :data:`GRACE_PERIOD_S`, so a
heartbeat held up behind another writer is tried again before its trial could go stale."""
GRPC_CONNECT_TIMEOUT_S = 10


def storage_url(url: str | None = None) -> str:
    """The storage URL to use: ``url``, else ``$ADAMZ_STORAGE``, else the SQLite default."""
    url = url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    for alias in ("postgresql://", "postgres://"):
        if url.startswith(alias):
            return "postgresql+psycopg://" + url.removeprefix(alias)
    return url


def safe_url(url: str) -> str:
    """``url`` as messages show it: an RDB URL without its password."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str | None = None, *, read_only: bool = False) -> BaseStorage:
    """Open the study storage at ``url`` (see :func:`storage_url`), creating it unless
    ``read_only``.

    Raises:
        ValueError: the URL is malformed or names an unknown database driver, the database or
            proxy cannot be reached, or (``read_only``) the SQLite or journal file does not
            exist; one line naming the URL (without its password) or the path, and the cause.
    """
    url = storage_url(url)
    if url.startswith("grpc://"):
        return _open_grpc(url)
    if url.startswith("journal:") or url.endswith(".journal"):
        path = Path(url.removeprefix("journal:"))
        if read_only and not path.exists():
            raise ValueError(f"No storage at {path}: the journal file does not exist.")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ValueError(f"Invalid storage URL {url!r}: {exc}.") from exc
    sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if sqlite:
        database = parsed.database
        if read_only and database and database != ":memory:" and not Path(database).exists():
            raise ValueError(f"No storage at {database}: the SQLite file does not exist.")
        if not read_only:
            _enable_sqlite_wal(parsed)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif read_only:
        # A reader (the progress bar, status) holds no idle connection: a hundred hosts'
        # launchers would otherwise take PostgreSQL's hundred connections.
        engine_kwargs["poolclass"] = sqlalchemy.pool.NullPool
    else:
        engine_kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    safe_url = parsed.render_as_string(hide_password=True)
    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=read_only)
    except (
        sqlalchemy.exc.SQLAlchemyError,
        optuna.exceptions.StorageInternalError,
        ImportError,  # a driver that is not installed
    ) as exc:
        cause = " ".join(str(exc.__cause__ or exc).split())[:300]
        raise ValueError(f"Cannot open storage {safe_url}: {cause}") from exc
    if sqlite and not read_only:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connect)
        sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin_immediate)
        storage.engine.dispose()
    return storage


def _open_grpc(url: str) -> GrpcStorageProxy:
    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Invalid storage URL {url!r}: must be grpc://HOST:PORT.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = GrpcStorageProxy(host=host, port=int(port))
    try:
        storage.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)
    except ConnectionError as exc:
        raise ValueError(
            f"Cannot open storage {url}: no gRPC storage proxy answered within "
            f"{GRPC_CONNECT_TIMEOUT_S} s (start one with 'adamz-search proxy')."
        ) from exc
    return storage


def _sqlite_connect(connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is deferred; a worker's transactions start with BEGIN
    # IMMEDIATE instead (below). In WAL mode, synchronous=NORMAL survives a crashed process
    # (only a power cut can lose the last commits) and makes each small commit cheaper.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a worker's transaction starts: read-then-write is atomic."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _enable_sqlite_wal(url: sqlalchemy.engine.URL) -> None:
    """Put the SQLite file in WAL mode (persistent), so readers never block the writer."""
    database = url.database
    if not database or database == ":memory:":
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    engine.dispose()


def load_study(name: str, storage: BaseStorage) -> optuna.Study:
    """The study ``name`` in ``storage``; raises ``ValueError`` listing the studies there."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        known = ", ".join(names) if names else "none"
        raise ValueError(
            f"Unknown study {name!r} in the storage (studies there: {known})."
        ) from None
