"""The stages of the verdict (``reports/README.md`` section 1): every optimizer a user would
consider, tuned at equal budget, each search run 5 times with other sampler seeds, each
replicate's winner confirmed on 20 fresh seeds; then the paper's tables and the exported
default with its leave-one-out test. Read by ``reports/stages.py``.

**The protocol.** On digits, circles and the MNIST subset, the 14 optimizers of
:data:`OPTIMIZERS`, each searched by its study file ``studies/WORKLOAD-OPTIMIZER.yaml``: the
hyperparameters its authors tell users to tune (``search_spaces/``), the same budget of trials
on a workload (digits 40, circles 50, MNIST 40) and the same Hyperband brackets for each trial
number (``adamz/search/pruners.py``), with populations of :data:`SEARCH_POPULATION` for every
optimizer (those without a batched form train their members one at a time, but every search
asks its sampler for the same batches). On the transformer, the 4 of
:data:`TRANSFORMER_OPTIMIZERS`, shrunk to fit: 2 of the workload's 8 epochs (576 steps a run),
16 trials, no pruner, one trial at a time per worker (a population of its transformer gains
little: its arithmetic fills a core). Replicate 1 is the study itself;
``report --search-replicates 5`` makes replicates 2 to 5 (sampler seeds 1 to 4). ``report
--confirm 20 --candidates 1`` re-runs each replicate's winner, its best trial by validation,
on 20 fresh seeds of that replicate's own.

**Storage**: one journal file per workload, ``reports/data/verdict-WORKLOAD.journal``
(append-only text: each stage's commit adds what it appended). The page ``verdict`` gathers
every workload's confirmations into one scratch file so that one report adjusts its p-values
(Benjamini-Hochberg) over every comparison of every workload together; the pages
``fair-WORKLOAD`` show each workload's budget curves and searches.

**Estimates** (:func:`search_minutes`, :func:`confirm_minutes`): seconds per full training run
measured with ``adamz-search worker`` on this 2-core machine (one worker, one thread, while
another 2-worker job ran beside it, so the wall times are about 1.5 times those of a machine to
ourselves), in :data:`RUN_S`; a Hyperband search trains about half its trials' epochs
(:data:`EPOCH_SHARE`); two workers halve the wall time; each worker start costs
:data:`START_S` and each scratch report :data:`REPORT_S`. ``status`` shows the measured time
beside each estimate once a stage has run: correct :data:`RUN_S` from them.
"""

from __future__ import annotations

import math
import os
import re

from stages import Gather, Page, Stage

DATA = os.environ.get("ADAMZ_DATA_DIR", "../shared/data")
WORKERS = ["--data-dir", DATA, "--workers-per-device", "2"]
WORKLOADS = ("digits", "circles", "mnist")
OPTIMIZERS = (
    "adamz",
    "adamz-no-controller",
    "adam-clip",
    "adam",
    "adam-cosine",
    "adam-plateau",
    "adamw",
    "adamw-schedulefree",
    "prodigy",
    "lion",
    "adafactor",
    "novograd",
    "sgd",
    "rmsprop",
)
"""Every optimizer of the small workloads: AdamZ, its two ablations, Adam with and without
schedules, AdamW, today's optimizers, and the paper's SGD (with momentum) and RMSprop."""
TRANSFORMER_OPTIMIZERS = ("adamz", "adam", "adam-cosine", "adamw-schedulefree")
BATCHED = frozenset(
    {"adamz", "adamz-no-controller", "adam-clip", "adam", "adamw", "sgd", "rmsprop"}
)
"""The optimizers with a batched form (``adamz/optim/batched.py``): their populations train as
one stacked model; the others' members train one at a time."""
REPLICATES = 5
SEEDS = 20
CANDIDATES = 1
SEARCH_POPULATION = {"digits": 8, "circles": 8, "mnist": 8, "pysource": 1}
CONFIRM_POPULATION = {"digits": SEEDS, "circles": SEEDS, "mnist": SEEDS, "pysource": 1}
"""A confirmation's population: one run's seeds, trained together; the transformer's runs alone,
since stacked it trains slower on this machine's CPU (confirmation replicates 1 and 2: AdamZ
and Adam stacked 20 at a time took 56 and 60 s a run, alone 33 to 39 s; the whole replicate
took 33 minutes with populations of 20, about 25 alone)."""
BUDGET = {"digits": 40, "circles": 50, "mnist": 40, "pysource": 16}
"""Trials per search, as the study files say (``test_every_verdict_search_of_a_workload_has
the_same_budget_and_brackets`` holds them to it)."""

