"""Workers that train populations: K trials at once, each reported, told, retried on its own."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState
from search_helpers import run_cli, start_cli, trials, write_study
from test_service import wait_for_running_trial

from adamz.search import WorkerOptions, open_storage, run_worker
from adamz.search.objective import Outcome
from adamz.search.worker import UNREACHABLE_CODE, open_worker
from adamz.training import RunConfig, train

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def test_a_population_worker_runs_the_budget_and_each_trial_is_its_single_run(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=7, population=3, pruner={"name": "none"})
    result = run_cli("worker", str(study_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "7 trials (7 complete, 0 pruned, 0 failed, 0 requeued)" in result.stderr

    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    assert [trial.state for trial in found] == [TrialState.COMPLETE] * 7
    # Three populations: 3, 3, and the 1 trial the budget had left.
    assert sorted(trial.user_attrs["worker"]["population"] for trial in found[:6]) == [3] * 6
    assert "population" not in found[6].user_attrs["worker"]
    for trial in (found[0], found[4]):
        run = trial.user_attrs["run"]
        assert run["result"]["population_size"] == 3
        assert run["epochs_run"] == 2
        single = train(RunConfig("digits", "adamz", trial.params, seed=0, epochs=2, train_size=400))
        assert single.final_metrics is not None
        assert trial.value == pytest.approx(single.final_metrics["val_accuracy"], abs=0.005)
        assert run["metrics"]["test_accuracy"] == pytest.approx(
            single.final_metrics["test_accuracy"], abs=0.005
        )


def test_the_pruner_stops_each_trial_of_a_population_on_its_own(tmp_path: Path) -> None:
    pruner = {"name": "threshold", "lower": 0.2}  # prunes the trials no better than chance
    space = tmp_path / "mixed.yaml"
    space.write_text(
        "optimizer: sgd\nparameters:\n  lr: {type: categorical, choices: [1.0e-6, 0.5]}\n"
    )
    # Twelve random draws of two values: both drawn but with probability 1 - 2 / 4096.
    study_file = write_study(
        tmp_path, budget=12, epochs=3, population=12, optimizer="sgd", search_space="mixed.yaml",
        pruner=pruner,
    )  # fmt: skip
    result = run_cli("worker", str(study_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    slow = [trial for trial in found if trial.params["lr"] == 1e-6]
    fast = [trial for trial in found if trial.params["lr"] == 0.5]
    assert slow
    assert fast
    assert all(trial.state == TrialState.PRUNED for trial in slow)
    assert all(trial.user_attrs["run"]["stop_reason"] == "pruned after epoch 1" for trial in slow)
    assert all(trial.state == TrialState.COMPLETE for trial in fast)
    assert all(len(trial.intermediate_values) == 3 for trial in fast)


@pytest.mark.slow
def test_sigterm_requeues_every_trial_of_the_population_and_each_resumes(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=3, epochs=40, population=3, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    launcher = start_cli("worker", "quick", "--checkpoint-interval", "0", cwd=tmp_path)
    wait_for_running_trial(storage, "quick", epochs=2)
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert "3 requeued" in err

    interrupted = trials(storage, "quick")
    assert [trial.state for trial in interrupted] == [TrialState.FAIL] * 3 + [
        TrialState.WAITING
    ] * 3
    checkpoints = tmp_path / "checkpoints" / "quick"
    assert len(list(checkpoints.glob("trial-*-seed-0.pt"))) == 3
    status = json.loads(run_cli("status", "quick", "--format", "json", cwd=tmp_path).stdout)
    assert status["trials"]["requeued"] == 3

    resumed = run_cli("worker", "quick", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    found = trials(storage, "quick")
    retries = [trial for trial in found if "resumes_trial" in trial.user_attrs["worker"]]
    assert sorted(trial.user_attrs["worker"]["resumes_trial"] for trial in retries) == [0, 1, 2]
    for retry in retries:
        assert retry.state == TrialState.COMPLETE
        assert retry.params == found[retry.user_attrs["worker"]["resumes_trial"]].params
        assert retry.user_attrs["run"]["result"]["resumed_from_epoch"] >= 2
    assert not list(checkpoints.glob("*.pt"))


@pytest.mark.slow
def test_an_optimizer_without_a_batched_form_trains_one_trial_at_a_time_and_says_so(
    tmp_path: Path,
) -> None:
    space = tmp_path / "adagrad.yaml"
    space.write_text(
        "optimizer: adagrad\nparameters:\n  lr: {type: float, low: 0.001, high: 0.1}\n"
    )
    study_file = write_study(
        tmp_path, budget=2, population=4, optimizer="adagrad", search_space="adagrad.yaml"
    )
    result = run_cli("worker", str(study_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "adagrad has no batched form" in result.stderr
    assert "No population: these runs train one at a time" in result.stderr
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    assert [trial.state for trial in found] == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_a_confirmation_runs_its_replicates_as_populations(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, "tuned", budget=3, epochs=1)
    assert run_cli("worker", str(study_file), cwd=tmp_path).returncode == 0
    report = run_cli(
        "report", "tuned", "--confirm", "4", "--candidates", "2", "--population", "8",
        "--out", "rep", cwd=tmp_path,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    confirmation = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "confirm-tuned-k4-c2")
    assert [trial.state for trial in confirmation] == [TrialState.COMPLETE] * 8
    assert {trial.user_attrs["worker"]["population"] for trial in confirmation} == {8}
    assert len({(t.params["run"], t.params["seed"]) for t in confirmation}) == 8


def test_a_trial_failed_by_another_worker_leaves_the_population_and_the_rest_finish(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=3, epochs=40, population=3, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    options = WorkerOptions(
        storage=storage, heartbeat_interval=0.2, grace_period=30, checkpoint_interval=0
    )
    taken: list[optuna.trial.FrozenTrial] = []

    def fail_one() -> None:
        """As a stale check by another worker does: fail a trial under its running worker."""
        taken.append(wait_for_running_trial(storage, "quick", epochs=2))
        store = open_storage(storage)
        study_id = store.get_study_id_from_name("quick")
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, taken[0].number)
        store.set_trial_state_values(trial_id, TrialState.FAIL)

    other_worker = threading.Thread(target=fail_one)
    other_worker.start()
    summary = run_worker("quick", options)  # signal handlers: in the main thread
    other_worker.join(timeout=60)
    # Not this worker's to tell (the worker that failed it queues it again); as nobody did
    # here, a new trial fills the budget.
    assert summary.requeued == 1
    assert summary.complete == 3
    found = trials(storage, "quick")
    assert found[taken[0].number].state == TrialState.FAIL
    assert "run" not in found[taken[0].number].user_attrs
    # It stopped training within an epoch or two of being failed, not after all 40.
    assert len(found[taken[0].number].intermediate_values) < 10
    assert [t.state for t in found if t.number != taken[0].number] == [TrialState.COMPLETE] * 3


def test_a_trial_failed_by_another_worker_after_its_last_report_is_not_told(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=3, population=3, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    worker = open_worker("quick", WorkerOptions(storage=storage, checkpoint_dir=str(tmp_path)))
    worker.storage.new_round()
    [trial] = worker.ask(1)
    ref = worker.objective.ref(trial)
    other = open_storage(storage)  # another worker's stale check
    other.set_trial_state_values(ref.trial_id, TrialState.FAIL)
    study = worker.study
    assert study.get_trials()[trial.number].state == TrialState.RUNNING  # as the round read it
    assert worker._tell([ref], {trial.number: Outcome(value=0.9)}) is None
    worker.close()  # written: told behind, and refused
    assert (worker.summary.complete, worker.summary.requeued) == (0, 1)
    assert trials(storage, "quick")[trial.number].state == TrialState.FAIL


class GoesDown:
    """A storage whose every call fails as a stopped database's does, from the first epoch
    report on (each failure after a short wait, as a connection attempt takes)."""

    def __init__(self, storage: object) -> None:
        self.storage = storage
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.storage, name)

        def call(*args: object, **kwargs: object) -> object:
            self.down = self.down or name == "set_trial_intermediate_value"
            if self.down:
                time.sleep(0.05)
                raise sqlalchemy.exc.OperationalError(
                    "SELECT 1", None, OSError("connection refused")
                )
            return method(*args, **kwargs)

        return call


@pytest.mark.parametrize("population", [1, 4])
def test_past_the_patience_a_population_leaves_its_trials_to_resume_as_a_lone_trial_does(
    tmp_path: Path, population: int
) -> None:
    # 400 epochs outlast the patience however loaded the machine: no trial ends before it.
    study_file = write_study(
        tmp_path, budget=4, epochs=400, population=population, pruner={"name": "none"}
    )
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    options = WorkerOptions(
        storage=storage, checkpoint_dir=str(tmp_path), storage_patience=0.3, checkpoint_interval=0
    )
    worker = open_worker("quick", options)
    worker.storage.storage = GoesDown(worker.storage.storage)  # type: ignore[assignment]
    worker.run(None)
    assert worker.summary.code == UNREACHABLE_CODE, worker.summary.reason
    assert worker.summary.failed == 0
    assert "will resume from their checkpoints" in worker.summary.reason
    found = trials(storage, "quick")
    assert [trial.state for trial in found] == [TrialState.RUNNING] * population
    assert not [
        trial for trial in found if "error" in trial.user_attrs or "run" in trial.user_attrs
    ]
    checkpoints = sorted((tmp_path / "quick").glob("trial-*-seed-0.pt"))
    assert [path.name for path in checkpoints] == [
        f"trial-{n}-seed-0.pt" for n in range(population)
    ]
