"""Replicate studies: fixed configurations over seeds, queued at creation, run by workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState
from search_helpers import run_cli, trials

from adamz.search import load_study_file, open_storage
from adamz.search import objective as objective_module
from adamz.search.errors import SpecError
from adamz.search.objective import Outcome, TrialRef
from adamz.search.replicates import ReplicateSpec
from adamz.search.retries import MAX_FAULTS, retried_trial_number
from adamz.search.worker import Worker, WorkerOptions, open_worker, run_worker
from adamz.training import RunConfig, train_runs


def replicate_file(directory: Path, **changes: Any) -> Path:
    content: dict[str, Any] = {
        "kind": "replicates",
        "name": "reps",
        "workload": {"name": "digits", "epochs": 1, "train_size": 300},
        "seeds": 3,
        "first_seed": 7,
        "runs": [
            {"label": "AdamZ", "optimizer": "adamz", "hyperparameters": {"lr": 0.01}},
            {"label": "SGD", "optimizer": "sgd", "hyperparameters": {"lr": 0.05}},
        ],
        **changes,
    }
    path = directory / "reps.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def created_replicates(directory: Path) -> Worker:
    """A worker of the replicate study of :func:`replicate_file`, created as a user does."""
    path = replicate_file(directory)
    storage_url = f"sqlite:///{directory / 'reps.db'}"
    assert run_cli("create", str(path), "--storage", storage_url, cwd=directory).returncode == 0
    return open_worker("reps", WorkerOptions(storage=storage_url, checkpoint_dir=str(directory)))


def run_one_trial(worker: Worker) -> str | None:
    with worker.interrupts:
        return worker.run_trials(1)


def test_a_replicate_file_queues_every_run_on_the_same_seeds(tmp_path: Path) -> None:
    spec = load_study_file(replicate_file(tmp_path))
    assert isinstance(spec, ReplicateSpec)
    assert spec.budget == 6
    queued = [params for params, _ in spec.queued_trials()]
    assert sorted((p["run"], p["seed"]) for p in queued) == [
        ("AdamZ", 7), ("AdamZ", 8), ("AdamZ", 9), ("SGD", 7), ("SGD", 8), ("SGD", 9),
    ]  # fmt: skip
    assert spec.from_definition(spec.definition, source="stored").digest == spec.digest


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"repeats": 3}, r"reps\.yaml: repeats: unknown key"),
        ({"seeds": 0}, r"seeds: must be a positive integer"),
        ({"runs": []}, r"runs: must be a non-empty list"),
        (
            {"runs": [{"label": "a", "optimizer": "adam"}, {"label": "a", "optimizer": "sgd"}]},
            r"runs: labels must be unique",
        ),
        ({"runs": [{"label": "a", "optimizer": "adamq"}]}, r"runs\[0\]: .*adamq"),
        (
            {"runs": [{"label": "a", "optimizer": "adam", "hyperparameters": {"patience": 3}}]},
            r"runs\[0\]: Unknown hyperparameter 'patience'",
        ),
        (
            {"runs": [{"label": "a", "optimizer": "adamz", "hyperparameters": {"lr": -1}}]},
            r"runs\[0\]: .*lr",
        ),
    ],
)
def test_bad_replicate_files_fail_in_one_line_naming_the_key(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message) as raised:
        load_study_file(replicate_file(tmp_path, **changes))
    assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_workers_run_each_run_on_each_seed_once(tmp_path: Path) -> None:
    path = replicate_file(tmp_path)
    assert run_cli("create", str(path), cwd=tmp_path).returncode == 0
    worker = run_cli("worker", "reps", "--workers-per-device", "2", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr[-2000:]
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "reps")
    done = [t for t in found if t.state == TrialState.COMPLETE]
    assert sorted((t.params["run"], t.params["seed"]) for t in done) == [
        ("AdamZ", 7), ("AdamZ", 8), ("AdamZ", 9), ("SGD", 7), ("SGD", 8), ("SGD", 9),
    ]  # fmt: skip
    for trial in done:
        result = trial.user_attrs["run"]["result"]
        assert result["seed"] == trial.params["seed"]
        assert result["optimizer"] == {"AdamZ": "adamz", "SGD": "sgd"}[trial.params["run"]]
    status = run_cli("status", "reps", "--format", "json", cwd=tmp_path)
    assert '"budget": 6' in status.stdout


def test_a_run_can_take_an_exported_config_or_a_preset(tmp_path: Path) -> None:
    exported = {
        "format": "adamz-config/1",
        "optimizer": "adamz",
        "hyperparameters": {"lr": 0.02, "patience": 50},
        "provenance": {"study": "tuned"},
    }
    (tmp_path / "exported.yaml").write_text(yaml.safe_dump(exported))
    runs = [{"label": "tuned", "config": "exported.yaml"}, {"label": "paper", "config": "paper"}]
    spec = load_study_file(replicate_file(tmp_path, runs=runs))
    assert isinstance(spec, ReplicateSpec)
    assert spec.runs[0]["hyperparameters"] == {"lr": 0.02, "patience": 50}
    assert spec.runs[0]["source"]["provenance"] == {"study": "tuned"}
    assert spec.runs[1]["hyperparameters"]["overshoot_factor"] == 0.5
    # The stored definition holds the values themselves: it parses without the file.
    (tmp_path / "exported.yaml").unlink()
    assert ReplicateSpec.from_definition(spec.definition, source="stored").digest == spec.digest
    with pytest.raises(SpecError, match=r"runs\[0\]\.config: exported\.yaml .* cannot be read"):
        load_study_file(replicate_file(tmp_path, runs=runs))


def run_with_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: int
) -> tuple[int, list[FrozenTrial]]:
    """Run the study in this process, where SGD on seed 8 fails its first ``failures`` times."""
    path = replicate_file(tmp_path)
    storage = f"sqlite:///{tmp_path / 'reps.db'}"
    assert run_cli("create", str(path), "--storage", storage, cwd=tmp_path).returncode == 0
    failed = 0

    def flaky_train_runs(configs: list[RunConfig], **kwargs: Any) -> Any:
        nonlocal failed
        if ("sgd", 8) in [(c.optimizer, c.seed) for c in configs] and failed < failures:
            failed += 1
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return train_runs(configs, **kwargs)

    monkeypatch.setattr(objective_module, "train_runs", flaky_train_runs)
    options = WorkerOptions(storage=storage, checkpoint_dir=str(tmp_path / "checkpoints"))
    code = run_worker("reps", options).code
    return code, trials(storage, "reps")


def pairs(found: list[FrozenTrial], state: TrialState) -> list[tuple[str, int]]:
    return sorted((t.params["run"], t.params["seed"]) for t in found if t.state == state)


def test_a_run_that_fails_with_an_exception_is_queued_again_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, found = run_with_failures(tmp_path, monkeypatch, failures=2)
    assert code == 0
    assert pairs(found, TrialState.COMPLETE) == [
        ("AdamZ", 7), ("AdamZ", 8), ("AdamZ", 9), ("SGD", 7), ("SGD", 8), ("SGD", 9),
    ]  # fmt: skip
    assert pairs(found, TrialState.FAIL) == [("SGD", 8), ("SGD", 8)]
    retried = next(t for t in found if t.state == TrialState.COMPLETE and t.params == {
        "run": "SGD", "seed": 8})  # fmt: skip
    assert "error" not in retried.user_attrs  # the failure's message stays with the failure
    assert not [t for t in found if t.state == TrialState.WAITING]


def test_a_run_that_always_fails_stops_the_worker_without_sampling_other_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, found = run_with_failures(tmp_path, monkeypatch, failures=100)
    assert code == 1
    assert pairs(found, TrialState.COMPLETE) == [
        ("AdamZ", 7), ("AdamZ", 8), ("AdamZ", 9), ("SGD", 7), ("SGD", 9),
    ]  # fmt: skip
    assert pairs(found, TrialState.FAIL) == [("SGD", 8)] * (1 + MAX_FAULTS)
    assert all(
        "illegal memory access" in t.user_attrs["error"]
        for t in found
        if t.state == TrialState.FAIL
    )
    assert len(found) == 5 + 1 + MAX_FAULTS  # nothing sampled, nothing left queued


def test_a_queued_run_refused_as_surplus_is_queued_again(tmp_path: Path) -> None:
    """A worker that takes a queued run when the budget is already full does not lose it."""
    worker = created_replicates(tmp_path)
    spec, study = worker.spec, worker.study
    worker.objective.budget = 0
    run_one_trial(worker)
    found = study.get_trials(deepcopy=False)
    refused = found[0]
    assert refused.state == TrialState.FAIL
    assert refused.user_attrs["surplus"] is True
    assert "run" not in refused.user_attrs  # never trained
    queued = [t for t in found if t.state == TrialState.WAITING]
    [retry] = [t for t in queued if retried_trial_number(t) == refused.number]
    assert retry.system_attrs["fixed_params"] == refused.system_attrs["fixed_params"]
    assert "surplus" not in retry.user_attrs  # it will run
    assert len(found) == spec.budget + 1
    worker.close()


def test_a_sampled_trial_of_a_replicate_study_takes_no_place_from_a_queued_run(
    tmp_path: Path,
) -> None:
    """Two workers asked for the last queued run; the one that found none got a sampled trial."""
    worker = created_replicates(tmp_path)
    study, spec = worker.study, worker.spec
    for _ in study.get_trials(states=(TrialState.WAITING,)):  # taken by other workers
        study.ask()
    assert run_one_trial(worker) is None
    sampled = study.trials[-1]
    assert sampled.state == TrialState.FAIL
    assert sampled.user_attrs["error"] == "SurplusTrialError: no queued run is left to take"
    assert "fixed_params" not in sampled.system_attrs
    assert "run" not in sampled.user_attrs  # never trained
    assert len(study.trials) == spec.budget + 1  # not queued again


def test_a_trial_failed_as_stale_while_its_worker_stalled_is_queued_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's stale check fails and queues the trial just as its own worker fails it."""
    worker = created_replicates(tmp_path)
    study = worker.study

    def crash_after_stale_check(refs: list[TrialRef], *args: Any, **kwargs: Any) -> Any:
        # Another worker found this one stalled past the grace period, failed and queued it.
        [ref] = refs
        storage = open_storage(f"sqlite:///{tmp_path / 'reps.db'}")
        storage.set_trial_state_values(ref.trial_id, TrialState.FAIL)
        worker.requeue(storage.get_trial(ref.trial_id), "death")
        return {ref.number: Outcome(error=RuntimeError("CUDA error: an illegal memory access"))}

    monkeypatch.setattr(worker.objective, "train", crash_after_stale_check)
    run_one_trial(worker)
    failed = study.trials[0]
    retries = [t for t in study.trials if retried_trial_number(t) == failed.number]
    assert failed.state == TrialState.FAIL
    assert len(retries) == 1
    assert retries[0].system_attrs["deaths"] == 1