RUN_S = {
    # workload: (seconds per run in a population of SEARCH_POPULATION, per run alone)
    "digits": (0.33, 0.93),
    "circles": (0.35, 1.2),
    "mnist": (5.9, 7.8),
    "pysource": (33.0, 33.0),
}
"""Wall seconds of one full training run, one worker with one thread: 16 digits and circles
runs in populations of 8 took 5.2 and 5.6 s, 6 alone 5.6 and 7.2 s; 8 MNIST runs in a
population 31 s, 2 alone 10.4 s (start-up taken off: 3.5 s), times 1.5 here, since the circles
searches took 1.8 times their estimate with both workers sharing the 2 cores with other work;
one pysource run of 2 epochs 33 s."""
EPOCH_SHARE = {"digits": 0.5, "circles": 0.5, "mnist": 0.5, "pysource": 1.0}
"""Share of its trials' epochs that a search trains: about half under Hyperband (most trials
are stopped at the first or second rung), all without a pruner."""
START_S = {"digits": 15.0, "circles": 15.0, "mnist": 30.0, "pysource": 30.0}
"""A study's creation and its workers' start (imports, the storage, the data): a ``create``
and ``worker`` of a 6-trial digits study took about 15 s of wall time beyond its training on a
quiet machine, and the circles searches about 30 s each beside other work. Digits and circles
keep the 15 s their stages were packed with (they are done; ``status`` shows what they took)."""
REPORT_S = 60.0
"""A scratch report at the end of a ``report --search-replicates`` stage."""
STAGE_MINUTES = 40.0
"""Stages are packed up to this estimate, below the 45 minutes a stage may take."""


def storage(workload: str) -> str:
    return f"journal:reports/data/verdict-{workload}.journal"


def run_s(workload: str, optimizer: str) -> float:
    batched, alone = RUN_S[workload]
    return batched if optimizer in BATCHED else alone


def search_minutes(workload: str, optimizer: str, replicates: int) -> float:
    """Estimated wall minutes of ``replicates`` searches of ``optimizer`` on ``workload``."""
    train = BUDGET[workload] * EPOCH_SHARE[workload] * run_s(workload, optimizer) / 2
    return replicates * (train + START_S[workload]) / 60


def confirm_minutes(workload: str, optimizers: tuple[str, ...]) -> float:
    """Estimated wall minutes of one replicate's confirmation: every winner on SEEDS seeds."""
    train = sum(CANDIDATES * SEEDS * run_s(workload, name) for name in optimizers) / 2
    return (train + START_S[workload] + REPORT_S) / 60


def _pack(items: list[tuple[str, float]], limit: float) -> list[list[tuple[str, float]]]:
    """``items`` in order, cut into consecutive groups of at most ``limit`` minutes each (an
    item above it alone)."""
    groups: list[list[tuple[str, float]]] = [[]]
    for item in items:
        if groups[-1] and sum(m for _, m in groups[-1]) + item[1] > limit:
            groups.append([])
        groups[-1].append(item)
    return groups


