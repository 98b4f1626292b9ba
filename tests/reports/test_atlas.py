"""The atlas's analysis on synthetic arrays whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from adamz.reports._atlas import (
    Factor,
    controller_activity,
    guideline,
    importance,
    interaction_grid,
    noise_floor,
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
    assert found.total["weak"].low > found.noise.high
    assert found.total["inert"].high < 0.01
    assert 0.01 < found.noise.estimate < 0.06
    assert found.surrogate_r2 > 0.9
    numbers = found.as_dict()
    assert numbers["ranked"] == ["dominant", "weak"]
    assert set(numbers["pairs"]) == {"dominant x weak", "dominant x inert", "weak x inert"}


def test_an_effect_smaller_than_the_seeds_noise_is_not_ranked() -> None:
    x = np.random.default_rng(2).random((200, 3))
    values = noisy(10 * x[:, 0] + 0.3 * x[:, 1], sd=1.5)  # weak: 0.1 %, noise 20 %
    found = importance(x, values, UNIT, resamples=20)
    assert found.ranked() == ["dominant"]
    assert not found.measurable["weak"]


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
    Factor("max_grad_norm", choices=(1.0, None)),
]


def safe(low: float, high: float) -> dict[str, object]:
    return {"low": low, "high": high, "everywhere": False}


def test_the_guideline_tunes_what_clears_the_noise_and_leaves_the_rest_at_a_safe_value() -> None:
    defaults = {"lr": 0.01, "patience": 100, "max_grad_norm": 1.0}
    workloads = {
        "circles": {
            "measurable": {"lr": True, "patience": False, "max_grad_norm": False},
            "safe": {
                "lr": safe(0.003, 0.1),
                "patience": safe(30, 300),
                "max_grad_norm": {"choices": [1.0, None]},
            },
        },
        "digits": {
            "measurable": {"lr": False, "patience": False, "max_grad_norm": False},
            "safe": {
                "lr": safe(1e-4, 0.1),
                "patience": safe(150, 300),
                "max_grad_norm": {"choices": [None]},
            },
        },
    }
    found = guideline(workloads, FACTORS, defaults)
    assert found["tune"] == ["lr"]
    # patience's default (100) is unsafe on digits: the middle of 150-300 on its log scale.
    assert found["leave"] == {"patience": 212, "max_grad_norm": None}
    assert found["text"] == (
        "On circles, digits: tune lr; leave patience at 212 and max_grad_norm at none."
    )
    workloads["digits"]["safe"]["patience"] = safe(30, 50)  # type: ignore[index]
    workloads["circles"]["safe"]["patience"] = safe(100, 300)  # type: ignore[index]
    assert guideline(workloads, FACTORS, defaults)["per_workload"] == ["patience"]
    workloads["digits"]["measurable"] = {"lr": None, "patience": None, "max_grad_norm": None}
    found = guideline(workloads, FACTORS, defaults)
    assert found["tune"] == ["lr"]
    assert found["undetermined"] == ["patience", "max_grad_norm"]
    assert "too few configurations to say for patience and max_grad_norm" in found["text"]
