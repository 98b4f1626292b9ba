"""Workers ride out a database that stops for a while: a real PostgreSQL server stopped under
running workers, directly and behind the gRPC storage proxy, and a patience that runs out."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from optuna.trial import TrialState
from private_postgres import PrivateCluster
from search_helpers import run_cli, start_cli, trials, write_study

from adamz.search.outage import Outage, PatientStorage, StorageUnreachable, is_unreachable
from adamz.search.storage import open_storage
from adamz.search.worker import UNREACHABLE_CODE

OUTAGE_S = 20


def wait_for(condition: object, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def finished(url: str) -> int:
    try:
        found = trials(url, "quick")
    except Exception:  # the server is down
        return 0
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found)


def test_connection_errors_are_told_apart_from_real_errors() -> None:
    refused = sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("connection failed: Connection refused")
    )
    shutting = sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("FATAL: the database system is shutting down")
    )
    integrity = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key value"))
    assert is_unreachable(refused)
    assert is_unreachable(shutting)
    assert not is_unreachable(integrity)
    assert not is_unreachable(ValueError("connection refused"))  # not the storage's error


class Flaky:
    """Fails ``failures`` times as an unreachable server does, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def get_study_id_from_name(self, name: str) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 7


def test_a_call_is_retried_until_the_storage_answers_and_a_real_error_raises_at_once() -> None:
    refused = sqlalchemy.exc.OperationalError("x", {}, Exception("Connection refused"))
    flaky = Flaky(3, refused)
    outage = Outage("test://db", patience=30)
    assert PatientStorage(flaky, outage).get_study_id_from_name("s") == 7  # type: ignore[arg-type]
    assert flaky.calls == 4
    assert outage.count == 1
    assert not outage.ongoing
    wrong = Flaky(1, sqlalchemy.exc.IntegrityError("x", {}, Exception("duplicate key")))
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        PatientStorage(wrong, Outage("test://db")).get_study_id_from_name("s")  # type: ignore[arg-type]
    assert wrong.calls == 1


def test_past_its_patience_a_call_gives_up_in_one_line() -> None:
    down = Flaky(10**6, sqlalchemy.exc.OperationalError("x", {}, Exception("Connection refused")))
    storage = PatientStorage(down, Outage("postgresql+psycopg://u@db/x", patience=0.5))  # type: ignore[arg-type]
    with pytest.raises(StorageUnreachable, match=r"^storage unreachable for \d s at postgresql"):
        storage.get_study_id_from_name("s")


def test_a_stop_ends_the_wait_between_two_attempts_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adamz.search import outage as outage_module

    for name in ("BACKOFF_FIRST_S", "BACKOFF_CAP_S"):  # a wait longer than the test
        monkeypatch.setattr(outage_module, name, 600.0)
    down = Flaky(10**6, sqlalchemy.exc.OperationalError("x", {}, Exception("Connection refused")))
    stopped = threading.Event()
    storage = PatientStorage(down, Outage("test://db"), stopping=stopped.is_set)  # type: ignore[arg-type]
    threading.Timer(0.5, stopped.set).start()  # SIGTERM, while the worker waits
    started = time.monotonic()
    with pytest.raises(StorageUnreachable):
        storage.get_study_id_from_name("s")
    assert time.monotonic() - started < 60  # not the 300 to 600 s of the wait
    assert down.calls == 1  # no attempt after the stop


