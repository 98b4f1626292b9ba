"""Population trials against one trial at a time, measured side by side in one run.

``worker``: trials per hour of the search worker (:func:`adamz.search.run_worker`, heartbeats,
budget checks, trial records) on the workload's shipped AdamZ study (``studies/W-adamz.yaml``:
TPE over AdamZ's space and its pruner, Hyperband), with ``--population`` 1 (one trial at a time,
as before populations) and with 8, 32 and 64, each on a fresh copy of the study in one storage,
in one process (its imports paid once before the first timing). A run is timed from its first
trial's start to its last trial's end, as the storage records them; its CPU time (the
worker's threads, its writer's included) beside it, which is what trials per hour follow on a
host whose every core runs a worker. ``--pruner none`` trains
every trial's full protocol instead, so that the ratio is the cost of a whole trial.
``training``: the training alone, without Optuna: seconds per run of
:func:`adamz.training.train` (one run at a time) against :func:`train_runs` for each K,
the same configurations and seeds. The difference between the two ratios is the search's own
cost per trial (sampling, Optuna's storage writes), which a population does not reduce.
``agreement``: the same 20 seeds and configuration trained alone and in one population; the
median final validation accuracy of each, and a paired Wilcoxon test of their difference.
``memory``: peak resident memory of a population of K against K = 1, in fresh processes, per
member.

    python benchmarks/population.py worker [--workload circles] [--sizes 1 8 32 64] [--pruner none]
    python benchmarks/population.py worker --workload mnist --data-dir ../shared/data --sizes 1 8
    python benchmarks/population.py worker --storage postgresql+psycopg://postgres@127.0.0.1/test
    python benchmarks/population.py training [--workload circles] [--sizes 1 8 32 64]
    python benchmarks/population.py agreement [--workload digits]
    python benchmarks/population.py memory [--workload circles] [--sizes 1 32 128] [--data-dir D]

Threads: one intra-op thread everywhere (``torch.set_num_threads(1)``), as a worker per core
runs on this machine; a population's kernels are larger, and could use more.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from scipy.stats import wilcoxon
from search_service import ROOT, create, write_study  # this folder's: run as a script

from adamz.search import WorkerOptions, run_worker
from adamz.training import RunConfig, train
from adamz.training.population import train_runs


def create_study(
    directory: Path,
    workload: dict[str, Any],
    budget: int,
    storage: str,
    pruner: str | None = None,
) -> str:
    """A fresh copy of the workload's shipped AdamZ study, with ``budget`` and the workload's
    overrides (and ``pruner`` instead of its own, if given), created as a user creates one
    (outside every timing); its name."""
    shipped = yaml.safe_load((ROOT / "studies" / f"{workload['name']}-adamz.yaml").read_text())
    name = f"population-{uuid.uuid4().hex[:8]}"
    pruners = {} if pruner is None else {"pruner": {"name": pruner}}
    extra = {key: shipped[key] for key in ("sampler", "pruner", "enqueue_defaults")}
    create(write_study(directory, name, workload, budget, **{**extra, **pruners}), storage)
    return name


def span(study: optuna.Study) -> float:
    """Seconds from the study's first trial's start to its last trial's end."""
    finished = [t for t in study.trials if t.datetime_complete and t.datetime_start]
    start = min(t.datetime_start for t in finished if t.datetime_start)
    end = max(t.datetime_complete for t in finished if t.datetime_complete)
    return (end - start).total_seconds()


def worker(args: argparse.Namespace, directory: Path) -> None:
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = args.storage or f"sqlite:///{directory / 'population.db'}"
    workload: dict[str, Any] = {"name": args.workload}
    if args.epochs:
        workload["epochs"] = args.epochs
    if args.train_size:
        workload["train_size"] = args.train_size
    options = dict(storage=storage, checkpoint_dir=str(directory), data_dir=args.data_dir)
    # Warm-up: imports, the data cache and torch.func's first calls, outside every timing.
    run_worker(
        create_study(directory, workload, 2, storage), WorkerOptions(**options, population=2)
    )
    rows = []
    for size in args.sizes:
        trials = max(args.min_trials, size * args.rounds)
        name = create_study(directory, workload, trials, storage, args.pruner)
        cpu = time.process_time()
        summary = run_worker(name, WorkerOptions(**options, population=size))
        cpu = time.process_time() - cpu
        study = optuna.load_study(study_name=name, storage=storage)
        seconds = span(study)
        values = [t.value for t in study.trials if t.value is not None]
        rows.append((size, trials, seconds, cpu, summary.complete, statistics.median(values)))
    base, base_cpu = rows[0][2] / rows[0][1], rows[0][3] / rows[0][1]
    print(
        f"{args.workload} {workload}: studies/{args.workload}-adamz.yaml (pruner "
        f"{args.pruner or 'its own'}), adamz-search worker, 1 thread"
    )
    print(f"{'population':>10} {'trials':>7} {'s/trial':>8} {'trials/h':>9} {'x K=1':>6} "
          f"{'CPU s/trial':>12} {'x K=1':>6} {'median val_accuracy':>20}")  # fmt: skip
    for size, trials, seconds, cpu, complete, median in rows:
        per_trial, cpu_per_trial = seconds / trials, cpu / trials
        print(
            f"{size:>10} {complete:>7} {per_trial:>8.3f} {3600 / per_trial:>9.0f} "
            f"{base / per_trial:>6.1f} {cpu_per_trial:>12.3f} {base_cpu / cpu_per_trial:>6.1f} "
            f"{median:>20.4f}"
        )


