"""Replicate studies: fixed configurations over seeds, queued at creation, run by workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from search_helpers import run_cli, trials

from adamz.search import TrialObjective, load_study_file, open_storage
from adamz.search import objective as objective_module
from adamz.search.errors import SpecError
from adamz.search.heartbeat import Heartbeat
from adamz.search.interrupts import Interrupts
from adamz.search.replicates import ReplicateSpec
from adamz.search.retries import MAX_RETRIES
from adamz.search.studies import AnySpec
from adamz.search.worker import WorkerOptions, _run_trial, run_worker
from adamz.training import RunConfig, train


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


def created_replicates(directory: Path) -> tuple[optuna.Study, RDBStorage, AnySpec]:
    """The replicate study of :func:`replicate_file`, created as a user does, opened as a
    worker opens it: the study, its storage and its spec."""
    path = replicate_file(directory)
    storage_url = f"sqlite:///{directory / 'reps.db'}"
    assert run_cli("create", str(path), "--storage", storage_url, cwd=directory).returncode == 0
    storage = open_storage(storage_url, heartbeat_interval=60)
    assert isinstance(storage, RDBStorage)
    return optuna.load_study(study_name="reps", storage=storage), storage, load_study_file(path)


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

    def flaky_train(config: RunConfig, **kwargs: Any) -> Any:
        nonlocal failed
        if (config.optimizer, config.seed) == ("sgd", 8) and failed < failures:
            failed += 1
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return train(config, **kwargs)

    monkeypatch.setattr(objective_module, "train", flaky_train)
    options = WorkerOptions(storage=storage, checkpoint_dir=str(tmp_path / "checkpoints"))
    code = run_worker("reps", options)
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
    assert pairs(found, TrialState.FAIL) == [("SGD", 8)] * (1 + MAX_RETRIES)
    assert all(
        "illegal memory access" in t.user_attrs["error"]
        for t in found
        if t.state == TrialState.FAIL
    )
    assert len(found) == 5 + 1 + MAX_RETRIES  # nothing sampled, nothing left queued


def test_a_queued_run_refused_as_surplus_is_queued_again(tmp_path: Path) -> None:
    """A worker that takes a queued run when the budget is already full does not lose it."""
    study, storage, spec = created_replicates(tmp_path)
    full = TrialObjective(spec, budget=0, device="cpu", checkpoint_dir=tmp_path)
    with Interrupts(on_stop=lambda: None) as interrupts:
        _run_trial(study, full, Heartbeat(storage), interrupts)
    found = study.get_trials(deepcopy=False)
    refused = found[0]
    assert refused.state == TrialState.FAIL
    assert refused.user_attrs["surplus"] is True
    assert "run" not in refused.user_attrs  # never trained
    queued = [t for t in found if t.state == TrialState.WAITING]
    [retry] = [t for t in queued if t.system_attrs.get("failed_trial") == refused.number]
    assert retry.system_attrs["fixed_params"] == refused.system_attrs["fixed_params"]
    assert "surplus" not in retry.user_attrs  # it will run
    assert len(found) == spec.budget + 1


def test_a_sampled_trial_of_a_replicate_study_takes_no_place_from_a_queued_run(
    tmp_path: Path,
) -> None:
    """Two workers asked for the last queued run; the one that found none got a sampled trial."""
    study, storage, spec = created_replicates(tmp_path)
    for waiting in study.get_trials(states=(TrialState.WAITING,)):  # taken by other workers
        storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    objective = TrialObjective(spec, budget=spec.budget, device="cpu", checkpoint_dir=tmp_path)
    with Interrupts(on_stop=lambda: None) as interrupts:
        assert _run_trial(study, objective, Heartbeat(storage), interrupts) is None
    sampled = study.trials[-1]
    assert sampled.state == TrialState.FAIL
    assert sampled.user_attrs["error"] == "SurplusTrialError: no queued run is left to take"
    assert "fixed_params" not in sampled.system_attrs
    assert len(study.trials) == spec.budget + 1  # not queued again
    with storage.scoped_session() as session:  # refused at its first beat: it took no place
        assert models.TrialHeartbeatModel.where_trial_id(sampled._trial_id, session) is None


def test_a_trial_failed_as_stale_while_its_worker_stalled_is_queued_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's stale check fails and queues the trial just as its own worker fails it."""
    study, storage, spec = created_replicates(tmp_path)
    objective = TrialObjective(spec, budget=spec.budget, device="cpu", checkpoint_dir=tmp_path)

    def crash(trial: optuna.Trial, *, admitted: bool) -> float:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def stale_check(study: optuna.Study, trial: FrozenTrial, *args: object) -> None:
        # Runs between the worker's read of its trial and its write of the failed state.
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial._trial_id))

    monkeypatch.setattr(objective, "run", crash)
    monkeypatch.setattr(study.sampler, "after_trial", stale_check)
    with Interrupts(on_stop=lambda: None) as interrupts:
        _run_trial(study, objective, Heartbeat(storage), interrupts)
    failed = study.trials[0]
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed.number]
    assert failed.state == TrialState.FAIL
    assert len(retries) == 1
