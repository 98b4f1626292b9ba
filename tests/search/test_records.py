"""A trial's run record: one type for the worker that writes it and the reports that read it."""

from __future__ import annotations

import optuna

from adamz.search.records import RUN_ATTR, RUN_FORMAT, TrialRun


def trial_with(run: object) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(value=0.5, user_attrs={RUN_ATTR: run})


def test_a_record_reads_back_field_by_field_with_its_format() -> None:
    written = TrialRun(seeds=[0, 1], epochs_run=4, metrics={"val_accuracy": 0.9})
    stored = written.to_dict()
    assert stored["format"] == RUN_FORMAT
    assert "diverged" not in stored  # empty fields are left out, as before the type
    assert TrialRun.of(trial_with(stored)) == written


def test_an_older_record_reads_as_format_0_and_its_diverged_reason_counts() -> None:
    old = {"seeds": [0], "stop_reason": "diverged on seed 0: non-finite loss", "unknown": 1}
    record = TrialRun.of(trial_with(old))
    assert record is not None
    assert record.format == 0
    assert record.diverged
    assert TrialRun.of(trial_with("not a record")) is None