def training(args: argparse.Namespace, directory: Path) -> None:
    torch.set_num_threads(1)
    extra = {"data_dir": args.data_dir, "epochs": args.epochs, "train_size": args.train_size}

    def configs(size: int) -> list[RunConfig]:
        return [
            RunConfig(args.workload, "adamz", {"lr": 0.001 * (1 + seed % 7)}, seed=seed, **extra)
            for seed in range(size)
        ]

    train_runs(configs(2))  # warm-up: imports, data cache, first calls
    singles = configs(args.singles)
    start = time.perf_counter()
    for config in singles:
        train(config)
    alone = (time.perf_counter() - start) / len(singles)
    print(f"{args.workload} {extra}: AdamZ training alone, 1 thread, no search")
    print(f"{'population':>10} {'s/run':>8} {'x alone':>8}")
    print(f"{'alone':>10} {alone:>8.4f} {1.0:>8.1f}")
    for size in args.sizes:
        start = time.perf_counter()
        train_runs(configs(size))
        per_run = (time.perf_counter() - start) / size
        print(f"{size:>10} {per_run:>8.4f} {alone / per_run:>8.1f}")


def agreement(args: argparse.Namespace, directory: Path) -> None:
    torch.set_num_threads(1)
    configs = [
        RunConfig(
            args.workload, "adamz", {"lr": 0.01, "patience": 50}, seed=seed, data_dir=args.data_dir
        )
        for seed in range(args.seeds)
    ]
    start = time.perf_counter()
    single = [train(config) for config in configs]
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = train_runs(configs)
    batched_s = time.perf_counter() - start
    alone = [r.final_metrics["val_accuracy"] for r in single if r.final_metrics]
    together = [r.final_metrics["val_accuracy"] for r in batched if r.final_metrics]
    differences = [b - a for a, b in zip(alone, together, strict=True)]
    print(f"{args.workload}, AdamZ lr 0.01 patience 50, {args.seeds} seeds, full protocol")
    print(f"alone:      median val_accuracy {statistics.median(alone):.4f}, {single_s:.1f} s")
    print(f"population: median val_accuracy {statistics.median(together):.4f}, {batched_s:.1f} s")
    identical = sum(d == 0 for d in differences)
    largest = max(abs(d) for d in differences)
    p = wilcoxon(together, alone, zero_method="zsplit").pvalue if any(differences) else 1.0
    print(
        f"paired: {identical} of {len(differences)} seeds identical, largest difference "
        f"{largest:.4f}, Wilcoxon p = {p:.3f}"
    )


_MEMORY_PROBE = """
import resource, sys, torch
from adamz.training import RunConfig
from adamz.training.population import train_runs
torch.set_num_threads(1)
workload, size, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None
configs = [
    RunConfig(workload, "adamz", {}, seed=s, epochs=1, data_dir=data_dir) for s in range(size)
]
configs[0].resolve().load_data()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
train_runs(configs)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def memory(args: argparse.Namespace, directory: Path) -> None:
    peaks = {}
    for size in args.sizes:
        output = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, args.workload, str(size), args.data_dir or ""],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[size] = int(output.stdout.split()[-1]) / 1024  # KiB -> MiB
    first = args.sizes[0]
    print(f"{args.workload}: peak resident memory of one epoch's training, above the data")
    print(f"{'population':>10} {'MiB':>8} {'MiB/member beyond K=' + str(first):>24}")
    for size, peak in peaks.items():
        extra = (peak - peaks[first]) / (size - first) if size != first else float("nan")
        print(f"{size:>10} {peak:>8.1f} {extra:>24.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("worker")
    run.add_argument("--workload", default="circles")
    run.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    run.add_argument("--rounds", type=int, default=2, help="populations per size")
    run.add_argument("--min-trials", type=int, default=16)
    run.add_argument("--epochs", type=int, default=None)
    run.add_argument("--train-size", type=int, default=None)
    run.add_argument("--data-dir", default=None)
    run.add_argument("--storage", default=None, help="a storage URL (default: a fresh SQLite file)")
    run.add_argument(
        "--pruner", default=None, help="a pruner instead of the shipped study's (none: no pruner)"
    )
    alone = commands.add_parser("training")
    alone.add_argument("--workload", default="circles")
    alone.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    alone.add_argument("--singles", type=int, default=8, help="runs timed one at a time")
    alone.add_argument("--epochs", type=int, default=None)
    alone.add_argument("--train-size", type=int, default=None)
    alone.add_argument("--data-dir", default=None)
    agree = commands.add_parser("agreement")
    agree.add_argument("--workload", default="digits")
    agree.add_argument("--seeds", type=int, default=20)
    agree.add_argument("--data-dir", default=None)
    mem = commands.add_parser("memory")
    mem.add_argument("--workload", default="circles")
    mem.add_argument("--sizes", type=int, nargs="+", default=[1, 32, 128])
    mem.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        run_command = {
            "worker": worker,
            "training": training,
            "agreement": agreement,
            "memory": memory,
        }[args.command]
        run_command(args, Path(directory))


if __name__ == "__main__":
    main()
