"""``circles``: the paper's make_circles task (Table 2)."""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.datasets import make_circles

from adamz.training import RunConfig, train
from adamz.workloads import get_workload


def test_data_are_make_circles_split_67_33_with_random_state_26() -> None:
    data = get_workload("circles").load_data(None, "cpu")
    points, _ = make_circles(n_samples=10000, noise=0.05, random_state=26, factor=0.8)
    assert (data.num_train + data.num_val, data.num_test) == (6700, 3300)
    all_points = torch.cat([data.train_inputs, data.val_inputs, data.test_inputs]).numpy()
    np.testing.assert_allclose(
        np.sort(all_points, axis=0), np.sort(points.astype(np.float32), axis=0)
    )


def test_model_is_2_10_1_and_predicts_one_logit_per_point() -> None:
    model = get_workload("circles").build_model()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(10, 2), (10,), (1, 10), (1,)]
    assert model(torch.zeros(7, 2)).shape == (7,)


def test_adam_at_the_papers_rate_reaches_90_percent_in_the_default_protocol() -> None:
    start = time.perf_counter()
    result = train(RunConfig(workload="circles", optimizer="adam", hyperparameters={"lr": 0.01}))
    elapsed = time.perf_counter() - start
    assert result.protocol == {
        "epochs": 10,
        "batch_size": 64,
        "train_size": 5695,
        "val_size": 1005,
        "test_size": 3300,
    }
    assert result.stop_reason == "completed"
    assert result.final_metrics is not None
    assert result.final_metrics["test_accuracy"] > 0.90
    assert result.final_metrics["val_accuracy"] > 0.90
    assert elapsed < 60  # about 1-2 s on 2 idle cores; a run minutes long means a regression
