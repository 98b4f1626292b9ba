"""``adamz-search train``: one run of one workload with one optimizer configuration.

The training code (torch) is imported where this command uses it: the others do without.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import closing
from typing import Any

import yaml
from tqdm import tqdm

from adamz.cli._base import Command, UsageError, usage_errors
from adamz.verbosity import log_to_stderr

__all__ = ["DATA_DIR_ENV", "TrainCommand", "parse_assignments"]

DATA_DIR_ENV = "ADAMZ_DATA_DIR"
"""Environment variable naming the data directory when ``--data-dir`` is not given."""


class TrainCommand(Command):
    """Train once and print the result record as JSON on stdout (progress goes to stderr)."""

    name = "train"
    help = "train one workload with one optimizer configuration; print the result as JSON"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # The registries import torch: declared here, for this command's parser only.
        from adamz.training import OPTIMIZER_NAMES
        from adamz.workloads import WORKLOADS

        parser.add_argument(
            "--workload",
            required=True,
            metavar="NAME",
            help=f"what to train: {', '.join(WORKLOADS)}, or the import path module:attribute "
            "of a workload of your own (see adamz.workloads.UserWorkload)",
        )
        parser.add_argument(
            "--workload-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="workload_options",
            help="an option of a workload of your own, repeatable; VALUE is YAML: "
            "--workload-option hidden=64",
        )
        parser.add_argument(
            "--optimizer",
            default="adamz",
            metavar="NAME",
            help=f"how: {', '.join(OPTIMIZER_NAMES)} (default: adamz)",
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="assignments",
            help="an optimizer hyperparameter, repeatable; VALUE is YAML: --set lr=0.01 "
            "--set patience=164 --set lr_bounds=[1e-7,1.0] (unset ones take their defaults; "
            "lr: the paper's 0.01)",
        )
        parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
        parser.add_argument(
            "--data-dir",
            default=os.environ.get(DATA_DIR_ENV, "data"),
            help=f"dataset directory, torchvision's layout (DIR/MNIST/raw, "
            f"DIR/cifar-10-batches-py) (default: ${DATA_DIR_ENV}, else ./data)",
        )
        parser.add_argument(
            "--download",
            action="store_true",
            help="let torchvision download missing datasets (needs a network)",
        )
        parser.add_argument("--epochs", type=_positive_int, help="override the protocol's epochs")
        parser.add_argument(
            "--batch-size", type=_positive_int, help="override the protocol's batch size"
        )
        parser.add_argument(
            "--train-size",
            type=_subset_size,
            metavar="N|all",
            help="train on the first N training examples, or all of them",
        )
        parser.add_argument(
            "--test-size",
            type=_subset_size,
            metavar="N|all",
            help="evaluate on the first N test examples, or all of them",
        )
        parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
        parser.add_argument(
            "--threads",
            type=_positive_int,
            help="torch CPU threads (default: torch's, one per core; on a machine shared with "
            "other training, fewer avoids threads spinning against each other)",
        )
        parser.add_argument(
            "--checkpoint",
            metavar="PATH",
            help="write a checkpoint there after every epoch; resume from it if it exists",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        import torch  # here, not at module level: the other commands do without it

        from adamz.training import CheckpointMismatchError, RunConfig, train
        from adamz.workloads import DataNotFoundError, ImportedWorkload, check_workload

        config = RunConfig(
            workload=args.workload,
            optimizer=args.optimizer,
            hyperparameters=parse_assignments(args.assignments),
            seed=args.seed,
            device=args.device,
            data_dir=args.data_dir,
            download=args.download,
            epochs=args.epochs,
            batch_size=args.batch_size,
            train_size=args.train_size,
            test_size=args.test_size,
            workload_options=parse_assignments(args.workload_options, option="--workload-option"),
        )
        # Everything the user can get wrong is checked here, before training, so that an error
        # raised while training is a bug with its traceback, not a usage message.
        with usage_errors(ValueError, DataNotFoundError):
            run = config.resolve()
            run.load_data()
            if isinstance(run.workload, ImportedWorkload):  # its model and functions, too
                check_workload(
                    run.workload,
                    config.data_dir,
                    train_size=run.protocol.train_size,
                    test_size=run.protocol.test_size,
                )

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        with (
            log_to_stderr(),
            closing(_ProgressBar()) as progress,
            usage_errors(CheckpointMismatchError),
        ):
            result = train(config, on_step=progress.update, checkpoint_path=args.checkpoint)
        print(json.dumps(result.to_dict(), indent=2))
        return 0


def parse_assignments(assignments: list[str], *, option: str = "--set") -> dict[str, Any]:
    """``["lr=0.01", "betas=[0.9, 0.99]"]`` -> ``{"lr": 0.01, "betas": [0.9, 0.99]}``.

    Values are read as YAML, except that a number in exponent notation without a dot
    (``1e-3``), which YAML 1.1 reads as a string, is read as the number it is. ``option``
    names the command-line option in errors.

    Raises:
        UsageError: an item is not ``KEY=VALUE``, a key repeats, or a value is not YAML.
    """
    hyperparameters: dict[str, Any] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        key = key.strip()
        if not separator or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {assignment!r}.")
        if key in hyperparameters:
            raise UsageError(f"{option} {key} is given more than once.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = " ".join(str(exc).split())
            raise UsageError(f"{option} {key}: the value is not YAML ({problem}).") from exc
        hyperparameters[key] = _numbers(value)
    return hyperparameters


def _numbers(value: Any) -> Any:
    """YAML 1.1 strings that Python reads as floats (``1e-3``), as floats; recursively."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _subset_size(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 1 or 'all', got {text!r}"
        ) from None


class _ProgressBar:
    """A tqdm bar over each epoch's steps on stderr (shown only when stderr is a terminal)."""

    def __init__(self) -> None:
        self._bar: tqdm[Any] | None = None

    def update(self, epoch: int, step: int, steps_in_epoch: int) -> None:
        if step == 1:
            self.close()
            self._bar = tqdm(
                total=steps_in_epoch,
                desc=f"epoch {epoch}",
                unit="step",
                leave=False,
                file=sys.stderr,
                disable=None,
            )
        if self._bar is not None:
            self._bar.update(1)
            if step == steps_in_epoch:
                self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
