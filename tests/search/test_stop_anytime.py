"""SIGTERM at any moment of a launcher's life, on a busy machine: while it imports, opens the
storage, starts its worker, asks for the first trial, trains, or is between trials. Every
launcher exits promptly, with its worker, and leaves nothing RUNNING and no trial lost."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from search_helpers import run_cli, write_study
from stop_storm import storm


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigterm_at_random_moments_of_busy_launchers_lives_stops_each_promptly_losing_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'storm.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    # Trials of a few seconds, and a budget the storm never meets.
    study_file = write_study(tmp_path, budget=1000, epochs=25, pruner={"name": "none"})
    assert run_cli("create", str(study_file), "--storage", url, cwd=tmp_path).returncode == 0
    result = storm(url, "quick", tmp_path, signals=30, at_once=5, seed=1)
    print(f"\n{backend}: {result.figures()}")
    assert result.errors == []
    assert result.hung == 0, result.figures()
    assert max(result.exits) <= 10, result.figures()
    # 143, or ended by SIGTERM's default action before Python ran the script's first line.
    assert set(result.codes) <= {143, -signal.SIGTERM}, result.figures()
    assert result.orphans == []
    assert result.running_after_exit == []
    assert result.running == []
    assert result.lost == []
    assert result.finished > 0  # the storm let some trials finish, and they count
