"""The ablation table: AdamZ − Adam split into clipping (adam-clip − Adam) and controller
(AdamZ − adam-clip), each adjusted with every comparison of the page."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from report_helpers import SEEDS, replicate_study, with_storage
from scipy import stats

from adamz.reports import load_study_data
from adamz.reports._stats import hodges_lehmann
from adamz.reports._verdict import verdict_sections

QUIET = {"overshoots": 0, "stagnations": 0}
BUSY = {"overshoots": 3, "stagnations": 5}


def ablation_study(
    adam: list[float],
    clipped: list[float],
    adamz: list[float],
    *,
    without: list[float] | None = None,
    controller: dict[str, int] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    name: str = "confirm",
    workload: str = "digits",
) -> Any:
    """A confirmation of an AdamZ, an adam-clip and an Adam search (and an adamz-no-controller
    one), with these test values (validation alike) on each seed."""
    runs: dict[str, dict[str, Any]] = {}
    for optimizer, values in (
        ("adamz", adamz),
        ("adam-clip", clipped),
        ("adam", adam),
        ("adamz-no-controller", without),
    ):
        if values is None:
            continue
        runs[f"{workload}-{optimizer} #1"] = {
            "val": values,
            "test": values,
            "optimizer": optimizer,
            "source": {"study": f"{workload}-{optimizer}"},
            **(
                {"controller": controller or BUSY, "hyperparameters": hyperparameters or {}}
                if optimizer == "adamz"
                else {}
            ),
        }
    return load_study_data(*with_storage(replicate_study(runs, name=name, workload=workload)))


def noise(seed: int, scale: float = 0.01) -> np.ndarray:
    return 0.9 + scale * np.random.default_rng(seed).standard_normal(len(SEEDS))


def ablation_of(sections: list[Any]) -> Any:
    return next(section for section in sections if section.title.startswith("Ablation"))


def test_on_seeds_that_differ_by_shifts_the_two_parts_sum_to_the_whole_exactly() -> None:
    adam = noise(0)
    clipped, adamz = adam + 0.004, adam + 0.004 + 0.002
    section = ablation_of(
        verdict_sections([ablation_study(list(adam), list(clipped), list(adamz))])
    )
    numbers = section.numbers["confirm"]
    assert numbers["whole"]["difference"] == pytest.approx(0.006)
    assert numbers["clipping"]["difference"] == pytest.approx(0.004)
    assert numbers["controller"]["difference"] == pytest.approx(0.002)
    assert numbers["gap"] == pytest.approx(0.0, abs=1e-12)
    assert numbers["groups"] == {
        "adamz": "digits-adamz",
        "adam-clip": "digits-adam-clip",
        "adam": "digits-adam",
    }
    sentence = section.summary[0]
    assert sentence.startswith(
        "digits: **AdamZ − Adam +0.60 points = clipping +0.40 + controller +0.20**"
    )
    assert "clipping: digits-adam-clip better; controller: digits-adamz better" in sentence
    assert "miss the whole" not in sentence
    header, row = section.tables[0]
    assert header[1] == "whole: AdamZ − Adam, points: Hodges-Lehmann [95 % CI], p"
    assert row[1].startswith("+0.60 [+0.60, +0.60], p = 0.002 (n = 10), adjusted")
    assert row[4] == "+0.00"
    assert row[-1] == "fired in 10 of 10 runs (30 overshoot and 50 stagnation adjustments)"


def test_where_the_differences_are_not_one_shift_the_table_shows_the_parts_gap() -> None:
    adam, clipped, adamz = noise(4), noise(5), noise(6)
    section = ablation_of(
        verdict_sections([ablation_study(list(adam), list(clipped), list(adamz))])
    )
    numbers = section.numbers["confirm"]
    # seed by seed the parts add up; their Hodges-Lehmann shifts (medians) need not
    whole, clipping, controller = adamz - adam, clipped - adam, adamz - clipped
    assert clipping + controller == pytest.approx(whole)
    assert numbers["whole"]["difference"] == pytest.approx(hodges_lehmann(whole))
    assert numbers["clipping"]["difference"] == pytest.approx(hodges_lehmann(clipping))
    assert numbers["controller"]["difference"] == pytest.approx(hodges_lehmann(controller))
    gap = hodges_lehmann(clipping) + hodges_lehmann(controller) - hodges_lehmann(whole)
    assert abs(gap) > 1e-3  # 0.68 points
    assert numbers["gap"] == pytest.approx(gap)
    assert f"miss the whole by {gap * 100:+.2f}" in section.summary[0]
    assert section.tables[0][1][4] == f"{gap * 100:+.2f}"


def test_the_clipping_part_is_adjusted_with_every_comparison_of_the_page() -> None:
    datas = [
        ablation_study(list(noise(4)), list(noise(5)), list(noise(6))),
        ablation_study(
            list(noise(7)), list(noise(8)), list(noise(9)), name="other", workload="circles"
        ),
    ]
    sections = verdict_sections(datas)
    section, verdict = ablation_of(sections), sections[-1]
    family = []
    for data in datas:
        comparisons = verdict.numbers[data.name]["comparisons"]
        family += [comparisons[f"{data.workload}-adam"], comparisons[f"{data.workload}-adam-clip"]]
        family.append(section.numbers[data.name]["clipping"])
    adjusted = stats.false_discovery_control([comparison["p_value"] for comparison in family])
    assert [c["adjusted_p_value"] for c in family] == pytest.approx(list(adjusted))
    assert "over all 6 comparisons of this report" in verdict.notes[-1]
    assert "with all 6 comparisons of this report" in section.notes[0]
    assert [row[0] for row in section.tables[0][1:]] == ["digits", "circles"]


@pytest.mark.parametrize(
    ("hyperparameters", "trained_as"),
    [
        ({}, "Adam with clipping (max_grad_norm 1.0)"),
        ({"max_grad_norm": None}, "Adam, unclipped (max_grad_norm none)"),
    ],
)
def test_a_winner_whose_controller_never_fired_is_called_what_it_trained_as(
    hyperparameters: dict[str, Any], trained_as: str
) -> None:
    values = list(noise(10))
    quiet = ablation_study(
        values, values, values, controller=QUIET, hyperparameters=hyperparameters
    )
    section = ablation_of(verdict_sections([quiet]))
    expected = (
        "The controller never fired in any of the 10 runs of AdamZ's winner (digits-adamz #1): "
        f"that winner is {trained_as}"
    )
    assert expected in section.summary[0]
    assert section.tables[0][1][-1].startswith(expected)
    assert section.numbers["confirm"]["controller_activity"] == {
        "runs": 10,
        "fired": 0,
        "overshoots": 0,
        "stagnations": 0,
    }


def test_adamz_without_its_controller_measures_the_controller_a_second_time() -> None:
    adam = noise(11)
    data = ablation_study(
        list(adam), list(adam + 0.002), list(adam + 0.005), without=list(adam + 0.001)
    )
    section = ablation_of(verdict_sections([data]))
    assert section.tables[0][0][5] == "controller: AdamZ − adamz-no-controller"
    assert section.tables[0][1][5].startswith("+0.40 [")
    assert section.numbers["confirm"]["without_controller"]["difference"] == pytest.approx(0.004)


def test_without_an_adam_clip_search_the_page_has_no_ablation() -> None:
    values = list(noise(12))
    runs = {
        "z #1": {"val": values, "test": values, "source": {"study": "z"}},
        "a #1": {"val": values, "test": values, "optimizer": "adam", "source": {"study": "a"}},
    }
    sections = verdict_sections([load_study_data(*with_storage(replicate_study(runs)))])
    assert [section.title for section in sections] == ["Verdict"]
