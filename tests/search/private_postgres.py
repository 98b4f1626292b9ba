"""A PostgreSQL server of one's own, to stop and start under running workers: the outage
tests and ``benchmarks/search_service.py chaos --outage postgresql`` use it."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class PrivateCluster:
    """A PostgreSQL server of the test's own: its data directory, its port, and the means to
    stop and start it (run as the ``postgres`` user, as a database host runs it)."""

    def __init__(self, directory: Path, port: int, bin_dir: Path) -> None:
        self.directory = directory
        self.port = port
        self.bin_dir = bin_dir
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        # The server writes to a log file of its own: left on pg_ctl's output, it would hold
        # that pipe open and the call would wait for the server to exit.
        log = str(self.directory / "server.log")
        self._as_postgres(
            "pg_ctl", "-D", str(self.directory / "data"), "-l", log, "-o", options, "-w", "start"
        )

    def initdb(self) -> None:
        self._as_postgres(
            "initdb", "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres"
        )

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")


def why_no_private_cluster() -> str | None:
    """Why no private cluster can be made here, or None if one can."""
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or not shutil.which("runuser"):
        return "no PostgreSQL server binaries (initdb) or no runuser on this machine"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user to run a private PostgreSQL cluster as"
    if os.geteuid() != 0:
        return "starting a cluster as the postgres user needs root"
    return None


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A fresh PostgreSQL cluster on a free port of loopback, stopped and removed afterwards
    (:func:`why_no_private_cluster` says whether one can be made)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    # Not under pytest's temporary directory, which only root may enter.
    directory = Path(tempfile.mkdtemp(prefix="adamz-cluster-"))
    directory.chmod(0o755)
    shutil.chown(directory, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = PrivateCluster(directory, port, found[-1].parent)
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
