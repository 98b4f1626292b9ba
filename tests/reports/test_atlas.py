"""The atlas's analysis on synthetic arrays whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from adamz.reports._atlas import (
    Factor,
    controller_activity,
    effects_in_points,
    importance,
    instability,
    interaction_grid,
    noise_floor,
    recommend,
    safe_range,
    sensitivity_curve,
)

UNIT = [Factor("dominant"), Factor("weak"), Factor("inert")]


def noisy(signal: np.ndarray, sd: float, seeds: int = 3, seed: int = 0) -> np.ndarray:
    """``signal`` (one value per configuration) plus seed noise: configurations x seeds."""
    rng = np.random.default_rng(seed)
    return signal[:, None] + rng.normal(0.0, sd, (len(signal), seeds))


def test_importance_ranks_dominant_over_weak_and_calls_the_inert_input_no_measurable_effect() -> (
    None
):
    x = np.random.default_rng(1).random((200, 3))
    values = noisy(10 * x[:, 0] + 3 * x[:, 1], sd=0.5)  # shares about 0.89, 0.08, 0; noise 0.03
    found = importance(x, values, UNIT, resamples=30)
    assert found.ranked() == ["dominant", "weak"]
    assert found.measurable == {"dominant": True, "weak": True, "inert": False}
    assert found.total["dominant"].low > found.total["weak"].high
    assert found.support["weak"] == 1.0
    assert found.total["inert"].high < 0.01
    assert 0.01 < found.noise.estimate < 0.06
    assert found.surrogate_r2 > 0.9
    numbers = found.as_dict()
    assert numbers["ranked"] == ["dominant", "weak"]
    assert set(numbers["pairs"]) == {"dominant x weak", "dominant x inert", "weak x inert"}


ATLAS_SIZE = 1024  # configurations x 3 seeds, as the shipped atlases


def planted(seed: int = 11) -> tuple[np.ndarray, np.ndarray, list[Factor]]:
    """An atlas-sized design: a 20-point hump over the rate, a planted 1-point step on
    ``planted``, seven inert columns, and seeds 1.3 points apart (the digits atlas's median)."""
    rng = np.random.default_rng(seed)
    x = rng.random((ATLAS_SIZE, 9))
    signal = 97 - 20 * (x[:, 0] - 0.6) ** 2 / 0.36 + 1.0 * (x[:, 1] > 0.5)
    factors = [Factor("rate"), Factor("planted")] + [Factor(f"inert{i}") for i in range(7)]
    return x, noisy(signal, sd=1.3, seed=seed), factors


def test_a_planted_one_point_effect_is_found_at_the_atlas_s_size_and_no_inert_column_is() -> None:
    x, values, factors = planted()
    found = importance(x, values, factors, resamples=30)
    assert found.ranked() == ["rate", "planted"]
    # A share far below the noise floor, still an effect that exists: the null says so.
    assert found.total["planted"].estimate < found.noise.low
    assert found.support["planted"] == 1.0
    assert all(not found.measurable[f"inert{i}"] for i in range(7))
    assert found.null.estimate < found.total["planted"].low
    # The Bayesian bootstrap lets no configuration into a fit twice: an inert column's
    # interval holds its own estimate (with duplicates, inert shares rose above it).
    for i in range(7):
        share = found.total[f"inert{i}"]
        assert share.low <= share.estimate <= share.high


def test_effects_in_points_measure_a_planted_step_and_not_an_inert_column() -> None:
    rng = np.random.default_rng(13)
    x = rng.random((400, 3))  # where users stand: the rate already good
    values = noisy(96 + 1.0 * (x[:, 0] > 0.5), sd=1.3, seed=14)
    found = effects_in_points(x, values, UNIT, maximize=True, resamples=200)
    assert found["dominant"].measurable
    assert found["dominant"].mean_spread.low < 1.0 < found["dominant"].mean_spread.high
    assert float(found["dominant"].best_bin.split("–")[0]) > 0.5  # the top quarter
    assert not found["inert"].measurable
    assert found["inert"].mean_spread.estimate < found["dominant"].mean_spread.low


def test_collapses_are_counted_as_runs_far_below_their_configuration_s_median() -> None:
    values = np.full((100, 3), 96.0)
    values[:10, 0] = 40.0  # one seed in ten configurations collapses
    values[10:20] += np.array([0.0, 2.0, -2.0])  # spread, not collapse
    found = instability(values, maximize=True)
    assert found["collapse_share"] == pytest.approx(10 / 300)
    assert found["configurations_with_a_collapse"] == pytest.approx(0.1)
    assert found["seed_sd_median"] == 0.0
    collapse, spread = np.var([40.0, 96.0, 96.0], ddof=1), np.var([0.0, 2.0, -2.0], ddof=1)
    # The 5 % least stable (five configurations) hold half the collapses' variance.
    assert found["least_stable_share"] == pytest.approx(
        5 * collapse / (10 * collapse + 10 * spread)
    )
    diverged = np.zeros(100, dtype=bool)
    diverged[-1] = True
    assert instability(values, diverged, maximize=True)["collapse_share"] == pytest.approx(13 / 300)


def test_an_interaction_shows_as_its_pair_and_in_both_total_effects() -> None:
    x = np.random.default_rng(3).random((200, 3))
    found = importance(x, noisy(10 * x[:, 0] * x[:, 1], sd=0.3), UNIT, resamples=10)
    pair = found.pairs["dominant", "weak"]
    assert pair.estimate > 0.05
    assert pair.estimate > 10 * max(
        found.pairs["dominant", "inert"].estimate, found.pairs["weak", "inert"].estimate
    )
    for name in ("dominant", "weak"):
        assert found.total[name].estimate > found.first_order[name].estimate + 0.05


def test_importance_refuses_too_few_configurations_and_a_single_seed() -> None:
    x = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError, match="importance needs at least 50 configurations"):
        importance(x, noisy(x[:, 0], 0.1), UNIT)
    with pytest.raises(ValueError, match="at least 2 of each, got shape"):
        noise_floor(np.zeros((20, 1)))


