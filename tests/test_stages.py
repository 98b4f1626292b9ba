"""The staged reproduction (``reports/stages.py``) and the verdict's stage list: stages that
fit a sitting, a record of what is done, resuming, and pages that wait for their stages."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from adamz.search.studies import load_study_file

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
SUBCOMMANDS = {"create", "worker", "report", "export", "budget"}


def _load(name: str) -> ModuleType:
    """A module of ``reports/``, imported by name as the stage lists import ``stages``."""
    if str(REPORTS) not in sys.path:
        sys.path.insert(0, str(REPORTS))
    return importlib.import_module(name)


stages = _load("stages")
verdict = _load("stages_verdict")


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The record and the lock in a temporary folder; commands recorded, not run."""
    monkeypatch.setattr(stages, "RECORD", tmp_path / "stages.json")
    monkeypatch.setattr(stages, "LOCK", tmp_path / "stages.lock")
    return tmp_path


def plan(tmp_path: Path, text: str) -> object:
    (tmp_path / "stages_test.py").write_text(text)
    return stages.load_plan(tmp_path)


TWO_STAGES = """
from stages import Page, Stage
STAGES = [
    Stage("first", minutes=2, storage="journal:x.journal", commands=[["create", "a.yaml"]]),
    Stage("second", minutes=3, storage="journal:x.journal", needs=["first"],
          commands=[["worker", "a"], ["worker", "b"]]),
]
PAGES = [Page("page", needs=["second"], storage="journal:x.journal", commands=[["report", "a"]])]
"""


def fake_commands(monkeypatch: pytest.MonkeyPatch, exits: dict[str, int]) -> list[list[str]]:
    ran: list[list[str]] = []

    def run(arguments: Sequence[str], env: dict[str, str]) -> int:
        ran.append(list(arguments))
        assert env["ADAMZ_STORAGE"] == "journal:x.journal"
        return exits.get(arguments[-1], 0)

    monkeypatch.setattr(stages, "run_command", run)
    return ran


def test_the_verdict_stages_load_with_unique_names_known_needs_and_fit_a_sitting() -> None:
    loaded = stages.load_plan()
    names = [stage.name for stage in loaded.stages]
    assert len(names) == len(set(names))
    for stage in loaded.stages:
        assert stage.minutes <= 45, stage.name
        assert all(callable(command) or command[0] in SUBCOMMANDS for command in stage.commands), (
            stage.name
        )
        assert stage.storage.startswith(("journal:reports/data/", "sqlite:///reports/data/"))
    for page in loaded.pages:
        assert all(command[0] == "report" for command in page.commands), page.name


def test_every_study_file_a_stage_creates_exists_and_loads() -> None:
    for stage in stages.load_plan().stages:
        written = any(callable(command) for command in stage.commands)
        for command in stage.commands:
            if callable(command) or command[0] != "create":
                continue
            # A file the stage's own step writes from an earlier stage's results exists once
            # that stage has run.
            if written and not (ROOT / command[1]).exists():
                continue
            assert load_study_file(ROOT / command[1]).name in " ".join(
                " ".join(c) for c in stage.commands if not callable(c)
            )


@pytest.mark.parametrize("workload", [*verdict.WORKLOADS, "pysource"])
def test_every_verdict_search_of_a_workload_has_the_same_budget_and_brackets(
    workload: str,
) -> None:
    optimizers = verdict.TRANSFORMER_OPTIMIZERS if workload == "pysource" else verdict.OPTIMIZERS
    specs = [load_study_file(ROOT / f"studies/{workload}-{name}.yaml") for name in optimizers]
    assert {spec.budget for spec in specs} == {verdict.BUDGET[workload]}
    for key in ("workload", "pruner", "seeds_per_trial", "metric", "sampler"):
        assert len({json.dumps(spec.definition.get(key), sort_keys=True) for spec in specs}) == 1
    assert {spec.definition["optimizer"] for spec in specs} == set(optimizers)


def test_every_optimizer_of_the_issue_is_searched_on_the_small_workloads() -> None:
    assert set(verdict.OPTIMIZERS) == {
        "adamz", "adamz-no-controller", "adam-clip", "adam", "adam-cosine", "adam-plateau",
        "adamw", "adamw-schedulefree", "prodigy", "lion", "adafactor", "novograd", "sgd",
        "rmsprop",
    }  # fmt: skip
    assert {"adamz", "adam", "adam-cosine", "adamw-schedulefree"} <= set(
        verdict.TRANSFORMER_OPTIMIZERS
    )


def test_the_verdict_page_names_each_replicates_confirmation_as_report_does() -> None:
    from adamz.reports._confirm import TOP

    assert verdict.CANDIDATES != TOP  # so the name carries -c<candidates>
    name = verdict._confirmation("digits", ("adamz", "adam"), 2)
    assert name == f"confirm-digits-adamz~r2+digits-adam~r2-k{verdict.SEEDS}-c1"


