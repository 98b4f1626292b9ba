"""The worker supervisor: exit codes that tell the truth, signals from the first instant,
children that die with it, and the user's thread setting kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from search_helpers import run_cli, start_cli, trials, write_study

from adamz.cli import build_parser
from adamz.search.launcher import Stop, _child_env
from adamz.search.retries import MAX_DEATHS
from adamz.search.storage import open_storage
from adamz.search.worker import WorkerOptions, open_worker


def wait_for(condition: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that no init reaps does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def running(storage: str) -> list[object]:
    try:
        return [t for t in trials(storage, "quick") if t.state == TrialState.RUNNING]
    except KeyError:
        return []


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_imports_exits_quietly_with_the_shell_s_code(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "adamz.entry", "train", "--workload", "digits"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # train's imports (torch, Optuna) take seconds; the storage commands' less
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code
    assert "Traceback" not in err


@pytest.mark.slow
def test_the_launcher_never_imports_torch_its_workers_do(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=2, epochs=1)
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    launcher = (
        "import sys\n"
        "from adamz.cli import main\n"
        "code = main(['worker', 'quick', '--workers-per-device', '2'])\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", launcher], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert result.stdout.split() == ["0", "False"], result.stderr[-2000:]
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    assert sum(t.state == TrialState.COMPLETE for t in found) == 2  # trained by its workers


def test_the_workers_of_a_killed_launcher_stop_and_queue_their_trial(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=2, epochs=200, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    launcher = start_cli("worker", "quick", "--checkpoint-interval", "0", cwd=tmp_path)
    # a running trial's parameters are written a moment after it starts, as Optuna's are
    wait_for(lambda: any(t.params for t in running(storage)))
    [trial] = running(storage)
    child = trial.user_attrs["worker"]["pid"]  # type: ignore[attr-defined]
    launcher.send_signal(signal.SIGKILL)
    launcher.communicate(timeout=60)
    wait_for(lambda: not running(storage), timeout=60)
    wait_for(lambda: not alive(child), timeout=60)
    found = trials(storage, "quick")
    [retry] = [t for t in found if t.state == TrialState.WAITING]
    assert retry.system_attrs["stops"] == 1  # stopped, not dead: no death counted
    assert retry.params == trial.params  # type: ignore[attr-defined]


def test_a_user_s_omp_num_threads_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _child_env("cpu", total=1) == {"OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _child_env("cpu", total=16) == {}
    assert _child_env("cuda:1", total=2) == {"CUDA_VISIBLE_DEVICES": "1"}


def test_a_trial_past_its_death_limit_is_dropped_with_its_checkpoints_and_shown_so(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'drop.db'}"
    study_file = write_study(tmp_path, budget=2, epochs=1)
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    options = WorkerOptions(
        storage=url, checkpoint_dir=str(tmp_path), heartbeat_interval=0.1, grace_period=0.3
    )
    worker = open_worker("quick", options)
    storage = open_storage(url)
    doomed = worker.study.ask()  # a configuration that killed its worker MAX_DEATHS times
    trial_id = storage.get_trial_id_from_study_id_trial_number(worker.study_id, doomed.number)
    storage.set_trial_system_attr(trial_id, "deaths", MAX_DEATHS)
    storage.set_trial_system_attr(trial_id, "heartbeat", time.time() - 3600)  # and died again
    checkpoint = worker.objective.checkpoint_dir / f"trial-{doomed.number}-seed-0.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"state")
    worker.requeue_stale()  # the first sight of it
    assert checkpoint.exists()
    wait_for(
        lambda: (worker.storage.new_round(), worker.requeue_stale(), not checkpoint.exists())[2]
    )
    assert not checkpoint.exists()
    assert worker.study.get_trials(states=(TrialState.WAITING,)) == []
    status = run_cli("status", "quick", "--storage", url, "--format", "json", cwd=tmp_path)
    assert json.loads(status.stdout)["trials"]["dropped"] == 1
    table = run_cli("status", "quick", "--storage", url, cwd=tmp_path).stdout
    assert f"dropped: 1 trials whose workers died {MAX_DEATHS + 1} times" in table
    assert f"queued again after up to {MAX_DEATHS} deaths of its worker" in table
    worker.close()


def test_every_worker_option_has_help_with_its_default() -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "==SUPPRESS==" or a.choices]
    worker = subparsers.choices["worker"]  # type: ignore[index]
    # -v/-q are every command's flags, with no default of their own
    options = [
        a
        for a in worker._actions
        if a.option_strings and a.dest not in ("help", "verbose", "quiet")
    ]
    assert {a.dest for a in options} >= {"n_trials", "heartbeat_interval", "grace_period"}
    for action in options:
        assert "default" in (action.help or ""), action.option_strings


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            continue
    return {child for child in found if b"spawn_main" in _cmdline(child)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def start_launcher(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """``adamz-search worker ARGS`` as the console script runs it (signals handled from the
    first instant)."""
    return subprocess.Popen(
        [sys.executable, "-m", "adamz.entry", "worker", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_launcher_waiting_for_an_unreachable_storage_stops_on_sigterm(tmp_path: Path) -> None:
    launcher = start_launcher(
        "quick", "--storage", "postgresql://nobody@127.0.0.1:1/none", cwd=tmp_path
    )
    assert launcher.stderr is not None
    line = launcher.stderr.readline()
    while "is unreachable" not in line:  # waiting, for up to its patience (300 s)
        assert line, "the launcher ended before it waited"
        line = launcher.stderr.readline()
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 143
    assert "Traceback" not in err
    assert "gave up" not in err  # stopped, not given up


def test_a_launcher_stopped_while_its_worker_starts_exits_143_and_its_worker_with_it(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=2, epochs=1)
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    launcher = start_launcher("quick", cwd=tmp_path)
    wait_for(lambda: children_of(launcher.pid))
    [child] = children_of(launcher.pid)  # importing torch: its worker handles no signal yet
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 143
    assert not alive(child)
    assert "Worker failed" not in err  # a child ended by the stop is no failure
    assert "Traceback" not in err
    assert trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick") == []


def test_a_launcher_killed_while_its_worker_starts_leaves_no_worker_on_its_own(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=2, epochs=1)
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    launcher = start_launcher("quick", cwd=tmp_path)
    wait_for(lambda: children_of(launcher.pid))
    [child] = children_of(launcher.pid)
    launcher.send_signal(signal.SIGKILL)  # before the child could ask to die with it
    launcher.communicate(timeout=60)
    wait_for(lambda: not alive(child))
    assert trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick") == []


class Recorder:
    """A child process that prints the names of the signals it receives, as a launcher's
    child to :class:`Stop`."""

    SCRIPT = (
        "import signal, sys, time\n"
        "for s in (signal.SIGTERM, signal.SIGINT):\n"
        "    signal.signal(s, lambda n, f: print(signal.Signals(n).name, flush=True))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        self.pid = self.process.pid

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def received(self, count: int) -> list[str]:
        assert self.process.stdout is not None
        return [self.process.stdout.readline().strip() for _ in range(count)]


def test_the_stop_reaches_each_child_as_sigterm_then_a_second_signal_as_sigint() -> None:
    first, second = Recorder(), Recorder()
    try:
        with Stop() as stop:
            stop.adopt(first)  # type: ignore[arg-type]
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: set a flag, raise nothing
            assert stop.requested
            assert stop.code == 130
            assert first.received(1) == ["SIGTERM"]  # which a starting worker obeys at once
            stop.adopt(second)  # type: ignore[arg-type]  # started meanwhile
            assert second.received(1) == ["SIGTERM"]
            os.kill(os.getpid(), signal.SIGTERM)
            assert first.received(1) == ["SIGINT"]  # a stopping worker's "out now"
            assert second.received(1) == ["SIGINT"]
        assert stop.received == ["SIGINT", "SIGTERM"]
    finally:
        for recorder in (first, second):
            recorder.process.kill()
            recorder.process.communicate()
