"""The search service end to end: ``adamz-search`` create, worker, status and studies."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import cli, run_cli, start_cli, storage_of, trials, write_study

from adamz.search.retries import outcomes
from adamz.search.study_attrs import stored_definition, stored_digest

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def dump(database: Path) -> list[str] | None:
    """The database's content as SQL (its bytes change when SQLite merges its WAL file)."""
    if not database.exists():
        return None
    with sqlite3.connect(database) as connection:
        return list(connection.iterdump())


def states(storage: str, name: str) -> list[TrialState]:
    return [trial.state for trial in trials(storage, name)]


@pytest.mark.slow
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
    assert set(worker) == {
        "host", "pid", "device", "torch_version", "adamz_version", "sampler_seed",
    }  # fmt: skip
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
    definition = stored_definition(study.study_name, storage_of(study))
    assert definition is not None
    assert definition["budget"] == 4
    assert definition["search_space"]["optimizer"] == "adamz"
    assert len(stored_digest(study.study_name, storage_of(study)) or "") == 64
    assert study.user_attrs["study_file"] == str(study_file)
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
    assert (stored_definition(study.study_name, storage_of(study)) or {})["budget"] == 4


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

    assert run_cli("worker", str(write_study(tmp_path, budget=2)), cwd=tmp_path).returncode == 0
    long_name = "a-study-whose-name-is-longer-than-any-column-of-the-table"
    run("create", str(write_study(tmp_path, name=long_name, budget=3)))
    status = json.loads(run("status", "quick", "--format", "json")[1])
    assert status["trials"]["complete"] + status["trials"]["pruned"] == 2
    assert status["best"]["number"] in (0, 1)
    assert status["metric"] == "val_accuracy"
    assert set(status["best"]["params"]) == {"lr", "patience", "stagnation_period"}
    assert "best: trial" in run("status", "quick")[1]
    listing = json.loads(run("studies", "--format", "json")[1])
    assert [row["study"] for row in listing] == ["quick", long_name]
    header, *rows = run("studies")[1].splitlines()
    assert header.split()[:3] == ["study", "metric", "budget"]
    assert [row.split()[:3] for row in rows] == [
        ["quick", "val_accuracy", "2"],
        [long_name, "val_accuracy", "3"],
    ]
    budget_end = header.index("budget") + len("budget")
    assert all(row[budget_end - 1] != " " and row[budget_end] == " " for row in rows)


