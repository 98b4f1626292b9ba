"""A replicate study's result in ``studies``, ``status`` and the dashboard note: each run's
median over its finished seeds, never its luckiest seed as a best."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from search_helpers import cli, storage_of

from adamz.search.study_attrs import note_header

REPLICATES = {
    "kind": "replicates",
    "name": "reps",
    "workload": {"name": "digits", "epochs": 1, "train_size": 300},
    "seeds": 3,
    "first_seed": 7,
    "runs": [
        {"label": "AdamZ", "optimizer": "adamz", "hyperparameters": {"lr": 0.01}},
        {"label": "SGD", "optimizer": "sgd", "hyperparameters": {"lr": 0.05}},
    ],
}


def test_studies_status_and_the_note_show_a_replicate_studys_median_per_run_not_a_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna_dashboard

    def run(*args: str) -> str:
        code, out, _ = cli(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 0
        return out

    (tmp_path / "reps.yaml").write_text(yaml.safe_dump(REPLICATES))
    run("create", "reps.yaml")
    study = optuna.load_study(
        study_name="reps", storage=f"sqlite:///{tmp_path / 'adamz-search.db'}"
    )
    # AdamZ's luckiest seed (0.98) is no result; SGD's third seed has not finished
    values = {("AdamZ", 7): 0.90, ("SGD", 7): 0.80, ("AdamZ", 8): 0.98, ("SGD", 8): 0.84}
    values[("AdamZ", 9)] = 0.92
    for _ in values:
        trial = study.ask()  # the queued (run, seed) pairs, in order
        key = (trial.suggest_categorical("run", ["AdamZ", "SGD"]), trial.suggest_int("seed", 7, 9))
        study.tell(trial, values[key])

    header, row = run("studies").splitlines()
    assert header.split()[-2:] == ["diverged", "result"]
    assert row.endswith("median AdamZ 0.9200 (3 of 3 seeds), SGD 0.8200 (2 of 3 seeds)")
    assert "0.98" not in row
    [listed] = json.loads(run("studies", "--format", "json"))
    assert listed["best_value"] is None
    assert listed["run_medians"] == [
        {"run": "AdamZ", "median": 0.92, "finished": 3, "seeds": 3},
        {"run": "SGD", "median": pytest.approx(0.82), "finished": 2, "seeds": 3},
    ]

    status = run("status", "reps")
    assert "best" not in status.replace("no best trial", "")
    assert (
        "median per run: test_accuracy over each run's finished seeds (no best trial; "
        "importance does not apply: fixed configurations)\n"
        "  AdamZ 0.92 (3 of 3 seeds)\n"
        "  SGD 0.82 (2 of 3 seeds)\n"
    ) in status
    assert json.loads(run("status", "reps", "--format", "json"))["best"] is None

    optuna_dashboard.save_note(study, "## Report\n\nThe summary.")
    for _ in range(2):  # the line is replaced, not repeated
        note_header(study, storage_of(study))
    first, blank, *rest = optuna_dashboard.get_note(study).splitlines()
    assert first == (
        "> **Median per run:** AdamZ 0.9200 (3 of 3 seeds), SGD 0.8200 (2 of 3 seeds) "
        "(test_accuracy over each run's finished seeds; no best trial; importance does not "
        "apply: fixed configurations)"
    )
    assert (blank, rest) == ("", ["## Report", "", "The summary."])
