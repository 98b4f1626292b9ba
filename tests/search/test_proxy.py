"""``adamz-search proxy`` under running workers: killed and started again on its port, the
workers wait for it and carry on; stopped by SIGTERM, it finishes the calls it is serving."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from search_helpers import run_cli, start_cli, trials, write_study

from adamz.search.outage import is_unreachable
from adamz.search.retries import requeued
from adamz.search.storage import open_storage


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_proxy(database: str, port: int, cwd: Path) -> subprocess.Popen[str]:
    """``adamz-search proxy`` as the console script runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "adamz.entry", "proxy", "--storage", database, "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def connect(url: str, timeout: float = 120) -> BaseStorage:
    """The proxy at ``url`` once it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open_storage(url)
        except ValueError:
            if time.monotonic() > deadline:
                raise


def wait_for(condition: object, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def test_a_stopped_proxy_finishes_the_calls_it_serves_and_refuses_new_ones_as_an_outage(
    tmp_path: Path,
) -> None:
    database = tmp_path / "proxy.db"
    study_id = open_storage(f"sqlite:///{database}").create_new_study([], "held")
    port = free_port()
    proxy = start_proxy(f"sqlite:///{database}", port, tmp_path)
    try:
        client = connect(f"grpc://127.0.0.1:{port}")
        client.get_study_user_attrs(study_id)  # the connection is up
        lock = sqlite3.connect(database, isolation_level=None, timeout=60)
        lock.execute("BEGIN EXCLUSIVE")  # the proxy's write waits for it
        outcome: list[object] = []

        def write() -> None:
            try:
                client.set_study_user_attr(study_id, "written", "while stopping")
                outcome.append("written")
            except Exception as exc:
                outcome.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(2)  # the call reaches the proxy and waits there for the lock
        proxy.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert proxy.poll() is None  # still serving the call
        with pytest.raises(Exception, match=r"the proxy .* is stopping") as refused:
            client.get_study_user_attrs(study_id)
        assert is_unreachable(refused.value)  # a worker waits it out
        lock.execute("COMMIT")
        writer.join(timeout=60)
        assert outcome == ["written"]
        _, err = proxy.communicate(timeout=60)
        assert proxy.returncode == 143, err
        assert "Traceback" not in err
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.communicate()
    assert open_storage(f"sqlite:///{database}").get_study_user_attrs(study_id) == {
        "written": "while stopping"
    }


@pytest.mark.slow
def test_workers_wait_for_a_killed_proxy_started_again_on_its_port_and_finish_the_budget(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'behind-the-proxy.db'}"
    study_file = write_study(tmp_path, budget=10, epochs=15, pruner={"name": "none"})
    assert run_cli("create", str(study_file), "--storage", database, cwd=tmp_path).returncode == 0
    port = free_port()
    url = f"grpc://127.0.0.1:{port}"
    first = start_proxy(database, port, tmp_path)
    second = None
    try:
        connect(url)
        options = ["--storage", url, "--checkpoint-interval", "0"]
        beat = ["--heartbeat-interval", "2", "--grace-period", "10"]
        launchers = [start_cli("worker", "quick", *options, *beat, cwd=tmp_path) for _ in range(2)]

        def finished() -> int:
            assert all(launcher.poll() is None for launcher in launchers)
            found = trials(database, "quick")
            return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found)

        wait_for(lambda: finished() >= 2)
        first.kill()  # SIGKILL: calls in flight are cut
        first.communicate()
        time.sleep(5)
        second = start_proxy(database, port, tmp_path)
        for launcher in launchers:
            _, err = launcher.communicate(timeout=600)
            assert launcher.returncode == 0, err[-3000:]
            assert "Traceback" not in err
            assert "is unreachable" in err  # each waited for the proxy,
            assert "is back" in err  # and went on with it
    finally:
        for proxy in (first, second):
            if proxy is not None and proxy.poll() is None:
                proxy.terminate()
                proxy.communicate(timeout=60)
    found = trials(database, "quick")
    again = requeued(found)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found) >= 10
    assert [t.number for t in found if t.state == TrialState.RUNNING] == []
    lost = [
        t.number
        for t in found
        if t.state == TrialState.FAIL and t.number not in again and not t.user_attrs.get("surplus")
    ]
    assert lost == []