def workload_stages(workload: str, optimizers: tuple[str, ...]) -> list[Stage]:
    """The searches of ``workload`` (each optimizer's 5 replicates, packed into stages), then
    its confirmations (replicates in order, packed)."""
    studies = [f"{workload}-{name}" for name in optimizers]
    scratch = ["--out", f"out/stages/{workload}", "--no-note", "--repeats", "1"]
    population = ["--population", str(SEARCH_POPULATION[workload])]
    stages: list[Stage] = []
    costs = [(name, search_minutes(workload, name, REPLICATES)) for name in optimizers]
    for number, group in enumerate(_pack(costs, STAGE_MINUTES - REPORT_S / 60), start=1):
        names = [f"{workload}-{name}" for name, _ in group]
        commands: list[list[str]] = []
        for name in names:
            commands += [
                ["create", f"studies/{name}.yaml"],
                ["worker", name, *WORKERS, *population],
            ]
        commands.append(
            ["report", *names, "--search-replicates", str(REPLICATES), *scratch, *WORKERS,
             *population]
        )  # fmt: skip
        stages.append(
            Stage(
                f"verdict-{workload}-search-{number}",
                minutes=math.ceil(sum(m for _, m in group) + REPORT_S / 60),
                storage=storage(workload),
                commands=commands,
                about=f"{REPLICATES} searches each of " + ", ".join(n for n, _ in group),
            )
        )
    searches = [stage.name for stage in stages]
    confirm = confirm_minutes(workload, optimizers)
    rounds = [(str(r), confirm) for r in range(1, REPLICATES + 1)]
    for group in _pack(rounds, STAGE_MINUTES):
        last = int(group[-1][0])
        stages.append(
            Stage(
                f"verdict-{workload}-confirm-r{group[0][0]}"
                + (f"-r{last}" if len(group) > 1 else ""),
                minutes=math.ceil(sum(m for _, m in group)),
                storage=storage(workload),
                needs=searches,
                commands=[confirm_command(workload, studies, last, scratch)],
                about=f"the winners of replicates {group[0][0]} to {last} on {SEEDS} seeds",
            )
        )
    return stages


def confirm_command(
    workload: str, studies: list[str], replicates: int, out: list[str]
) -> list[str]:
    """``report`` confirming replicates 1 .. ``replicates`` of ``studies`` of ``workload``
    (those confirmed already are reused)."""
    return [
        "report", *studies, "--search-replicates", str(replicates), "--confirm", str(SEEDS),
        "--candidates", str(CANDIDATES), "--population", str(CONFIRM_POPULATION[workload]),
        *WORKERS, *out,
    ]  # fmt: skip


PLOTLY = ["--plotly-js", "reports/plotly.min.js"]
DEFAULTS = "journal:reports/data/defaults.journal"
"""The export's storage: the three AdamZ searches and their confirmations, gathered from the
workloads' files, and the validation and held-out runs the export trains."""
ADAMZ = [f"{workload}-adamz" for workload in WORKLOADS]
HOLDOUT_SEEDS = 20
PAPER_OPTIMIZERS = 9
"""Runs of each paper table (``studies/paper-*.yaml``): circles on 20 seeds, MNIST on 10."""


def _confirmation(workload: str, optimizers: tuple[str, ...], replicate: int) -> str:
    """The name ``report --confirm`` gives replicate ``replicate``'s confirmation."""
    names = [
        f"{workload}-{name}" + (f"~r{replicate}" if replicate > 1 else "") for name in optimizers
    ]
    return "confirm-" + "+".join(names) + f"-k{SEEDS}-c{CANDIDATES}"


def _holdout(held: str) -> str:
    """The study ``export --leave-one-out`` trains on held-out workload ``held``."""
    tag = "+".join(name for name in ADAMZ if not name.startswith(f"{held}-"))
    return f"holdout-{held}-from-{tag}-k{HOLDOUT_SEEDS}"


def _export_minutes(seeds: int, *, leave_one_out: bool) -> float:
    """6 configurations (5 candidates and the paper defaults) on each workload on ``seeds``
    seeds, alone; leaving one out, that on each pair and 2 runs on the third."""
    per_workload = {w: 6 * seeds * RUN_S[w][0] for w in WORKLOADS}
    if not leave_one_out:
        return (sum(per_workload.values()) / 2 + 3 * START_S["mnist"]) / 60
    pairs = sum(sum(per_workload.values()) - per_workload[held] for held in WORKLOADS)
    held_out = sum(2 * seeds * RUN_S[held][0] for held in WORKLOADS)
    return ((pairs + held_out) / 2 + 9 * START_S["mnist"]) / 60


