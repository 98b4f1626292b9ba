"""The verdict picks each optimizer's winner on validation and presents test; the multi-study
export recommends only what survived validation on every workload."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import optuna
import pytest
from report_helpers import (
    SEEDS,
    constant,
    replicate_study,
    storage_of,
    synthetic_study,
    with_storage,
)
from scipy import stats

from adamz.reports import ReportError, build_report, load_study_data
from adamz.reports._confirm import confirmed_choice
from adamz.reports._export import PAPER_DEFAULTS, export_config, validated_choice
from adamz.reports._replicates import median_interval, replicates_section, smallest_possible_p
from adamz.reports._verdict import verdict_section


def test_the_winner_is_picked_on_validation_even_when_another_candidate_tests_better() -> None:
    study = replicate_study(
        {
            "adamz #1": {"val": constant(0.95), "test": constant(0.93), "source": {"study": "z"}},
            "adamz #2": {"val": constant(0.94), "test": constant(0.99), "source": {"study": "z"}},
            "adam #4": {
                "val": constant(0.94),
                "test": constant(0.92),
                "optimizer": "adam",
                "source": {"study": "a"},
            },
        }
    )
    section = verdict_section([load_study_data(study, storage_of(study))])
    numbers = section.numbers["confirm"]
    assert numbers["winners"]["z"]["run"] == "adamz #1"  # not #2, which tests better
    assert numbers["reference"] == "z"
    assert numbers["candidates"] == {"z": 2, "a": 1}
    comparison = numbers["comparisons"]["a"]
    assert comparison["difference"] == pytest.approx(0.01)
    assert comparison["smallest_possible_p"] == pytest.approx(2 / 2**10)
    assert any("unequal numbers of candidates" in line for line in section.notes)
    assert section.title == "Verdict"


def test_a_difference_inside_the_seed_noise_is_neither_a_difference_nor_an_equivalence() -> None:
    rng = np.random.default_rng(1)
    noise = list(0.9 + 0.02 * rng.standard_normal(len(SEEDS)))
    study = replicate_study(
        {
            "adamz #1": {"val": noise, "test": noise, "source": {"study": "z"}},
            "adam #1": {
                "val": noise[::-1],
                "test": noise[::-1],
                "optimizer": "adam",
                "source": {"study": "a"},
            },
        }
    )
    section = verdict_section([load_study_data(study, storage_of(study))])
    comparison = section.numbers["confirm"]["comparisons"]["a"]
    assert comparison["p_value"] > 0.05
    assert comparison["differs"] is False
    assert comparison["equivalent"] is False  # a large p is no evidence of equality
    assert comparison["verdict"] == "not shown to differ, not shown equivalent"
    assert ": not shown to differ, not shown equivalent;" in section.notes[0]
    assert section.summary[0].startswith("**On digits, no evidence that ")


def test_without_replicates_the_verdict_says_how_to_get_one() -> None:
    study = optuna.create_study(direction="maximize", study_name="search")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    section = verdict_section([load_study_data(study, storage_of(study))])
    assert "No verdict yet" in section.summary[0]
    assert "--confirm" in section.summary[0]


def test_few_seeds_give_no_interval_and_say_the_smallest_p_they_allow() -> None:
    low, high = median_interval(np.array([0.1, 0.2, 0.3]))
    assert np.isnan(low)
    assert np.isnan(high)
    assert median_interval(np.arange(10.0)) == (1.0, 8.0)  # order statistics x(2), x(9)
    assert smallest_possible_p(5) == 0.0625
    assert smallest_possible_p(6) < 0.05


def validation_study(workload: str, medians: dict[str, float], **extra: Any) -> Any:
    runs = {
        label: {
            "val": constant(value),
            "test": constant(value - 0.01),
            "hyperparameters": {"lr": 0.01 if label == PAPER_DEFAULTS else value},
            **({"source": {"study": f"{workload}-adamz"}} if label != PAPER_DEFAULTS else {}),
            **extra.get(label, {}),
        }
        for label, value in medians.items()
    }
    return load_study_data(
        *with_storage(replicate_study(runs, workload=workload, name=f"validate-{workload}"))
    )


def test_a_candidate_that_diverges_anywhere_is_never_recommended() -> None:
    choice = validated_choice(
        [
            validation_study(
                "digits",
                {"fast": 0.99, "slow": 0.96, PAPER_DEFAULTS: 0.95},
                fast={"diverged": [1003]},
            ),
            validation_study("circles", {"fast": 0.99, "slow": 0.97, PAPER_DEFAULTS: 0.97}),
        ]
    )
    assert choice["recommended"] == "slow"
    assert "diverged on 1 seeds of digits" in choice["table"]["fast"]["excluded"]
    assert choice["paper_defaults_recommended"] is False


def test_a_candidate_losing_more_than_the_margin_to_the_paper_defaults_is_excluded() -> None:
    choice = validated_choice(
        [
            validation_study("digits", {"tuned": 0.99, PAPER_DEFAULTS: 0.95}),
            validation_study("mnist", {"tuned": 0.40, PAPER_DEFAULTS: 0.91}),
        ],
        margin=0.01,
    )
    assert choice["recommended"] == PAPER_DEFAULTS
    assert choice["paper_defaults_recommended"] is True
    # in points, the unit of export --margin
    assert choice["table"]["tuned"]["excluded"] == (
        "51 points of val_accuracy behind the paper defaults on mnist"
    )
    assert choice["hyperparameters"] == {"lr": 0.01}


def test_the_smallest_worst_case_normalised_regret_wins() -> None:
    # "steady" is second everywhere; "peaky" is first on digits and far behind on circles
    choice = validated_choice(
        [
            validation_study("digits", {"peaky": 0.99, "steady": 0.98, PAPER_DEFAULTS: 0.975}),
            validation_study("circles", {"peaky": 0.97, "steady": 0.98, PAPER_DEFAULTS: 0.965}),
        ],
        margin=0.05,
    )
    assert choice["recommended"] == "steady"
    table = choice["table"]
    assert table["steady"]["worst_regret"] < table["peaky"]["worst_regret"]
    # circles: best 0.98, chance 0.5: peaky's regret is 0.01 / 0.48
    assert table["peaky"]["circles"]["regret"] == pytest.approx(0.01 / 0.48)


def test_export_of_a_replicate_study_is_refused_naming_what_to_export_instead() -> None:
    study = replicate_study(
        {
            "digits-adamz #3": {
                "val": constant(0.9),
                "test": constant(0.9),
                "source": {"study": "digits-adamz"},
            }
        }
    )
    with pytest.raises(
        ReportError, match=r"nothing to choose; export the search it confirms \(digits-adamz\)"
    ):
        export_config([load_study_data(study, storage_of(study))])


def test_a_report_without_replicates_keeps_the_note_a_verdict_wrote(tmp_path: Any) -> None:
    from optuna_dashboard._note import get_note_from_system_attrs

    from adamz.reports import build_report

    storage = optuna.storages.InMemoryStorage()
    search = optuna.create_study(direction="maximize", study_name="z", storage=storage)
    search.optimize(lambda t: t.suggest_float("lr", 0, 1), n_trials=4)
    confirmation = replicate_study(
        {"z #1": {"val": constant(0.9), "test": constant(0.9), "source": {"study": "z"}}},
        storage=storage,
    )

    def note() -> str:
        attrs = storage.get_study_system_attrs(search._study_id)
        return str(get_note_from_system_attrs(attrs, None)["body"])

    options = {"importance_repeats": 1, "fanova_trees": 2, "progress": False}
    with_verdict = build_report(
        [search, confirmation], tmp_path / "a", **options, storage=storage_of(search)
    )
    assert note().endswith(with_verdict.summary)
    assert "## Verdict" in note()
    build_report([search], tmp_path / "b", **options, storage=storage_of(search))
    assert note().endswith(with_verdict.summary)
    assert search.user_attrs["note"] == "verdict of z"  # the search compared, confirmed
    # the note links to the other studies of the comparison on the dashboard
    confirmation_id = storage.get_study_id_from_name("confirm")
    assert note().startswith(
        f"Compared in one report with: [confirm](/dashboard/studies/{confirmation_id})"
    )


def test_p_values_are_adjusted_for_the_number_of_baselines_compared() -> None:
    rng = np.random.default_rng(3)
    base = list(0.9 + 0.01 * rng.standard_normal(len(SEEDS)))
    runs: dict[str, dict[str, Any]] = {
        "adamz #1": {"val": base, "test": base, "source": {"study": "z"}}
    }
    # one baseline worse on 8 of 10 seeds (raw p below 0.05), five level ones
    worse = [value - 0.01 if index < 8 else value + 0.001 for index, value in enumerate(base)]
    runs["b0 #1"] = {"val": worse, "test": worse, "optimizer": "adam", "source": {"study": "b0"}}
    for index in range(1, 6):
        level = list(np.array(base) + 0.01 * rng.standard_normal(len(SEEDS)))
        runs[f"b{index} #1"] = {
            "val": level,
            "test": level,
            "optimizer": "adam",
            "source": {"study": f"b{index}"},
        }
    section = verdict_section([load_study_data(*with_storage(replicate_study(runs)))])
    comparisons = section.numbers["confirm"]["comparisons"]
    sentences = [line for line in section.notes if line.startswith("z − ")]
    assert len(sentences) == 6
    assert all("adjusted for the 6 comparisons" in line for line in sentences)
    raw = comparisons["b0"]["p_value"]
    assert raw < 0.05
    assert comparisons["b0"]["adjusted_p_value"] > raw
    ranked = sorted(c["p_value"] for c in comparisons.values())
    assert comparisons["b0"]["adjusted_p_value"] == pytest.approx(
        min(ranked[i] * 6 / (i + 1) for i in range(ranked.index(raw), 6)), rel=1e-9
    )


def test_with_too_few_seeds_for_any_test_the_verdict_says_so() -> None:
    study = replicate_study(
        {
            "adamz #1": {"val": constant(0.9), "test": constant(0.9), "source": {"study": "z"}},
            "adam #1": {
                "val": constant(0.1),
                "test": constant(0.1),
                "optimizer": "adam",
                "source": {"study": "a"},
            },
        }
    )
    data = load_study_data(study, storage_of(study))
    data.trials = [t for t in data.trials if t.params["seed"] < SEEDS[5]]  # 5 seeds
    section = verdict_section([data])
    assert section.numbers["confirm"]["comparisons"]["a"]["too_few_seeds"] is True
    # one line says what 5 seeds cannot show, and how many would
    assert section.summary[-1] == (
        "With 5 seeds per run this confirmation cannot show a difference or an equivalence (no "
        "test on 5 paired seeds reaches p < 0.05) and gives no 95 % intervals below 6: confirm "
        "on 10 or more (--confirm 10)."
    )
    assert "no evidence that AdamZ beats Adam" in section.summary[0]
    assert "no interval below 6 seeds" in section.summary[0]
    sentence = section.notes[0]
    assert sentence.startswith("z − a: +80.00 points")
    assert "not shown to differ, not shown equivalent" in sentence
    assert "no 95 % CI below 6 seeds" in sentence
    assert "adjusted" not in sentence + str(section.tables)  # one comparison


def test_a_confirmed_reports_title_names_the_searches_it_compares(tmp_path: Any) -> None:
    storage = optuna.storages.InMemoryStorage()
    searches = [
        synthetic_study(n_trials=12, name=name, storage=storage) for name in ("tuned-z", "tuned-a")
    ]
    confirmation = replicate_study(
        {
            "adamz #1": {"val": constant(0.9), "test": constant(0.9), "source": {"study": "z"}},
            "adam #1": {"val": constant(0.8), "test": constant(0.8), "source": {"study": "a"}},
        },
        storage=storage,
    )
    files = build_report(
        [*searches, confirmation], tmp_path, save_note=False, progress=False, storage=storage
    )
    title = "AdamZ Search report: tuned-z vs tuned-a, confirmed on fresh seeds"
    assert f"<h1>{title}</h1>" in files.html.read_text()
    assert files.summary.startswith(f"# {title}\n")


def two_winners(adamz: list[float], adam: list[float], **adam_run: Any) -> dict[str, Any]:
    return {
        "adamz #1": {"val": adamz, "test": adamz, "source": {"study": "z"}},
        "adam #1": {
            "val": adam,
            "test": adam,
            "optimizer": "adam",
            "source": {"study": "a"},
            **adam_run,
        },
    }


def test_equivalence_is_claimed_only_from_the_equivalence_test_at_the_stated_margin() -> None:
    same = verdict_section(
        [load_study_data(*with_storage(replicate_study(two_winners(constant(0.9), constant(0.9)))))]
    )
    comparison = same.numbers["confirm"]["comparisons"]["a"]
    assert comparison["equivalence_p_value"] == pytest.approx(2**-10)
    assert comparison["verdict"] == "equivalent within ±0.25 points"
    assert "within ±0.25 points" in same.summary[0]  # the margin is stated
    apart = two_winners(constant(0.9), list(np.array(constant(0.9)) - 0.01))
    section = verdict_section([load_study_data(*with_storage(replicate_study(apart)))])
    comparison = section.numbers["confirm"]["comparisons"]["a"]
    assert comparison["equivalent"] is False
    assert comparison["verdict"] == "z better"
    wider = verdict_section([load_study_data(*with_storage(replicate_study(apart)))], margin=2.0)
    assert wider.numbers["confirm"]["comparisons"]["a"]["verdict"] == (
        "z better, by less than the ±2 points margin"
    )
    with pytest.raises(ValueError, match=r"Invalid margin: must be > 0, got 0\."):
        verdict_section([load_study_data(*with_storage(replicate_study(apart)))], margin=0)


def test_p_values_are_adjusted_over_every_comparison_of_the_report_all_workloads_together() -> None:
    rng = np.random.default_rng(5)
    base = list(0.9 + 0.01 * rng.standard_normal(len(SEEDS)))
    datas = []
    for workload, shifts in (("digits", (0.004, 0.001)), ("circles", (0.002,))):
        runs: dict[str, dict[str, Any]] = {
            "adamz #1": {"val": base, "test": base, "source": {"study": f"{workload}-z"}}
        }
        for index, shift in enumerate(shifts):
            other = list(np.array(base) - shift + 0.003 * rng.standard_normal(len(SEEDS)))
            runs[f"b{index} #1"] = {
                "val": other,
                "test": other,
                "optimizer": "adam",
                "source": {"study": f"{workload}-b{index}"},
            }
        datas.append(
            load_study_data(
                *with_storage(replicate_study(runs, workload=workload, name=f"confirm-{workload}"))
            )
        )
    section = verdict_section(datas)
    comparisons = [
        comparison
        for numbers in section.numbers.values()
        for comparison in numbers["comparisons"].values()
    ]
    assert len(comparisons) == 3
    expected = stats.false_discovery_control([c["p_value"] for c in comparisons])
    assert [c["adjusted_p_value"] for c in comparisons] == pytest.approx(list(expected))
    sentences = [line for line in section.notes if " − " in line.split(":")[1]]
    assert len(sentences) == 3
    assert all("adjusted for the 3 comparisons" in line for line in sentences)
    assert "over all 3 comparisons of this report" in section.notes[-1]


def test_a_validation_tie_goes_to_the_lower_validation_loss_in_the_verdict_and_the_export() -> None:
    storage = optuna.storages.InMemoryStorage()
    search = optuna.create_study(direction="maximize", study_name="z", storage=storage)
    search.optimize(lambda t: t.suggest_float("lr", 0, 1), n_trials=3)
    # 269 validation images: both candidates reach the same validation accuracy on every seed
    val = [round(0.97 * 269) / 269] * len(SEEDS)
    runs = {
        "z #1": {
            "val": val,
            "val_loss": [0.12] * 10,
            "test": constant(0.95),
            "source": {"study": "z"},
        },
        "z #2": {
            "val": val,
            "val_loss": [0.10] * 10,
            "test": constant(0.93),
            "source": {"study": "z"},
        },
        "a #1": {
            "val": constant(0.95),
            "test": constant(0.94),
            "optimizer": "adam",
            "source": {"study": "a"},
        },
    }
    confirmation = replicate_study(runs, storage=storage)
    section = verdict_section(
        [
            load_study_data(search, storage_of(search)),
            load_study_data(confirmation, storage_of(confirmation)),
        ]
    )
    numbers = section.numbers["confirm"]
    assert numbers["winners"]["z"]["run"] == "z #2"  # the lower validation loss, not the first
    assert numbers["ties"]["z"]["runs"] == ["z #2", "z #1"]
    assert "equal validation medians go to the lower median validation loss" in section.notes[-1]
    assert any(
        line.startswith("z: 2 runs tie on the val_accuracy median (97.03)")
        and "picked z #2" in line
        for line in section.notes
    )
    choice = confirmed_choice(load_study_data(search, storage_of(search)))
    assert choice is not None
    assert choice["run"] == "z #2"


def test_the_verdict_table_shows_what_each_search_spent_and_how_many_hyperparameters_it_searched() -> (
    None
):
    searches = [
        synthetic_study(n_trials=12, name="z"),  # 5 hyperparameters, 2 epochs a trial
        synthetic_study(n_trials=14, name="a", seed=1),
    ]
    confirmation = replicate_study(two_winners(constant(0.9), constant(0.9)))
    datas = [load_study_data(study, storage_of(study)) for study in (*searches, confirmation)]
    section = verdict_section(datas)
    header, *rows = section.tables[1]
    assert header[1:4] == ["hyperparameters searched", "search: epochs", "search: wall time"]
    assert header[-1] == "verdict"
    assert [row[:3] for row in rows] == [["z (reference)", "5", "24"], ["a", "5", "28"]]
    assert all(row[3].endswith(" s") for row in rows)
    cost = section.numbers["confirm"]["search_cost"]["a"]
    assert cost == {
        "trials": 14,
        "epochs": 28,
        "wall_time_s": cost["wall_time_s"],
        "hyperparameters": 5,
    }
    assert any(
        "The searches did not spend equal epochs (z 24, a 28; the most 17% above the fewest)"
        in line
        for line in section.notes
    )
    close = [load_study_data(*with_storage(synthetic_study(n_trials=13, name="a", seed=2)))]
    even = verdict_section([datas[0], *close, datas[-1]])  # 24 and 26: within 10 %
    assert not any("did not spend equal epochs" in line for line in even.notes)


def test_with_ten_seeds_every_verdict_row_has_its_interval() -> None:
    step = 1 / 269  # accuracies in steps of one validation image: many tied differences
    runs = {
        "adamz #1": {
            "val": constant(0.95),
            "test": [0.9 + step * (i % 3) for i in range(10)],
            "source": {"study": "z"},
        },
        "same #1": {
            "val": constant(0.9),
            "test": [0.9 + step * (i % 3) for i in range(10)],
            "optimizer": "adam",
            "source": {"study": "same"},
        },
        "shifted #1": {
            "val": constant(0.9),
            "test": [0.9 + step * (i % 3 + 1) for i in range(10)],
            "optimizer": "adam",
            "source": {"study": "shifted"},
        },
        "flat #1": {
            "val": constant(0.9),
            "test": [0.9] * 10,
            "optimizer": "sgd",
            "source": {"study": "flat"},
        },
        "diverging #1": {
            "val": constant(0.9),
            "test": constant(0.9),
            "optimizer": "sgd",
            "diverged": [1004],
            "source": {"study": "diverging"},
        },
    }
    section = verdict_section([load_study_data(*with_storage(replicate_study(runs)))])
    header, *rows = section.tables[1]
    median, versus = header.index("test_accuracy median [95 % CI], points"), len(header) - 2
    assert len(rows) == 5
    for row in rows:
        assert re.fullmatch(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", row[median]), row
    for row in rows[1:]:
        assert re.match(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\], p = ", row[versus]), row
    for comparison in section.numbers["confirm"]["comparisons"].values():
        assert all(math.isfinite(bound) for bound in comparison["ci95_difference"])


def test_both_tables_of_a_page_subtract_the_same_way_in_points_and_say_so() -> None:
    adamz, adam = constant(0.90), constant(0.9067)  # Adam 0.67 points higher, also on validation
    study = replicate_study(two_winners(adamz, adam))
    data = load_study_data(study, storage_of(study))
    verdict_header, _, adam_row = verdict_section([data]).tables[1]
    seeds_header, _, adam_seeds_row = replicates_section(data).tables[0]
    # both: the verdict's reference (AdamZ) minus the row, though Adam validates better
    assert verdict_header[-2] == (
        "z (reference) − this row, points of test_accuracy: Hodges-Lehmann [95 % CI], p"
    )
    assert adam_row[-2].startswith("-0.67 [")
    assert seeds_header[-1] == (
        "adamz #1 (reference) − this run, points of test_accuracy: Hodges-Lehmann [95 % CI], p"
    )
    assert adam_seeds_row[0] == "adam #1"
    assert adam_seeds_row[-1].startswith("-0.67 [")
    assert seeds_header[2] == "test_accuracy Q1, points"
    assert adam_seeds_row[3] == "90.67"  # points, not the fraction 0.9067


def mse_runs(shift: float) -> dict[str, dict[str, Any]]:
    """AdamZ and Adam on a minimised MSE of about 0.014, the seed spread about 0.001; Adam
    ``shift`` higher (worse)."""
    rng = np.random.default_rng(11)
    base = 0.014 + 0.001 * rng.standard_normal(len(SEEDS))
    other = base + shift + 0.0002 * rng.standard_normal(len(SEEDS))
    return {
        "adamz #1": {"val": list(base), "test": list(base), "source": {"study": "z"}},
        "adam #1": {
            "val": list(other),
            "test": list(other),
            "optimizer": "adam",
            "source": {"study": "a"},
        },
    }


def test_a_minimised_metric_gets_a_margin_in_its_own_units_and_the_page_says_where_from() -> None:
    study = replicate_study(mse_runs(0.0), metric="test_loss", direction="minimize")
    section = verdict_section([load_study_data(*with_storage(study))])
    numbers = section.numbers["confirm"]
    margin = numbers["margin"]
    # half the median seed standard deviation (about 0.001): in the loss's units, not 0.25
    assert 0.0002 < margin < 0.001
    assert numbers["margin_source"].startswith("derived: 0.5 x the confirmed runs' median seed")
    line = next(line for line in section.summary if "equivalence margin" in line)
    assert line.startswith(f"The equivalence margin is ±{margin:g} test_loss: derived")
    assert "±0.25" not in " ".join(section.summary + section.notes)
    plain = section.summary[0]
    assert plain.startswith("**On digits, ")
    assert "(lower is better)" in plain
    # a margin in the study file, or given, wins over the derived one
    stated = replicate_study(
        mse_runs(0.0), metric="test_loss", direction="minimize", extra={"margin": 0.002}
    )
    numbers = verdict_section([load_study_data(*with_storage(stated))]).numbers["confirm"]
    assert (numbers["margin"], numbers["margin_source"]) == (
        0.002,
        "set in the study file (margin: 0.002)",
    )
    given = verdict_section([load_study_data(*with_storage(stated))], margin=0.003)
    assert given.numbers["confirm"]["margin_source"] == "given with report --margin"


def test_the_verdict_opens_with_a_plain_sentence_then_the_winners_configurations() -> None:
    study = replicate_study(mse_runs(0.004), metric="test_loss", direction="minimize")
    section = verdict_section([load_study_data(*with_storage(study))])
    assert section.summary[0].startswith(
        "**On digits, AdamZ beats Adam: AdamZ − Adam = -0.0041 test_loss (lower is better), "
        "interval "
    )
    header, *rows = section.tables[0]
    assert header == [
        "group", "optimizer", "winner (best val_loss median)", "test_loss median [95 % CI], test_loss",
        "hyperparameters",
    ]  # fmt: skip
    assert rows[0][:3] == ["z (reference)", "adamz", "adamz #1"]
    assert rows[0][-1] == "lr 0.01"
    assert section.notes[-1].startswith("How to read it (test_loss: lower is better)")


def test_a_confirmation_reuses_the_seeds_an_earlier_one_trained(tmp_path: Any) -> None:
    from adamz.cli._study_commands import create_study
    from adamz.reports import reuse_finished_runs
    from adamz.search.replicates import parse_replicates

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    earlier = replicate_study(two_winners(constant(0.9), constant(0.8)), storage=storage)
    definition = dict(earlier.user_attrs["definition"], name="confirm-z+a+b")
    definition["runs"] = [
        *definition["runs"],
        {"label": "b #1", "optimizer": "sgd", "hyperparameters": {"lr": 0.01}},
    ]
    spec = parse_replicates(definition, source="test")
    assert create_study(spec, storage)
    assert reuse_finished_runs(spec, storage) == {"confirm": 2 * len(SEEDS)}
    study = optuna.load_study(study_name="confirm-z+a+b", storage=storage)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(done) == 2 * len(SEEDS)
    assert {trial.system_attrs["fixed_params"]["run"] for trial in waiting} == {"b #1"}
    first = next(t for t in done if t.params == {"run": "adamz #1", "seed": SEEDS[0]})
    assert first.value == pytest.approx(constant(0.9)[0])
    assert first.user_attrs["reused_from"].startswith("confirm #")
    assert reuse_finished_runs(spec, storage) == {}  # nothing left to reuse
