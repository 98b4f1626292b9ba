"""The learning-rate rule, checked against an independent reference written from the paper."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from adamz import AdamZ


def paper_rates(
    losses: list[float],
    lr: float,
    *,
    overshoot_factor: float = 0.5,
    stagnation_factor: float = 1.2,
    stagnation_threshold: float = 0.2,
    patience: int = 100,
    stagnation_period: int = 10,
    lr_bounds: tuple[float, float] = (1e-7, 1.0),
) -> list[float]:
    """The rate after each step, by the paper's section 3, in plain Python."""
    window: list[float] = []
    rates = []
    for loss in losses:
        if math.isfinite(loss):
            window = [*window, loss][-patience:]
            if len(window) == patience:
                if loss >= max(window):
                    lr *= overshoot_factor
                recent = window[-stagnation_period:]
                if statistics.pstdev(recent) < stagnation_threshold * statistics.pstdev(window):
                    lr *= stagnation_factor
        lr = min(max(lr, lr_bounds[0]), lr_bounds[1])
        rates.append(lr)
    return rates


class OnDevice(torch.Tensor):
    """A tensor subclass: AdamZ handles it as it handles a CUDA loss, without host reads."""


@pytest.fixture(params=["host", "device"])
def path(request: pytest.FixtureRequest) -> str:
    """Which implementation of the rule a test drives: the CPU one or the accelerators' one."""
    return str(request.param)


def as_loss(value: float, path: str) -> torch.Tensor:
    loss = torch.tensor(value)
    return loss.as_subclass(OnDevice) if path == "device" else loss


