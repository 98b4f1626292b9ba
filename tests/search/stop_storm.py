"""Launchers stopped by SIGTERM at random moments of their whole lives, several at once on a
busy machine, each replaced as a host's supervisor would replace it: the test of prompt stops
(``test_stop_anytime.py``) and ``benchmarks/search_service.py stop`` both run it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from adamz.search.retries import requeued, retried_trial_number

HUNG_S = 30.0
"""Seconds after SIGTERM at which a launcher still running is killed and counted as hung."""
POLL_S = 0.02


@dataclass
class Storm:
    """What the signals did: per signal, the launcher's age when it came and the seconds to
    its exit; and what was left behind."""

    ages: list[float] = field(default_factory=list)
    exits: list[float] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    """Where each signal found its launcher: ``no worker`` yet, its ``worker starting`` (no
    trial of its own), or its worker with a ``trial`` RUNNING."""
    hung: int = 0
    orphans: list[int] = field(default_factory=list)
    """Worker processes found running after their launcher exited."""
    running_after_exit: list[int] = field(default_factory=list)
    """Trials found RUNNING, by a worker of a launcher that had exited."""
    running: list[int] = field(default_factory=list)
    """Trials left RUNNING once every launcher had exited."""
    lost: list[int] = field(default_factory=list)
    """Trials failed and not queued again, with no error of their own: stopped and lost."""
    errors: list[str] = field(default_factory=list)
    """The ends of launchers' logs that hold a traceback."""
    finished: int = 0

    def within(self, seconds: float) -> int:
        return sum(exit_s <= seconds for exit_s in self.exits)

    def figures(self) -> str:
        """The distribution of exit times, and what was left behind, in a few lines."""
        n = len(self.exits)
        ordered = sorted(self.exits)
        p95 = ordered[min(n - 1, round(0.95 * (n - 1)))]
        early = [e for a, e in zip(self.ages, self.exits, strict=True) if a < 15]
        bins = (0.5, 1, 2, 5, 10, HUNG_S)
        counts, low = [], 0.0
        for high in bins:
            counts.append(f"{low:g}-{high:g} s: {sum(low < e <= high for e in self.exits)}")
            low = high
        by_phase = {
            phase: [e for p, e in zip(self.phases, self.exits, strict=True) if p == phase]
            for phase in ("no worker", "worker starting", "trial")
        }
        return "\n".join(
            [
                f"{n} SIGTERMs (launchers {min(self.ages):.1f} to {max(self.ages):.1f} s old, "
                f"{len(early)} in their first 15 s): exited within 2 s {self.within(2)}/{n}, "
                f"within 10 s {self.within(10)}/{n}, hung (killed at {HUNG_S:g} s) "
                f"{self.hung}",
                f"exit s: median {statistics.median(self.exits):.2f}, p95 {p95:.2f}, max "
                f"{max(self.exits):.2f}; in the first 15 s of life: max "
                f"{max(early, default=0.0):.2f}",
                "by where the signal found the launcher: "
                + ", ".join(
                    f"{phase} {len(exits)} (max {max(exits, default=0.0):.2f} s)"
                    for phase, exits in by_phase.items()
                ),
                "histogram: " + ", ".join(counts),
                f"trials: finished {self.finished}, RUNNING after their launcher's exit "
                f"{len(self.running_after_exit)}, left RUNNING {len(self.running)}, lost "
                f"{len(self.lost)}; workers left running on their own {len(self.orphans)}; "
                f"exit codes {sorted(set(self.codes))}; logs with a traceback "
                f"{len(self.errors)}",
            ]
        )


@dataclass
class _Launcher:
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    due: float
    sent: float | None = None
    children: set[int] = field(default_factory=set)


