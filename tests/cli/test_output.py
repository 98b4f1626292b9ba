"""What ``adamz-search`` shows on the terminal: its own progress by default, Optuna's logs and
experimental warnings and the dashboard's access log only with ``-v``, and nothing when its
reader closes the pipe."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml

from adamz.cli import build_parser
from adamz.cli._base import verbosity_from
from adamz.verbosity import DEBUG, DEFAULT, QUIET, VERBOSE, VERBOSITY_ENV


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``adamz-search ARGS`` in ``cwd`` as a user runs it, in an environment without a verbosity."""
    environment = {k: v for k, v in os.environ.items() if k != VERBOSITY_ENV}
    return subprocess.run(
        [sys.executable, "-m", "adamz.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**environment, **(env or {})},
    )


def study_file(directory: Path) -> Path:
    """A one-trial study on a few hundred digits: one worker run takes seconds."""
    space = {
        "optimizer": "adamz",
        "parameters": {"lr": {"type": "float", "low": 1e-3, "high": 0.05}},
    }
    (directory / "space.yaml").write_text(yaml.safe_dump(space))
    study = {
        "name": "quiet",
        "workload": {"name": "digits", "epochs": 1, "train_size": 200},
        "optimizer": "adamz",
        "search_space": "space.yaml",
        "budget": 1,
    }
    path = directory / "quiet.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["studies"], DEFAULT),
        (["-v", "studies"], VERBOSE),
        (["studies", "-v"], VERBOSE),
        (["studies", "--verbose", "--verbose"], DEBUG),
        (["-vvv", "studies"], DEBUG),
        (["-q", "studies"], QUIET),
        (["studies", "--quiet"], QUIET),
    ],
)
def test_v_and_q_set_the_verbosity_before_or_after_the_command(
    argv: list[str], expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VERBOSITY_ENV, raising=False)
    assert verbosity_from(build_parser().parse_args(argv)) == expected


def test_without_v_or_q_the_verbosity_is_the_one_inherited_from_the_starting_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VERBOSITY_ENV, str(VERBOSE))
    assert verbosity_from(build_parser().parse_args(["studies"])) == VERBOSE
    assert verbosity_from(build_parser().parse_args(["studies", "-q"])) == QUIET


def test_v_and_q_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["studies", "-v", "-q"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_a_worker_run_shows_optunas_log_only_with_v_and_no_experimental_warning(
    tmp_path: Path, verbose: bool
) -> None:
    # The worker processes the command starts run at the command's verbosity.
    flags = ["-v"] if verbose else []
    result = cli(*flags, "worker", str(study_file(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("A new study created" in result.stderr) is verbose, result.stderr
    if not verbose:
        assert "ExperimentalWarning" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_command_started_with_a_verbosity_in_its_environment_runs_at_it(tmp_path: Path) -> None:
    path = study_file(tmp_path)
    quiet = cli("create", str(path), "--storage", "sqlite:///a.db", cwd=tmp_path)
    verbose = cli(
        "create", str(path), "--storage", "sqlite:///b.db", cwd=tmp_path, env={VERBOSITY_ENV: "2"}
    )
    assert (quiet.returncode, verbose.returncode) == (0, 0)
    assert quiet.stderr == "Created quiet in sqlite:///a.db\n"
    assert "A new study created in RDB with name: quiet" in verbose.stderr


def empty_storage(directory: Path) -> None:
    """The default storage file in ``directory``, with one empty study."""
    optuna.create_study(storage=f"sqlite:///{directory / 'adamz-search.db'}", study_name="empty")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_the_dashboard_logs_its_requests_only_with_v(tmp_path: Path, verbose: bool) -> None:
    port = free_port()
    flags = ["-v"] if verbose else []
    environment = {k: v for k, v in os.environ.items() if k != VERBOSITY_ENV}
    empty_storage(tmp_path)  # the dashboard reads a storage; it creates none
    server = subprocess.Popen(
        [sys.executable, "-m", "adamz.cli", "dashboard", "--port", str(port), *flags],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.3)
        # The server logs a request after answering it, and serves one request at a time: once
        # a second is answered, the first is logged.
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10).read()
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert stderr.startswith(f"optuna-dashboard on http://127.0.0.1:{port}/\n")
    assert ("GET /api/studies" in stderr) is verbose, stderr


@pytest.mark.parametrize("output", ["table", "json"])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(
    tmp_path: Path, output: str
) -> None:
    # As `adamz-search studies | head -1` once the line is read: the pipe is closed before the
    # command writes, so that the write fails every time, not only when head is quick.
    environment = {k: v for k, v in os.environ.items() if k != VERBOSITY_ENV}
    empty_storage(tmp_path)
    command = subprocess.Popen(
        [sys.executable, "-m", "adamz.cli", "studies", "--format", output],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    assert command.stdout is not None
    assert command.stderr is not None
    command.stdout.close()
    stderr = command.stderr.read().decode()
    assert command.wait(timeout=120) == 1
    assert stderr == ""