def test_status_lists_each_stage_left_with_its_minutes_and_the_total(
    scratch: Path, tmp_path: Path
) -> None:
    lines = stages.status_lines(plan(tmp_path, TWO_STAGES), stages.read_record())
    assert lines[1].split()[:3] == ["first", "left", "2"]
    assert "left: 2, about 5 min" in lines[-2]
    assert lines[-1].startswith("next: first")


def test_a_stage_that_needs_another_is_refused_until_it_is_done(
    scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_commands(monkeypatch, {})
    loaded = plan(tmp_path, TWO_STAGES)
    with pytest.raises(stages.UsageError, match=r"^Stage second needs first first"):
        stages.run_stage(loaded, "second")


def test_a_done_stage_is_recorded_with_its_times_and_next_moves_on(
    scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = fake_commands(monkeypatch, {})
    loaded = plan(tmp_path, TWO_STAGES)
    assert stages.run_stage(loaded, "next") == 0
    record = json.loads(stages.RECORD.read_text())
    entry = record["stages"]["first"]
    assert entry["done"] is True
    assert entry["estimated_minutes"] == 2
    assert set(entry["attempts"][0]) == {"started", "wall_s", "cpu_s", "exit"}
    assert stages.next_stage(loaded, stages.read_record()).name == "second"
    with pytest.raises(stages.UsageError, match=r"done already"):
        stages.run_stage(loaded, "first")
    assert ran == [["create", "a.yaml"]]


def test_a_stopped_stage_is_half_run_and_running_it_again_resumes_it(
    scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits = {"b": 143}
    ran = fake_commands(monkeypatch, exits)
    loaded = plan(tmp_path, TWO_STAGES)
    stages.run_stage(loaded, "first")
    assert stages.run_stage(loaded, "second") == 143
    assert "half-run" in "\n".join(stages.status_lines(loaded, stages.read_record()))
    exits.clear()
    assert stages.run_stage(loaded, "next") == 0  # all its commands again: each resumes
    assert ran[1:] == [["worker", "a"], ["worker", "b"], ["worker", "a"], ["worker", "b"]]
    attempts = stages.read_record()["stages"]["second"]["attempts"]
    assert [attempt["exit"] for attempt in attempts] == [143, 0]


def test_pages_wait_for_their_stages(
    scratch: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran = fake_commands(monkeypatch, {})
    loaded = plan(tmp_path, TWO_STAGES)
    assert stages.build_pages(loaded) == 0
    assert ran == []
    assert "Page page: waits for second" in capsys.readouterr().err
    stages.run_stage(loaded, "first")
    stages.run_stage(loaded, "second")
    ran.clear()
    stages.build_pages(loaded)
    assert ran == [["report", "a"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("X = 1", r"defines no STAGES list"),
        (
            "from stages import Stage\nSTAGES = [Stage('a', minutes=1, storage='s', "
            "commands=[['create']]), Stage('a', minutes=1, storage='s', commands=[['create']])]",
            r"^Stage names defined twice: a\.$",
        ),
        (
            "from stages import Stage\nSTAGES = [Stage('a', minutes=1, storage='s', "
            "commands=[['create']], needs=['b'])]",
            r"^a needs unknown stages: b\.$",
        ),
    ],
)
def test_a_bad_stage_list_is_one_line_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(stages.UsageError, match=message):
        plan(tmp_path, text)


def test_a_second_run_while_one_holds_the_lock_is_refused(
    scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_commands(monkeypatch, {})
    stages.LOCK.write_text("1")  # process 1 is alive
    with pytest.raises(stages.UsageError, match=r"running already \(process 1\)"):
        stages.run_stage(plan(tmp_path, TWO_STAGES), "first")
    stages.LOCK.write_text("999999999")  # gone: its lock is taken over
    assert stages.run_stage(plan(tmp_path, TWO_STAGES), "first") == 0


def test_gather_copies_the_named_studies_from_a_journal_once(tmp_path: Path) -> None:
    import optuna

    from adamz.search import open_storage

    source = f"journal:{tmp_path / 'a.journal'}"
    opened = open_storage(source)
    for name in ("confirm-x", "search-x"):
        optuna.create_study(study_name=name, storage=opened).optimize(lambda t: 1.0, n_trials=2)
    target = f"sqlite:///{tmp_path / 'all.db'}"
    wanted = [stages.Gather(source, r"confirm-.*")]
    stages.gather(wanted, target)
    stages.gather(wanted, target)  # present already: not copied twice
    gathered = open_storage(target, read_only=True).get_all_studies()
    assert [study.study_name for study in gathered] == ["confirm-x"]
    assert len(optuna.load_study(study_name="confirm-x", storage=target).trials) == 2


def test_a_stage_s_own_step_runs_in_process_and_a_failing_one_stops_the_stage_with_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran: list[str] = []

    def write() -> None:
        """write the study file"""
        ran.append("write")

    def broken() -> None:
        raise ValueError("Invalid rate grid: nothing has run")

    assert stages.run_command(write, {}) == 0
    assert ran == ["write"]
    assert stages.run_command(broken, {}) == 1
    err = capsys.readouterr().err
    assert "+ write the study file" in err
    assert "stages: error: Invalid rate grid: nothing has run" in err
