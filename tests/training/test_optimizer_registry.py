"""The optimizer registry: every optimizer built from a plain dict, and its errors."""

from __future__ import annotations

import pytest
import torch

from adamz.optim import AdamZ
from adamz.training import (
    OPTIMIZERS,
    PAPER_LR,
    build_optimizer,
    default_hyperparameters,
    resolve_hyperparameters,
)

PAPER_OPTIMIZERS = [
    "adamz",
    "adam",
    "adamw",
    "sgd",
    "rmsprop",
    "adagrad",
    "adamax",
    "nadam",
    "asgd",
]


def parameters() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3))]


def test_registry_holds_adamz_and_the_papers_eight_baselines() -> None:
    assert list(OPTIMIZERS) == PAPER_OPTIMIZERS
    assert OPTIMIZERS["adamz"] is AdamZ
    assert OPTIMIZERS["nadam"] is torch.optim.NAdam


@pytest.mark.parametrize("name", PAPER_OPTIMIZERS)
def test_every_optimizer_builds_from_an_empty_dict_at_the_papers_rate(name: str) -> None:
    optimizer = build_optimizer(name, parameters(), {})
    assert isinstance(optimizer, OPTIMIZERS[name])
    assert optimizer.param_groups[0]["lr"] == PAPER_LR == 0.01


def test_defaults_are_the_constructors_except_the_rate() -> None:
    assert default_hyperparameters("adamw") == {
        "lr": 0.01,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.01,
        "amsgrad": False,
    }
    assert default_hyperparameters("adamz")["patience"] == 100


def test_given_hyperparameters_reach_the_optimizer() -> None:
    optimizer = build_optimizer(
        "adamz", parameters(), {"lr": 0.02, "patience": 164, "lr_bounds": [1e-6, 0.5]}
    )
    group = optimizer.param_groups[0]
    assert (group["lr"], group["patience"], group["lr_bounds"]) == (0.02, 164, (1e-6, 0.5))


def test_pairs_given_as_lists_come_back_as_tuples_of_floats() -> None:
    resolved = resolve_hyperparameters("adam", {"betas": [0, 0.99]})
    assert resolved["betas"] == (0.0, 0.99)
    assert all(isinstance(beta, float) for beta in resolved["betas"])


def test_adamz_accepts_null_max_grad_norm_to_turn_clipping_off() -> None:
    assert resolve_hyperparameters("adamz", {"max_grad_norm": None})["max_grad_norm"] is None


@pytest.mark.parametrize(
    ("name", "hyperparameters", "message"),
    [
        ("adamx", {}, r"^Unknown optimizer 'adamx': must be one of adamz, adam, "),
        (
            "adam",
            {"momentum": 0.9},
            r"^Unknown hyperparameter 'momentum' for optimizer 'adam': "
            r"must be one of lr, betas, ",
        ),
        (
            "adamz",
            {"min_lr": 1e-6},
            r"^Unknown hyperparameter 'min_lr' for optimizer 'adamz' "
            r"\(give lr_bounds as a pair\)",
        ),
        ("adam", {"foreach": True}, r"^Unknown hyperparameter 'foreach'"),
        (
            "adamz",
            {"overshoot_factor": 1.5},
            r"^Invalid overshoot_factor: must be in \(0, 1\), got 1\.5\.$",
        ),
        ("adamz", {"patience": 10.5}, r"^Invalid patience: must be an integer >= 1, got 10\.5\.$"),
        ("adamz", {"lr": 2.0}, r"^Invalid lr: must lie within lr_bounds=\(1e-07, 1\.0\), got 2\.0"),
        ("adam", {"lr": -0.1}, r"^Invalid learning rate: -0\.1$"),
        ("sgd", {"momentum": -1}, r"^Invalid momentum value: -1"),
        ("adam", {"lr": "fast"}, r"^Invalid lr: must be a number, got 'fast'\.$"),
        ("adam", {"lr": True}, r"^Invalid lr: must be a number, got True\.$"),
        ("adam", {"lr": None}, r"^Invalid lr: must not be null, got None\.$"),
        ("adam", {"amsgrad": 1}, r"^Invalid amsgrad: must be true or false, got 1\.$"),
        ("adam", {"betas": [0.9]}, r"^Invalid betas: must be a list of 2 numbers, got \[0\.9\]\.$"),
        ("sgd", {"nesterov": True}, r"^Nesterov momentum requires a momentum and zero dampening$"),
    ],
)
def test_bad_configurations_raise_one_line_naming_the_problem(
    name: str, hyperparameters: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        resolve_hyperparameters(name, hyperparameters)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=message):
        build_optimizer(name, parameters(), hyperparameters)
