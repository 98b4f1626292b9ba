"""Batched optimizers: each run of a stack is updated as its single-run optimizer updates it."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from adamz.optim import AdamZ
from adamz.optim._controller import new_controller_state, observe_loss_on_host, observe_losses
from adamz.optim.batched import NotBatchableError, batched_optimizer
from adamz.training.optimizers import build_optimizer, resolve_hyperparameters

CONFIGS: dict[str, list[dict[str, Any]]] = {
    "adamz": [
        {"lr": 0.05, "patience": 5, "stagnation_period": 2, "max_grad_norm": 0.5},
        {"lr": 0.01, "patience": 9, "stagnation_period": 7, "overshoot_factor": 0.8},
        {"lr": 0.2, "patience": 3, "stagnation_period": 3, "max_grad_norm": None},
        {"lr": 0.03, "betas": (0.8, 0.99), "weight_decay": 0.01, "lr_bounds": (1e-3, 0.04)},
    ],
    "adam": [
        {"lr": 0.01, "betas": (0.85, 0.995), "weight_decay": 1e-3},
        {"lr": 0.1},
        {"lr": 0.003, "eps": 1e-6},
    ],
    "adamw": [{"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.05, "betas": (0.8, 0.9)}],
    "adam-clip": [
        {"lr": 0.05, "max_grad_norm": 0.5, "weight_decay": 1e-3},
        {"lr": 0.1, "max_grad_norm": None},
        {"lr": 0.02, "betas": (0.8, 0.99), "max_grad_norm": 2.0},
    ],
    "adamz-no-controller": [
        {"lr": 0.05, "max_grad_norm": 0.5},
        {"lr": 0.2, "max_grad_norm": None, "betas": (0.85, 0.995)},
    ],
    "sgd": [
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
        {"lr": 0.1},
        {"lr": 0.02, "momentum": 0.5, "nesterov": True},
        {"lr": 0.02, "momentum": 0.7, "dampening": 0.3},
    ],
    "rmsprop": [
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.5},
        {"lr": 0.003},
        {"lr": 0.001, "centered": True, "weight_decay": 1e-3},
    ],
}


def regression_problem(runs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets and starting weights (one row per run) of a float64 least-squares fit."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(32, 6, generator=generator, dtype=torch.float64)
    targets = inputs @ torch.randn(6, generator=generator, dtype=torch.float64)
    start = torch.randn(runs, 6, generator=generator, dtype=torch.float64)
    return inputs, targets, start


def loss_of(weights: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((inputs @ weights - targets) ** 2).mean()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_run_follows_its_single_run_optimizer_for_100_steps(name: str) -> None:
    configs = [resolve_hyperparameters(name, config) for config in CONFIGS[name]]
    inputs, targets, start = regression_problem(len(configs))
    stacked = start.clone().requires_grad_()
    batched = batched_optimizer(name, [stacked], configs)
    singles = [start[k].clone().requires_grad_() for k in range(len(configs))]
    optimizers = [build_optimizer(name, [w], c) for w, c in zip(singles, configs, strict=True)]
    for _ in range(100):
        batched.zero_grad()
        losses = torch.stack([loss_of(w, inputs, targets) for w in batched.params[0]])
        losses.sum().backward()
        batched.step(losses)
        for weights, optimizer in zip(singles, optimizers, strict=True):
            optimizer.zero_grad()
            loss = loss_of(weights, inputs, targets)
            loss.backward()
            optimizer.step(loss=loss) if isinstance(optimizer, AdamZ) else optimizer.step()
    expected = torch.stack([weights.detach() for weights in singles])
    # float64: the same algebra differs only in rounding, whatever the update's written form
    # (rounding differences grow with the steps: RMSprop with momentum reaches 1e-6 by 200).
    torch.testing.assert_close(batched.params[0].detach(), expected, rtol=1e-8, atol=1e-12)
    if name == "adamz":
        rates = [float(optimizer.param_groups[0]["lr"]) for optimizer in optimizers]
        torch.testing.assert_close(batched.rates.tolist(), rates, rtol=1e-12, atol=0)


def test_controllers_of_different_windows_decide_as_one_controller_each_step() -> None:
    patience = [4, 7, 3, 10]
    period = [2, 7, 1, 3]
    factors = {"overshoot_factor": 0.7, "stagnation_factor": 1.3, "stagnation_threshold": 0.5}
    bounds = (1e-4, 1.0)
    generator = torch.Generator().manual_seed(3)
    # Noisy, slowly falling losses, a few plateaus and non-finite values: both rules fire often.
    losses = 1 / torch.arange(1, 301) + 0.01 * torch.rand(300, 4, generator=generator).T
    losses[:, 100:140] = 0.2
    losses[1, 50] = math.nan
    losses[2, 60] = math.inf
    batched_state = {
        "loss_window": torch.zeros(4, max(patience), dtype=torch.float64),
        "observed": torch.zeros(4, dtype=torch.int64),
        "nonfinite": torch.zeros(4, dtype=torch.int64),
        "overshoots": torch.zeros(4, dtype=torch.int64),
        "stagnations": torch.zeros(4, dtype=torch.int64),
    }
    rates = torch.full((4,), 0.1, dtype=torch.float64)
    singles = [new_controller_state(p, torch.device("cpu")) for p in patience]
    single_rates = [0.1] * 4
    fired = 0
    for step in range(300):
        rates = observe_losses(
            batched_state,  # type: ignore[arg-type]
            losses[:, step].double(),
            rates,
            **{k: torch.full((4,), v, dtype=torch.float64) for k, v in factors.items()},
            patience=torch.tensor(patience),
            stagnation_period=torch.tensor(period),
            lr_min=bounds[0],
            lr_max=bounds[1],
        )
        for k in range(4):
            single_rates[k] = observe_loss_on_host(
                singles[k],
                float(losses[k, step]),
                single_rates[k],
                **factors,
                stagnation_period=period[k],
                lr_bounds=bounds,
            )
        assert rates.tolist() == pytest.approx(single_rates, rel=1e-12), f"step {step}"
        for key in ("overshoots", "stagnations", "observed", "nonfinite"):
            assert batched_state[key].tolist() == [int(s[key]) for s in singles], (key, step)  # type: ignore[literal-required]
    fired = int(batched_state["overshoots"].sum() + batched_state["stagnations"].sum())
    assert fired > 100


def test_dropping_runs_keeps_the_others_state_and_a_run_s_state_moves_to_another_stack() -> None:
    configs = [resolve_hyperparameters("adamz", config) for config in CONFIGS["adamz"]]
    inputs, targets, start = regression_problem(len(configs))
    batched = batched_optimizer("adamz", [start.clone().requires_grad_()], configs)
    for _ in range(20):
        batched.zero_grad()
        losses = torch.stack([loss_of(w, inputs, targets) for w in batched.params[0]])
        losses.sum().backward()
        batched.step(losses)
    saved = batched.member_state(2)
    weights = batched.params[0][2].detach().clone()
    batched.keep(torch.tensor([3, 1]))
    assert batched.size == 2
    assert batched.hyper["patience"].tolist() == [100, 9]
    # Run 2's state, saved from a stack whose longest window is 100, into one of length 9.
    other = batched_optimizer(
        "adamz", [torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)], [configs[1]] * 2
    )
    other.load_member_state(0, saved)
    assert other.state["loss_window"][0, -3:].tolist() == saved["state"]["loss_window"].tolist()
    assert other.state["loss_window"][0, :-3].tolist() == [0.0] * 6
    assert int(other.state["observed"][0]) == 20
    assert float(other.rates[0]) == float(saved["state"]["lr"])
    assert weights.shape == (6,)


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("adagrad", {}, "adagrad has no batched form"),
        ("adam", {"amsgrad": True}, "no batched form for amsgrad=True"),
        ("adam-clip", {"amsgrad": True}, "no batched form for amsgrad=True"),
        ("adamz", {"lr_controller": False}, "no batched form for lr_controller=False"),
        ("lion", {}, "lion has no batched form"),
    ],
)
def test_what_has_no_batched_form_says_so(name: str, config: dict[str, Any], message: str) -> None:
    with pytest.raises(NotBatchableError, match=message):
        batched_optimizer(
            name,
            [torch.zeros(1, 3, requires_grad=True)],
            [resolve_hyperparameters(name, config)],
        )
