"""The optimizer registry: every optimizer built from a plain dict, and its errors."""

from __future__ import annotations

import sys

import pytest
import torch

from adamz.optim import AdamZ, ClippedAdam
from adamz.training import (
    OPTIMIZER_NAMES,
    OPTIMIZERS,
    PAPER_LR,
    build_optimizer,
    build_schedule,
    library_defaults,
    paper_settings,
    resolve_hyperparameters,
)
from adamz.training.optimizers import EXTERNAL, VARIANTS, optimizer_class, set_optimizer_mode

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


TODAYS_OPTIMIZERS = ["adamw-schedulefree", "prodigy", "lion", "adafactor", "novograd"]
ABLATIONS = ["adam-clip", "adamz-no-controller"]


def test_registry_holds_adamz_the_papers_baselines_the_ablations_and_todays_optimizers() -> None:
    assert set(PAPER_OPTIMIZERS + TODAYS_OPTIMIZERS + ABLATIONS) <= set(OPTIMIZER_NAMES)
    assert OPTIMIZERS["adamz"] is AdamZ
    assert OPTIMIZERS["nadam"] is torch.optim.NAdam
    assert OPTIMIZERS["adam-clip"] is ClippedAdam
    assert OPTIMIZERS["adafactor"] is torch.optim.Adafactor
    assert optimizer_class("adamz-no-controller") is AdamZ
    classes = {name: optimizer_class(name) for name in EXTERNAL}
    assert {name: f"{c.__module__.split('.')[0]}.{c.__name__}" for name, c in classes.items()} == {
        "adamw-schedulefree": "schedulefree.AdamWScheduleFree",
        "prodigy": "prodigyopt.Prodigy",
        "lion": "lion_pytorch.Lion",
        "novograd": "pytorch_optimizer.NovoGrad",
    }


TORCH_DEFAULT_LR = {
    "adam": 1e-3,
    "adamw": 1e-3,
    "sgd": 1e-3,
    "rmsprop": 1e-2,
    "adagrad": 1e-2,
    "adamax": 2e-3,
    "nadam": 2e-3,
    "asgd": 1e-2,
    "adamz": 1e-2,
}


@pytest.mark.parametrize("name", PAPER_OPTIMIZERS)
def test_every_optimizer_builds_from_an_empty_dict_at_its_constructors_rate(name: str) -> None:
    optimizer = build_optimizer(name, parameters(), {})
    assert isinstance(optimizer, OPTIMIZERS[name])
    assert optimizer.param_groups[0]["lr"] == TORCH_DEFAULT_LR[name]


def test_library_defaults_are_the_constructors_own() -> None:
    assert library_defaults("adamw") == {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.01,
        "amsgrad": False,
    }
    assert library_defaults("adamz")["patience"] == 100


@pytest.mark.parametrize("name", [n for n in OPTIMIZER_NAMES if n != "prodigy"])
def test_paper_settings_are_the_library_defaults_at_the_papers_rate(name: str) -> None:
    settings = paper_settings(name)
    assert settings["lr"] == PAPER_LR == 0.01
    assert {k: v for k, v in settings.items() if k != "lr"} == {
        k: v for k, v in library_defaults(name).items() if k != "lr"
    }


def test_scheduled_adam_takes_adams_and_the_schedulers_hyperparameters() -> None:
    defaults = library_defaults("adam-plateau")
    assert defaults["lr"] == 1e-3
    assert defaults["betas"] == (0.9, 0.999)
    assert (defaults["factor"], defaults["patience"], defaults["cooldown"]) == (0.1, 10, 0)
    assert library_defaults("adam-cosine")["eta_min"] == 0.0
    model = parameters()
    optimizer = build_optimizer("adam-plateau", model, {"lr": 0.02, "factor": 0.5})
    assert isinstance(optimizer, torch.optim.Adam)
    schedule = build_schedule("adam-plateau", optimizer, {"factor": 0.5}, total_steps=10)
    assert schedule is not None
    assert schedule.scheduler.factor == 0.5
    assert build_schedule("adam", optimizer, {}, total_steps=10) is None


def test_a_cosine_schedule_ends_at_eta_min_after_the_runs_steps() -> None:
    optimizer = build_optimizer("adam-cosine", parameters(), {"lr": 0.1})
    schedule = build_schedule("adam-cosine", optimizer, {"eta_min": 0.001}, total_steps=20)
    assert schedule is not None
    rates = []
    for _ in range(20):
        optimizer.step()
        schedule.after_step(torch.tensor(1.0))
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] < 0.1
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] == pytest.approx(0.001)


def test_a_plateau_schedule_cuts_the_rate_after_patience_flat_losses() -> None:
    optimizer = build_optimizer("adam-plateau", parameters(), {"lr": 0.1})
    schedule = build_schedule(
        "adam-plateau", optimizer, {"factor": 0.5, "patience": 3}, total_steps=100
    )
    assert schedule is not None
    for _ in range(5):  # the best, then four that do not improve on it: 4 > patience 3
        schedule.after_step(torch.tensor(1.0))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_an_invalid_schedule_argument_is_one_line_naming_it() -> None:
    with pytest.raises(ValueError, match=r"[Ff]actor"):
        resolve_hyperparameters("adam-plateau", {"factor": 2.0})


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


