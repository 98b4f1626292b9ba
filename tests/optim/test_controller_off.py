"""AdamZ with its controller off is Adam after AdamZ's clipping: ClippedAdam, step for step."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import Tensor, nn

from adamz import AdamZ
from adamz.optim import ClippedAdam

# Rates and clipping at which the controller, were it on, would act within 200 steps, and the
# gradients' norm often exceeds the clipping bound.
SETTINGS = {"lr": 0.05, "max_grad_norm": 0.5, "weight_decay": 0.01, "betas": (0.85, 0.99)}


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def step(model: nn.Module, optimizer: torch.optim.Optimizer, index: int) -> Tensor:
    generator = torch.Generator().manual_seed(index)
    inputs = torch.randn(32, 5, generator=generator, dtype=torch.float64)
    targets = 3 * torch.randn(32, 3, generator=generator, dtype=torch.float64)
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    if isinstance(optimizer, AdamZ):
        optimizer.step(loss=loss)
    else:
        optimizer.step()
    return loss.detach()


@pytest.mark.parametrize("foreach", [False, True])
def test_adamz_with_the_controller_off_equals_clipped_adam_for_200_steps(foreach: bool) -> None:
    model_z, model_c = make_model(), make_model()
    adamz = AdamZ(
        model_z.parameters(),
        **SETTINGS,
        lr_controller=False,
        patience=20,
        stagnation_period=5,
        foreach=foreach,
    )
    clipped = ClippedAdam(model_c.parameters(), **SETTINGS, foreach=foreach)
    clipped_steps = 0
    for index in range(200):
        loss_z, loss_c = step(model_z, adamz, index), step(model_c, clipped, index)
        torch.testing.assert_close(loss_z, loss_c, rtol=1e-12, atol=0)
        for param_z, param_c in zip(model_z.parameters(), model_c.parameters(), strict=True):
            torch.testing.assert_close(param_z, param_c, rtol=1e-12, atol=1e-14)
        # A clipped step leaves gradients of norm max_grad_norm behind (to 1e-6).
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model_c.parameters()]))
        clipped_steps += int(abs(float(norm) - SETTINGS["max_grad_norm"]) < 1e-5)
    assert clipped_steps > 20  # clipping was exercised, not bypassed
    assert adamz.param_groups[0]["lr"] == SETTINGS["lr"]
    assert adamz.controller_stats()[0]["observed"] == 0


def test_the_same_settings_with_the_controller_on_change_the_rate() -> None:
    model = make_model()
    adamz = AdamZ(model.parameters(), **SETTINGS, patience=20, stagnation_period=5)
    for index in range(200):
        step(model, adamz, index)
    stats = adamz.controller_stats()[0]
    assert stats["overshoots"] + stats["stagnations"] > 0
    assert stats["lr"] != SETTINGS["lr"]


def test_the_controller_setting_survives_state_dict_and_is_per_group() -> None:
    on, off = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    optimizer = AdamZ(
        [{"params": [on]}, {"params": [off], "lr_controller": False}],
        lr=0.1,
        patience=2,
        stagnation_period=1,
        stagnation_threshold=0.0,  # never stagnates: only the overshoot acts
    )
    for value in (3.0, 2.0, 1.0, 5.0):  # 5.0 tops the window: an overshoot halves the rate
        on.grad, off.grad = torch.ones(2), torch.ones(2)
        optimizer.step(loss=torch.tensor(value))
    assert [group["lr"] for group in optimizer.param_groups] == [0.05, 0.1]
    restored = AdamZ([{"params": [on]}, {"params": [off]}])
    restored.load_state_dict(optimizer.state_dict())
    assert [group["lr_controller"] for group in restored.param_groups] == [True, False]


def test_a_state_dict_saved_before_the_setting_existed_loads_with_the_controller_on() -> None:
    param = torch.zeros(2, requires_grad=True)
    saved = AdamZ([param]).state_dict()
    del saved["param_groups"][0]["lr_controller"]
    optimizer = AdamZ([param], lr_controller=False)
    optimizer.load_state_dict(saved)
    assert optimizer.param_groups[0]["lr_controller"] is True


def test_without_the_controller_a_step_needs_no_loss_and_does_not_warn() -> None:
    param = torch.zeros(2, requires_grad=True)
    optimizer = AdamZ([param], lr_controller=False)
    param.grad = torch.ones(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert optimizer.step() is None


def test_clipped_adam_without_clipping_is_torch_adam() -> None:
    model_a, model_c = make_model(), make_model()
    adam = torch.optim.Adam(model_a.parameters(), lr=0.05)
    clipped = ClippedAdam(model_c.parameters(), lr=0.05, max_grad_norm=None)
    for index in range(20):
        step(model_a, adam, index), step(model_c, clipped, index)
    for param_a, param_c in zip(model_a.parameters(), model_c.parameters(), strict=True):
        torch.testing.assert_close(param_a, param_c, rtol=0, atol=0)


def test_clipped_adam_clips_with_one_norm_over_all_groups() -> None:
    first, second = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = ClippedAdam([{"params": [first]}, {"params": [second]}], max_grad_norm=1.0)
    first.grad, second.grad = torch.tensor([3.0]), torch.tensor([4.0])  # total norm 5
    grads = []
    original = torch.optim.Adam.step

    def record(self: torch.optim.Optimizer, closure: object = None) -> object:
        grads.append((float(first.grad), float(second.grad)))
        return original(self)

    torch.optim.Adam.step = record  # type: ignore[method-assign]
    try:
        optimizer.step()
    finally:
        torch.optim.Adam.step = original  # type: ignore[method-assign]
    assert grads == [pytest.approx((3 / 5, 4 / 5), rel=1e-5)]
    assert optimizer.state_dict()["param_groups"][1]["max_grad_norm"] == 1.0


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), True, "1"])
def test_clipped_adam_refuses_an_invalid_max_grad_norm(value: object) -> None:
    message = f"Invalid max_grad_norm: must be > 0 (or None for no clipping), got {value!r}."
    with pytest.raises(ValueError, match=re.escape(message)):
        ClippedAdam([torch.zeros(1, requires_grad=True)], max_grad_norm=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(message)):
        ClippedAdam([{"params": [torch.zeros(1, requires_grad=True)], "max_grad_norm": value}])
