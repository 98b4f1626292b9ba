"""AdamZ as a torch optimizer: Adam equivalence, paths, state, AMP, no host sync, errors."""

from __future__ import annotations

import io
import linecache
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from adamz import AdamZ

NEVER_FIRES = {"patience": 10_000, "stagnation_period": 10, "max_grad_norm": None}


def make_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def batch(seed: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(16, 5, generator=generator, dtype=dtype)
    return inputs, torch.randn(16, 3, generator=generator, dtype=dtype)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> Tensor:
    inputs, targets = batch(step, next(model.parameters()).dtype)
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    if isinstance(optimizer, AdamZ):
        optimizer.step(loss=loss)
    else:
        optimizer.step()
    return loss


def assert_same_parameters_and_moments(
    model_a: nn.Module,
    opt_a: torch.optim.Optimizer,
    model_b: nn.Module,
    opt_b: torch.optim.Optimizer,
) -> None:
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-14)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(
                opt_a.state[pa][key], opt_b.state[pb][key], rtol=1e-12, atol=0
            )


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_equals_adam_when_the_controller_cannot_fire(foreach: bool, weight_decay: float) -> None:
    model_z, model_a = make_model(), make_model()
    adamz = AdamZ(
        model_z.parameters(), lr=0.01, weight_decay=weight_decay, foreach=foreach, **NEVER_FIRES
    )
    adam = torch.optim.Adam(
        model_a.parameters(), lr=0.01, weight_decay=weight_decay, foreach=foreach
    )
    for step in range(15):
        train_step(model_z, adamz, step)
        train_step(model_a, adam, step)
        assert_same_parameters_and_moments(model_z, adamz, model_a, adam)
    assert float(adamz.param_groups[0]["lr"]) == 0.01


@pytest.mark.parametrize("foreach", [False, True])
def test_clipping_equals_clip_grad_norm_then_adam(foreach: bool) -> None:
    model_z, model_a = make_model(), make_model()
    settings = {**NEVER_FIRES, "max_grad_norm": 0.05}
    adamz = AdamZ(model_z.parameters(), lr=0.01, foreach=foreach, **settings)
    adam = torch.optim.Adam(model_a.parameters(), lr=0.01, foreach=foreach)
    clipped_steps = 0
    for step in range(10):
        train_step(model_z, adamz, step)
        inputs, targets = batch(step)
        adam.zero_grad()
        nn.functional.mse_loss(model_a(inputs), targets).backward()
        norm = nn.utils.clip_grad_norm_(model_a.parameters(), 0.05, foreach=foreach)
        clipped_steps += bool(norm > 0.05)
        adam.step()
        assert_same_parameters_and_moments(model_z, adamz, model_a, adam)
    assert clipped_steps > 0


def test_clipping_uses_one_norm_over_all_groups() -> None:
    first, second = torch.zeros(3, requires_grad=True), torch.zeros(4, requires_grad=True)
    optimizer = AdamZ([{"params": [first]}, {"params": [second], "lr": 0.001}], max_grad_norm=1.0)
    first.grad, second.grad = torch.full((3,), 3.0), torch.full((4,), 4.0)
    optimizer.step(loss=torch.tensor(1.0))
    total = torch.cat([first.grad, second.grad]).norm()
    assert total == pytest.approx(1.0, rel=1e-5)
    assert first.grad[0] / second.grad[0] == pytest.approx(0.75)


def run_groups(foreach: bool) -> tuple[nn.Module, AdamZ, list[Tensor]]:
    model = make_model(1)
    frozen = nn.Parameter(torch.ones(2, dtype=torch.float64))  # never receives a gradient
    optimizer = AdamZ(
        [
            {"params": list(model[0].parameters()), "lr": 0.02},
            {"params": [*model[2].parameters(), frozen], "weight_decay": 0.1},
        ],
        lr=0.01,
        patience=3,
        stagnation_period=2,
        max_grad_norm=0.5,
        foreach=foreach,
    )
    rates = []
    for step in range(20):
        if step == 7:  # the second layer's bias misses one step: its step count lags behind
            model[2].bias.requires_grad_(False)
        if step == 8:
            model[2].bias.requires_grad_(True)
        train_step(model, optimizer, step)
        model[2].bias.grad = None
        rates.append(torch.tensor([group["lr"] for group in optimizer.param_groups]))
    return model, optimizer, rates


def test_foreach_equals_the_for_loop() -> None:
    model_loop, opt_loop, rates_loop = run_groups(foreach=False)
    model_each, opt_each, rates_each = run_groups(foreach=True)
    assert_same_parameters_and_moments(model_loop, opt_loop, model_each, opt_each)
    torch.testing.assert_close(torch.stack(rates_loop), torch.stack(rates_each), rtol=0, atol=0)
    stats = opt_loop.controller_stats()
    assert stats == opt_each.controller_stats()
    assert stats[0]["overshoots"] + stats[0]["stagnations"] > 0