def test_a_learning_rate_free_optimizers_paper_settings_are_its_defaults() -> None:
    # Prodigy's lr is a factor on the rate it estimates, 1 by its authors' advice.
    assert paper_settings("prodigy") == library_defaults("prodigy")
    assert library_defaults("prodigy")["lr"] == 1.0


def test_the_controller_free_variant_keeps_adams_knobs_and_clipping_only() -> None:
    assert library_defaults("adamz-no-controller") == {
        "lr": 0.01,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
    }
    optimizer = build_optimizer("adamz-no-controller", parameters(), {"max_grad_norm": None})
    assert isinstance(optimizer, AdamZ)
    assert optimizer.param_groups[0]["lr_controller"] is False
    assert optimizer.param_groups[0]["max_grad_norm"] is None
    with pytest.raises(ValueError, match=r"^Unknown hyperparameter 'patience' for optimizer "):
        resolve_hyperparameters("adamz-no-controller", {"patience": 10})
    assert VARIANTS["adamz-no-controller"].fixed == {"lr_controller": False}


def test_adam_clip_is_adams_hyperparameters_and_adamzs_clipping() -> None:
    defaults = library_defaults("adam-clip")
    assert defaults["max_grad_norm"] == library_defaults("adamz")["max_grad_norm"] == 1.0
    assert {k: v for k, v in defaults.items() if k != "max_grad_norm"} == {
        k: v for k, v in library_defaults("adam").items() if k != "decoupled_weight_decay"
    }


@pytest.mark.parametrize("name", TODAYS_OPTIMIZERS + ABLATIONS)
def test_every_new_optimizer_trains_a_small_regression_from_its_defaults(name: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = build_optimizer(name, model.parameters(), paper_settings(name))
    inputs, targets = torch.randn(64, 4), torch.randn(64, 4) @ torch.ones(4, 1)
    set_optimizer_mode(optimizer, training=True)
    first = torch.nn.functional.mse_loss(model(inputs), targets[:, :1]).item()
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets[:, :1])
        loss.backward()
        optimizer.step()
    set_optimizer_mode(optimizer, training=False)
    assert torch.nn.functional.mse_loss(model(inputs), targets[:, :1]).item() < first


def test_schedule_free_adamw_is_evaluated_at_its_averaged_point() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = build_optimizer("adamw-schedulefree", [param], {"lr": 0.1})
    set_optimizer_mode(optimizer, training=True)
    for _ in range(5):
        param.grad = torch.ones(3)
        optimizer.step()
    training_point = param.detach().clone()
    set_optimizer_mode(optimizer, training=False)
    evaluation_point = param.detach().clone()
    assert not torch.equal(training_point, evaluation_point)
    set_optimizer_mode(optimizer, training=True)
    torch.testing.assert_close(param.detach(), training_point)


def test_optimizers_without_modes_are_left_alone() -> None:
    optimizer = build_optimizer("adam", parameters(), {})
    set_optimizer_mode(optimizer, training=False)  # no train()/eval(): nothing to do
    set_optimizer_mode(object(), training=True)


def test_prodigys_printed_line_does_not_reach_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    build_optimizer("prodigy", parameters(), {"weight_decay": 0.01})
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("name", "module"), [(n, e.module) for n, e in EXTERNAL.items()])
def test_a_missing_package_is_one_line_naming_the_install_command(
    name: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'adamz-search\[optimizers\]'") as caught:
        library_defaults(name)
    assert "\n" not in str(caught.value)
    assert EXTERNAL[name].package in str(caught.value)


def test_lions_assertions_become_one_line_naming_the_optimizer() -> None:
    with pytest.raises(ValueError, match=r"^Invalid hyperparameters for optimizer 'lion'"):
        resolve_hyperparameters("lion", {"betas": [1.5, 0.99]})


def test_novograds_own_exceptions_become_one_line_naming_the_rule() -> None:
    # pytorch-optimizer refuses a negative rate with an exception that is no ValueError.
    with pytest.raises(ValueError, match=r"^learning rate must be positive") as caught:
        resolve_hyperparameters("novograd", {"lr": -0.1})
    assert "\n" not in str(caught.value)


def test_novograds_defaults_are_its_papers_betas_and_decay_on_the_normalised_gradient() -> None:
    defaults = library_defaults("novograd")
    assert defaults["betas"] == (0.95, 0.98)
    assert defaults["weight_decouple"] is False  # the paper's: added to g / sqrt(v), not to g


def test_adafactors_pair_with_a_null_element_resolves() -> None:
    assert resolve_hyperparameters("adafactor", {"eps": [None, 1e-3]})["eps"] == (None, 1e-3)
