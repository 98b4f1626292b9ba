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

from adamz.search import TrialObjective, load_study_file, open_storage
from adamz.search import worker as worker_module
from adamz.search.heartbeat import Heartbeat
from adamz.search.interrupts import Interrupts, WorkerStopped


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
def trial_runner(tmp_path: Path) -> Any:
    """``run()`` runs one trial of a digits study the way a worker does; returns the study."""
    torch.set_num_threads(1)
    spec = load_study_file(write_study(tmp_path, budget=4, epochs=1))
    storage = open_storage(f"sqlite:///{tmp_path / 'stop.db'}", heartbeat_interval=60)
    study = optuna.create_study(storage=storage, direction="maximize")
    objective = TrialObjective(spec, budget=4, device="cpu", checkpoint_dir=tmp_path)

    def run() -> tuple[optuna.Study, str | None]:
        with Interrupts(on_stop=lambda: None) as interrupts:
            worker_module._run_trial(study, objective, Heartbeat(storage), interrupts)
        return study, interrupts.pending

    return run


def test_a_signal_during_the_first_beat_fails_the_trial_and_queues_it_again(
    trial_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_beat = Heartbeat._first_beat

    def beat_then_signal(self: Heartbeat, *args: Any) -> bool:
        sigterm_self()
        return first_beat(self, *args)  # written all the same

    monkeypatch.setattr(Heartbeat, "_first_beat", beat_then_signal)
    study, pending = trial_runner()
    assert pending == "SIGTERM"
    failed, retry = study.get_trials(deepcopy=False)
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"] == "WorkerStopped: SIGTERM"
    assert "run" not in failed.user_attrs  # stopped before it trained
    assert retry.state == TrialState.WAITING
    assert retry.params == failed.params
    assert "error" not in retry.user_attrs
    assert retry.system_attrs["failed_trial"] == failed.number


def test_a_signal_while_the_outcome_is_told_keeps_the_result(
    trial_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tell = worker_module._tell_with_warning

    def signal_then_tell(*args: Any, **kwargs: Any) -> Any:
        sigterm_self()
        return tell(*args, **kwargs)

    monkeypatch.setattr(worker_module, "_tell_with_warning", signal_then_tell)
    study, pending = trial_runner()
    assert pending == "SIGTERM"
    [trial] = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE
    assert 0.0 < trial.value <= 1.0  # type: ignore[operator]
