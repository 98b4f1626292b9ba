"""Helpers for the search-service tests: small study files and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import yaml

SPACE = {
    "optimizer": "adamz",
    "parameters": {
        "lr": {"type": "float", "low": 1e-3, "high": 0.05, "log": True},
        "patience": {"type": "int", "low": 10, "high": 40},
        "stagnation_period": {"type": "int", "low": 2, "high": 10},
    },
}


def write_study(
    directory: Path, name: str = "quick", *, budget: int = 4, epochs: int = 2, **changes: object
) -> Path:
    """A study file (and its search space) for the digits workload that trains in a second."""
    (directory / "space.yaml").write_text(yaml.safe_dump(SPACE))
    study = {
        "name": name,
        "workload": {"name": "digits", "epochs": epochs, "train_size": 400},
        "optimizer": "adamz",
        "search_space": "space.yaml",
        "sampler": {"name": "tpe", "seed": 0},
        "budget": budget,
        **changes,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def run_cli(
    *args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``adamz-search ARGS`` in ``cwd``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "adamz.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "adamz.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def cli(*args: str, cwd: Path, capsys: object, monkeypatch: object) -> tuple[int, str, str]:
    """``adamz-search ARGS`` run in this process (no interpreter start-up): code, out, err."""
    from adamz.cli import main

    monkeypatch.chdir(cwd)  # type: ignore[attr-defined]
    code = main(list(args))
    captured = capsys.readouterr()  # type: ignore[attr-defined]
    return code, captured.out, captured.err


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` was made on (a test may look inside; the package passes it)."""
    return study._storage


def with_storage(study: optuna.Study) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """``study`` and its storage, as ``load_study_data`` takes them."""
    return study, storage_of(study)
