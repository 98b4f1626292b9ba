"""Tiny workloads registered for a test: fast, with dropout, or with a loss that turns NaN."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adamz.workloads import WORKLOADS, Protocol, Splits, Workload, clear_data_cache


class TinyDropout(Workload):
    """Random 8-feature, 3-class data; an MLP with dropout, so resuming needs the RNG state."""

    name = "tiny-dropout"
    summary = "test workload"
    protocol = Protocol(epochs=3, batch_size=16)
    num_classes = 3
    validation_fraction = 0.2

    def _load(
        self,
        data_dir: Path | None,
        *,
        train_size: int | None,
        test_size: int | None,
        download: bool,
    ) -> Splits:
        generator = torch.Generator().manual_seed(123)
        inputs = torch.randn(200, 8, generator=generator)
        targets = (inputs[:, 0] > 0).long() + (inputs[:, 1] > 0.5).long()
        return Splits(inputs[:150], targets[:150], inputs[150:], targets[150:]).first(
            train_size, test_size
        )

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def count_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(dim=1) == targets).sum()


class NanAtStep(TinyDropout):
    """:class:`TinyDropout` whose loss is NaN from the 15th training step on (epoch 2, step 7)."""

    name = "nan-at-step-15"
    nan_from_step = 15

    def __init__(self) -> None:
        self.calls = 0

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        self.calls += torch.is_grad_enabled()  # training steps only, not evaluation
        loss = super().loss(outputs, targets)
        return loss * float("nan") if self.calls >= self.nan_from_step else loss


@pytest.fixture(autouse=True)
def tiny_workloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register the test workloads (and forget cached data) for one test."""
    monkeypatch.setitem(WORKLOADS, TinyDropout.name, TinyDropout())
    monkeypatch.setitem(WORKLOADS, NanAtStep.name, NanAtStep())
    clear_data_cache()
    yield
    clear_data_cache()


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Train on one CPU thread: the models are tiny, and on a machine busy with other work
    (the test suite's own subprocesses, a worker) two threads spin against each other and
    make a one-second run take twenty."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
