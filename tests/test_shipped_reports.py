"""The reports the project ships agree with the defaults it ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RECOMMENDED = ROOT / "adamz" / "optim" / "presets" / "recommended.yaml"
RUNS = {
    "recommended": "AdamZ paper defaults",
    "exported_from_the_others": "AdamZ robust default (tuned without {workload})",
    "adam_lr_0.001": "Adam defaults (lr 0.001)",
}


@pytest.mark.parametrize("workload", ["digits", "circles", "mnist"])
def test_the_recommended_preset_quotes_its_held_out_reports(workload: str) -> None:
    preset = yaml.safe_load(RECOMMENDED.read_text())
    paper = yaml.safe_load((RECOMMENDED.parent / "paper.yaml").read_text())
    assert preset["hyperparameters"] == paper["hyperparameters"]  # what the holdout ran
    report = json.loads((ROOT / "reports" / f"holdout-{workload}" / "report.json").read_text())
    runs = report[f"holdout-{workload}"]["Seed replicates"]["numbers"]["runs"]
    quoted = preset["provenance"]["held_out"][workload]
    for key, label in RUNS.items():
        assert quoted[key] == pytest.approx(
            runs[label.format(workload=workload)]["median"], abs=5e-5
        )


def test_every_shipped_report_has_its_page_summary_and_numbers() -> None:
    folders = [
        path for path in (ROOT / "reports").iterdir() if path.is_dir() and path.name != "defaults"
    ]
    assert len(folders) >= 8
    for folder in folders:
        for name in ("report.html", "summary.md", "report.json"):
            assert (folder / name).is_file(), folder / name
        assert "../plotly.min.js" in (folder / "report.html").read_text()
    assert (ROOT / "reports" / "plotly.min.js").is_file()
