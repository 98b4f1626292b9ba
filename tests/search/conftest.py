"""Fixtures for the search service: a PostgreSQL database per test, and no heartbeat left
beating after its test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from private_postgres import PrivateCluster, private_cluster, why_no_private_cluster

from adamz.search.heartbeat import Heartbeat

POSTGRES_ENV = "ADAMZ_TEST_POSTGRES"
"""A PostgreSQL URL (a server where the tests may create and drop databases). Set by CI;
unset, the PostgreSQL tests are skipped; set and unreachable, they fail."""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to test against")
    import sqlalchemy

    url = sqlalchemy.engine.make_url(base)
    database = f"adamz_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {database}")
    try:
        yield url.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A fresh PostgreSQL cluster of the test's own (:mod:`private_postgres`); skipped where
    none can be made: no server binaries, or no ``postgres`` user to run them as (the server
    refuses to run as root)."""
    reason = why_no_private_cluster()
    if reason is not None:
        pytest.skip(reason)
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _heartbeats_stop_with_their_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stop every heartbeat a test started and left beating: its thread would go on writing
    into the test's removed database, and its failures print into later tests' output."""
    started: list[Heartbeat] = []
    init = Heartbeat.__init__

    def tracked(self: Heartbeat, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        started.append(self)

    monkeypatch.setattr(Heartbeat, "__init__", tracked)
    yield
    for heartbeat in started:
        if heartbeat._thread.is_alive():
            heartbeat.stop()
