"""The verdict picks each optimizer's winner on validation and presents test; the multi-study
export recommends only what survived validation on every workload."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from report_helpers import synthetic_study

from adamz.reports import ReportError, build_report, load_study_data
from adamz.reports._export import PAPER_DEFAULTS, export_config, validated_choice
from adamz.reports._replicates import median_interval, smallest_possible_p
from adamz.reports._verdict import verdict_section

SEEDS = list(range(1000, 1010))


def replicate_study(
    runs: dict[str, dict[str, Any]],
    *,
    workload: str = "digits",
    name: str = "confirm",
    storage: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """A finished replicate study: per run label, ``val`` and ``test`` values per seed (lists),
    ``source``, ``optimizer``, ``hyperparameters``, ``time`` and ``diverged`` seeds."""
    study = optuna.create_study(direction="maximize", study_name=name, storage=storage)
    definition = {
        "kind": "replicates",
        "name": name,
        "workload": {"name": workload},
        "direction": "maximize",
        "metric": "test_accuracy",
        "seeds": len(SEEDS),
        "first_seed": SEEDS[0],
        "runs": [
            {
                "label": label,
                "optimizer": run.get("optimizer", "adamz"),
                "hyperparameters": run.get("hyperparameters", {"lr": 0.01}),
                **({"source": run["source"]} if "source" in run else {}),
            }
            for label, run in runs.items()
        ],
    }
    study.set_user_attr("definition", definition)
    distributions = {
        "run": CategoricalDistribution(list(runs)),
        "seed": IntDistribution(SEEDS[0], SEEDS[-1]),
    }
    trials = []
    for label, run in runs.items():
        for index, seed in enumerate(SEEDS):
            diverged = seed in run.get("diverged", ())
            record: dict[str, Any] = {"result": {"train_time_s": run.get("time", 1.0)}}
            if diverged:
                record["diverged"] = True
            else:
                record["metrics"] = {"val_accuracy": run["val"][index]}
            trials.append(
                optuna.trial.create_trial(
                    params={"run": label, "seed": seed},
                    distributions=distributions,
                    value=0.1 if diverged else run["test"][index],
                    user_attrs={"run": record},
                )
            )
    study.add_trials(trials)
    return study


def constant(value: float, spread: float = 0.002) -> list[float]:
    return list(value + spread * np.linspace(-1, 1, len(SEEDS)))


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
    section = verdict_section([load_study_data(study)])
    numbers = section.numbers["confirm"]
    assert numbers["winners"]["z"]["run"] == "adamz #1"  # not #2, which tests better
    assert numbers["reference"] == "z"
    assert numbers["candidates"] == {"z": 2, "a": 1}
    comparison = numbers["comparisons"]["a"]
    assert comparison["difference"] == pytest.approx(0.01)
    assert comparison["smallest_possible_p"] == pytest.approx(2 / 2**10)
    assert any("unequal numbers of candidates" in line for line in section.summary)
    assert section.title == "Verdict"


def test_a_difference_inside_the_seed_noise_is_called_so() -> None:
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
    comparison = verdict_section([load_study_data(study)]).numbers["confirm"]["comparisons"]["a"]
    assert comparison["inside_seed_noise"] is True


def test_without_replicates_the_verdict_says_how_to_get_one() -> None:
    study = optuna.create_study(direction="maximize", study_name="search")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    section = verdict_section([load_study_data(study)])
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
    return load_study_data(replicate_study(runs, workload=workload, name=f"validate-{workload}"))


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
    assert "below the paper defaults on mnist" in choice["table"]["tuned"]["excluded"]
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
        export_config([load_study_data(study)])


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
    with_verdict = build_report([search, confirmation], tmp_path / "a", **options)
    assert note().endswith(with_verdict.summary)
    assert "## Verdict" in note()
    build_report([search], tmp_path / "b", **options)
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
    section = verdict_section([load_study_data(replicate_study(runs))])
    comparisons = section.numbers["confirm"]["comparisons"]
    assert all("adjusted for the 6 comparisons" in line for line in section.summary)
    raw = comparisons["b0"]["p_value"]
    assert raw < 0.05
    assert comparisons["b0"]["adjusted_p_value"] > raw
    ranked = sorted(c["p_value"] for c in comparisons.values())
    assert comparisons["b0"]["adjusted_p_value"] == pytest.approx(
        min(ranked[i] * 6 / (i + 1) for i in range(ranked.index(raw), 6)), rel=1e-9
    )


def test_with_too_few_seeds_for_any_test_the_verdict_says_so_instead_of_noise() -> None:
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
    data = load_study_data(study)
    data.trials = [t for t in data.trials if t.params["seed"] < SEEDS[5]]  # 5 seeds
    section = verdict_section([data])
    assert section.numbers["confirm"]["comparisons"]["a"]["too_few_seeds"] is True
    assert "too few seeds to tell it from the seed noise" in section.summary[0]
    assert "no test can reach p < 0.05" in section.summary[0]
    assert "no 95 % CI below 6 seeds" in section.summary[0]
    assert "adjusted" not in section.summary[0] + str(section.tables)  # one comparison
    assert section.summary[0].count("smallest possible p") == 1


def test_a_confirmed_reports_title_names_the_searches_it_compares(tmp_path: Any) -> None:
    searches = [synthetic_study(n_trials=12, name=name) for name in ("tuned-z", "tuned-a")]
    confirmation = replicate_study(
        {
            "adamz #1": {"val": constant(0.9), "test": constant(0.9), "source": {"study": "z"}},
            "adam #1": {"val": constant(0.8), "test": constant(0.8), "source": {"study": "a"}},
        }
    )
    files = build_report([*searches, confirmation], tmp_path, save_note=False, progress=False)
    title = "AdamZ Search report: tuned-z vs tuned-a, confirmed on fresh seeds"
    assert f"<h1>{title}</h1>" in files.html.read_text()
    assert files.summary.startswith(f"# {title}\n")