_WORKLOAD_STAGES = {
    **{workload: workload_stages(workload, OPTIMIZERS) for workload in WORKLOADS},
    "pysource": workload_stages("pysource", TRANSFORMER_OPTIMIZERS),
}
_PAPER_SEEDS = {"circles": 20, "mnist": 10}
STAGES: list[Stage] = [
    # The paper's tables first: short, and needing nothing.
    *(
        Stage(
            f"paper-{workload}",
            minutes=math.ceil(
                (PAPER_OPTIMIZERS * seeds * RUN_S[workload][0] / 2 + START_S[workload]) / 60
            ),
            storage=storage(workload),
            commands=[
                ["create", f"studies/paper-{workload}.yaml"],
                ["worker", f"paper-{workload}", *WORKERS, "--population", str(seeds)],
            ],
            about=f"the paper's table: every optimizer at lr 0.01 on {seeds} seeds",
        )
        for workload, seeds in _PAPER_SEEDS.items()
    ),
    *(stage for stages in _WORKLOAD_STAGES.values() for stage in stages),
    Stage(
        "defaults-export",
        minutes=math.ceil(_export_minutes(5, leave_one_out=False)),
        storage=DEFAULTS,
        # the confirmation of replicate 1, where the export finds each search's winner
        needs=[
            next(s.name for s in _WORKLOAD_STAGES[workload] if "-confirm-r1" in s.name)
            for workload in WORKLOADS
        ],
        gather=[
            Gather(
                storage(workload),
                f"{workload}-adamz|{re.escape(_confirmation(workload, OPTIMIZERS, 1))}",
            )
            for workload in WORKLOADS
        ],
        commands=[
            [
                "export",
                *ADAMZ,
                "--seeds",
                "5",
                *WORKERS,
                "--population",
                "5",
                "--out",
                "reports/defaults/validated-all.yaml",
            ]
        ],
        about="one default from the three AdamZ searches, validated on every workload",
    ),
    Stage(
        "defaults-holdout",
        minutes=math.ceil(_export_minutes(HOLDOUT_SEEDS, leave_one_out=True)),
        storage=DEFAULTS,
        needs=["defaults-export"],
        commands=[
            [
                "export",
                *ADAMZ,
                "--leave-one-out",
                "--seeds",
                str(HOLDOUT_SEEDS),
                *WORKERS,
                "--population",
                str(HOLDOUT_SEEDS),
            ]
        ],
        about="leave one workload out: a default exported from two, tested on the third",
    ),
]


def _fair_page(workload: str, optimizers: tuple[str, ...]) -> Page:
    studies = [f"{workload}-{name}" for name in optimizers]
    return Page(
        f"fair-{workload}",
        needs=[s.name for s in STAGES if s.name.startswith(f"verdict-{workload}-")],
        storage=storage(workload),
        commands=[
            confirm_command(
                workload, studies, REPLICATES, ["--out", f"reports/fair-{workload}", *PLOTLY]
            )
        ],
    )


_ALL = {**dict.fromkeys(WORKLOADS, OPTIMIZERS), "pysource": TRANSFORMER_OPTIMIZERS}
PAGES: list[Page] = [
    *(_fair_page(workload, optimizers) for workload, optimizers in _ALL.items()),
    Page(
        "verdict",
        needs=[s.name for s in STAGES if s.name.startswith("verdict-")],
        storage="sqlite:///out/stages/verdict-all.db",
        gather=[Gather(storage(workload), r"confirm-.*") for workload in _ALL],
        commands=[
            [
                "report",
                *(
                    _confirmation(workload, optimizers, replicate)
                    for workload, optimizers in _ALL.items()
                    for replicate in range(1, REPLICATES + 1)
                ),
                "--out",
                "reports/verdict",
                *PLOTLY,
            ]
        ],
    ),
    *(
        Page(
            f"paper-{workload}",
            needs=[f"paper-{workload}"],
            storage=storage(workload),
            commands=[
                ["report", f"paper-{workload}", "--out", f"reports/paper-{workload}", *PLOTLY]
            ],
        )
        for workload in ("circles", "mnist")
    ),
    *(
        Page(
            f"holdout-{held}",
            needs=["defaults-holdout"],
            storage=DEFAULTS,
            commands=[["report", _holdout(held), "--out", f"reports/holdout-{held}", *PLOTLY]],
        )
        for held in WORKLOADS
    ),
]
