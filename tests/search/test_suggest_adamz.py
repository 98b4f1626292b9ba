"""suggest_adamz: the project's AdamZ space in an Optuna objective of one's own, and the report
and export of the plain study it makes."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml
from search_helpers import cli
from torch import nn

from adamz import AdamZ
from adamz.search import load_search_space, suggest_adamz
from adamz.search.spaces import ADAMZ_SPACE
from adamz.training import library_defaults

ROOT = Path(__file__).resolve().parents[2]


def test_the_packaged_space_is_the_projects() -> None:
    assert ADAMZ_SPACE.read_bytes() == (ROOT / "search_spaces" / "adamz.yaml").read_bytes()


def test_it_samples_every_keyword_of_adamz_within_the_space_and_the_rest_at_their_defaults() -> (
    None
):
    space = load_search_space(ADAMZ_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        params = suggest_adamz(trial)
        assert set(params) == set(library_defaults("adamz"))
        assert set(trial.params) == set(space.distributions)
        for name, distribution in space.distributions.items():
            assert distribution._contains(distribution.to_internal_repr(trial.params[name]))
        assert params["eps"] == library_defaults("adamz")["eps"]  # not searched
        assert params["lr_bounds"] == (trial.params["lr_bounds[0]"], trial.params["lr_bounds[1]"])
        AdamZ([torch.zeros(2, requires_grad=True)], **params)
        study.tell(trial, 0.0)


def test_another_space_of_adamz_may_be_given_and_one_of_another_optimizer_is_refused() -> None:
    trial = optuna.create_study().ask()
    params = suggest_adamz(trial, ROOT / "search_spaces" / "adamz-atlas.yaml")
    assert set(trial.params) == set(
        load_search_space(ROOT / "search_spaces" / "adamz-atlas.yaml").distributions
    )
    assert params["lr"] == trial.params["lr"]
    with pytest.raises(
        ValueError, match=re.escape("Invalid space: must tune adamz, got one of 'adam'")
    ):
        suggest_adamz(optuna.create_study().ask(), ROOT / "search_spaces" / "adam.yaml")


def objective(trial: optuna.Trial) -> float:
    """A user's objective: a small regression trained with AdamZ from suggest_adamz."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 4, generator=generator)
    targets = inputs.sum(dim=1, keepdim=True)
    torch.manual_seed(trial.number)
    model = nn.Linear(4, 1)
    optimizer = AdamZ(model.parameters(), **suggest_adamz(trial))
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step(loss=loss)
    with torch.no_grad():
        return float(F.mse_loss(model(inputs), targets))


def test_report_and_export_read_a_plain_study_that_samples_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(storage=storage, study_name="plain", direction="minimize")
    study.optimize(objective, n_trials=12)
    io = {"cwd": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}

    code, _, err = cli("report", "plain", "--storage", storage, "--out", "rep", **io)
    assert code == 0, err
    assert {"report.html", "summary.md", "report.json"} <= {
        p.name for p in (tmp_path / "rep").iterdir()
    }
    code, _, err = cli("export", "plain", "--storage", storage, "--out", "adamz.yaml", **io)
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "adamz.yaml").read_text())
    chosen = study.trials[config["provenance"]["trial"]]
    assert config["hyperparameters"] == {
        **{name: value for name, value in chosen.params.items() if "[" not in name},
        "betas": [chosen.params["betas[0]"], chosen.params["betas[1]"]],
        "lr_bounds": [chosen.params["lr_bounds[0]"], chosen.params["lr_bounds[1]"]],
    }
    optimizer = AdamZ.from_config(tmp_path / "adamz.yaml", [torch.zeros(2, requires_grad=True)])
    assert optimizer.param_groups[0]["lr"] == config["hyperparameters"]["lr"]