@pytest.fixture
def proxy(private_postgres: PrivateCluster, tmp_path: Path) -> Iterator[str]:
    """``adamz-search proxy`` on loopback in front of the private cluster; its URL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_cli(
        "proxy", "--storage", private_postgres.url, "--port", str(port), cwd=tmp_path
    )
    url = f"grpc://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=60)
        yield url
    finally:
        server.terminate()
        server.communicate(timeout=30)


def _answers(url: str) -> bool:
    try:
        open_storage(url)
    except ValueError:
        return False
    return True


def run_through_an_outage(
    cluster: PrivateCluster, url: str, tmp_path: Path, *extra: str
) -> list[subprocess.CompletedProcess[str]]:
    """Three launchers on a study of ``url``; the database stopped for OUTAGE_S seconds once
    some trials have finished, then started again; how the launchers ended."""
    study_file = write_study(tmp_path, budget=12, epochs=30, pruner={"name": "none"})
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    options = ["--storage", url, "--checkpoint-interval", "0", *extra]
    launchers = [start_cli("worker", "quick", *options, cwd=tmp_path) for _ in range(3)]
    wait_for(lambda: finished(cluster.url) >= 2)  # read directly: Optuna opens no grpc:// URL
    cluster.stop()
    time.sleep(OUTAGE_S)
    cluster.start()
    ended = []
    for launcher in launchers:
        out, err = launcher.communicate(timeout=600)
        ended.append(subprocess.CompletedProcess(launcher.args, launcher.returncode, out, err))
    return ended


def check_nothing_lost(url: str) -> None:
    found = trials(url, "quick")
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found) >= 12
    assert [t.number for t in found if t.state == TrialState.RUNNING] == []
    assert [t.number for t in found if t.state == TrialState.WAITING] == []
    status = run_cli("status", "quick", "--storage", url, "--format", "json", cwd=Path.cwd())
    import json

    assert json.loads(status.stdout)["trials"]["dropped"] == 0


@pytest.mark.slow
def test_workers_ride_out_a_postgresql_restart_and_finish_the_budget(
    private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    ended = run_through_an_outage(private_postgres, private_postgres.url, tmp_path)
    for launcher in ended:
        assert launcher.returncode == 0, launcher.stderr[-3000:]
        assert "Traceback" not in launcher.stderr
    said = sum(launcher.stderr.count("is unreachable") for launcher in ended)
    assert 1 <= said <= 3  # once per worker that met it, not once per retry
    check_nothing_lost(private_postgres.url)


@pytest.mark.slow
def test_workers_behind_the_grpc_proxy_ride_out_the_database_s_restart(
    private_postgres: PrivateCluster, proxy: str, tmp_path: Path
) -> None:
    ended = run_through_an_outage(private_postgres, proxy, tmp_path)
    for launcher in ended:
        assert launcher.returncode == 0, launcher.stderr[-3000:]
        assert "Traceback" not in launcher.stderr
    check_nothing_lost(private_postgres.url)


@pytest.mark.slow
def test_past_its_patience_a_worker_exits_75_in_one_line_and_its_trials_resume_later(
    private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    ended = run_through_an_outage(
        private_postgres, private_postgres.url, tmp_path, "--storage-patience", "5"
    )
    gave_up = [launcher for launcher in ended if launcher.returncode == UNREACHABLE_CODE]
    assert gave_up, [launcher.returncode for launcher in ended]
    for launcher in gave_up:
        assert "Traceback" not in launcher.stderr
        lines = [line for line in launcher.stderr.splitlines() if "storage unreachable for" in line]
        assert lines
        assert lines[0].startswith("storage unreachable for 5 s at postgresql+psycopg://")
    # Its trials are found by their missing heartbeats and resume: a worker finishes the study.
    again = run_cli(
        "worker", "quick", "--storage", private_postgres.url, "--grace-period", "3",
        "--heartbeat-interval", "1", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    check_nothing_lost(private_postgres.url)


@pytest.mark.slow
def test_a_worker_started_while_the_database_is_down_waits_for_it_or_exits_75_in_one_line(
    private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    """A host's supervisor restarts a launcher in an outage: that is no usage error (exit 2)."""
    url = private_postgres.url
    study_file = write_study(tmp_path, budget=2, epochs=1)
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    private_postgres.stop()
    try:
        impatient = run_cli(
            "worker", "quick", "--storage", url, "--storage-patience", "2", cwd=tmp_path
        )
        assert impatient.returncode == UNREACHABLE_CODE, impatient.stderr[-2000:]
        assert "Traceback" not in impatient.stderr
        [line] = [line for line in impatient.stderr.splitlines() if "error:" in line]
        assert line.startswith("adamz-search: error: gave up: storage unreachable for 2 s at")
        waiting = start_cli("worker", "quick", "--storage", url, cwd=tmp_path)
        time.sleep(5)
        assert waiting.poll() is None  # still waiting, not refused
    finally:
        private_postgres.start()
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert finished(url) == 2
