"""SIGTERM in a worker: it interrupts training at once, and waits for any storage write."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from search_helpers import write_study

from adamz.cli._study_commands import create_study
from adamz.search import load_study_file, open_storage
from adamz.search.interrupts import Interrupts, WorkerStopped
from adamz.search.worker import Worker, WorkerOptions, open_worker


def sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_outside_an_allowed_block_waits_for_the_next_one() -> None:
    stops: list[str] = []
    with Interrupts(on_stop=lambda: stops.append("stop")) as interrupts:
        sigterm_self()  # a storage write, say: it goes on
        assert interrupts.pending == "SIGTERM"
        assert stops == ["stop"]
        with pytest.raises(WorkerStopped, match="SIGTERM"), interrupts.allowed():
            raise AssertionError("the block ran although a signal was pending")


def test_a_signal_inside_an_allowed_block_raises_there_and_later_ones_are_ignored() -> None:
    reached = []
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def interrupted_block() -> None:
        with interrupts.allowed():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the signal")

    with Interrupts(on_stop=lambda: None) as interrupts:
        with pytest.raises(WorkerStopped, match="SIGINT"):
            interrupted_block()
        sigterm_self()  # the worker is already stopping: ignored, not fatal
    assert reached == []
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    """A worker of a digits study in a SQLite storage, as ``adamz-search worker`` opens it."""
    torch.set_num_threads(1)
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    spec = load_study_file(write_study(tmp_path, budget=4, epochs=1))
    create_study(spec, open_storage(url))
    return open_worker(spec.name, WorkerOptions(storage=url, checkpoint_dir=str(tmp_path)))


def run_one_trial(worker: Worker) -> str | None:
    """Run one trial as the worker's loop does; the signal that asked it to stop, if any."""
    with Interrupts(on_stop=worker.keep_checkpoints) as interrupts:
        worker.run_trial(interrupts)
    return interrupts.pending


def test_a_signal_while_the_trial_starts_fails_it_and_queues_it_again(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = worker.objective.worker_record

    def signal_then_record(trial: optuna.Trial) -> dict[str, Any]:
        sigterm_self()
        return record(trial)  # written all the same

    monkeypatch.setattr(worker.objective, "worker_record", signal_then_record)
    assert run_one_trial(worker) == "SIGTERM"
    failed, retry = worker.study.get_trials(deepcopy=False)
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"] == "WorkerStopped: SIGTERM"
    assert "run" not in failed.user_attrs  # stopped before it trained
    assert retry.state == TrialState.WAITING
    assert retry.params == failed.params
    assert "error" not in retry.user_attrs
    assert retry.system_attrs["failed_trial"] == failed.number
    assert retry.system_attrs["stops"] == 1


def test_a_signal_while_the_outcome_is_told_keeps_the_result(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    tell = worker.study.tell

    def signal_then_tell(*args: Any, **kwargs: Any) -> Any:
        sigterm_self()
        return tell(*args, **kwargs)

    monkeypatch.setattr(worker.study, "tell", signal_then_tell)
    assert run_one_trial(worker) == "SIGTERM"
    [trial] = worker.study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE
    assert 0.0 < trial.value <= 1.0  # type: ignore[operator]
    assert trial.user_attrs["worker"]["sampler_seed"] == worker.seed
