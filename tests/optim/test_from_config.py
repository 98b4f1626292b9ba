"""``AdamZ.from_config``: a mapping or a YAML/JSON file -> the optimizer; unknown keys refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from adamz import AdamZ, presets


def params() -> list[torch.Tensor]:
    return [torch.zeros(3, requires_grad=True)]


def test_a_mapping_of_keyword_arguments_builds_the_optimizer_with_pairs_as_tuples():
    optimizer = AdamZ.from_config({"lr": 0.02, "betas": [0.8, 0.99], "patience": 30}, params())
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.02
    assert group["betas"] == (0.8, 0.99)
    assert group["patience"] == 30
    assert group["stagnation_period"] == 10  # the default


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_an_exported_file_loads_back(tmp_path: Path, suffix: str):
    config = {
        "format": "adamz-config/1",
        "optimizer": "adamz",
        "hyperparameters": {"lr": 0.003, "lr_bounds": [1e-6, 0.5], "max_grad_norm": None},
        "provenance": {"study": "digits-adamz", "trial": 7},
    }
    path = tmp_path / f"config{suffix}"
    path.write_text(json.dumps(config) if suffix == ".json" else yaml.safe_dump(config))
    group = AdamZ.from_config(path, params()).param_groups[0]
    assert group["lr"] == 0.003
    assert group["lr_bounds"] == (1e-6, 0.5)
    assert group["max_grad_norm"] is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"lr": 0.01, "beta1": 0.9}, r"Unknown AdamZ hyperparameter\(s\) beta1"),
        ({"hyperparameters": {"lr": 0.01}, "notes": "x"}, r"Unknown key\(s\) notes"),
        ({"hyperparameters": {"min_lr": 0.1}}, r"hyperparameter\(s\) min_lr"),
        ({"optimizer": "adam", "hyperparameters": {}}, "must be adamz, got 'adam'"),
        ({"hyperparameters": [1, 2]}, "must be a mapping"),
        ({"lr": -1.0}, "Invalid lr"),
    ],
)
def test_bad_configurations_are_refused_naming_the_key(config, message):
    with pytest.raises(ValueError, match=message):
        AdamZ.from_config(config, params())


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        AdamZ.from_config(path, params())


def test_presets_ship_with_the_package_and_unknown_names_fail_naming_them() -> None:
    assert {"paper", "recommended"} <= set(presets())
    param = torch.zeros(3, requires_grad=True)
    paper = AdamZ.from_config("paper", [param])
    assert paper.defaults["patience"] == 100
    assert paper.defaults["lr_bounds"] == (1e-7, 1.0)
    with pytest.raises(ValueError, match=r"Invalid config 'nope': .*presets: .*paper"):
        AdamZ.from_config("nope", [param])


def test_another_optimizers_export_is_refused_saying_how_to_load_it(tmp_path) -> None:
    path = tmp_path / "adam.yaml"
    path.write_text(
        "format: adamz-config/1\noptimizer: adam\nhyperparameters: {lr: 0.001, betas: [0.9, 0.99]}\n"
    )
    with pytest.raises(
        ValueError, match=re.escape('torch.optim.Adam(params, **config["hyperparameters"])')
    ):
        AdamZ.from_config(path, [torch.zeros(2, requires_grad=True)])
    hyperparameters = yaml.safe_load(path.read_text())["hyperparameters"]
    torch.optim.Adam([torch.zeros(2, requires_grad=True)], **hyperparameters)  # as it says