def adamz_rates(
    losses: list[float], lr: float, path: str = "host", **hyperparameters: object
) -> list[float]:
    """The rate after each step of an AdamZ fed ``losses`` (its gradients are irrelevant here)."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = AdamZ([param], lr=lr, **hyperparameters)  # type: ignore[arg-type]
    rates = []
    for loss in losses:
        param.grad = torch.ones(1)
        optimizer.step(loss=as_loss(loss, path))
        rates.append(float(optimizer.param_groups[0]["lr"]))
    return rates


def test_overshoot_alone_halves_the_rate_at_each_new_maximum(path: str) -> None:
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    settings = {"patience": 4, "stagnation_period": 2, "stagnation_threshold": 0.01}
    rates = adamz_rates(losses, 0.1, path, **settings)
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.025, 0.0125, 0.00625])
    assert rates == pytest.approx(paper_rates(losses, 0.1, **settings))  # type: ignore[arg-type]


def test_stagnation_alone_raises_the_rate_while_recent_losses_are_flat(path: str) -> None:
    losses = [10.0, 9.0, 8.0, 7.0, 5.0, 5.0, 5.0]
    settings = {"patience": 5, "stagnation_period": 2, "stagnation_threshold": 0.2}
    rates = adamz_rates(losses, 0.01, path, **settings)
    # Step 6: window (9, 8, 7, 5, 5), recent (5, 5) flat -> x1.2; step 7 likewise.
    assert rates == pytest.approx([0.01] * 5 + [0.012, 0.0144])
    assert rates == pytest.approx(paper_rates(losses, 0.01, **settings))  # type: ignore[arg-type]


def test_overshoot_and_stagnation_both_fire_in_one_step(path: str) -> None:
    losses = [0.0, 5.0, 5.0, 5.0]
    rates = adamz_rates(losses, 0.01, path, patience=4, stagnation_period=2)
    # Window (0, 5, 5, 5): 5 is its maximum and the recent (5, 5) is flat.
    assert rates[-1] == pytest.approx(0.01 * 0.5 * 1.2)


def test_nothing_is_adjusted_until_the_window_is_full(path: str) -> None:
    losses = [float(i) for i in range(1, 10)]
    rates = adamz_rates(losses, 0.01, path, patience=9, stagnation_period=3)
    assert rates[:8] == [0.01] * 8
    assert rates[8] == pytest.approx(0.005)


def test_rate_is_clamped_at_the_lower_bound(path: str) -> None:
    losses = [float(i) for i in range(20)]  # a new maximum every step: overshoot every step
    settings = {"patience": 3, "stagnation_period": 2, "lr_bounds": (1e-6, 0.8)}
    rates = adamz_rates(losses, 1e-4, path, **settings)
    assert rates[-5:] == pytest.approx([1e-6] * 5)
    assert rates == pytest.approx(paper_rates(losses, 1e-4, **settings))  # type: ignore[arg-type]


def test_rate_is_clamped_at_the_upper_bound(path: str) -> None:
    # Windows (5, 1, 1, 1) and (1, 5, 1, 1) stagnate, (1, 1, 1, 5) overshoots: x1.125 a cycle.
    losses = [5.0, 1.0, 1.0, 1.0] * 12
    settings = {"patience": 4, "stagnation_period": 2, "stagnation_factor": 1.5}
    settings["lr_bounds"] = (1e-6, 0.8)
    rates = adamz_rates(losses, 0.5, path, **settings)
    assert max(rates) == pytest.approx(0.8)
    assert min(rates[8:]) < 0.8
    assert rates == pytest.approx(paper_rates(losses, 0.5, **settings))  # type: ignore[arg-type]


def test_non_finite_losses_are_skipped_and_counted(path: str) -> None:
    finite = [3.0, 1.0, 2.0, 1.5, 4.0, 0.5, 0.7]
    with_gaps = [3.0, math.nan, 1.0, 2.0, math.inf, 1.5, 4.0, -math.inf, 0.5, 0.7]
    settings = {"patience": 3, "stagnation_period": 2}
    rates_finite = adamz_rates(finite, 0.01, path, **settings)
    rates_gaps = adamz_rates(with_gaps, 0.01, path, **settings)
    kept = [rate for loss, rate in zip(with_gaps, rates_gaps, strict=True) if math.isfinite(loss)]
    assert kept == rates_finite
    assert rates_gaps == pytest.approx(paper_rates(with_gaps, 0.01, **settings))  # type: ignore[arg-type]

    param = torch.zeros(1, requires_grad=True)
    optimizer = AdamZ([param], **settings)  # type: ignore[arg-type]
    for loss in with_gaps:
        param.grad = torch.ones(1)
        optimizer.step(loss=as_loss(loss, path))
    stats = optimizer.controller_stats()[0]
    assert (stats["observed"], stats["nonfinite"]) == (7, 3)


@pytest.mark.parametrize("seed", range(6))
def test_random_loss_sequences_follow_the_paper_rule(seed: int, path: str) -> None:
    rng = random.Random(seed)
    patience = rng.randint(2, 12)
    settings = {
        "patience": patience,
        "stagnation_period": rng.randint(1, patience),
        "overshoot_factor": rng.uniform(0.3, 0.95),
        "stagnation_factor": rng.uniform(1.05, 1.5),
        "stagnation_threshold": rng.uniform(0.05, 0.8),
        "lr_bounds": (1e-4, 0.05),
    }
    losses = [rng.choice([rng.gauss(1.0, 0.3), rng.gauss(1.0, 0.01)]) for _ in range(120)]
    losses[rng.randrange(120)] = math.nan
    assert adamz_rates(losses, 0.01, path, **settings) == pytest.approx(
        paper_rates(losses, 0.01, **settings),  # type: ignore[arg-type]
        rel=1e-12,
    )


def test_counts_of_adjustments_are_recorded(path: str) -> None:
    losses = [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    param = torch.zeros(1, requires_grad=True)
    optimizer = AdamZ([param], patience=3, stagnation_period=2)
    for loss in losses:
        param.grad = torch.ones(1)
        optimizer.step(loss=as_loss(loss, path))
    stats = optimizer.controller_stats()[0]
    # Step 3: overshoot. Step 4: overshoot. Step 5: window (3, 4, 4): overshoot + stagnation.
    # Step 6: window (4, 4, 4): overshoot; both spreads are 0, so no stagnation.
    assert stats["overshoots"] == 4
    assert stats["stagnations"] == 1
    assert stats["lr"] == pytest.approx(0.01 * 0.5**4 * 1.2)


def test_host_and_device_paths_leave_the_same_state() -> None:
    rng = random.Random(7)
    losses = [rng.gauss(1.0, 0.2) for _ in range(60)] + [math.inf] + [1.0] * 20
    optimizers = {}
    for path in ("host", "device"):
        param = torch.zeros(1, requires_grad=True)
        optimizers[path] = AdamZ([param], patience=8, stagnation_period=3)
        for loss in losses:
            param.grad = torch.ones(1)
            optimizers[path].step(loss=as_loss(loss, path))
    host, device = (optimizers[path].param_groups[0]["controller"] for path in ("host", "device"))
    for key in host:
        assert torch.equal(host[key], device[key].as_subclass(torch.Tensor)), key
    stats = optimizers["host"].controller_stats()
    assert stats == optimizers["device"].controller_stats()
    assert stats[0]["overshoots"] > 0
    assert stats[0]["stagnations"] > 0
