"""Population training: every member trains what its single run trains."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from scipy.stats import wilcoxon
from torch.func import functional_call, stack_module_state, vmap

from adamz.training import RunConfig, StopTraining, train
from adamz.training.loop import EpochEnd
from adamz.training.population import train_runs
from adamz.workloads import get_workload

# One step per epoch (the training split is smaller than a batch), so that the records'
# per-epoch losses and rates are per step.
ONE_STEP_EPOCHS = {"train_size": 30, "test_size": 60, "epochs": 100}

SETTINGS: dict[str, list[dict[str, Any]]] = {
    "adamz": [
        {"lr": 0.02, "patience": 4, "stagnation_period": 2, "stagnation_threshold": 0.5},
        {"lr": 0.005, "patience": 7, "stagnation_period": 3, "overshoot_factor": 0.8},
        {"lr": 0.05, "patience": 3, "stagnation_period": 3, "max_grad_norm": None},
    ],
    "sgd": [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.3}, {"lr": 0.05, "momentum": 0.5}],
    "rmsprop": [{"lr": 0.003, "alpha": 0.9}, {"lr": 0.001, "momentum": 0.5}],
}


def configs(workload: str, optimizer: str, **protocol: Any) -> list[RunConfig]:
    return [
        RunConfig(workload, optimizer, settings, seed=seed, **protocol)
        for seed, settings in enumerate(SETTINGS[optimizer], start=3)
    ]


@pytest.mark.parametrize(
    ("workload", "optimizer"), [("digits", "adamz"), ("circles", "adamz"), ("digits", "sgd")]
)
def test_the_first_100_steps_losses_match_each_member_s_single_run(
    workload: str, optimizer: str
) -> None:
    members = configs(workload, optimizer, **ONE_STEP_EPOCHS)
    population = train_runs(members)
    for config, member in zip(members, population, strict=True):
        single = train(config)
        assert member.steps == single.steps == 100
        # float32 sums split differently in batched kernels: 1e-4 relative after 100 steps.
        torch.testing.assert_close(member.epoch_losses, single.epoch_losses, rtol=1e-4, atol=1e-6)
        assert member.seed == single.seed
        assert member.hyperparameters == single.hyperparameters
        assert member.population_size == len(members)


def test_adamz_s_controller_decides_as_the_single_run_step_for_step() -> None:
    members = configs("digits", "adamz", **ONE_STEP_EPOCHS)
    for config, member in zip(members, train_runs(members), strict=True):
        single = train(config)
        assert member.controller is not None
        assert single.controller is not None
        # The rate after every step, and how often each rule fired.
        torch.testing.assert_close(
            member.controller["lr_at_epoch_end"],
            single.controller["lr_at_epoch_end"],
            rtol=1e-9,
            atol=0,
        )
        for key in ("overshoots", "stagnations", "observed"):
            assert member.controller[key] == single.controller[key], key
    fired = sum(
        m.controller["overshoots"] + m.controller["stagnations"] for m in train_runs(members)
    )  # type: ignore[index]
    assert fired > 30


def test_twenty_seeds_reach_what_their_single_runs_reach() -> None:
    members = [
        RunConfig("digits", "adam", {"lr": 0.003}, seed=seed, epochs=4, train_size=600)
        for seed in range(20)
    ]
    batched = [r.final_metrics["val_accuracy"] for r in train_runs(members)]  # type: ignore[index]
    single = [train(config).final_metrics["val_accuracy"] for config in members]  # type: ignore[index]
    differences = [b - s for b, s in zip(batched, single, strict=True)]
    assert abs(statistics.median(batched) - statistics.median(single)) < 0.01
    if any(differences):  # a paired test finds no difference between the two
        assert wilcoxon(batched, single, zero_method="zsplit").pvalue > 0.05
    assert statistics.median(single) > 0.5  # they learned: the comparison means something


def test_members_end_on_their_own_and_the_rest_trains_on() -> None:
    members = [
        RunConfig("digits", "sgd", {"lr": 0.05}, seed=0, epochs=4, train_size=300),
        RunConfig("digits", "sgd", {"lr": 1e19}, seed=1, epochs=4, train_size=300),
        RunConfig("digits", "sgd", {"lr": 0.05}, seed=2, epochs=4, train_size=300),
    ]

    def on_epochs(ends: list[EpochEnd]) -> dict[int, StopTraining]:
        return {
            end.member: StopTraining("pruned") for end in ends if (end.member, end.epoch) == (2, 2)
        }

    kept, diverged, stopped = train_runs(members, on_epochs=on_epochs)
    assert kept.stop_reason == "completed"
    assert kept.epochs_completed == 4
    single = train(members[0])
    torch.testing.assert_close(kept.epoch_losses, single.epoch_losses, rtol=1e-4, atol=1e-6)
    assert diverged.stop_reason == "nonfinite_loss"
    assert diverged.final_metrics is None
    assert "non-finite loss" in diverged.stop_detail
    assert stopped.stop_reason == "stopped_by_callback"
    assert stopped.epochs_completed == 2
    assert stopped.stop_detail == "stopped by on_epoch after epoch 2: pruned"


class Killed(Exception):
    pass


def test_a_member_of_a_killed_population_resumes_in_another(tmp_path: Path) -> None:
    members = configs("digits", "adamz", epochs=5, train_size=300)
    paths = [tmp_path / f"member-{index}.pt" for index in range(len(members))]
    uninterrupted = train_runs(members)

    def kill(ends: list[EpochEnd]) -> dict[int, StopTraining]:
        if ends[0].epoch == 3:
            raise Killed
        return {}

    with pytest.raises(Killed):
        train_runs(members, on_epochs=kill, checkpoint_paths=paths)
    # Member 1 resumes beside a fresh run (epoch 0) in a population of its own making.
    fresh = RunConfig("digits", "adamz", {"lr": 0.001}, seed=9, epochs=5, train_size=300)
    resumed, other = train_runs(
        [members[1], fresh], checkpoint_paths=[paths[1], tmp_path / "fresh.pt"]
    )
    assert resumed.resumed_from_epoch == 3
    assert resumed.epochs_completed == 5
    assert other.resumed_from_epoch is None
    assert other.epochs_completed == 5
    assert resumed.final_metrics is not None
    assert uninterrupted[1].final_metrics is not None
    torch.testing.assert_close(
        resumed.epoch_losses, uninterrupted[1].epoch_losses, rtol=1e-4, atol=1e-6
    )
    assert resumed.controller["observed"] == uninterrupted[1].controller["observed"]  # type: ignore[index]
    # A finished member's checkpoint returns its record without training.
    again = train_runs([members[1]], checkpoint_paths=[paths[1]])
    assert again[0].epoch_losses == resumed.epoch_losses


def test_members_must_share_workload_optimizer_and_protocol() -> None:
    with pytest.raises(ValueError, match="a population trains one optimizer"):
        train_runs([RunConfig("digits", "adam"), RunConfig("digits", "sgd")])
    with pytest.raises(ValueError, match="a population trains one protocol"):
        train_runs([RunConfig("digits", epochs=2), RunConfig("digits", epochs=3)])


# The reference, vmap of the attention module, loops over the models (torch says so).
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
@pytest.mark.parametrize("name", ["circles", "digits", "mnist"])
def test_a_hand_written_stacked_forward_is_vmap_of_the_model_s_forward(name: str) -> None:
    workload = get_workload(name)
    assert workload.has_stacked_forward
    models = [workload.build_model().eval() for _ in range(3)]
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    shape = {"circles": (2,), "digits": (64,), "mnist": (1, 28, 28)}[name]
    inputs = torch.randn(3, 5, *shape)

    def forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(models[0], (p, buffers), (x,))

    expected = vmap(forward)(params, inputs)
    stacked = workload.stacked_forward(params, inputs, training=False)
    torch.testing.assert_close(stacked, expected, rtol=1e-5, atol=1e-6)
    targets = torch.randint(0, 2, expected.shape[:2]).to(
        torch.float32 if name == "circles" else torch.int64
    )
    torch.testing.assert_close(
        workload.stacked_loss(stacked, targets), vmap(workload.loss)(expected, targets)
    )


# The reference, vmap of torch's TransformerEncoderLayer, loops over the models (torch says so).
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
@pytest.mark.parametrize("training", [False, True])
def test_the_transformer_s_stacked_forward_loss_and_gradients_are_vmap_of_the_model_s(
    training: bool,
) -> None:
    workload = get_workload("pysource")
    assert workload.has_stacked_forward
    models = [workload.build_model().train(training) for _ in range(3)]
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    inputs = torch.randint(0, 96, (3, 5, 64))
    targets = torch.randint(0, 96, (3, 5, 64))

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return workload.loss(functional_call(models[0], (p, buffers), (x,)), y)

    expected = vmap(lambda p, x: functional_call(models[0], (p, buffers), (x,)))(params, inputs)
    stacked = workload.stacked_forward(params, inputs, training=training)
    assert stacked.shape == (3, 5, 64, 96)
    torch.testing.assert_close(stacked, expected, rtol=1e-5, atol=1e-5)
    losses = workload.stacked_loss(stacked, targets)
    torch.testing.assert_close(losses, vmap(workload.loss)(expected, targets))
    expected_gradients = vmap(torch.func.grad(loss))(params, inputs, targets)
    gradients = torch.autograd.grad(losses.sum(), list(params.values()))
    for name, gradient in zip(params, gradients, strict=True):
        torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-4, atol=1e-6)


def test_the_transformer_s_first_30_steps_losses_match_each_member_s_single_run() -> None:
    # 36 examples: 4 held out, 32 in one step per epoch; 4 test examples keep evaluation short.
    # Rates a tenth of the MLPs': the transformer memorises 32 examples within 30 steps, and at
    # higher rates float32's last bits, summed differently in batched kernels, grow chaotically.
    settings = [
        {"lr": 0.003, "patience": 4, "stagnation_period": 2, "stagnation_threshold": 0.5},
        {"lr": 0.001, "patience": 7, "stagnation_period": 3, "overshoot_factor": 0.8},
        {"lr": 0.01, "patience": 3, "stagnation_period": 3, "max_grad_norm": None},
    ]
    members = [
        RunConfig(
            "pysource",
            "adamz",
            hyperparameters,
            seed=seed,
            train_size=36,
            test_size=4,
            epochs=30,
            batch_size=64,
        )
        for seed, hyperparameters in enumerate(settings, start=3)
    ]
    population = train_runs(members)
    fired = 0
    for config, member in zip(members, population, strict=True):
        single = train(config)
        assert member.steps == single.steps == 30
        torch.testing.assert_close(member.epoch_losses, single.epoch_losses, rtol=1e-4, atol=1e-6)
        assert member.controller is not None
        assert single.controller is not None
        for key in ("overshoots", "stagnations", "observed"):
            assert member.controller[key] == single.controller[key], key
        fired += member.controller["overshoots"] + member.controller["stagnations"]
        assert member.final_metrics is not None
        assert single.final_metrics is not None
        torch.testing.assert_close(
            member.final_metrics["val_loss"], single.final_metrics["val_loss"], rtol=1e-4, atol=0
        )
        assert member.epoch_losses[-1] < member.epoch_losses[0] - 1  # it learned
    assert fired > 10