@pytest.mark.slow
def test_n_trials_limits_one_invocation_and_stores_nothing(tmp_path: Path) -> None:
    study_file = str(write_study(tmp_path, budget=3, epochs=1))
    worker = run_cli("worker", study_file, "--n-trials", "1", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert "1 trials (1 complete" in worker.stderr
    assert "--n-trials reached" in worker.stderr
    status = json.loads(run_cli("status", "quick", "--format", "json", cwd=tmp_path).stdout)
    assert (status["budget"], status["file_budget"]) == (3, 3)
    assert status["trials"]["complete"] + status["trials"]["pruned"] == 1


def test_the_budget_command_changes_the_budget_for_every_worker_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        return cli(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)

    run("create", str(write_study(tmp_path, budget=3, epochs=1)))
    code, _, err = run("budget", "quick", "1")
    assert code == 0
    assert err.strip() == (
        "Study quick: budget changed from 3 to 1 finished trials (the file's is 3)."
    )
    assert "budget 1, set by 'adamz-search budget'; the file's is 3" in run("status", "quick")[1]
    worker = run_cli("worker", "quick", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert len([s for s in states(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")]) == 1
    code, _, err = run("budget", "quick", "0")
    assert code == 2
    assert "Invalid budget: must be an integer >= 1, got 0." in err


def test_a_worker_on_a_finished_study_says_nothing_to_do(tmp_path: Path) -> None:
    study_file = str(write_study(tmp_path, budget=1, epochs=1))
    assert run_cli("worker", study_file, cwd=tmp_path).returncode == 0
    again = run_cli("worker", "quick", cwd=tmp_path)
    assert again.returncode == 0
    assert again.stderr.strip() == (
        "Nothing to do: study quick has met its budget (1 of 1 trials finished; "
        "'adamz-search budget' raises it)."
    )


@pytest.mark.parametrize("command", ["status quick", "studies", "report quick", "export quick"])
def test_read_only_commands_on_a_missing_sqlite_file_fail_in_one_line_and_create_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    database = tmp_path / "nothing-here.db"
    args = [*command.split(), "--storage", f"sqlite:///{database}"]
    code, _, err = cli(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2
    assert err.strip() == (
        f"adamz-search: error: No storage at {database}: the SQLite file does not exist."
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_eight_concurrent_workers_on_sqlite_raise_no_errors(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=16, epochs=1)
    result = run_cli(
        "worker", str(study_file), "--workers-per-device", "8", cwd=tmp_path, timeout=400
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    assert sum(trial.state in FINISHED for trial in found) == 16
    # No trial failed by an error or dropped; a failed one may only be refused as surplus,
    # queued again, or ended unrun once the budget was met (two workers asked for one place).
    counts = outcomes(found)
    errors = [t.user_attrs["error"] for t in found if "error" in t.user_attrs]
    assert (counts["fail"], counts["dropped"]) == (0, 0), (counts, errors)
    assert all(e.startswith("SurplusTrialError") for e in errors), errors
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


@pytest.mark.slow
def test_a_sigkilled_worker_s_trial_is_retried_and_resumes_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, budget=3, epochs=30, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    beat = ["--heartbeat-interval", "1", "--grace-period", "3", "--checkpoint-interval", "0"]
    launcher = start_cli("worker", "quick", *beat, cwd=tmp_path)
    killed = wait_for_running_trial(storage, "quick", epochs=2)
    os.kill(killed.user_attrs["worker"]["pid"], signal.SIGKILL)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 1  # its worker was killed
    assert "was killed by SIGKILL" in err
    survivor = run_cli("worker", "quick", *beat, cwd=tmp_path, timeout=300)
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
    assert retry.system_attrs["deaths"] == 1
    assert retry.user_attrs["run"]["result"]["resumed_from_epoch"] >= 2
    assert not list((tmp_path / "checkpoints" / "quick").glob("*.pt"))
    status = json.loads(run_cli("status", "quick", "--format", "json", cwd=tmp_path).stdout)
    assert status["trials"]["requeued"] == 1
    assert status["trials"]["fail"] == 0


@pytest.mark.slow
def test_sigterm_stops_the_workers_and_queues_the_interrupted_trial(tmp_path: Path) -> None:
    study_file = write_study(tmp_path, budget=3, epochs=30, pruner={"name": "none"})
    run_cli("create", str(study_file), cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    launcher = start_cli("worker", "quick", "--checkpoint-interval", "0", cwd=tmp_path)
    interrupted = wait_for_running_trial(storage, "quick")
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert "1 requeued" in err  # the worker's summary

    found = trials(storage, "quick")
    assert TrialState.RUNNING not in [trial.state for trial in found]
    assert found[interrupted.number].state == TrialState.FAIL
    stopped = found[interrupted.number].user_attrs["run"]["stop_reason"]
    assert stopped == "interrupted (WorkerStopped: SIGTERM)"
    assert "error" not in found[interrupted.number].user_attrs  # not its training's fault
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


def test_status_studies_and_the_dashboard_note_say_first_that_every_trial_diverged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna_dashboard

    space = tmp_path / "wild.yaml"
    space.write_text(
        "optimizer: sgd\nparameters:\n  lr: {type: float, low: 1.0e+18, high: 1.0e+20, log: true}\n"
    )
    study_file = write_study(tmp_path, budget=2, optimizer="sgd", search_space="wild.yaml")
    assert run_cli("worker", str(study_file), cwd=tmp_path).returncode == 0
    _, out, _ = cli("status", "quick", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    lines = out.splitlines()
    assert lines[0].endswith(": every trial diverged (2 of 2 finished)")
    [best] = [line for line in lines if line.startswith("best:")]
    assert best.endswith("value 0.1 (a diverged trial's chance value, not a result)")
    _, out, _ = cli(
        "status", "quick", "--format", "json", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    assert json.loads(out)["diverged"] == {"diverged": 2, "finished": 2, "best_is_chance": True}
    _, out, _ = cli("studies", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    header, row = out.splitlines()
    assert header.split()[-2:] == ["diverged", "result"]
    assert row.split()[-4:] == ["all", "best", "0.1000", "(chance)"]
    study = optuna.load_study(
        study_name="quick", storage=f"sqlite:///{tmp_path / 'adamz-search.db'}"
    )
    note = optuna_dashboard.get_note(study)  # written by the launcher once its workers ended
    assert note.startswith("> **Diverged:** Every trial diverged (2 of 2 finished)")


@pytest.mark.parametrize(("population", "failed"), [(1, 5), (4, 8)])
def test_a_worker_whose_trials_keep_failing_with_one_error_stops_with_exit_1(
    tmp_path: Path, population: int, failed: int
) -> None:
    study_file = write_study(tmp_path, budget=50, workload={"name": "mnist", "epochs": 1})
    result = run_cli(
        "worker", str(study_file), "--data-dir", str(tmp_path / "nodata"),
        "--population", str(population), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    found = trials(f"sqlite:///{tmp_path / 'adamz-search.db'}", "quick")
    # Five trials in a row, counted one by one: a population stops after its second round.
    assert [trial.state for trial in found] == [TrialState.FAIL] * failed
    assert "nodata" in found[0].user_attrs["error"]
    [line] = [line for line in result.stderr.splitlines() if "failed with the same error" in line]
    assert f"trials failed with the same error (the last, trial {failed - 1}: " in line
    assert "nodata" in line


@pytest.mark.slow
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
