"""``adamz-search train``: one run from the command line, JSON out, one-line errors, exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from adamz.cli import main
from adamz.cli._base import UsageError
from adamz.cli._train import parse_assignments

QUICK = ["train", "--workload", "digits", "--epochs", "1"]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Train on one CPU thread: the models are tiny, and on a machine busy with other work
    (the test suite's own subprocesses, a worker) two threads spin against each other and
    make a one-second run take twenty."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_prints_the_result_record_as_json_and_progress_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, *QUICK, "--optimizer", "adam", "--set", "lr=0.02", "--seed", "1")
    assert code == 0
    record = json.loads(out)
    assert (record["workload"], record["optimizer"], record["seed"]) == ("digits", "adam", 1)
    assert record["hyperparameters"]["lr"] == 0.02
    assert 0.5 < record["final_metrics"]["val_accuracy"] <= 1.0
    assert 0.5 < record["final_metrics"]["test_accuracy"] <= 1.0
    assert record["stop_reason"] == "completed"
    assert "digits/adam epoch 1/1: loss " in err


def test_threads_option_sets_torchs_cpu_threads(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[int] = []
    monkeypatch.setattr("torch.set_num_threads", requested.append)
    assert run(capsys, *QUICK, "--threads", "1")[0] == 0
    assert requested == [1]


def test_protocol_overrides_are_applied_and_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, *QUICK, "--batch-size", "100", "--train-size", "300", "--test-size", "all"
    )
    assert code == 0
    assert json.loads(out)["protocol"] == {
        "epochs": 1,
        "batch_size": 100,
        "train_size": 240,
        "val_size": 60,
        "test_size": 450,
    }


def test_checkpoint_option_resumes_a_finished_run_without_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    checkpoint = str(tmp_path / "run.pt")
    first = json.loads(run(capsys, *QUICK, "--checkpoint", checkpoint)[1])
    second = json.loads(run(capsys, *QUICK, "--checkpoint", checkpoint)[1])
    assert second == first


def test_checkpoint_of_another_run_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    checkpoint = str(tmp_path / "run.pt")
    assert run(capsys, *QUICK, "--checkpoint", checkpoint)[0] == 0
    code, _, err = run(capsys, *QUICK, "--seed", "5", "--checkpoint", checkpoint)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "belongs to another run (seed there: 0, here: 5)" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "imagenet"], r"Unknown workload 'imagenet': must be one of circles, "),
        (["--workload", "digits", "--optimizer", "lamb"], r"Unknown optimizer 'lamb': must be "),
        (
            ["--workload", "digits", "--set", "momentum=0.9"],
            r"Unknown hyperparameter 'momentum' for optimizer 'adamz': must be one of lr, ",
        ),
        (
            ["--workload", "digits", "--set", "overshoot_factor=2"],
            r"Invalid overshoot_factor: must be in \(0, 1\), got 2\.$",
        ),
        (["--workload", "digits", "--set", "lr=fast"], r"Invalid lr: must be a number, got 'fast'"),
        (["--workload", "digits", "--set", "lr"], r"--set expects KEY=VALUE, got 'lr'\.$"),
        (["--workload", "digits", "--set", "lr=1", "--set", "lr=2"], r"--set lr is given more "),
        (["--workload", "digits", "--set", "betas=[0.9"], r"--set betas: the value is not YAML"),
        (["--workload", "digits", "--seed", "-1"], r"Invalid seed: must be an integer >= 0"),
        (["--workload", "digits", "--device", "toaster"], r"Invalid device: .*'toaster'\.$"),
        (
            ["--workload", "digits", "--train-size", "5000"],
            r"Invalid train_size: must be at most the 1347 examples of the training split",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "train", *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("adamz-search: error: ")
    assert err.rstrip("\n") == err.strip()
    assert re.search(message, err.strip())


def test_missing_mnist_data_says_where_to_put_the_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "train", "--workload", "mnist", "--data-dir", str(tmp_path))
    assert code == 2
    assert len(err.splitlines()) == 1
    assert f"MNIST not found in {tmp_path / 'MNIST' / 'raw'}: put train-images-idx3-ubyte" in err


def test_data_dir_defaults_to_the_environment_variable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAMZ_DATA_DIR", str(tmp_path / "from-env"))
    _, _, err = run(capsys, "train", "--workload", "mnist")
    assert str(tmp_path / "from-env" / "MNIST" / "raw") in err


@pytest.mark.parametrize(
    "argv", [["train"], ["train", "--workload", "digits", "--epochs", "0"], ["fly"]]
)
def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "adamz-search" in capsys.readouterr().err


def test_set_values_are_yaml_with_exponent_numbers_read_as_numbers() -> None:
    assert parse_assignments(
        ["lr=1e-3", "patience=164", "lr_bounds=[1e-7, 1.0]", "max_grad_norm=null", "amsgrad=true"]
    ) == {
        "lr": 0.001,
        "patience": 164,
        "lr_bounds": [1e-7, 1.0],
        "max_grad_norm": None,
        "amsgrad": True,
    }
    with pytest.raises(UsageError, match=r"^--set expects KEY=VALUE, got '=1'\.$"):
        parse_assignments(["=1"])


def test_console_entry_point_runs_end_to_end() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "adamz.cli", *QUICK, "--threads", "1", "--set", "patience=20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    record = json.loads(completed.stdout)
    assert record["controller"]["observed"] == record["steps"] == 34


@pytest.fixture
def own_workload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a module of workloads of the user's code."""
    tasks = Path(__file__).resolve().parents[1] / "workloads" / "regression_tasks.py"
    (tmp_path / "cli_tasks.py").write_text(tasks.read_text())
    monkeypatch.chdir(tmp_path)  # searched after the installed packages
    monkeypatch.setattr(sys, "path", list(sys.path))  # which the search appends it to
    return tmp_path


def test_a_workload_of_ones_own_code_trains_with_its_options(
    capsys: pytest.CaptureFixture[str], own_workload: Path
) -> None:
    code, out, err = run(
        capsys, "train", "--workload", "cli_tasks:Regression", "--workload-option", "hidden=3",
        "--epochs", "1",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert (record["workload"], record["workload_options"]) == (
        "cli_tasks:Regression",
        {"hidden": 3},
    )
    assert set(record["final_metrics"]) == {
        "val_rmse", "val_mae", "val_loss", "test_rmse", "test_mae", "test_loss",
    }  # fmt: skip
    assert "cli_tasks:Regression/adamz epoch 1/1: loss " in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--workload", "cli_tasks:NoLoss"],
            "Invalid workload 'cli_tasks:NoLoss': missing method loss()",
        ),
        (["--workload", "cli_tasks:ShortTargets"], "data().train holds 180 inputs but 170 targets"),
        (["--workload", "cli_tasks:BatchLoss"], "loss() must return a 0-dim tensor"),
        (
            ["--workload", "cli_tasks:Regression", "--workload-option", "width"],
            "--workload-option expects KEY=VALUE",
        ),
        (["--workload", "digits", "--workload-option", "hidden=3"], "digits takes none"),
    ],
)
def test_a_broken_workload_of_ones_own_code_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], own_workload: Path, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "train", *argv, "--epochs", "1")
    assert code == 2
    assert out == ""
    assert message in err
    assert err.count("\n") == 1
