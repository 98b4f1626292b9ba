"""Today's optimizers come from an optional extra: without its package, one line and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adamz.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def without_prodigyopt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # `import prodigyopt` raises


@pytest.mark.usefixtures("without_prodigyopt")
def test_train_with_a_missing_package_says_how_to_install_it_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["train", "--workload", "circles", "--optimizer", "prodigy", "--epochs", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert "pip install 'adamz-search[optimizers]'" in line
    assert "prodigyopt" in line


@pytest.mark.usefixtures("without_prodigyopt")
def test_creating_a_study_of_a_missing_package_says_how_to_install_it_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    code = main(["create", str(ROOT / "studies" / "circles-prodigy.yaml"), "--storage", storage])
    captured = capsys.readouterr()
    assert code == 2
    [line] = captured.err.strip().splitlines()
    assert "optimizer" in line
    assert "pip install 'adamz-search[optimizers]'" in line
