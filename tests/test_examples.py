"""The example workload of one's own code, run end to end as its README says, in small: tune,
confirm on fresh seeds, export; its RMSE is minimised throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from adamz import AdamZ

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "diabetes"


def adamz_search(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``adamz-search ARGS`` in ``cwd``, the repository's root on the path as it is in the
    README's commands (they run from there)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "adamz.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )


@pytest.mark.slow
def test_the_readme_commands_tune_confirm_and_export_adamz_on_the_example(tmp_path: Path) -> None:
    readme = (ROOT / "examples" / "README.md").read_text()
    for command in (
        "worker examples/diabetes/diabetes-adamz.yaml",
        "report diabetes-adamz --confirm",
        "export diabetes-adamz",
    ):
        assert command in readme
    # The shipped study, with a small budget and few epochs.
    study = yaml.safe_load((EXAMPLE / "diabetes-adamz.yaml").read_text())
    study["budget"], study["workload"]["epochs"] = 6, 4
    study["search_space"] = str(ROOT / "search_spaces" / "adamz.yaml")
    study["pruner"] = {"name": "none"}
    (tmp_path / "diabetes-adamz.yaml").write_text(yaml.safe_dump(study))

    tuned = adamz_search("worker", "diabetes-adamz.yaml", "--population", "3", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    confirmed = adamz_search(
        "report", "diabetes-adamz", "--confirm", "3", "--out", "rep", cwd=tmp_path
    )
    assert confirmed.returncode == 0, confirmed.stderr[-2000:]
    exported = adamz_search(
        "export", "diabetes-adamz", "--out", "adamz-diabetes.yaml", cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr[-2000:]

    storage = f"sqlite:///{tmp_path / 'adamz-search.db'}"
    assert (
        optuna.load_study(study_name="diabetes-adamz", storage=storage).direction.name == "MINIMIZE"
    )
    assert {"report.html", "summary.md", "report.json"} <= {
        p.name for p in (tmp_path / "rep").iterdir()
    }
    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    curve = numbers["All studies"]["Budget curves"]["numbers"]["diabetes-adamz"]
    expected_best = np.array(curve["expected_best"])
    assert curve["metric"] == "val_rmse"
    assert np.all(np.diff(expected_best) <= 1e-12)  # the expected lowest RMSE falls with k
    assert expected_best[-1] < expected_best[0]
    summary = (tmp_path / "rep" / "summary.md").read_text()
    verdict = summary.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    assert "test_rmse: lower is better" in verdict
    assert "expected best val_rmse (lower is better)" in summary
    # a minimised metric's margin in its own units, and where it came from
    margin_line = next(line for line in verdict.splitlines() if "equivalence margin" in line)
    assert margin_line.startswith("- The equivalence margin is ±")
    assert " test_rmse: derived: 0.5 x the confirmed runs' median seed standard deviation" in (
        margin_line
    )

    config = yaml.safe_load((tmp_path / "adamz-diabetes.yaml").read_text())
    assert config["provenance"]["workload"] == "examples.diabetes.task:DiabetesRegression"
    assert (config["provenance"]["selected_on"], config["provenance"]["metric"]) == (
        "val_rmse",
        "test_rmse",
    )
    assert config["provenance"]["confirmation"]["study"] == "confirm-diabetes-adamz-k3"
    AdamZ.from_config(tmp_path / "adamz-diabetes.yaml", [torch.zeros(2, requires_grad=True)])


BREAST_CANCER = ROOT / "examples" / "breast_cancer"


def small_study(name: str, tmp_path: Path) -> None:
    """The shipped study ``name`` with a small budget and few epochs, in ``tmp_path``."""
    study = yaml.safe_load((BREAST_CANCER / f"{name}.yaml").read_text())
    study["budget"], study["workload"]["epochs"] = 4, 2
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(study))


@pytest.mark.slow
def test_the_readme_commands_select_on_a_whole_split_roc_auc_and_reuse_a_confirmation(
    tmp_path: Path,
) -> None:
    readme = (ROOT / "examples" / "README.md").read_text()
    for command in (
        "worker examples/breast_cancer/breast-cancer-adamz.yaml",
        "worker examples/breast_cancer/breast-cancer-adam.yaml",
        "report breast-cancer-adamz --confirm 10",
        "report breast-cancer-adamz breast-cancer-adam --confirm 10",
        "export breast-cancer-adamz",
    ):
        assert command in readme, command
    for name in ("breast-cancer-adamz", "breast-cancer-adam"):
        small_study(name, tmp_path)  # search_space: adamz names the shipped space: no path
        tuned = adamz_search("worker", f"{name}.yaml", "--population", "4", cwd=tmp_path)
        assert tuned.returncode == 0, tuned.stderr[-2000:]
    alone = adamz_search("report", "breast-cancer-adamz", "--confirm", "10", "--candidates",
                         "1", "--population", "10", "--out", "alone", cwd=tmp_path)  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-2000:]
    both = adamz_search(
        "report", "breast-cancer-adamz", "breast-cancer-adam", "--confirm", "10",
        "--candidates", "1", "--population", "10", "--out", "rep", cwd=tmp_path,
    )  # fmt: skip
    assert both.returncode == 0, both.stderr[-2000:]
    # AdamZ's 10 seeds are not trained again: only Adam's are
    assert "reusing 10 finished runs of confirm-breast-cancer-adamz-k10-c1" in both.stderr
    exported = adamz_search("export", "breast-cancer-adamz", "--out", "adamz.yaml", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "Chosen by confirmation confirm-breast-cancer-adamz+breast-cancer-adam-k10-c1" in (
        exported.stderr
    )

    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    verdict = numbers["Verdict"]["Verdict"]["numbers"]
    (confirmation,) = verdict.values()
    assert (confirmation["metric"], confirmation["selected_on"]) == ("test_auc", "val_auc")
    assert confirmation["margin_source"].startswith("derived: 0.5 x the confirmed runs'")
    assert confirmation["plain"][0].startswith("On BreastCancerClassification, ")
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert summary.split("## Verdict\n\n", 1)[1].startswith("- **On BreastCancerClassification")
    config = yaml.safe_load((tmp_path / "adamz.yaml").read_text())
    assert config["provenance"]["selected_on"] == "val_auc"
    AdamZ.from_config(tmp_path / "adamz.yaml", [torch.zeros(2, requires_grad=True)])
