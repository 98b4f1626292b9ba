"""Search replicates: each search repeated with its own sampler seed, the verdict over the
replicates, and the budget curves' spread across them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest
from report_helpers import (
    SEEDS,
    constant,
    replicate_study,
    search_study,
    storage_of,
    synthetic_study,
    with_storage,
)

from adamz.reports import ReportError, build_report, load_study_data
from adamz.reports._budget import REPLICATES, budget_section
from adamz.reports._search_replicates import (
    confirmation_first_seed,
    replicate_interval,
    replicate_name,
    replicate_of,
    search_replicate_spec,
)
from adamz.reports._stats import (
    benjamini_hochberg,
    hodges_lehmann,
    hodges_lehmann_interval,
)
from adamz.reports._verdict import DERIVED_MARGIN_SHARE, verdict_sections

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_replicate_is_named_after_its_search_and_its_number_read_back() -> None:
    assert replicate_name("digits-adamz", 1) == "digits-adamz"
    assert replicate_name("digits-adamz", 3) == "digits-adamz~r3"
    assert replicate_of("digits-adamz~r3") == ("digits-adamz", 3)
    assert replicate_of("digits-adamz") == ("digits-adamz", 1)
    assert replicate_of("odd~r1") == ("odd~r1", 1)  # replicate 1 is never named so
    assert replicate_of("odd~rx") == ("odd~rx", 1)
    with pytest.raises(ValueError, match=r"Invalid replicate: must be >= 1, got 0\."):
        replicate_name("digits-adamz", 0)
    assert [confirmation_first_seed(r, 6) for r in (1, 2, 3)] == [1000, 1006, 1012]


@pytest.mark.parametrize(
    ("file_seed", "seeds"), [(0, [1, 2, 3]), (7, [8, 9, 10]), (None, [1, 2, 3])]
)
def test_each_replicate_is_the_stored_definition_with_its_own_name_and_sampler_seed(
    file_seed: int | None, seeds: list[int]
) -> None:
    data = load_study_data(*with_storage(search_study("digits-adamz", sampler_seed=file_seed)))
    specs = [search_replicate_spec(data, replicate) for replicate in (2, 3, 4)]
    assert [spec.name for spec in specs] == [f"digits-adamz~r{r}" for r in (2, 3, 4)]
    assert [spec.sampler["seed"] for spec in specs] == seeds
    assert file_seed not in seeds  # none shares the original's
    assert data.definition is not None
    for spec in specs:
        changed = {k for k in spec.definition if spec.definition[k] != data.definition.get(k)}
        assert changed == {"name", "sampler", "description"}
        assert spec.sampler["name"] == "tpe"
        assert f"sampler seed {spec.sampler['seed']}" in spec.definition["description"]
        assert spec.budget == data.definition["budget"]


def test_only_an_original_search_made_by_adamz_search_is_replicated() -> None:
    plain = optuna.create_study(direction="maximize", study_name="plain")
    plain.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    with pytest.raises(ReportError, match=r"'plain' was not created by adamz-search"):
        search_replicate_spec(load_study_data(plain, storage_of(plain)), 2)
    confirmation = replicate_study({"z #1": {"val": constant(0.9), "test": constant(0.9)}})
    with pytest.raises(ReportError, match=r"'confirm' is a replicates study"):
        search_replicate_spec(load_study_data(confirmation, storage_of(confirmation)), 2)
    replicate = load_study_data(*with_storage(search_study("digits-adamz~r2")))
    with pytest.raises(ReportError, match=r"is replicate 2 of 'digits-adamz': replicate the"):
        search_replicate_spec(replicate, 3)
    with pytest.raises(ReportError, match=r"Invalid replicate: must be >= 2 .* got 1\."):
        search_replicate_spec(load_study_data(*with_storage(search_study("digits-adamz"))), 1)


def test_the_interval_over_replicates_is_95_percent_from_six_and_the_whole_range_below() -> None:
    five = np.array([0.3, -0.1, 0.2, 0.5, 0.0])
    assert replicate_interval(five) == (-0.1, 0.5, 1 - 2**-4)
    assert replicate_interval(five[:2]) == (-0.1, 0.3, 0.5)
    six = np.array([0.3, -0.1, 0.2, 0.5, 0.0, 0.4])
    assert replicate_interval(six) == (*hodges_lehmann_interval(six, 0.95), 0.95)
    assert all(math.isnan(bound) for bound in replicate_interval(five[:1]))


def confirmation(
    replicate: int,
    shifts: dict[str, float],
    *,
    name: str = "",
    storage: Any = None,
    reference: str = "z",
    **options: Any,
) -> Any:
    """The confirmation of search replicate ``replicate`` of ``reference`` (AdamZ) and of a
    search per key of ``shifts`` (Adam): each baseline's winner is the reference's shifted down
    by its shift on every seed, validation and test alike; ``options``: more arguments of
    :func:`replicate_study` (its metric, say)."""
    base = constant(0.9)
    runs: dict[str, dict[str, Any]] = {
        f"{replicate_name(reference, replicate)} #1": {
            "val": base,
            "test": base,
            "source": {"study": replicate_name(reference, replicate)},
        }
    }
    for study, shift in shifts.items():
        values = list(np.array(base) - shift)
        runs[f"{replicate_name(study, replicate)} #1"] = {
            "val": values,
            "test": values,
            "optimizer": "adam",
            "source": {"study": replicate_name(study, replicate)},
        }
    study = replicate_study(runs, name=name or f"confirm-r{replicate}", storage=storage, **options)
    return load_study_data(study, storage_of(study))


def test_the_verdict_over_replicates_counts_wins_and_says_when_the_sign_flips() -> None:
    shifts = [{"a": 0.01, "b": 0.02}, {"a": 0.02, "b": 0.01}, {"a": -0.005, "b": 0.03}]
    sections = verdict_sections(
        [confirmation(replicate, shift) for replicate, shift in enumerate(shifts, start=1)]
    )
    assert [section.title for section in sections] == ["Verdict over search replicates", "Verdict"]
    over, verdict = sections
    pairs = {(pair["first"], pair["second"]): pair for pair in over.numbers["pairs"]}
    flips = pairs["z", "a"]
    assert flips["replicates"] == [1, 2, 3]
    assert flips["differences"] == pytest.approx([0.01, 0.02, -0.005])
    assert (flips["ahead"], flips["behind"], flips["level"]) == (2, 1, 0)
    # each replicate's shift is exact on 10 seeds: the seed-level verdict calls each one
    assert (flips["better_by_seeds"], flips["worse_by_seeds"]) == (2, 1)
    assert flips["sign_flips"] is True
    assert flips["difference"] == pytest.approx(hodges_lehmann(np.array([0.01, 0.02, -0.005])))
    assert flips["interval"] == pytest.approx([-0.005, 0.02])
    assert flips["confidence"] == 0.75
    steady = pairs["z", "b"]
    assert (steady["ahead"], steady["behind"], steady["sign_flips"]) == (3, 0, False)
    sentences = [line for line in over.summary if line.startswith("**z** − ")]
    assert sentences[0].startswith("**z** − a over 3 search replicates: z ahead in 2, behind in 1")
    assert "The sign flips between replicates" in sentences[0]
    assert "The sign flips" not in sentences[1]
    expected = "+0.88 points of test_accuracy over replicates (Hodges-Lehmann, 75% interval"
    assert expected in sentences[0]
    _header, *rows = over.tables[0]
    assert rows[0][4] == "r1 +1.00, r2 +2.00, r3 -0.50"
    assert [row[7] for row in rows] == ["flips", "steady"]
    # every replicate keeps its seed-level verdict, adjusted over all 6 comparisons
    assert len(verdict.tables) == 6  # each: the winners' configurations, then the statistics
    assert "over all 6 comparisons of this report" in verdict.notes[-1]


def test_a_page_of_accuracies_and_a_loss_tests_each_pooled_pair_at_its_own_metrics_margin() -> None:
    # The same shift of 0.001 on both: 0.1 points of accuracy is within the default ±0.25
    # points, while on the loss it is larger than its margin, derived from the seeds' spread
    # (half their standard deviation); tested at the accuracy's 0.25 it would be "by less than the margin".
    accuracy = [confirmation(r, {"a": 0.001}) for r in (1, 2, 3)]
    loss = [
        confirmation(
            r, {"lossy": 0.001}, name=f"confirm-loss-r{r}", reference="t", workload="pysource",
            metric="test_loss", direction="minimize",
        )
        for r in (1, 2, 3)
    ]  # fmt: skip
    derived = float(f"{DERIVED_MARGIN_SHARE * np.std(constant(0.9), ddof=1):.2g}")
    over, _verdict = verdict_sections(accuracy + loss)
    pooled = {pair["first"]: pair["pooled"] for pair in over.numbers["pairs"]}
    assert pooled["z"]["margin"] == 0.0025
    assert pooled["z"]["verdict"] == "z better, by less than the ±0.25 points margin"
    assert pooled["t"]["margin"] == derived < 0.001
    assert pooled["t"]["verdict"] == "lossy better"
    assert f"TOST) at ±0.25 points of test_accuracy, ±{derived:g} test_loss," in over.notes[0]


def test_one_replicate_of_a_comparison_gives_no_verdict_over_replicates() -> None:
    sections = verdict_sections([confirmation(1, {"a": 0.01}), confirmation(2, {"b": 0.01})])
    assert [section.title for section in sections] == ["Verdict"]


def test_budget_curves_over_replicates_are_the_mean_and_range_of_their_best_so_far() -> None:
    names = ["z", "z~r2", "z~r3", "a", "a~r2", "a~r3"]
    datas = [
        load_study_data(*with_storage(synthetic_study(n_trials=12, name=name, seed=index)))
        for index, name in enumerate(names)
    ]
    section = budget_section(datas)
    over = section.numbers[REPLICATES]
    assert list(over) == ["z", "a"]
    ks = np.array(over["z"]["k"])
    # every trial finished: the budget view is the values themselves, in the order they ran
    runs = np.array([np.maximum.accumulate(data.finished_values) for data in datas[:3]])
    curves = runs[:, ks - 1]
    assert over["z"]["replicates"] == ["z", "z~r2", "z~r3"]
    assert over["z"]["mean"] == pytest.approx(curves.mean(axis=0))
    assert over["z"]["low"] == pytest.approx(curves.min(axis=0))
    assert over["z"]["high"] == pytest.approx(curves.max(axis=0))
    # two epochs a trial: the epochs axis runs from 2 to 24, where each replicate is at its
    # k trials' best (k = epochs / 2)
    epochs = np.array(over["z"]["epochs"])
    assert (epochs[0], epochs[-1]) == (2, 24)
    at = (epochs // 2).astype(int) - 1
    assert over["z"]["mean_by_epochs"] == pytest.approx(runs[:, at].mean(axis=0))
    assert len(section.figures) == 2
    titles = [figure.layout.title.text for figure in section.figures]
    assert all("mean over search replicates (band: their range)" in t for t in titles)
    assert section.figures[1].layout.xaxis.title.text.startswith("epochs trained")
    assert section.summary[0].startswith("z over 3 search replicates: best")
    assert len(section.summary) == 3  # one line per search, and what the other sections show


def test_a_report_with_search_replicates_describes_each_search_once_and_titles_it_so(
    tmp_path: Any,
) -> None:
    storage = optuna.storages.InMemoryStorage()
    searches = [
        synthetic_study(n_trials=12, name=name, seed=index, storage=storage)
        for index, name in enumerate(["z", "z~r2", "a", "a~r2"])
    ]
    confirmations = []
    for replicate in (1, 2):
        data = confirmation(replicate, {"a": 0.01}, storage=storage)
        confirmations.append(data.study)
    files = build_report(
        [*searches, *confirmations],
        tmp_path,
        save_note=False,
        progress=False,
        importance_repeats=1,
        fanova_trees=2,
        storage=storage,
    )
    title = "AdamZ Search report: z vs a, 2 search replicates each, confirmed on fresh seeds"
    assert files.summary.startswith(f"# {title}\n")
    what_matters = files.summary.split("## Which hyperparameters matter")[1].split("\n## ")[0]
    assert "### z: Importance" in what_matters
    assert "z~r2: " not in what_matters
    over = files.summary.split("### Verdict over search replicates")[1].split("\n### ")[0]
    # the answer first, how to read it in a footnote after the tables
    assert over.lstrip().startswith("- **z** − a over 2 search replicates")
    assert over.index("How to read it") > over.index("| first − second")


def noisy_confirmation(
    replicate: int, winners: dict[str, tuple[str, float]], *, noise: float, seed: int
) -> Any:
    """The confirmation of replicate ``replicate`` of one search per key of ``winners`` (its
    optimizer and its winner's true shift below 0.9), each seed's value with Gaussian noise
    shared by all winners (the seed's own luck) plus some of each winner's own."""
    rng = np.random.default_rng(seed)
    luck = rng.normal(0, noise, len(SEEDS))
    runs = {}
    for study, (optimizer, shift) in winners.items():
        values = list(0.9 - shift + luck + rng.normal(0, noise / 4, len(SEEDS)))
        runs[f"{replicate_name(study, replicate)} #1"] = {
            "val": values,
            "test": values,
            "optimizer": optimizer,
            "source": {"study": replicate_name(study, replicate)},
        }
    study = replicate_study(runs, name=f"confirm-r{replicate}")
    return load_study_data(study, storage_of(study))


ABLATION = {
    "z": ("adamz", 0.0),
    "nc": ("adamz-no-controller", 0.0),
    "clip": ("adam-clip", 0.0),
    "adam": ("adam", 0.0),
}


def pooled_pairs(winners: dict[str, tuple[str, float]], replicates: int = 5) -> Any:
    datas = [noisy_confirmation(r, winners, noise=0.004, seed=r) for r in range(1, replicates + 1)]
    over = verdict_sections(datas)[0]
    assert over.title == "Verdict over search replicates"
    return over, {(pair["first"], pair["second"]): pair for pair in over.numbers["pairs"]}


def test_a_planted_gain_is_found_by_the_pooled_seeds_where_five_replicates_alone_cannot() -> None:
    # 0.6 points in every replicate: 5 per-replicate shifts give at most 94 %, the 50 pooled
    # seeds a 95 % interval around the planted shift and an adjusted p far below 0.05
    _over, pairs = pooled_pairs({"z": ("adamz", 0.0), "a": ("adam", 0.006)})
    pair = pairs["z", "a"]
    assert pair["confidence"] == pytest.approx(1 - 2**-4)
    pooled = pair["pooled"]
    assert pooled["n"] == 5 * len(SEEDS)
    low, high = pooled["ci95_difference"]
    assert low < 0.006 < high
    assert low > 0.003
    assert pooled["adjusted_p_value"] < 0.001
    assert pooled["differs"] is True
    assert pooled["equivalent"] is False
    assert pooled["verdict"] == "z better"


def test_a_planted_null_is_shown_equivalent_within_the_margin_by_the_pooled_seeds() -> None:
    _over, pairs = pooled_pairs({"z": ("adamz", 0.0), "a": ("adam", 0.0)})
    pooled = pairs["z", "a"]["pooled"]
    assert pooled["differs"] is False
    assert pooled["equivalent"] is True  # no shift: its interval well inside +-0.25 points
    assert pooled["verdict"] == "equivalent within ±0.25 points"


def test_pooled_p_values_are_adjusted_over_every_pair_of_the_section() -> None:
    over, pairs = pooled_pairs(ABLATION)
    family = [pair["pooled"] for pair in pairs.values()]
    assert len(family) == 4  # z against 3 searches, and the ablation's adam-clip − adam
    assert all(item["adjusted_p_value"] >= item["p_value"] for item in family)
    raw = [item["p_value"] for item in family]
    assert [item["adjusted_p_value"] for item in family] == pytest.approx(benjamini_hochberg(raw))
    assert "over the 4 pooled comparisons of this section" in over.notes[0]


def test_the_attribution_splits_adamz_over_adam_into_controller_and_clipping() -> None:
    over, _pairs = pooled_pairs(ABLATION)
    rows = over.numbers["attribution"]
    assert [(row["part"], row["first"], row["second"]) for row in rows] == [
        ("what the controller adds", "z", "nc"),
        ("what clipping adds", "clip", "adam"),
        ("what AdamZ adds over Adam", "z", "adam"),
    ]
    assert all(row["verdict"] == "equivalent within ±0.25 points" for row in rows)
    assert over.tables[-1][0][0] == "part"


def test_each_optimizers_pooled_result_is_the_median_over_replicates_of_its_winners() -> None:
    over, _pairs = pooled_pairs({"z": ("adamz", 0.0), "a": ("adam", 0.006)}, replicates=3)
    results = {result["search"]: result for result in over.numbers["winners"]}
    medians = results["a"]["medians"]
    assert len(medians) == 3
    assert results["a"]["median"] == pytest.approx(float(np.median(medians)))
    assert (results["a"]["smallest"], results["a"]["largest"]) == (min(medians), max(medians))
    assert results["a"]["optimizer"] == "adam"
