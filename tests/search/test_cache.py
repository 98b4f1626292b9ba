"""A worker's storage: the study read once per round, its own writes read back at once and
written behind in order, and nothing written by the storage itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from adamz.search import cache
from adamz.search.cache import WorkerStorage
from adamz.search.outage import Outage, StorageUnreachable
from adamz.search.storage import open_storage


@pytest.fixture
def live(tmp_path: Path) -> optuna.Study:
    """A study on SQLite with 12 finished trials, each reporting three epochs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(f"sqlite:///{tmp_path / 'cache.db'}")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for _ in range(12):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        for epoch in range(3):
            trial.report(x * (epoch + 1) / 3, epoch)
        study.tell(trial, x)
    return study


def snapshot_of(
    live: optuna.Study, tmp_path: Path, on_lost: Any = lambda trial_id: None
) -> tuple[optuna.Study, WorkerStorage]:
    storage = open_storage(f"sqlite:///{tmp_path / 'cache.db'}")
    snapshot = WorkerStorage(
        storage, Outage("test://db"), storage.get_study_id_from_name("s"), on_lost=on_lost
    )
    study = optuna.load_study(
        study_name="s",
        storage=snapshot,
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    return study, snapshot


def count_reads(snapshot: WorkerStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the cache's reads of all the study's trials from its storage."""
    reads = [0]
    get_all_trials = snapshot.storage.get_all_trials

    def counted(*args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        reads[0] += 1
        return get_all_trials(*args, **kwargs)

    monkeypatch.setattr(snapshot.storage, "get_all_trials", counted)
    return reads


def test_a_round_of_asks_and_pruning_checks_reads_the_study_once(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    reads = count_reads(snapshot, monkeypatch)
    snapshot.new_round()
    trials = [study.ask() for _ in range(8)]
    for trial in trials:
        trial.suggest_float("x", 0.0, 1.0)  # TPE reads the study for each
    assert reads[0] == 1
    for epoch in range(3):  # a round: every report, then every check
        for trial in trials:
            trial.report(0.5, epoch)
        snapshot.new_round()
        for trial in trials:
            trial.should_prune()  # the median pruner reads the study for each
        assert reads[0] == 2 + epoch


def test_writes_reach_the_storage_and_the_round_reads_them_back(
    live: optuna.Study, tmp_path: Path
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.25, 0)
    trial.set_user_attr("worker", {"host": "h"})
    seen = study.get_trials(deepcopy=False)[-1]  # no new round: the written trial, read back
    snapshot.flush()
    assert (seen.state, seen.params, seen.intermediate_values) == (
        TrialState.RUNNING,
        {"x": x},
        {0: 0.25},
    )
    assert seen.user_attrs == {"worker": {"host": "h"}}
    stored = live.get_trials(deepcopy=False)[-1]  # the storage itself
    assert (stored.number, stored.params, stored.intermediate_values) == (12, {"x": x}, {0: 0.25})
    assert stored.user_attrs == {"worker": {"host": "h"}}
    told = study.tell(trial, 0.75)
    assert told.state == TrialState.COMPLETE
    snapshot.flush()
    assert live.get_trials(deepcopy=False)[-1].value == 0.75


def test_other_workers_writes_show_at_the_next_round(live: optuna.Study, tmp_path: Path) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    assert len(study.get_trials()) == 12
    other = live.ask()  # another worker's trial
    other.report(0.9, 0)
    assert len(study.get_trials()) == 12
    snapshot.new_round()
    assert [t.intermediate_values for t in study.get_trials()][-1] == {0: 0.9}


def test_pruning_through_the_snapshot_decides_as_the_live_study(
    live: optuna.Study, tmp_path: Path
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    snapshot.new_round()
    trials = [study.ask() for _ in range(6)]
    values = [0.05, 0.2, 0.3, 0.45, 0.6, 0.9]  # around the median of the finished (x / 3)
    for trial, value in zip(trials, values, strict=True):
        trial.report(value, 0)
    snapshot.new_round()
    decisions = [trial.should_prune() for trial in trials]
    assert True in decisions
    assert False in decisions
    snapshot.flush()  # the live study, once the reports are written
    pruner = study.pruner
    expected = [
        pruner.prune(live, next(t for t in live.get_trials() if t.number == trial.number))
        for trial in trials
    ]
    assert decisions == expected


def test_a_queued_trial_another_worker_took_is_not_taken_twice(
    live: optuna.Study, tmp_path: Path
) -> None:
    live.enqueue_trial({"x": 0.5})
    study, snapshot = snapshot_of(live, tmp_path)
    snapshot.new_round()
    assert [t.state for t in study.get_trials()][-1] == TrialState.WAITING
    taken = live.ask()  # another worker takes it; the snapshot still has it WAITING
    assert taken.suggest_float("x", 0.0, 1.0) == 0.5
    mine = study.ask()
    assert mine.number == taken.number + 1
    assert study.get_trials()[taken.number].state == TrialState.RUNNING


class WriteCounter:
    """Counts the writes that reach a storage, by method."""

    WRITES = (
        "create_new_trial",
        "set_trial_state_values",
        "set_trial_param",
        "set_trial_intermediate_value",
        "set_trial_user_attr",
        "set_trial_system_attr",
        "set_study_user_attr",
        "set_study_system_attr",
    )

    def __init__(self, storage: BaseStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[str] = []
        for name in self.WRITES:
            method = getattr(storage, name)

            def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
                self.writes.append(_name)
                return _method(*args)

            monkeypatch.setattr(storage, name, counted)
        together = cache._together

        def counted_together(storage: BaseStorage, writes: list[Any]) -> None:
            self.writes += [write.method for write in writes]
            together(storage, writes)

        monkeypatch.setattr(cache, "_together", counted_together)


def test_the_cache_writes_only_what_it_is_asked_to_and_stamps_nothing(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    counter = WriteCounter(snapshot.storage, monkeypatch)
    study.get_trials()
    study.best_trial  # noqa: B018 -- reads
    snapshot.new_round()
    study.get_trials(states=(TrialState.COMPLETE,))
    assert counter.writes == []  # reads write nothing
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    snapshot.flush()  # Optuna's own writes: the trial, TPE's record of its sample, the value
    assert counter.writes == ["create_new_trial", "set_trial_system_attr", "set_trial_param"]
    started = live.get_trials(deepcopy=False)[-1].datetime_start
    assert study.get_trials(deepcopy=False)[-1].datetime_start == started  # the storage's


def test_a_study_s_id_name_and_directions_are_read_once(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, snapshot = snapshot_of(live, tmp_path)
    reads: list[str] = []
    for name in ("get_study_id_from_name", "get_study_directions"):
        method = getattr(snapshot.storage, name)
        monkeypatch.setattr(
            snapshot.storage,
            name,
            lambda *args, _n=name, _m=method: (reads.append(_n), _m(*args))[1],
        )
    for _ in range(5):  # as Hyperband builds a study per pruning check
        optuna.load_study(study_name="s", storage=snapshot).directions  # noqa: B018
    assert reads == []  # read once already, when the worker's study was loaded


class SlowWrites:
    """A storage whose trial writes wait for ``gate``, recording their order."""

    def __init__(self, storage: BaseStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        self.written: list[tuple[str, tuple[Any, ...]]] = []
        for name in WriteCounter.WRITES[1:]:
            method = getattr(storage, name)

            def slow(*args: Any, _name: str = name, _method: Any = method) -> Any:
                self.gate.wait(10)
                self.written.append((_name, args[1:]))
                return _method(*args)

            monkeypatch.setattr(storage, name, slow)
        together = cache._together

        def slow_together(storage: BaseStorage, writes: list[Any]) -> None:
            self.gate.wait(10)
            self.written += [(write.method, write.args) for write in writes]
            together(storage, writes)

        monkeypatch.setattr(cache, "_together", slow_together)


def test_reports_and_ends_are_written_behind_in_order_and_read_back_at_once(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    snapshot.flush()
    slow = SlowWrites(snapshot.storage, monkeypatch)
    for epoch in range(3):
        trial.report((0.1, 0.2, 0.3)[epoch], epoch)  # returns although the storage waits
    trial.set_user_attr("run", {"epochs_run": 3})
    study.tell(trial, 0.3)
    mine = study.get_trials(deepcopy=False)[-1]
    assert mine.state == TrialState.COMPLETE  # read back before it is written
    assert mine.intermediate_values == {0: 0.1, 1: 0.2, 2: 0.3}
    assert live.get_trials(deepcopy=False)[-1].state == TrialState.RUNNING
    assert slow.written == []
    snapshot.new_round()  # a round's read of the storage keeps what is still behind
    assert study.get_trials(deepcopy=False)[-1].state == TrialState.COMPLETE
    slow.gate.set()
    snapshot.flush()
    assert [name for name, _ in slow.written] == [
        "set_trial_intermediate_value",
        "set_trial_intermediate_value",
        "set_trial_intermediate_value",
        "set_trial_user_attr",
        "set_trial_state_values",
    ]  # the end last: a trial the storage shows finished has all its reports
    stored = live.get_trials(deepcopy=False)[-1]
    assert (stored.state, stored.value, stored.user_attrs) == (
        TrialState.COMPLETE,
        0.3,
        {"run": {"epochs_run": 3}},
    )


def test_a_trial_failed_by_another_worker_is_reported_lost_and_its_writes_dropped(
    live: optuna.Study, tmp_path: Path
) -> None:
    lost: list[int] = []
    study, snapshot = snapshot_of(live, tmp_path, on_lost=lost.append)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial_id = snapshot.get_trial_id_from_study_id_trial_number(snapshot.study_id, trial.number)
    assert study.get_trials(deepcopy=False)[-1].state == TrialState.RUNNING  # as read
    live._storage.set_trial_state_values(trial_id, TrialState.FAIL)  # another worker's stale check
    trial.report(0.5, 0)
    study.tell(trial, 0.5)
    snapshot.flush()  # raises nothing: the trial is not this worker's any more
    assert set(lost) == {trial_id}
    snapshot.new_round()
    assert study.get_trials(deepcopy=False)[-1].state == TrialState.FAIL
    stored = live.get_trials(deepcopy=False)[-1]
    assert (stored.state, stored.intermediate_values) == (TrialState.FAIL, {})


@pytest.mark.parametrize(
    "pruner",
    [
        optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=2),
    ],
    ids=["successive-halving", "hyperband"],
)
def test_a_pruner_that_writes_decides_as_it_would_with_every_write_made_at_once(
    tmp_path: Path, pruner: optuna.pruners.BasePruner
) -> None:
    """SuccessiveHalving writes each trial's rung value, then compares it with the trials it
    read before that write: written behind, the write must not show in them."""
    decisions = []
    for behind in (False, True):
        storage = open_storage(f"sqlite:///{tmp_path / f'{behind}.db'}")
        study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
        if behind:
            storage = WorkerStorage(storage, Outage("test://db"), study_id)
        study = optuna.load_study(
            study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0)
        )
        study.pruner = pruner
        trials = [study.ask() for _ in range(8)]
        made = []
        for epoch in range(1, 4):
            for index, trial in enumerate(trials):
                if trial.number in made:
                    continue
                trial.report(((index * 7) % 8) / 8 + epoch / 10, epoch)
                if isinstance(storage, WorkerStorage):
                    storage.new_round()
                if trial.should_prune():
                    made.append(trial.number)
                    study.tell(trial, state=TrialState.PRUNED)
        decisions.append(made)
    assert decisions[0]  # some were pruned
    assert decisions[1] == decisions[0]


def test_a_write_made_while_the_round_reads_is_not_lost_from_what_the_worker_sees(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, snapshot = snapshot_of(live, tmp_path)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    snapshot.flush()
    slow = SlowWrites(snapshot.storage, monkeypatch)
    study.tell(trial, 0.5)  # behind, held by the gate
    read = snapshot.storage.get_all_trials

    def read_then_written(*args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        trials = read(*args, **kwargs)  # the trial still RUNNING in what was read
        slow.gate.set()
        snapshot.flush()  # the end is made before the read is kept
        return trials

    monkeypatch.setattr(snapshot.storage, "get_all_trials", read_then_written)
    snapshot.new_round()
    assert study.get_trials(deepcopy=False)[-1].state == TrialState.COMPLETE


def writer_held_by_a_first_trial(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost: list[int]
) -> tuple[optuna.Study, WorkerStorage, list[optuna.Trial], SlowWrites]:
    """Three running trials; the first told, its end held by the gate, so that what the other
    two write next is queued together behind it."""
    study, snapshot = snapshot_of(live, tmp_path, on_lost=lost.append)
    trials = [study.ask() for _ in range(3)]
    for trial in trials:
        trial.suggest_float("x", 0.0, 1.0)
    study.get_trials(deepcopy=False)  # read: all RUNNING
    snapshot.flush()
    slow = SlowWrites(snapshot.storage, monkeypatch)
    study.tell(trials[0], 0.9)  # the writer waits on it while the others queue
    return study, snapshot, trials, slow


def test_a_write_the_database_refuses_fails_its_trial_and_the_others_go_on(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes queued together are made in one transaction; one the database refuses rolls it
    back, and they are made again one by one: only the refused write's trial fails."""
    lost: list[int] = []
    study, snapshot, (first, bad, good), slow = writer_held_by_a_first_trial(
        live, tmp_path, monkeypatch, lost
    )
    good.report(0.5, 1)
    bad.set_user_attr("big", object())  # no JSON for it: the database refuses it
    good.report(0.6, 2)
    study.tell(bad, 0.1)
    study.tell(good, 0.6)
    slow.gate.set()
    snapshot.flush()  # raises nothing: the refusal is the trial's, not the storage's
    methods = [name for name, _ in slow.written]
    assert methods[:4] == ["set_trial_state_values", *["set_trial_intermediate_value",
                           "set_trial_user_attr", "set_trial_intermediate_value"]]  # fmt: skip
    bad_id = snapshot.get_trial_id_from_study_id_trial_number(snapshot.study_id, bad.number)
    assert set(lost) == {bad_id}
    stored = {t.number: t for t in live.get_trials(deepcopy=False)}
    assert stored[bad.number].state == TrialState.FAIL
    assert "JSON serializable" in stored[bad.number].user_attrs["error"]
    assert (stored[good.number].state, stored[good.number].value) == (TrialState.COMPLETE, 0.6)
    assert stored[good.number].intermediate_values == {1: 0.5, 2: 0.6}
    assert stored[first.number].state == TrialState.COMPLETE


def test_writes_made_together_drop_only_a_trial_another_worker_failed_meanwhile(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost: list[int] = []
    _, snapshot, (_, stale, good), slow = writer_held_by_a_first_trial(
        live, tmp_path, monkeypatch, lost
    )
    for epoch in range(3):
        stale.report(0.1 * epoch, epoch)
        good.report(0.2 * epoch, epoch)
    stale_id = snapshot.get_trial_id_from_study_id_trial_number(snapshot.study_id, stale.number)
    live._storage.set_trial_state_values(stale_id, TrialState.FAIL)  # another worker's check
    slow.gate.set()
    snapshot.flush()
    assert [name for name, _ in slow.written][1:7] == ["set_trial_intermediate_value"] * 6
    assert set(lost) == {stale_id}
    stored = {t.number: t for t in live.get_trials(deepcopy=False)}
    assert stored[good.number].intermediate_values == {0: 0.0, 1: 0.2, 2: 0.4}
    assert (stored[stale.number].state, stored[stale.number].intermediate_values) == (
        TrialState.FAIL,
        {},
    )


def test_a_storage_unreachable_past_the_patience_ends_a_wait_for_the_queue(
    live: optuna.Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'cache.db'}")
    snapshot = WorkerStorage(
        storage, Outage("test://db", patience=0.5), storage.get_study_id_from_name("s")
    )
    study = optuna.load_study(study_name="s", storage=snapshot)
    trials = [study.ask() for _ in range(2)]
    for trial in trials:
        trial.suggest_float("x", 0.0, 1.0)
    snapshot.flush()

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(cache, "_together", unreachable)
    for name in WriteCounter.WRITES[1:]:
        monkeypatch.setattr(storage, name, unreachable)
    for trial in trials:  # queued together: the transaction fails, then every write alone
        trial.report(0.5, 0)
    raised: list[BaseException] = []

    def flush() -> None:
        try:
            snapshot.flush()
        except BaseException as exc:
            raised.append(exc)

    waiting = threading.Thread(target=flush, daemon=True)
    waiting.start()
    waiting.join(30)
    assert not waiting.is_alive()  # the writer gave up and said so, not left it waiting
    assert isinstance(raised[0], StorageUnreachable)


WRITTEN = [
    ("set_trial_param", ("lr", -3.0, optuna.distributions.FloatDistribution(1e-4, 1.0, log=True))),
    ("set_trial_param", ("kind", 1.0, optuna.distributions.CategoricalDistribution(["a", "b"]))),
    ("set_trial_intermediate_value", (0, 0.5)),
    ("set_trial_intermediate_value", (1, float("inf"))),
    ("set_trial_intermediate_value", (2, float("-inf"))),
    ("set_trial_intermediate_value", (3, float("nan"))),
    ("set_trial_user_attr", ("run", {"epochs_run": 1})),
    ("set_trial_user_attr", ("run", {"epochs_run": 2})),  # set again in the same transaction
    ("set_trial_system_attr", ("worker", ["host", 7])),
]


def read_back(storage: BaseStorage, trial_id: int) -> tuple[Any, ...]:
    trial = storage.get_trial(trial_id)
    reports = {step: repr(value) for step, value in trial.intermediate_values.items()}  # NaN
    return trial.params, trial.distributions, reports, trial.user_attrs, trial.system_attrs


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_writes_made_together_read_back_as_optuna_s_own_writes(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Rows written together into Optuna's tables read back, through Optuna, exactly as the
    same writes made Optuna's way: parameters and their distributions, reports that are not
    finite, attributes set again (in the same transaction and in a later one)."""
    url = (
        f"sqlite:///{tmp_path / 'rows.db'}"
        if database == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    storage = open_storage(url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "rows")
    together, alone = (storage.create_new_trial(study_id) for _ in range(2))
    later = ("set_trial_user_attr", ("run", {"epochs_run": 3}))
    cache._together(storage, [cache._Write(together, *write) for write in WRITTEN])
    cache._together(storage, [cache._Write(together, *later), cache._Write(together, *later)])
    for method, args in [*WRITTEN, later]:
        getattr(storage, method)(alone, *args)
    assert read_back(storage, together) == read_back(storage, alone)
    assert storage.get_trial(together).user_attrs["run"] == {"epochs_run": 3}


def test_writes_to_a_schema_of_another_version_are_made_one_by_one_optuna_s_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'rows.db'}")
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "rows")
    trial_id = storage.create_new_trial(study_id)
    monkeypatch.setattr(storage, "get_current_version", lambda: "v9.9.9")
    made: list[str] = []
    for method in {method for method, _ in WRITTEN}:
        own = getattr(storage, method)
        monkeypatch.setattr(
            storage, method, lambda *args, _m=method, _own=own: (made.append(_m), _own(*args))
        )
    cache._together(storage, [cache._Write(trial_id, *write) for write in WRITTEN])
    assert made == [method for method, _ in WRITTEN]
    assert storage.get_trial(trial_id).user_attrs == {"run": {"epochs_run": 2}}
