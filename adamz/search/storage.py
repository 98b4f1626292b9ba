"""The one function that opens a study storage, and where its URL comes from.

* default: a SQLite file ``adamz-search.db`` in the working directory, in WAL mode with a long
  busy timeout, so that several local workers never fail with "database is locked";
* ``--storage URL`` or ``$ADAMZ_STORAGE``: any SQLAlchemy URL Optuna's RDB storage accepts;
  ``postgresql://`` is read as ``postgresql+psycopg://`` (psycopg 3). Each worker keeps a pool of
  at most :data:`POOL_SIZE` + :data:`POOL_OVERFLOW` connections, pinged before use, so sixteen
  workers stay far below PostgreSQL's default of 100 connections;
* ``journal:PATH`` (or a path ending in ``.journal``): Optuna's journal file storage. It has no
  heartbeats, so a killed worker's trial stays RUNNING there: prefer SQLite or PostgreSQL.

RDB storages get heartbeats: a worker killed mid-trial stops beating, and after the grace period
the next worker marks its trial failed and queues a retry
(:class:`~adamz.search.retries.RetryStaleTrial`), which resumes from the trial's last checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from adamz.search.retries import RetryStaleTrial

__all__ = [
    "DEFAULT_STORAGE",
    "STORAGE_ENV",
    "open_storage",
    "storage_url",
]

STORAGE_ENV = "ADAMZ_STORAGE"
DEFAULT_STORAGE = "sqlite:///adamz-search.db"
POOL_SIZE = 2
POOL_OVERFLOW = 2
SQLITE_BUSY_TIMEOUT_S = 120
HEARTBEAT_INTERVAL_S = 20
"""Seconds between a running trial's heartbeats."""
GRACE_PERIOD_S = 60
"""Seconds without a heartbeat after which a trial counts as stale."""


def storage_url(url: str | None = None) -> str:
    """The storage URL to use: ``url``, else ``$ADAMZ_STORAGE``, else the SQLite default."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def open_storage(
    url: str | None = None,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S,
    grace_period: int | None = GRACE_PERIOD_S,
) -> BaseStorage:
    """Open (creating if needed) the study storage at ``url`` (see :func:`storage_url`).

    ``heartbeat_interval=None`` opens it without heartbeats, for readers (status, reports).

    Raises:
        ValueError: the URL is malformed, names an unknown database driver, or the database
            cannot be reached; one line naming the URL (without its password) and the cause.
    """
    url = storage_url(url)
    if url.startswith("journal:") or url.endswith(".journal"):
        path = url.removeprefix("journal:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ValueError(f"Invalid storage URL {url!r}: {exc}.") from exc
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        _enable_sqlite_wal(parsed)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval is not None:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period,
            "heartbeat_stale_trial_callback": RetryStaleTrial(),
        }
    safe_url = parsed.render_as_string(hide_password=True)
    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ModuleNotFoundError) as exc:
        cause = " ".join(str(exc).split())[:300]
        raise ValueError(f"Cannot open storage {safe_url}: {cause}") from exc
    if parsed.get_backend_name() == "sqlite":
        # In WAL mode, synchronous=NORMAL survives a crashed process (only a power cut can lose
        # the last commits) and makes each of Optuna's many small commits several times cheaper.
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connect)
        sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin_immediate)
        storage.engine.dispose()
    return storage


def _sqlite_connect(connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is deferred: two workers could both read a queued trial
    # as WAITING and both take it (SQLite has no SELECT ... FOR UPDATE, which is what protects
    # Optuna's pop on PostgreSQL). Transactions start with BEGIN IMMEDIATE instead (below).
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a transaction starts, so read-then-write is atomic."""
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
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
        known = ", ".join(names) if names else "none"
        raise ValueError(
            f"Unknown study {name!r} in the storage (studies there: {known})."
        ) from None
