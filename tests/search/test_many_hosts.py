"""Workers started independently, as separate hosts start them: distinct sampler seeds, a
storage reached through Optuna's gRPC proxy, readers that never hold up a writer."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import run_cli, start_cli, trials, write_study

from adamz.search import open_storage, storage_url
from adamz.search.worker import WorkerOptions, open_worker

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def params_of(found: list[optuna.trial.FrozenTrial]) -> list[tuple[float, ...]]:
    return [tuple(sorted(trial.params.items())) for trial in found if trial.params]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_independently_started_launchers_never_propose_the_same_configuration(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    # Random start-up trials: where every launcher used one seed, they proposed the same ones.
    url = (
        f"sqlite:///{tmp_path / 'adamz-search.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    study_file = write_study(tmp_path, budget=20, epochs=1)
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    launchers = [start_cli("worker", "quick", "--storage", url, cwd=tmp_path) for _ in range(2)]
    for launcher in launchers:
        _, err = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, err[-2000:]
    found = trials(storage_url(url), "quick")[:20]
    configurations = params_of(found)
    assert len(configurations) == 20
    assert len(set(configurations)) == 20
    seeds = {trial.user_attrs["worker"]["sampler_seed"] for trial in found}
    assert len(seeds) == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[str]:
    """``adamz-search proxy`` on loopback in front of a SQLite file; its ``grpc://`` URL."""
    port = free_port()
    database = f"sqlite:///{tmp_path / 'behind-the-proxy.db'}"
    server = start_cli("proxy", "--storage", database, "--port", str(port), cwd=tmp_path)
    url = f"grpc://127.0.0.1:{port}"
    try:
        open_storage(url)  # waits until it answers
        yield url
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.mark.slow
def test_workers_through_the_grpc_proxy_meet_the_budget_with_no_error(
    tmp_path: Path, proxy: str
) -> None:
    study_file = write_study(tmp_path, budget=6, epochs=2)
    env = {"ADAMZ_STORAGE": proxy}
    assert run_cli("create", str(study_file), cwd=tmp_path, env=env).returncode == 0
    launchers = [
        subprocess.Popen(
            [*start_cli_args("worker", "quick"), "--checkpoint-dir", str(tmp_path / "ck")],
            cwd=tmp_path,
            env=env_with(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for launcher in launchers:
        _, err = launcher.communicate(timeout=600)
        assert launcher.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    found = optuna.load_study(study_name="quick", storage=open_storage(proxy)).trials
    assert TrialState.RUNNING not in [trial.state for trial in found]
    # Two workers that both saw the last place free may both ask: the later trial is
    # refused as surplus (never trained, no budget), which is no error.
    failed = [t for t in found if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")]
    assert failed == []
    finished = sum(trial.state in FINISHED for trial in found)
    assert 6 <= finished <= 6 + 3 - 1  # the documented bound: workers - 1
    assert not (tmp_path / "adamz-search.db").exists()


def start_cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "adamz.cli", *args]


def env_with(changes: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **changes}


def test_a_long_read_does_not_take_the_write_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reads.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="reads")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    reader = open_storage(url, read_only=True)
    engine = reader.engine  # type: ignore[attr-defined]
    with engine.connect() as connection, connection.begin():  # a report, reading for long
        connection.exec_driver_sql("SELECT count(*) FROM trials").all()
        writer = sqlite3.connect(tmp_path / "reads.db", timeout=0)
        writer.execute("BEGIN IMMEDIATE")  # "database is locked" if the reader held it
        writer.execute("UPDATE studies SET study_name = study_name")
        writer.commit()
        writer.close()
    assert len(optuna.load_study(study_name="reads", storage=reader).trials) == 3


def test_a_worker_stops_training_a_trial_that_another_worker_failed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    study_file = write_study(tmp_path, budget=1, epochs=400, pruner={"name": "none"})
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    options = WorkerOptions(
        storage=url, heartbeat_interval=0.2, grace_period=1, checkpoint_interval=0
    )
    worker = open_worker("quick", options)
    other = optuna.load_study(study_name="quick", storage=open_storage(url))

    def stale_check_of_another_worker() -> None:
        while True:
            running = other.get_trials(states=(TrialState.RUNNING,))
            if running and len(running[0].intermediate_values) >= 2:
                other.tell(running[0].number, state=TrialState.FAIL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=stale_check_of_another_worker, daemon=True)
    thread.start()
    with worker.interrupts:
        assert worker.run_trials(1) is None
    worker.close()  # what it wrote behind, written
    thread.join(timeout=10)
    [trial] = other.trials
    assert trial.state == TrialState.FAIL
    assert 2 <= len(trial.intermediate_values) < 400  # it stopped long before its 400 epochs
    assert list((tmp_path / "checkpoints" / "quick").glob("trial-0-*.pt"))  # for its retry


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@db/adamz", "postgresql+psycopg://u@db/adamz"),
        ("postgresql://u@db/adamz", "postgresql+psycopg://u@db/adamz"),
        ("postgresql+psycopg://u@db/adamz", "postgresql+psycopg://u@db/adamz"),
        ("grpc://proxy:13000", "grpc://proxy:13000"),
    ],
)
def test_postgres_urls_are_read_as_psycopg_3(url: str, expected: str) -> None:
    from adamz.search.storage import storage_url

    assert storage_url(url) == expected


def test_a_proxy_that_does_not_answer_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adamz.search import storage as storage_module

    monkeypatch.setattr(storage_module, "GRPC_CONNECT_TIMEOUT_S", 0.5)
    port = free_port()
    with pytest.raises(ValueError, match=rf"Cannot open storage grpc://127.0.0.1:{port}: no gRPC"):
        open_storage(f"grpc://127.0.0.1:{port}")
