"""``digits``: scikit-learn's bundled digits, the quick workload."""

from __future__ import annotations

import torch

from adamz.training import RunConfig, train
from adamz.workloads import get_workload


def test_data_are_bundled_scaled_to_unit_range_and_split_75_25() -> None:
    data = get_workload("digits").load_data(None, "cpu")
    assert (data.num_train + data.num_val, data.num_test) == (1347, 450)
    assert data.train_inputs.shape[1] == 64
    assert float(data.train_inputs.min()) == 0.0
    assert float(data.train_inputs.max()) == 1.0
    assert set(torch.unique(data.test_targets).tolist()) == set(range(10))


def test_one_short_epoch_trains_and_beats_chance() -> None:
    result = train(RunConfig(workload="digits", optimizer="adam", epochs=1))
    assert result.stop_reason == "completed"
    assert result.steps == 34  # ceil(1078 / 32): 269 of the 1347 are held out for validation
    assert result.final_metrics is not None
    assert result.final_metrics["val_accuracy"] > 0.5
