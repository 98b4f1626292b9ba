"""A worker killed outright (SIGKILL: no handler, no flush) while its storage writes trials'
reports and ends behind (:class:`~adamz.search.cache.WorkerStorage`): every trial the storage
shows finished has all it recorded, and nothing finished is lost when another worker takes
over."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState
from search_helpers import run_cli, trials, write_study

EPOCHS = 4
BUDGET = 48
WORKER = (
    "import sys\n"
    "from adamz.search import WorkerOptions, run_worker\n"
    "run_worker('quick', WorkerOptions(storage=sys.argv[1], checkpoint_dir=sys.argv[2],\n"
    "    population=4, heartbeat_interval=0.2, grace_period=1.0, checkpoint_interval=0))\n"
)


def finished(storage: str) -> list[FrozenTrial]:
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [trial for trial in trials(storage, "quick") if trial.state in done]


def assert_recorded_whole(trial: FrozenTrial) -> None:
    """A finished trial has its run record, every report its run made, and its value."""
    run = trial.user_attrs.get("run")
    assert run is not None, f"trial {trial.number} finished without its run record"
    assert trial.value is not None
    if trial.state == TrialState.COMPLETE:
        assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1)), trial.number
        assert trial.value == pytest.approx(run["metrics"]["val_accuracy"])
    else:
        assert run["stop_reason"].startswith("pruned after epoch"), run["stop_reason"]
        last = int(run["stop_reason"].split()[-1])
        assert sorted(trial.intermediate_values) == list(range(1, last + 1)), trial.number


@pytest.mark.slow
def test_a_worker_killed_at_random_moments_loses_nothing_finished(tmp_path: Path) -> None:
    study_file = write_study(
        tmp_path, budget=BUDGET, epochs=EPOCHS, pruner={"name": "median", "n_warmup_steps": 1}
    )
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    command = [sys.executable, "-c", WORKER, storage, str(tmp_path / "checkpoints")]
    rng = random.Random(0)
    seen: dict[int, FrozenTrial] = {}
    kills = 0
    deadline = time.monotonic() + 240
    while kills < 3 and time.monotonic() < deadline:
        worker = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        before = len(finished(storage))
        while len(finished(storage)) <= before and worker.poll() is None:
            time.sleep(0.05)  # until it has finished one more trial: its writer is busy
        time.sleep(rng.uniform(0.0, 0.5))  # then at a random moment of the next rounds
        if worker.poll() is not None:
            break  # the budget is met: nothing left to kill
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=60)
        kills += 1
        for trial in finished(storage):
            assert_recorded_whole(trial)
            if trial.number in seen:  # finished before an earlier kill: unchanged
                assert (trial.state, trial.value) == (
                    seen[trial.number].state,
                    seen[trial.number].value,
                )
            seen[trial.number] = trial
    assert kills >= 2
    last = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )  # takes over the killed workers' trials once they are stale, and ends the budget
    assert last.returncode == 0, last.stderr[-2000:]
    found = trials(storage, "quick")
    assert not [trial for trial in found if trial.state == TrialState.RUNNING]
    assert len(finished(storage)) >= BUDGET
    for trial in finished(storage):
        assert_recorded_whole(trial)
    for number, before in seen.items():
        assert (found[number].state, found[number].value) == (before.state, before.value)