def test_state_dict_resume_is_bitwise_identical() -> None:
    settings = {"patience": 7, "stagnation_period": 3}
    model = make_model(2, torch.float32)
    optimizer = AdamZ(model.parameters(), **settings)
    for step in range(50):
        train_step(model, optimizer, step)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    for step in range(50, 100):
        train_step(model, optimizer, step)

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed_model = make_model(99, torch.float32)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = AdamZ(resumed_model.parameters(), **settings)
    resumed.load_state_dict(checkpoint["optimizer"])
    for step in range(50, 100):
        train_step(resumed_model, resumed, step)

    for p, q in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert optimizer.param_groups[0]["lr"] == resumed.param_groups[0]["lr"]
    assert optimizer.controller_stats() == resumed.controller_stats()
    assert optimizer.controller_stats()[0]["overshoots"] > 0


def test_groups_keep_the_ratio_of_their_rates_until_a_bound() -> None:
    first, second = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = AdamZ(
        [{"params": [first], "lr": 0.1}, {"params": [second], "lr": 0.01}],
        patience=2,
        stagnation_period=1,
        lr_bounds=(1e-5, 1.0),
    )
    ratios, rates = [], []
    for loss in range(1, 30):  # rising losses: overshoot every step
        first.grad, second.grad = torch.ones(1), torch.ones(1)
        optimizer.step(loss=torch.tensor(float(loss)))
        low, high = (float(group["lr"]) for group in reversed(optimizer.param_groups))
        rates.append((high, low))
        ratios.append(high / low)
    unbounded = [ratio for (high, low), ratio in zip(rates, ratios, strict=True) if low > 1e-5]
    assert len(unbounded) > 5
    assert unbounded == pytest.approx([10.0] * len(unbounded))
    assert rates[-1] == (pytest.approx(1e-5), pytest.approx(1e-5))


def test_group_overrides_of_controller_hyperparameters_apply_per_group() -> None:
    fast, slow = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = AdamZ(
        [{"params": [fast], "patience": 3, "stagnation_period": 2}, {"params": [slow]}]
    )
    for loss in range(1, 6):
        fast.grad, slow.grad = torch.ones(1), torch.ones(1)
        optimizer.step(loss=torch.tensor(float(loss)))
    fast_stats, slow_stats = optimizer.controller_stats()
    assert fast_stats["overshoots"] == 3
    assert slow_stats["overshoots"] == 0


def test_closure_feeds_the_controller_and_returns_the_loss() -> None:
    model = make_model()
    optimizer = AdamZ(model.parameters(), patience=2, stagnation_period=1)
    inputs, targets = batch(0)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        return loss

    returned = [optimizer.step(closure) for _ in range(3)]
    assert all(isinstance(loss, Tensor) for loss in returned)
    assert optimizer.controller_stats()[0]["observed"] == 3


def test_step_without_a_loss_warns_once_and_is_plain_adam() -> None:
    model_z, model_a = make_model(), make_model()
    adamz = AdamZ(model_z.parameters(), patience=1, stagnation_period=1, max_grad_norm=None)
    adam = torch.optim.Adam(model_a.parameters(), lr=0.01)
    for step in range(3):
        for model, optimizer in ((model_z, adamz), (model_a, adam)):
            inputs, targets = batch(step)
            optimizer.zero_grad()
            nn.functional.mse_loss(model(inputs), targets).backward()
            if optimizer is adamz and step == 0:
                with pytest.warns(UserWarning, match="controller is off"):
                    optimizer.step()
            elif optimizer is adamz:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    optimizer.step()
            else:
                optimizer.step()
    assert_same_parameters_and_moments(model_z, adamz, model_a, adam)


@pytest.mark.parametrize("wrapper", ["none", "lr_scheduler", "grad_scaler"])
def test_the_warning_without_a_loss_names_the_line_that_called_step(wrapper: str) -> None:
    model = make_model(dtype=torch.float32)
    optimizer = AdamZ(model.parameters())
    scaler = torch.amp.GradScaler("cpu")
    if wrapper == "lr_scheduler":  # it wraps optimizer.step in one more frame
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    inputs, targets = batch(0, torch.float32)
    loss = nn.functional.mse_loss(model(inputs), targets)
    (scaler.scale(loss) if wrapper == "grad_scaler" else loss).backward()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if wrapper == "grad_scaler":
            scaler.step(optimizer)
        else:
            optimizer.step()
    [warning] = [w for w in caught if "controller is off" in str(w.message)]
    assert warning.filename == __file__
    calling_line = linecache.getline(__file__, warning.lineno).strip()
    assert calling_line in ("scaler.step(optimizer)", "optimizer.step()")