def storm(
    url: str,
    study: str,
    directory: Path,
    *,
    signals: int = 30,
    at_once: int = 5,
    first_s: float = 15.0,
    later_s: float = 30.0,
    early_share: float = 2 / 3,
    seed: int = 0,
) -> Storm:
    """Keep ``at_once`` launchers of one worker each running on ``study`` (created, with a
    budget that outlasts the storm) until ``signals`` SIGTERMs have been sent, each at a
    random moment of its launcher's life: ``early_share`` of them within its first
    ``first_s`` seconds, the others up to ``later_s`` seconds later; every launcher that exits
    is replaced."""
    rng = random.Random(seed)
    result = Storm()
    command = [
        sys.executable, "-m", "adamz.entry", "worker", study, "--storage", url,
        "--checkpoint-dir", str(directory / "checkpoints"), "--checkpoint-interval", "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reader = optuna.load_study(study_name=study, storage=url)
    started = 0

    def start() -> _Launcher:
        nonlocal started
        log = directory / f"launcher-{started}.log"
        started += 1
        early = rng.random() < early_share
        due = rng.uniform(0, first_s) if early else first_s + rng.uniform(0, later_s)
        with log.open("wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        now = time.monotonic()
        return _Launcher(process, log, now, now + due)

    launchers = [start() for _ in range(min(at_once, signals))]
    sent = 0
    try:
        while launchers:
            time.sleep(POLL_S)
            for launcher in list(launchers):
                now = time.monotonic()
                if launcher.process.poll() is None:
                    launcher.children |= _children(launcher.process.pid)
                    if launcher.sent is None and now >= launcher.due and sent < signals:
                        result.phases.append(
                            "trial"
                            if _running_by(reader, launcher.children)
                            else "worker starting"
                            if launcher.children
                            else "no worker"
                        )
                        launcher.process.send_signal(signal.SIGTERM)
                        launcher.sent, sent = time.monotonic(), sent + 1
                        result.ages.append(launcher.sent - launcher.started)
                    elif launcher.sent is not None and now - launcher.sent > HUNG_S:
                        _kill(launcher)
                        result.hung += 1
                    continue
                launchers.remove(launcher)
                _ended(launcher, now, reader, result)
                if sent + len([lr for lr in launchers if lr.sent is None]) < signals:
                    launchers.append(start())
    finally:
        for launcher in launchers:
            _kill(launcher)
    trials = reader.get_trials(deepcopy=False)
    again = requeued(trials)
    result.running = [t.number for t in trials if t.state == TrialState.RUNNING]
    result.lost = [
        t.number
        for t in trials
        if t.state == TrialState.FAIL
        and t.number not in again
        and not t.user_attrs.get("surplus")
        and "error" not in t.user_attrs
    ]
    result.finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    return result


def _ended(launcher: _Launcher, now: float, reader: optuna.Study, result: Storm) -> None:
    """Record how ``launcher`` ended, and what it left behind."""
    code = launcher.process.returncode
    if launcher.sent is not None:
        result.exits.append(now - launcher.sent)
        result.codes.append(code)
    elif code != 0:  # ended on its own, early
        result.codes.append(code)
    result.orphans += [pid for pid in launcher.children if _worker_alive(pid)]
    result.running_after_exit += _running_by(reader, launcher.children)
    log = launcher.log.read_text(errors="replace")
    if "Traceback" in log:
        result.errors.append(log[log.index("Traceback") :][-2000:])


def _running_by(reader: optuna.Study, pids: set[int]) -> list[int]:
    """The study's RUNNING trials whose worker is one of ``pids`` (not a retry of one of
    theirs, which keeps its first attempt's record until its own worker writes its own)."""
    trials = {trial.number: trial for trial in reader.get_trials(deepcopy=False)}

    def pid(number: int | None) -> object:
        return None if number is None else trials[number].user_attrs.get("worker", {}).get("pid")

    return [
        trial.number
        for trial in trials.values()
        if trial.state == TrialState.RUNNING
        and pid(trial.number) in pids
        and pid(retried_trial_number(trial)) != pid(trial.number)
    ]


def _children(pid: int) -> set[int]:
    """The child processes of ``pid``, from every one of its threads."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _worker_alive(pid: int) -> bool:
    """Whether ``pid`` is a worker process that runs (not multiprocessing's resource tracker,
    which leaves once the last process it serves has; not a zombie)."""
    try:
        if b"spawn_main" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill(launcher: _Launcher) -> None:
    for pid in [launcher.process.pid, *launcher.children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    launcher.process.wait()