def test_the_noise_floor_of_a_pure_noise_objective_is_close_to_one_and_of_agreeing_seeds_zero() -> (
    None
):
    pure_noise = np.random.default_rng(4).normal(size=(400, 3))
    assert noise_floor(pure_noise) == pytest.approx(1.0, abs=0.05)
    x = np.random.default_rng(5).random((100, 3))
    found = importance(x, noisy(np.zeros(100), sd=1.0, seed=6), UNIT, resamples=10)
    assert found.noise.estimate == pytest.approx(1.0, abs=0.1)
    assert found.ranked() == []
    agreeing = np.repeat(np.arange(10.0)[:, None], 3, axis=1)
    assert noise_floor(agreeing) == 0.0


def test_the_safe_range_of_a_bowl_is_its_known_interval() -> None:
    # 100 - 12 (x - 0.5)^2 is within 0.5 of its best where |x - 0.5| <= 0.204: [0.296, 0.704].
    x = np.random.default_rng(7).random(1000)
    curve = sensitivity_curve(x, 100 - 12 * (x - 0.5) ** 2, Factor("x"), bins=10)
    found = safe_range(curve, 0.5, maximize=True)
    assert (found["low"], found["high"]) == pytest.approx((0.3, 0.7))
    assert found["within"] == [False] * 3 + [True] * 4 + [False] * 3
    assert not found["everywhere"]
    # The same bowl for a loss, on a log factor: in decades around lr = 0.01.
    lr = 10 ** np.random.default_rng(8).uniform(-4, 0, 1000)
    loss = 0.1 + 0.05 * (np.log10(lr) + 2) ** 2  # within 0.05 where lr is in [1e-3, 1e-1]
    log_curve = sensitivity_curve(lr, loss, Factor("lr", low=1e-4, high=1.0, log=True), bins=8)
    found = safe_range(log_curve, 0.05, maximize=False)
    assert (found["low"], found["high"]) == pytest.approx((1e-3, 1e-1))


def test_a_noisy_bin_stays_in_the_safe_range_unless_its_median_is_shown_to_be_worse() -> None:
    rng = np.random.default_rng(9)
    x = rng.random(400)
    # Flat in x, but other hyperparameters make every bin's values spread over 40 points.
    flat = sensitivity_curve(x, rng.choice([50.0, 90.0], 400), Factor("x"), bins=5)
    assert safe_range(flat, 0.5, maximize=True)["everywhere"]


