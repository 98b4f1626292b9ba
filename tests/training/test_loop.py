"""The training loop: determinism, callbacks, evaluation mode, NaN stop, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adamz.training import RunConfig, StopTraining, TrainResult, evaluate, train
from adamz.workloads import METRICS, get_workload

TIMES = ("train_time_s", "wall_time_s")


def outcome(result: TrainResult) -> dict[str, Any]:
    """The record without what legitimately differs between identical runs."""
    return {k: v for k, v in result.to_dict().items() if k not in (*TIMES, "resumed_from_epoch")}


def tiny(**overrides: Any) -> RunConfig:
    arguments: dict[str, Any] = {
        "workload": "tiny-dropout",
        "optimizer": "adamz",
        "hyperparameters": {"patience": 4, "stagnation_period": 2},
        "seed": 3,
    }
    return RunConfig(**{**arguments, **overrides})


def test_same_seed_gives_the_identical_result() -> None:
    assert outcome(train(tiny())) == outcome(train(tiny()))


def test_different_seeds_give_different_runs() -> None:
    assert train(tiny(seed=1)).epoch_losses != train(tiny(seed=2)).epoch_losses


def test_record_holds_the_protocol_actually_used_and_one_entry_per_epoch() -> None:
    result = train(tiny(epochs=2, batch_size=40, train_size=100, test_size="all"))
    # 20 % of the first 100 training examples are held out for validation
    assert result.protocol == {
        "epochs": 2,
        "batch_size": 40,
        "train_size": 80,
        "val_size": 20,
        "test_size": 50,
    }
    assert result.steps == 2 * 2  # ceil(80 / 40) steps per epoch
    assert set(result.epoch_metrics) == set(METRICS)
    assert all(len(values) == 2 for values in result.epoch_metrics.values())
    assert len(result.epoch_losses) == result.epochs_completed == 2
    assert result.final_metrics == {
        name: values[-1] for name, values in result.epoch_metrics.items()
    }
    assert (result.stop_reason, result.stop_detail) == ("completed", "completed 2 epochs")
    assert result.hyperparameters["lr_bounds"] == [1e-7, 1.0]
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


def test_adamz_controller_is_fed_the_loss_and_adjusts_the_rate_during_training() -> None:
    result = train(
        RunConfig(
            workload="digits",
            optimizer="adamz",
            hyperparameters={"patience": 5, "stagnation_period": 2},
            epochs=1,
        )
    )
    controller = result.controller
    assert controller is not None
    assert controller["observed"] == result.steps == 34
    assert controller["overshoots"] + controller["stagnations"] > 0
    assert controller["final_lr"] != controller["initial_lr"] == 0.01
    assert controller["lr_at_epoch_end"] == [controller["final_lr"]]


def test_other_optimizers_have_no_controller_summary() -> None:
    assert train(tiny(optimizer="adam", hyperparameters={}, epochs=1)).controller is None


def test_on_epoch_receives_each_epoch_counted_from_one_and_its_metrics() -> None:
    reported: list[tuple[int, dict[str, float]]] = []
    result = train(tiny(), on_epoch=lambda epoch, metrics: reported.append((epoch, metrics)))
    assert [epoch for epoch, _ in reported] == [1, 2, 3]
    for index, (_, metrics) in enumerate(reported):
        assert metrics == {name: values[index] for name, values in result.epoch_metrics.items()}


def test_on_step_receives_epoch_step_and_steps_in_epoch() -> None:
    steps: list[tuple[int, int, int]] = []
    train(tiny(epochs=1, batch_size=64), on_step=lambda *args: steps.append(args))
    assert steps == [(1, 1, 2), (1, 2, 2)]  # 120 training examples (30 validate) at batch 64


def test_stop_training_from_on_epoch_ends_the_run_with_a_record() -> None:
    def stop_after_two(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise StopTraining("good enough")

    result = train(tiny(), on_epoch=stop_after_two)
    assert result.stop_reason == "stopped_by_callback"
    assert result.stop_detail == "stopped by on_epoch after epoch 2: good enough"
    assert result.epochs_completed == 2
    assert result.final_metrics is not None
    assert result.final_metrics["val_accuracy"] == result.epoch_metrics["val_accuracy"][-1]


def test_optuna_pruning_raised_in_on_epoch_propagates() -> None:
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2)
    )
    trial = study.ask()

    def report(epoch: int, metrics: dict[str, float]) -> None:
        trial.report(metrics["val_accuracy"], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        train(tiny(), on_epoch=report)
    assert list(trial.storage.get_trial(trial._trial_id).intermediate_values) == [1]


def test_nonfinite_loss_stops_the_run_and_records_where() -> None:
    result = train(tiny(workload="nan-at-step-15", batch_size=16))
    # 120 training examples at batch 16: 8 steps per epoch, so global step 15 is epoch 2, step 7.
    assert result.stop_reason == "nonfinite_loss"
    assert result.stop_detail.startswith("non-finite loss (nan) at epoch 2, step 7 of 8")
    assert result.final_metrics is None
    assert result.epochs_completed == len(result.epoch_metrics["val_accuracy"]) == 1
    assert result.controller is not None
    assert result.controller["nonfinite"] >= 1


def test_diverging_rate_stops_the_run_instead_of_training_on_nans() -> None:
    result = train(
        RunConfig(workload="circles", optimizer="sgd", hyperparameters={"lr": 1e30}, epochs=3)
    )
    assert result.stop_reason == "nonfinite_loss"
    assert result.steps < 105 * 3
    assert math.isfinite(result.train_time_s)


def test_evaluation_runs_in_eval_mode_without_gradients_and_restores_train_mode() -> None:
    workload = get_workload("mnist")
    torch.manual_seed(0)
    model = workload.build_model().train()
    seen: list[tuple[bool, bool]] = []
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.register_forward_pre_hook(
                lambda m, _: seen.append((m.training, torch.is_grad_enabled()))
            )
    inputs, targets = torch.randn(30, 28, 28), torch.randint(0, 10, (30,))
    metrics = evaluate(workload, model, inputs, targets, batch_size=8)
    accuracy, loss = metrics["accuracy"], metrics["loss"]
    assert seen
    assert all(state == (False, False) for state in seen)
    assert model.training
    with torch.no_grad():
        model.eval()
        outputs = model(inputs)
        model.train()
    assert accuracy == pytest.approx(float((outputs.argmax(1) == targets).double().mean()))
    assert loss == pytest.approx(float(F.nll_loss(outputs, targets)), rel=1e-5)
    # dropout off, and batching changes no result
    assert evaluate(workload, model, inputs, targets) == pytest.approx(metrics, rel=1e-6)


def test_run_leaves_the_callers_rng_state_untouched() -> None:
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    train(tiny(epochs=1))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"workload": "imagenet"}, r"^Unknown workload 'imagenet'"),
        ({"optimizer": "lamb"}, r"^Unknown optimizer 'lamb'"),
        ({"hyperparameters": {"patience": 0}}, r"^Invalid patience: must be an integer >= 1"),
        ({"seed": -1}, r"^Invalid seed: must be an integer >= 0, got -1\.$"),
        ({"epochs": 0}, r"^Invalid epochs: must be an integer >= 1, got 0\.$"),
        ({"train_size": 0}, r"^Invalid subset size: must be an integer >= 1 or 'all', got 0\.$"),
        ({"device": "toaster"}, r"^Invalid device: .*got 'toaster'\.$"),
        ({"train_size": 151}, r"^Invalid train_size: must be at most the 150 examples"),
    ],
)
def test_invalid_runs_are_refused_before_training(overrides: dict[str, Any], message: str) -> None:
    steps: list[object] = []
    with pytest.raises(ValueError, match=message):
        train(tiny(**overrides), on_step=lambda *args: steps.append(args))
    assert steps == []


def checkpointed_model(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path, weights_only=True)["model"]
    return state


@pytest.mark.parametrize(
    "optimizer",
    [
        {},
        {"optimizer": "adam-cosine", "hyperparameters": {"lr": 0.05, "eta_min": 1e-4}},
        {"optimizer": "adam-plateau", "hyperparameters": {"lr": 0.05, "patience": 2}},
    ],
    ids=["adamz", "adam-cosine", "adam-plateau"],
)
def test_run_resumed_from_its_checkpoint_ends_exactly_like_an_uninterrupted_one(
    tmp_path: Path, optimizer: dict[str, Any]
) -> None:
    uninterrupted = train(tiny(**optimizer), checkpoint_path=tmp_path / "whole.pt")

    def interrupt_after_first_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt  # as if the worker were killed after the checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(
            tiny(**optimizer),
            on_epoch=interrupt_after_first_epoch,
            checkpoint_path=tmp_path / "cut.pt",
        )
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["epoch"] == 1
    resumed = train(tiny(**optimizer), checkpoint_path=tmp_path / "cut.pt")

    assert resumed.resumed_from_epoch == 1
    assert outcome(resumed) == outcome(uninterrupted)
    whole, cut = checkpointed_model(tmp_path / "whole.pt"), checkpointed_model(tmp_path / "cut.pt")
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[name], cut[name]) for name in whole)


def test_checkpoint_is_written_atomically_as_plain_data(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "one.pt"
    train(tiny(epochs=1), checkpoint_path=path)
    payload = torch.load(path, weights_only=True)
    assert payload["epoch"] == 1
    assert payload["record"]["stop_reason"] == "completed"
    assert sorted(p.name for p in path.parent.iterdir()) == ["one.pt"]  # no temporary left


def test_finished_checkpoint_returns_its_record_without_training(tmp_path: Path) -> None:
    first = train(tiny(epochs=1), checkpoint_path=tmp_path / "run.pt")
    steps: list[object] = []
    again = train(
        tiny(epochs=1), checkpoint_path=tmp_path / "run.pt", on_step=lambda *a: steps.append(a)
    )
    assert again.to_dict() == first.to_dict()
    assert steps == []


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    train(tiny(epochs=1), checkpoint_path=tmp_path / "run.pt")
    with pytest.raises(
        ValueError, match=r"^Invalid checkpoint_path: .* belongs to another run \(seed"
    ):
        train(tiny(epochs=1, seed=4), checkpoint_path=tmp_path / "run.pt")


# The last epoch ends the run, and a run's last state is always written.
@pytest.mark.parametrize(
    ("interval", "saved_after"), [(0.0, [True, True, True]), (1e9, [False, False, True])]
)
def test_checkpoint_interval_skips_epoch_checkpoints_written_too_soon(
    tmp_path: Path, interval: float, saved_after: list[bool]
) -> None:
    path = tmp_path / "run.pt"
    seen: list[bool] = []
    train(
        tiny(epochs=3),
        checkpoint_path=path,
        checkpoint_interval_s=interval,
        on_epoch=lambda epoch, metric: seen.append(path.exists()),
    )
    assert seen == saved_after


def test_a_stopped_run_writes_its_checkpoint_whatever_the_interval(tmp_path: Path) -> None:
    def stop(epoch: int, metric: float) -> None:
        raise StopTraining("enough")

    path = tmp_path / "run.pt"
    train(tiny(epochs=3), checkpoint_path=path, checkpoint_interval_s=1e9, on_epoch=stop)
    assert torch.load(path, weights_only=True)["record"]["stop_reason"] == "stopped_by_callback"


def test_a_schedule_moves_the_rate_during_the_run() -> None:
    constant = train(tiny(optimizer="adam", hyperparameters={"lr": 0.05}))
    cosine = train(tiny(optimizer="adam-cosine", hyperparameters={"lr": 0.05, "eta_min": 0.0}))
    assert cosine.epoch_losses != constant.epoch_losses
    assert cosine.hyperparameters["eta_min"] == 0.0


def test_validation_and_test_metrics_are_computed_on_their_own_splits() -> None:
    result = train(tiny(epochs=1))
    assert result.final_metrics is not None
    # 20 % of 150 training examples validate; the test split is the last 50 examples
    assert (result.protocol["val_size"], result.protocol["test_size"]) == (30, 50)
    val, test = result.final_metrics["val_accuracy"], result.final_metrics["test_accuracy"]
    assert round(val * 30) == pytest.approx(val * 30)  # a count out of 30
    assert round(test * 50) == pytest.approx(test * 50)  # a count out of 50
    assert result.final_metrics["val_loss"] > 0
    assert result.final_metrics["test_loss"] > 0
