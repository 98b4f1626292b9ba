"""SIGTERM in a worker: the handler sets a flag and raises nothing; the worker stops at the next
safe point (a training step, between trials), requeues its trials and exits; a second Ctrl-C
exits at once, a repeated SIGTERM changes nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from search_helpers import write_study

from adamz.cli._study_commands import create_study
from adamz.search import load_study_file, open_storage
from adamz.search.interrupts import STOP_CODES, Interrupts, WorkerStopped
from adamz.search.retries import requeued, retried_trial_number
from adamz.search.worker import Worker, WorkerOptions, open_worker


def sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_sets_the_flag_and_raises_only_at_the_next_check() -> None:
    stops: list[str] = []
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with Interrupts(on_stop=lambda: stops.append("stop")) as interrupts:
        sigterm_self()  # inside a storage write, say: it goes on
        reached = True
        assert interrupts.pending == "SIGTERM"
        assert stops == ["stop"]
        with pytest.raises(WorkerStopped, match="SIGTERM"):
            interrupts.check(1, 2, 3)  # a training step's on_step
    assert reached
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.parametrize(
    ("first", "second", "printed", "code"),
    [
        ("SIGINT", "SIGINT", ["still", "here"], STOP_CODES["SIGINT"]),
        ("SIGTERM", "SIGINT", ["still", "here"], STOP_CODES["SIGTERM"]),
        # The kernel's parent-death signal comes once per thread: the stop goes on.
        ("SIGTERM", "SIGTERM", ["still", "here", "SIGTERM", "after"], 0),
    ],
)
def test_a_second_ctrl_c_exits_at_once_with_the_first_signal_s_code(
    first: str, second: str, printed: list[str], code: int
) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from adamz.search.interrupts import Interrupts
        with Interrupts() as interrupts:
            os.kill(os.getpid(), signal.{first})
            print("still here", flush=True)
            os.kill(os.getpid(), signal.{second})
            time.sleep(0.5)
            print(interrupts.pending, flush=True)
        print("after", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == printed
    assert done.returncode == code


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    """A worker of a digits study in a SQLite storage, as ``adamz-search worker`` opens it."""
    torch.set_num_threads(1)
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    spec = load_study_file(write_study(tmp_path, budget=4, epochs=1))
    create_study(spec, open_storage(url))
    return open_worker(spec.name, WorkerOptions(storage=url, checkpoint_dir=str(tmp_path)))


def test_a_signal_while_the_trial_starts_fails_it_and_queues_it_again(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = worker.objective.worker_record

    def signal_then_record(*args: Any, **kwargs: Any) -> dict[str, Any]:
        sigterm_self()
        return record(*args, **kwargs)  # written all the same

    monkeypatch.setattr(worker.objective, "worker_record", signal_then_record)
    worker.run(None)
    assert worker.summary.code == 143
    assert worker.summary.reason == "stopped by SIGTERM"
    failed, retry = worker.study.get_trials(deepcopy=False)
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["worker"]["pid"] == os.getpid()
    assert retry.state == TrialState.WAITING
    assert retry.params == failed.params
    assert "error" not in retry.user_attrs
    assert retried_trial_number(retry) == failed.number
    assert retry.system_attrs["stops"] == 1


def test_a_signal_while_the_outcome_is_told_keeps_the_result(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    tell = worker.study.tell

    def signal_then_tell(*args: Any, **kwargs: Any) -> Any:
        sigterm_self()
        return tell(*args, **kwargs)

    monkeypatch.setattr(worker.study, "tell", signal_then_tell)
    worker.run(None)
    assert worker.summary.code == 143
    [trial] = worker.study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE
    assert 0.0 < trial.value <= 1.0  # type: ignore[operator]
    assert trial.user_attrs["worker"]["sampler_seed"] == worker.seed


SLOW_STORAGE_WORKER = """
import random, sys, time
from optuna.storages import RDBStorage
from adamz.search import WorkerOptions, run_worker

# Every storage call takes a while: a signal lands inside one most of the time.
for name in ("set_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
             "set_trial_state_values", "get_all_trials", "create_new_trial", "get_trial"):
    def slow(*args, _method=getattr(RDBStorage, name), **kwargs):
        time.sleep(random.uniform(0.0, 0.05))
        return _method(*args, **kwargs)
    setattr(RDBStorage, name, slow)
options = WorkerOptions(storage=sys.argv[1], checkpoint_dir=sys.argv[2], population=int(sys.argv[3]))
summary = run_worker("quick", options, on_ready=lambda: print("ready", flush=True))
sys.exit(summary.code)
"""


@pytest.mark.slow
@pytest.mark.parametrize("population", [1, 3])
def test_sigterm_at_random_moments_even_inside_storage_calls_loses_nothing(
    tmp_path: Path, population: int
) -> None:
    url = f"sqlite:///{tmp_path / 'random.db'}"
    spec = load_study_file(write_study(tmp_path, budget=40, epochs=3, population=population))
    create_study(spec, open_storage(url))
    generator = random.Random(population)
    exits = []
    for _ in range(4):
        process = subprocess.Popen(
            [sys.executable, "-c", SLOW_STORAGE_WORKER, url, str(tmp_path), str(population)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        time.sleep(generator.uniform(1.0, 4.0))
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
        exits.append(time.monotonic() - sent)
        assert process.returncode in (0, 143), err[-2000:]
        assert "Traceback" not in err
    study = optuna.load_study(study_name="quick", storage=url)
    found = study.get_trials(deepcopy=False)
    assert [t.number for t in found if t.state == TrialState.RUNNING] == []
    again = requeued(found)
    assert [t.number for t in found if t.state == TrialState.FAIL and t.number not in again] == []
    assert max(exits) < 10  # generous here; benchmarks/search_service.py stop measures it


STUCK_WORKER = """
import sys, time
from adamz.search import WorkerOptions, run_worker
from adamz.search.objective import TrialObjective

def set_up_for_ever(self, refs, lost, population=False):  # no training step comes
    time.sleep(600)

TrialObjective.train = set_up_for_ever
options = WorkerOptions(storage=sys.argv[1], checkpoint_dir=sys.argv[2])
run_worker("quick", options, exit_on_stop=True)
"""


def test_a_worker_whose_trial_reaches_no_safe_point_is_stopped_by_its_own_thread(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'stuck.db'}"
    spec = load_study_file(write_study(tmp_path, budget=4, epochs=1))
    create_study(spec, open_storage(url))
    process = subprocess.Popen(
        [sys.executable, "-c", STUCK_WORKER, url, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    study = optuna.load_study(study_name="quick", storage=url)
    deadline = time.monotonic() + 120
    while not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)  # not the 600 s of the set-up
    assert process.returncode == 143, err[-2000:]
    assert "1 requeued" in err
    assert "stopped by SIGTERM" in err
    failed, retry = study.get_trials(deepcopy=False)
    assert failed.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING
    assert retried_trial_number(retry) == failed.number
    assert retry.system_attrs["stops"] == 1
