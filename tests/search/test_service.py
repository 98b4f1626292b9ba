"""The search service end to end: ``adamz-search`` create, worker, status and studies."""

from __future__ import annotations

import datetime
import json
import signal
import sqlite3
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages._rdb.models import TrialModel
from optuna.trial import TrialState
from search_helpers import cli, run_cli, start_cli, trials, write_study

from adamz.search import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def dump(database: Path) -> list[str] | None:
    """The database's content as SQL (its bytes change when SQLite merges its WAL file)."""
    if not database.exists():
        return None
    with sqlite3.connect(database) as connection:
        return list(connection.iterdump())


def states(storage: str, name: str) -> list[TrialState]:
    return [trial.state for trial in trials(storage, name)]


def test_two_workers_run_exactly_the_budget_on_sqlite(tmp_path: Path) -> None:
    # Trials long enough (about a second each) that both workers, started together, get some
    # even when one of them starts seconds after the other on a loaded machine.
    study_file = write_study(tmp_path, budget=6, epochs=24, enqueue_defaults=True)
    assert run_cli("create", str(study_file), cwd=tmp_path).returncode == 0
    worker = run_cli("worker", "quick", "--workers-per-device", "2", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    found = trials(storage, "quick")
    assert sum(trial.state in FINISHED for trial in found) == 6
    assert not [trial for trial in found if trial.state == TrialState.RUNNING]
    assert found[0].user_attrs["enqueued"] == ["library defaults", "paper settings"]
    assert found[0].params["lr"] == 0.01
    first = next(trial for trial in found if trial.state == TrialState.COMPLETE)
    worker = first.user_attrs["worker"]
    assert set(worker) == {"host", "pid", "device", "torch_version", "adamz_version"}
    assert worker["device"] == "cpu"
    assert first.user_attrs["run"]["wall_time_s"] > 0
    assert first.user_attrs["run"]["epochs_run"] == 24
    assert first.user_attrs["run"]["seeds"] == [0]
    assert first.user_attrs["run"]["result"]["controller"]["observed"] > 0
    assert len({trial.user_attrs["worker"]["pid"] for trial in found}) == 2


def test_the_study_stores_its_definition_digest_and_version(tmp_path: Path) -> None:
    study_file = write_study(tmp_path)
    run_cli("create", str(study_file), cwd=tmp_path)
    study = optuna.load_study(
        study_name="quick", storage=f"sqlite:///{tmp_path / 'adamz-search.db'}"
    )
    assert study.user_attrs["definition"]["budget"] == 4
    assert study.user_attrs["definition"]["search_space"]["optimizer"] == "adamz"
    assert len(study.user_attrs["digest"]) == 64
    assert study.user_attrs["study_file"]["text"] == study_file.read_text()
    assert study.user_attrs["adamz_version"]


def test_create_is_idempotent_and_refuses_a_different_definition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    study_file = write_study(tmp_path, budget=4)
    assert (
        cli("create", str(study_file), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)[0] == 0
    )
    code, _, err = cli(
        "create", str(study_file), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 0
    assert "same definition" in err
    write_study(tmp_path, budget=5)
    code, _, err = cli(
        "create", str(study_file), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 2
    assert "exists in the storage with a different definition" in err
    assert len(err.strip().splitlines()) == 1
    study = optuna.load_study(
        study_name="quick", storage=f"sqlite:///{tmp_path / 'adamz-search.db'}"
    )
    assert study.user_attrs["definition"]["budget"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "missing.yaml"], "missing.yaml: file: cannot be read"),
        (["create", "bad.yaml"], "bad.yaml: budget: must be an integer >= 1, got 0"),
        (["worker", "nosuch"], "Unknown study 'nosuch' in the storage"),
        (["worker", "bad.yaml"], "bad.yaml: budget: must be an integer >= 1, got 0"),
        (
            ["worker", "quick", "--workers-per-device", "0"],
            "Invalid --workers-per-device: must be >= 1, got 0",
        ),
        (
            ["worker", "quick", "--grace-period", "5", "--heartbeat-interval", "5"],
            "Invalid --grace-period: must exceed",
        ),
        (["worker", "quick", "--devices", "tpu"], "Invalid --devices 'tpu'"),
        (["status", "nosuch"], "Unknown study 'nosuch' in the storage"),
        (["status", "quick", "--storage", "notadb://x"], "Cannot open storage"),
    ],
)
def test_bad_input_gets_one_line_exit_2_and_leaves_the_storage_unchanged(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    write_study(tmp_path, name="bad", budget=0)
    database = tmp_path / "adamz-search.db"
    if args[0] != "create":
        cli(
            "create",
            str(write_study(tmp_path)),
            cwd=tmp_path,
            capsys=capsys,
            monkeypatch=monkeypatch,
        )
    before = dump(database)
    code, _, err = cli(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert dump(database) == before


def test_status_and_studies_report_trials_by_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        return cli(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)

    assert run("worker", str(write_study(tmp_path, budget=2)), "--single")[0] == 0
    status = json.loads(run("status", "quick", "--format", "json")[1])
    assert status["trials"]["complete"] + status["trials"]["pruned"] == 2
    assert status["best"]["number"] in (0, 1)
    assert set(status["best"]["params"]) == {"lr", "patience", "stagnation_period"}
    assert "best: trial" in run("status", "quick")[1]
    listing = json.loads(run("studies", "--format", "json")[1])
    assert [row["study"] for row in listing] == ["quick"]
    assert "quick" in run("studies")[1]


def test_status_shows_the_budget_the_workers_were_given_with_n_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        return cli(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)

    study_file = str(write_study(tmp_path, budget=3, epochs=1))
    assert run("worker", study_file, "--single", "--n-trials", "1")[0] == 0
    status = json.loads(run("status", "quick", "--format", "json")[1])
    assert (status["budget"], status["file_budget"]) == (1, 3)
    assert "budget 1 from the workers' --n-trials; the file's is 3" in run("status", "quick")[1]
    assert run("worker", "quick", "--single")[0] == 0  # back to the file's budget
    status = json.loads(run("status", "quick", "--format", "json")[1])
    assert (status["budget"], status["file_budget"]) == (3, 3)
    assert status["trials"]["complete"] + status["trials"]["pruned"] == 3


def test_eight_concurrent_workers_on_sqlite_raise_no_errors(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=16, epochs=1)
    result = run_cli(
        "worker", str(study_file), "--workers-per-device", "8", cwd=tmp_path, timeout=400
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    assert sum(trial.state in FINISHED for trial in found) == 16
    errors = [
        trial.user_attrs.get("error")
        for trial in found
        if trial.state == TrialState.FAIL and not trial.user_attrs.get("surplus")
    ]
    assert errors == []
    assert "database is locked" not in result.stderr


def wait_for_running_trial(
    storage: str, name: str, *, epochs: int = 1, timeout: float = 120
) -> optuna.trial.FrozenTrial:
    """The first RUNNING trial that has reported ``epochs`` epochs (so a checkpoint exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for trial in trials(storage, name):
                if trial.state == TrialState.RUNNING and len(trial.intermediate_values) >= epochs:
                    return trial
        except KeyError:
            pass
        time.sleep(0.1)
    raise AssertionError("no trial started running in time")


def test_a_sigkilled_worker_s_trial_is_retried_and_resumes_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=3, epochs=30, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    beat = ["--heartbeat-interval", "1", "--grace-period", "3", "--checkpoint-interval", "0"]
    doomed = start_cli("worker", "quick", "--single", *beat, cwd=tmp_path)
    killed = wait_for_running_trial(storage, "quick", epochs=2)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    survivor = run_cli("worker", "quick", "--single", *beat, cwd=tmp_path, timeout=300)
    assert survivor.returncode == 0, survivor.stderr[-2000:]

    found = trials(storage, "quick")
    assert sum(trial.state in FINISHED for trial in found) == 3
    assert TrialState.RUNNING not in [trial.state for trial in found]
    assert found[killed.number].state == TrialState.FAIL
    retry = next(
        trial for trial in found if trial.user_attrs["worker"].get("resumes_trial") == killed.number
    )
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.user_attrs["run"]["result"]["resumed_from_epoch"] >= 2
    assert not list((tmp_path / "checkpoints" / "quick").glob("*.pt"))


def test_a_trial_whose_worker_died_before_its_first_beat_does_not_hold_up_the_study(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=1, epochs=1)
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = open_storage(f"sqlite:///{tmp_path / 'adamz-search.db'}", heartbeat_interval=None)
    study = optuna.load_study(study_name="quick", storage=storage)
    orphan = study.ask()  # its worker was killed before the first beat: no heartbeat, ever
    with storage.scoped_session() as session:  # asked for well over a grace period ago
        session.execute(
            sqlalchemy.update(TrialModel)
            .where(TrialModel.trial_id == orphan._trial_id)
            .values(_datetime_start_utc=datetime.datetime(2000, 1, 1))
        )
        session.commit()
    beat = ["--heartbeat-interval", "1", "--grace-period", "2"]
    worker = run_cli("worker", "quick", "--single", *beat, cwd=tmp_path, timeout=120)
    assert worker.returncode == 0, worker.stderr[-2000:]
    found = study.get_trials(deepcopy=False)
    assert found[orphan.number].state == TrialState.FAIL
    [done] = [trial for trial in found if trial.state == TrialState.COMPLETE]
    assert done.system_attrs["failed_trial"] == orphan.number


def test_sigterm_stops_the_workers_and_queues_the_interrupted_trial(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=3, epochs=30, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    launcher = start_cli("worker", "quick", "--checkpoint-interval", "0", cwd=tmp_path)
    interrupted = wait_for_running_trial(storage, "quick")
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=60) == 0

    found = trials(storage, "quick")
    assert TrialState.RUNNING not in [trial.state for trial in found]
    assert found[interrupted.number].state == TrialState.FAIL
    assert found[interrupted.number].user_attrs["error"].startswith("WorkerStopped: SIGTERM")
    queued = [trial for trial in found if trial.state == TrialState.WAITING]
    assert [trial.params for trial in queued] == [interrupted.params]
    assert list((tmp_path / "checkpoints" / "quick").glob(f"trial-{interrupted.number}-*.pt"))

    resumed = run_cli("worker", "quick", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0
    retry = next(
        t
        for t in trials(storage, "quick")
        if t.user_attrs["worker"].get("resumes_trial") == interrupted.number
    )
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run"]["result"]["resumed_from_epoch"] >= 1


def test_a_diverging_trial_counts_at_chance_with_its_reason_and_the_study_goes_on(
    tmp_path: Path,
) -> None:
    space = tmp_path / "wild.yaml"
    space.write_text(
        "optimizer: sgd\nparameters:\n  lr: {type: float, low: 1.0e+18, high: 1.0e+20, log: true}\n"
    )
    study_file = write_study(tmp_path, budget=2, optimizer="sgd", search_space="wild.yaml")
    result = run_cli("worker", str(study_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    # it cost budget like any trial: complete, at chance (digits: 1 in 10), marked diverged
    assert [trial.state for trial in found] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert [trial.value for trial in found] == [0.1, 0.1]
    assert all(trial.user_attrs["run"]["diverged"] for trial in found)
    assert all(trial.user_attrs["run"]["stop_reason"].startswith("diverged") for trial in found)


def test_a_worker_whose_trials_keep_failing_stops_with_exit_1(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=50, workload={"name": "mnist", "epochs": 1})
    result = run_cli(
        "worker", str(study_file), "--data-dir", str(tmp_path / "nodata"), cwd=tmp_path
    )
    assert result.returncode == 1
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    assert [trial.state for trial in found] == [TrialState.FAIL] * 5
    assert "nodata" in found[0].user_attrs["error"]


@pytest.mark.usefixtures("postgres_url")
def test_two_workers_run_exactly_the_budget_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    study_file = write_study(tmp_path, budget=6)
    env = {"ADAMZ_STORAGE": postgres_url}
    assert run_cli("create", str(study_file), cwd=tmp_path, env=env).returncode == 0
    worker = run_cli("worker", "quick", "--workers-per-device", "2", cwd=tmp_path, env=env)
    assert worker.returncode == 0, worker.stderr[-2000:]
    found = trials(postgres_url.replace("postgresql://", "postgresql+psycopg://"), "quick")
    assert sum(trial.state in FINISHED for trial in found) == 6
    assert not (tmp_path / "adamz-search.db").exists()