class OnDevice(Tensor):
    """A tensor subclass: AdamZ handles it as it handles a CUDA loss, without host reads."""


def test_on_the_cpu_the_rate_stays_a_float() -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = AdamZ([param])
    param.grad = torch.ones(1)
    optimizer.step(loss=torch.tensor(1.0))
    assert type(optimizer.param_groups[0]["lr"]) is float


def test_a_float_rate_set_by_the_user_is_taken_up() -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = AdamZ([param], patience=100, stagnation_period=1)
    param.grad = torch.ones(1)
    optimizer.step(loss=torch.tensor(1.0).as_subclass(OnDevice))
    assert isinstance(optimizer.param_groups[0]["lr"], Tensor)
    optimizer.param_groups[0]["lr"] = 0.5
    before = param.detach().clone()
    param.grad = torch.ones(1)
    optimizer.step(loss=torch.tensor(1.0).as_subclass(OnDevice))
    # Second Adam step with g = 1 moves the parameter by exactly lr.
    assert (before - param.detach()).item() == pytest.approx(0.5)
    assert float(optimizer.param_groups[0]["lr"]) == 0.5


@pytest.mark.parametrize("loss_type", [Tensor, OnDevice])
def test_an_lr_scheduler_drives_the_rate(loss_type: type[Tensor]) -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = AdamZ([param], patience=100, stagnation_period=1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(3):
        param.grad = torch.ones(1)
        optimizer.step(loss=torch.tensor(1.0).as_subclass(loss_type))
        scheduler.step()
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(0.01 * 0.5**3)


def test_grad_scaler_passes_the_loss_and_skips_overflowing_steps() -> None:
    model = make_model(dtype=torch.float32)
    optimizer = AdamZ(model.parameters(), patience=2, stagnation_period=1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    inputs, targets = batch(0, torch.float32)
    for step in range(4):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.mse_loss(model(inputs).float(), targets)
        scaler.scale(loss).backward()
        if step == 3:
            next(model.parameters()).grad[0, 0] = torch.inf  # an overflow: the step is skipped
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(optimizer, loss=loss)
        scaler.update()
    assert optimizer.controller_stats()[0]["observed"] == 3
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


class NoHostReads(Tensor):
    """A tensor that fails on every read of its value by the host."""

    @staticmethod
    def _refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a host read of a device value")

    item = _refuse
    tolist = _refuse
    numpy = _refuse
    __float__ = _refuse
    __int__ = _refuse
    __bool__ = _refuse
    __index__ = _refuse


def test_a_step_never_reads_the_loss_or_the_rate_back_to_the_host() -> None:
    model = make_model(dtype=torch.float32)
    for foreach in (False, True):
        optimizer = AdamZ(model.parameters(), patience=2, stagnation_period=1, foreach=foreach)
        for step in range(5):
            inputs, targets = batch(step, torch.float32)
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(inputs), targets)
            loss.backward()
            optimizer.step(loss=loss.detach().as_subclass(NoHostReads))
        assert isinstance(optimizer.param_groups[0]["lr"], NoHostReads)


def test_loss_decreases_on_a_small_regression_problem() -> None:
    torch.manual_seed(0)
    inputs = torch.randn(256, 4)
    targets = inputs @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    model = nn.Linear(4, 1)
    optimizer = AdamZ(model.parameters(), lr=0.05, patience=20, stagnation_period=5)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(inputs).squeeze(1), targets)
        loss.backward()
        optimizer.step(loss=loss)
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]


def test_complex_parameters_follow_adam() -> None:
    values = torch.randn(4, dtype=torch.complex128)
    pz, pa = values.clone().requires_grad_(), values.clone().requires_grad_()
    adamz = AdamZ([pz], **NEVER_FIRES)
    adam = torch.optim.Adam([pa], lr=0.01)
    for step in range(5):
        grad = torch.randn(4, dtype=torch.complex128, generator=torch.Generator().manual_seed(step))
        pz.grad, pa.grad = grad.clone(), grad.clone()
        adamz.step(loss=torch.tensor(1.0))
        adam.step()
    torch.testing.assert_close(pz, pa)


