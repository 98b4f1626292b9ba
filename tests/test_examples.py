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
        "report", "diabetes-adamz", "--confirm", "2", "--out", "rep", cwd=tmp_path
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

    config = yaml.safe_load((tmp_path / "adamz-diabetes.yaml").read_text())
    assert config["provenance"]["workload"] == "examples.diabetes.task:DiabetesRegression"
    assert (config["provenance"]["selected_on"], config["provenance"]["metric"]) == (
        "val_rmse",
        "test_rmse",
    )
    assert config["provenance"]["confirmation"]["study"] == "confirm-diabetes-adamz-k2"
    AdamZ.from_config(tmp_path / "adamz-diabetes.yaml", [torch.zeros(2, requires_grad=True)])