def test_a_categorical_safe_range_lists_the_choices_within_the_margin() -> None:
    factor = Factor("max_grad_norm", choices=(1.0, None))
    choice = np.repeat([0, 1], 50)
    values = np.where(choice == 0, 95.0, 90.0) + np.random.default_rng(10).normal(0, 0.1, 100)
    found = safe_range(sensitivity_curve(choice, values, factor, bins=10), 0.5, maximize=True)
    assert found["choices"] == [1.0]
    assert found["labels"] == ["1"]
    assert found["best_bin"] == "1"


def test_an_interaction_grid_holds_each_cells_median_and_count() -> None:
    x = np.array([[0.1, 0.1], [0.1, 0.2], [0.9, 0.9], [0.8, 0.1]])
    grid = interaction_grid(x, np.array([1.0, 3.0, 5.0, 7.0]), (Factor("a"), Factor("b")), 2)
    assert grid.counts.tolist() == [[2, 0], [1, 1]]
    assert grid.median[0, 0] == 2.0
    assert np.isnan(grid.median[0, 1])
    assert grid.labels[0] == ["0–0.5", "0.5–1"]


def test_controller_activity_counts_where_it_never_fires_overall_and_among_the_best() -> None:
    values = np.arange(20.0)  # the best tenth (maximised): the last two configurations
    overshoots = np.array([0.0] * 10 + [1.0] * 8 + [0.0, 0.0])
    stagnations = np.zeros(20)
    stagnations[0] = np.nan  # no record: left out
    activity = controller_activity(overshoots, stagnations, values, maximize=True)
    assert activity["configurations"] == 19
    assert activity["never_fires"] == pytest.approx(11 / 19)
    assert activity["never_fires_in_best_tenth"] == 1.0
    assert activity["median_value_where_it_fires"] == pytest.approx(13.5)
    with pytest.raises(ValueError, match="no configuration has the controller's counts"):
        controller_activity(np.full(3, np.nan), np.zeros(3), np.zeros(3), maximize=True)


FACTORS = [
    Factor("lr", low=1e-4, high=0.1, log=True),
    Factor("patience", low=30, high=300, log=True, integer=True),
    Factor("threshold", low=0.02, high=0.5, log=True),
    Factor("max_grad_norm", choices=(1.0, None)),
]
DEFAULTS = {"lr": 0.01, "patience": 100, "threshold": 0.2, "max_grad_norm": 1.0}


def test_the_recommendation_keeps_defaults_without_an_effect_and_minimises_the_worst_shortfall() -> (
    None
):
    rng = np.random.default_rng(15)

    def workload(best_patience: float) -> np.ndarray:
        x = np.column_stack(
            [
                10 ** rng.uniform(-3, -1.5, 400),
                10 ** rng.uniform(np.log10(30), np.log10(300), 400),
                10 ** rng.uniform(np.log10(0.02), np.log10(0.5), 400),
                rng.integers(0, 2, 400),
            ]
        )
        return x

    a, b = workload(40), workload(40)
    # Lower thresholds are better on both; patience matters on one only, best at its low end.
    y_a = 97 - 4 * np.log10(a[:, 2] / 0.02) - 2 * np.log10(a[:, 1] / 30)
    y_b = 97 - 3 * np.log10(b[:, 2] / 0.02)
    found = recommend(
        {
            "a": (a, y_a, {"threshold": True, "patience": True, "max_grad_norm": False}),
            "b": (b, y_b, {"threshold": True, "patience": False, "max_grad_norm": False}),
        },
        FACTORS,
        DEFAULTS,
        maximize=True,
    )
    values = found["values"]
    assert "lr" not in values  # tuned, not recommended
    assert values["max_grad_norm"] == 1.0  # no effect anywhere: the default
    assert "no workload finds an effect" in found["reasons"]["max_grad_norm"]
    # The lowest quarter of the threshold's log range, 0.02-0.045: its geometric middle.
    assert values["threshold"] == pytest.approx(0.03)
    assert values["patience"] == 40  # the lowest quarter of 30-300 on its log scale: 30-53
    assert "an effect on a" in found["reasons"]["patience"]