def test_sparse_gradients_are_refused() -> None:
    embedding = nn.Embedding(10, 3, sparse=True)
    optimizer = AdamZ(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        optimizer.step(loss=torch.tensor(1.0))


def test_a_closure_and_a_loss_together_are_refused() -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = AdamZ([param])
    with pytest.raises(ValueError, match="either through closure or through loss"):
        optimizer.step(lambda: torch.tensor(1.0), loss=torch.tensor(1.0))


def test_a_loss_with_several_values_is_refused() -> None:
    param = torch.zeros(1, requires_grad=True)
    param.grad = torch.ones(1)
    optimizer = AdamZ([param])
    with pytest.raises(
        ValueError, match=re.escape("loss must be a single value, got a tensor of shape (3,)")
    ):
        optimizer.step(loss=torch.ones(3))


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"lr": 0.0}, "Invalid lr: must be > 0, got 0.0"),
    ({"lr": -1.0}, "Invalid lr: must be > 0, got -1.0"),
    ({"lr": float("nan")}, "Invalid lr: must be > 0, got nan"),
    ({"betas": (1.0, 0.999)}, "Invalid betas[0]: must be in [0, 1), got 1.0"),
    ({"betas": (0.9, -0.1)}, "Invalid betas[1]: must be in [0, 1), got -0.1"),
    ({"betas": (0.9,)}, "Invalid betas: must be a pair (beta1, beta2), got (0.9,)"),
    ({"eps": -1e-8}, "Invalid eps: must be >= 0, got -1e-08"),
    ({"weight_decay": -0.1}, "Invalid weight_decay: must be >= 0, got -0.1"),
    ({"overshoot_factor": 1.0}, "Invalid overshoot_factor: must be in (0, 1), got 1.0"),
    ({"overshoot_factor": 0.0}, "Invalid overshoot_factor: must be in (0, 1), got 0.0"),
    ({"stagnation_factor": 1.0}, "Invalid stagnation_factor: must be > 1, got 1.0"),
    ({"stagnation_threshold": -0.2}, "Invalid stagnation_threshold: must be >= 0, got -0.2"),
    ({"patience": 0}, "Invalid patience: must be an integer >= 1, got 0"),
    ({"patience": 2.5}, "Invalid patience: must be an integer >= 1, got 2.5"),
    (
        {"stagnation_period": 0},
        "Invalid stagnation_period: must be an integer in [1, patience=100], got 0",
    ),
    (
        {"patience": 5, "stagnation_period": 6},
        "Invalid stagnation_period: must be an integer in [1, patience=5], got 6",
    ),
    (
        {"lr_bounds": (0.0, 1.0)},
        "Invalid lr_bounds: must satisfy 0 < min_lr <= max_lr, got (0.0, 1.0)",
    ),
    (
        {"lr_bounds": (0.1, 0.01)},
        "Invalid lr_bounds: must satisfy 0 < min_lr <= max_lr, got (0.1, 0.01)",
    ),
    ({"lr": 2.0}, "Invalid lr: must lie within lr_bounds=(1e-07, 1.0), got 2.0"),
    (
        {"max_grad_norm": 0.0},
        "Invalid max_grad_norm: must be > 0 (or None for no clipping), got 0.0",
    ),
    ({"lr_controller": 0}, "Invalid lr_controller: must be True or False, got 0"),
    ({"lr_controller": "off"}, "Invalid lr_controller: must be True or False, got 'off'"),
]


@pytest.mark.parametrize(
    ("arguments", "message"), INVALID, ids=[m.split(":")[0] for _, m in INVALID]
)
def test_invalid_hyperparameters_raise_a_value_error_naming_them(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AdamZ([torch.zeros(1, requires_grad=True)], **arguments)


def test_invalid_group_overrides_are_refused_too() -> None:
    with pytest.raises(
        ValueError, match=re.escape("Invalid patience: must be an integer >= 1, got 0")
    ):
        AdamZ([{"params": [torch.zeros(1, requires_grad=True)], "patience": 0}])


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: AdamZ(params),
        lambda params: AdamZ(params, lr=0.003, patience=164, stagnation_period=28),
    ],
)
def test_defaults_are_the_papers_and_repr_hides_the_loss_window(
    make_optimizer: Callable[[Any], AdamZ],
) -> None:
    param = torch.zeros(1, requires_grad=True)
    optimizer = make_optimizer([param])
    param.grad = torch.ones(1)
    optimizer.step(loss=torch.tensor(1.0))
    assert "loss_window" not in repr(optimizer)
    assert "overshoot_factor: 0.5" in repr(optimizer)
    defaults = AdamZ([torch.zeros(1, requires_grad=True)]).defaults
    assert defaults == {
        "lr": 0.01,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "overshoot_factor": 0.5,
        "stagnation_factor": 1.2,
        "stagnation_threshold": 0.2,
        "patience": 100,
        "stagnation_period": 10,
        "max_grad_norm": 1.0,
        "lr_bounds": (1e-7, 1.0),
        "lr_controller": True,
        "foreach": None,
    }
