"""``report --confirm K`` end to end: a replicate study run by workers, then the export; and
``report --search-replicates R``: each search run again, each replicate confirmed."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import cli, run_cli, trials, write_study

from adamz.cli._study_commands import create_study
from adamz.search.studies import load_study_file
from adamz.search.study_attrs import stored_definition
from adamz.search.worker import WorkerOptions, run_worker


@pytest.mark.slow
def test_confirm_reruns_the_top_trials_on_fresh_seeds_and_export_prefers_the_confirmed(
    tmp_path: Path,
) -> None:
    study_file = write_study(tmp_path, "tuned", budget=5, epochs=1)
    assert run_cli("worker", str(study_file), cwd=tmp_path).returncode == 0
    report = run_cli(
        "report", "tuned", "--confirm", "3", "--workers-per-device", "2", "--out", "rep",
        cwd=tmp_path,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    url = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    confirmation = trials(url, "confirm-tuned-k3")
    # Two workers that ask at once for the last queued run: the later one's new trial is refused
    # as surplus (recorded failed, never trained), so it is no part of the confirmation.
    surplus = [t for t in confirmation if t.user_attrs.get("surplus")]
    assert all(t.state == TrialState.FAIL and "run" not in t.user_attrs for t in surplus)
    confirmation = [t for t in confirmation if not t.user_attrs.get("surplus")]
    assert len(confirmation) == 9  # top 3 trials x 3 seeds
    assert len({(t.params["run"], t.params["seed"]) for t in confirmation}) == 9  # each once
    assert all(t.state == TrialState.COMPLETE for t in confirmation)
    assert {t.params["seed"] for t in confirmation} == {1000, 1001, 1002}
    tuned = optuna.load_study(study_name="tuned", storage=url)
    top3 = sorted(tuned.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.value)[:3]
    assert {t.params["run"] for t in confirmation} == {f"tuned #{t.number}" for t in top3}

    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    replicates = numbers["confirm-tuned-k3"]["Seed replicates"]["numbers"]
    assert set(replicates["runs"]) == {f"tuned #{t.number}" for t in top3}
    assert "Seed replicates" in (tmp_path / "rep" / "summary.md").read_text()

    exported = run_cli("export", "tuned", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    config = yaml.safe_load(exported.stdout)
    provenance = config["provenance"]
    assert "fresh seeds" in provenance["rule"]
    assert provenance["confirmation"]["study"] == "confirm-tuned-k3"
    chosen = replicates["runs"][provenance["confirmation"]["run"]]
    # chosen on the validation median over the fresh seeds; its test median is what is shown
    assert provenance["confirmation"]["selected_on"] == "val_accuracy"
    assert chosen["val_median"] == max(run["val_median"] for run in replicates["runs"].values())
    assert provenance["value"] == chosen["median"]
    assert chosen["ci95_median"] == [None, None]
    assert provenance["ci"] is None  # 3 seeds are too few for a 95 % interval of a median
    assert (provenance["metric"], provenance["selected_on"]) == ("test_accuracy", "val_accuracy")
    verdict = numbers["Verdict"]["Verdict"]["numbers"]["confirm-tuned-k3"]
    assert verdict["winners"]["tuned"]["run"] == provenance["confirmation"]["run"]

    again = run_cli("report", "tuned", "--confirm", "3", "--out", "rep", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.splitlines()[0] == (
        "Confirming: study confirm-tuned-k3 has run its 3 configurations x 3 seeds already"
    )
    assert "Nothing to do" not in again.stderr  # no worker started, no warning


@pytest.mark.slow
def test_confirm_refuses_studies_on_different_workloads_with_exit_2(tmp_path: Path) -> None:
    first = write_study(tmp_path, "first", budget=1, epochs=1)
    second = write_study(tmp_path, "second", budget=1, epochs=2)
    for path in (first, second):
        assert run_cli("worker", str(path), cwd=tmp_path).returncode == 0
    result = run_cli("report", "first", "second", "--confirm", "3", cwd=tmp_path)
    assert result.returncode == 2
    assert "one workload" in result.stderr
    assert "confirm-" not in "".join(
        optuna.get_all_study_names(f"sqlite:///{tmp_path / 'adamz-search.db'}")
    )


@pytest.mark.slow
def test_export_of_several_workloads_validates_every_candidate_on_each_of_them(
    tmp_path: Path,
) -> None:
    digits = write_study(tmp_path, "on-digits", budget=3, epochs=1)
    circles = write_study(
        tmp_path,
        "on-circles",
        budget=3,
        workload={"name": "circles", "epochs": 1, "train_size": 400},
    )
    for path in (digits, circles):
        assert run_cli("worker", str(path), cwd=tmp_path).returncode == 0
    exported = run_cli(
        "export", "on-digits", "on-circles", "--seeds", "2", "--out", "default.yaml",
        cwd=tmp_path,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    config = yaml.safe_load((tmp_path / "default.yaml").read_text())
    provenance = config["provenance"]
    # the margin in the unit of --margin: 1 point by default
    assert "behind the paper defaults by more than 1 points of val_accuracy" in provenance["rule"]
    table = provenance["table"]
    assert "paper defaults" in table
    assert all({"digits", "circles"} <= set(row) for row in table.values())
    recommended = table[provenance["recommended"]]
    assert recommended["excluded"] is None or provenance["paper_defaults_recommended"]
    for workload in ("digits", "circles"):
        assert recommended[workload]["diverged"] == 0
        assert recommended[workload]["seeds"] == 2
    # the table the user sees, and the validation studies that hold the runs
    assert "| candidate |" in exported.stderr
    url = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    names = optuna.get_all_study_names(url)
    assert sorted(name for name in names if name.startswith("validate-")) == sorted(
        provenance["validation_studies"]
    )
    import torch

    from adamz import AdamZ

    AdamZ.from_config(tmp_path / "default.yaml", [torch.zeros(2, requires_grad=True)])


@pytest.mark.slow
def test_search_replicates_rerun_each_search_on_its_own_sampler_seed_confirm_each_and_are_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    circles = {"name": "circles", "epochs": 1, "train_size": 200}
    adam_space = {
        "optimizer": "adam",
        "parameters": {"lr": {"type": "float", "low": 1e-3, "high": 0.05, "log": True}},
    }
    url = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    storage = optuna.storages.get_storage(url)
    for path in (
        write_study(tmp_path, "tuned-z", budget=6, workload=circles),
        write_study(
            tmp_path, "tuned-a", budget=6, workload=circles, optimizer="adam",
            search_space=adam_space,
        ),
    ):  # fmt: skip
        # the searches run in this process (a worker, without the launcher's start-up)
        spec = load_study_file(path)
        create_study(spec, storage)
        assert run_worker(spec.name, WorkerOptions(storage=url, population=6)).code == 0
    command = (
        "report", "tuned-z", "tuned-a", "--search-replicates", "2", "--confirm", "6",
        "--candidates", "1", "--population", "12", "--out", "rep", "--no-note",
        "--repeats", "1", "--fanova-trees", "2",
    )  # fmt: skip
    # in this process too: the workers it starts are processes of their own
    code, _, err = cli(*command, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err[-2000:]
    for name in ("tuned-z", "tuned-a"):
        original = stored_definition(name, storage)
        replicate = stored_definition(f"{name}~r2", storage)
        assert original is not None
        assert replicate is not None
        assert (original["sampler"]["seed"], replicate["sampler"]["seed"]) == (0, 1)
        assert {k for k in replicate if replicate[k] != original.get(k)} == {
            "name", "sampler", "description",
        }  # fmt: skip
        finished = [t for t in trials(url, f"{name}~r2") if t.state == TrialState.COMPLETE]
        assert len(finished) == 6
    # each replicate confirmed on seeds of its own
    for confirmation, first in (("confirm-tuned-z+tuned-a-k6-c1", 1000), (
        "confirm-tuned-z~r2+tuned-a~r2-k6-c1", 1006,
    )):  # fmt: skip
        runs = [t for t in trials(url, confirmation) if t.state == TrialState.COMPLETE]
        assert {t.params["seed"] for t in runs} == set(range(first, first + 6))
        assert len(runs) == 12
    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    over = numbers["Verdict"]["Verdict over search replicates"]["numbers"]["pairs"]
    assert [(pair["first"], pair["second"], pair["replicates"]) for pair in over] == [
        ("tuned-z", "tuned-a", [1, 2])
    ]
    curves = numbers["All studies"]["Budget curves"]["numbers"]["search_replicates"]
    assert curves["tuned-z"]["replicates"] == ["tuned-z", "tuned-z~r2"]

    code, _, again = cli(*command, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, again[-2000:]
    assert again.splitlines()[:4] == [
        "Replicating: study tuned-z~r2 has run its 6 trials, sampler seed 1 already",
        "Replicating: study tuned-a~r2 has run its 6 trials, sampler seed 1 already",
        "Confirming: study confirm-tuned-z+tuned-a-k6-c1 has run its 2 configurations x 6 "
        "seeds already",
        "Confirming: study confirm-tuned-z~r2+tuned-a~r2-k6-c1 has run its 2 configurations x "
        "6 seeds already",
    ]
    assert "Nothing to do" not in again  # no worker started, no warning
