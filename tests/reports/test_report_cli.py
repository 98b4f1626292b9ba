"""``adamz-search report`` and ``export`` end to end, on SQLite storages made in the tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from report_helpers import constant, replicate_study, synthetic_study

from adamz import AdamZ
from adamz.cli import main
from adamz.search.storage import open_storage
from adamz.training import RunConfig, train

optuna.logging.set_verbosity(optuna.logging.WARNING)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A storage with: "synthetic" (60 trials), "real" (3 digits trials trained for one epoch),
    "plain" (a plain Optuna study), "empty", and "failed" (only failed trials)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'studies.db'}"
    synthetic_study(storage=url, n_trials=60)
    torch.set_num_threads(1)
    real = optuna.create_study(direction="maximize", storage=url, study_name="real")
    real.enqueue_trial({"lr": 0.01}, user_attrs={"enqueued": "defaults"})
    for _ in range(3):
        trial = real.ask()
        lr = trial.suggest_float("lr", 1e-3, 0.05, log=True)
        patience = trial.suggest_int("patience", 10, 30)
        hyperparameters = {"lr": lr, "patience": patience, "stagnation_period": 3}
        result = train(
            RunConfig(workload="digits", hyperparameters=hyperparameters, epochs=1, train_size=200),
            on_epoch=lambda epoch, metrics, trial=trial: trial.report(
                metrics["val_accuracy"], epoch
            ),
        )
        trial.set_user_attr("run", {"result": result.to_dict()})
        assert result.final_metrics is not None
        real.tell(trial, result.final_metrics["val_accuracy"])
    plain = optuna.create_study(storage=url, study_name="plain")
    plain.optimize(
        lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2 + t.suggest_int("n", 0, 3), 12
    )
    optuna.create_study(storage=url, study_name="empty")
    failed = optuna.create_study(storage=url, study_name="failed")
    failed.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    return url


@pytest.fixture(scope="module")
def synthetic_report(storage: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "synthetic"
    code = main(["report", "synthetic", "--storage", storage, "--out", str(out), "--repeats", "2"])
    assert code == 0
    return out


def test_report_writes_html_markdown_and_json(synthetic_report: Path):
    numbers = json.loads((synthetic_report / "report.json").read_text())
    importance = numbers["synthetic"]["Importance"]["numbers"]
    assert max(importance["fanova"], key=lambda k: importance["fanova"][k]["mean"]) == "lr"
    assert numbers["All studies"]["Budget curves"]["numbers"]["synthetic"]["k"][0] == 1
    summary = (synthetic_report / "summary.md").read_text()
    assert "Most important: **lr**" in summary
    assert "Tunability" in summary


def test_report_summary_becomes_the_dashboard_note(storage: str, synthetic_report: Path):
    from optuna_dashboard._note import get_note_from_system_attrs

    study = optuna.load_study(study_name="synthetic", storage=storage)
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    note = get_note_from_system_attrs(system_attrs, None)
    assert note["body"] == (synthetic_report / "summary.md").read_text()


def test_a_report_made_again_from_unchanged_studies_writes_nothing_to_them(tmp_path: Path):
    """Pages rebuilt from committed storage leave it as it was: the notes are there already."""
    journal = tmp_path / "studies.journal"
    synthetic_study(storage=open_storage(f"journal:{journal}"), n_trials=30)
    args = ["report", "synthetic", "--storage", f"journal:{journal}", "--out", str(tmp_path)]
    assert main([*args, "--repeats", "2"]) == 0
    written = journal.read_bytes()
    assert main([*args, "--repeats", "2"]) == 0
    assert journal.read_bytes() == written


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_page_opens_offline_in_chromium_without_errors_and_shows_its_charts(
    synthetic_report: Path,
):
    playwright = pytest.importorskip("playwright.sync_api")
    page_html = (synthetic_report / "report.html").read_text()
    assert '<script src="http' not in page_html
    assert '<script type="text/javascript" src="plotly.min.js"></script>' in page_html
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.route("http*://**", lambda route: route.abort())  # prove it needs no network
        page.goto((synthetic_report / "report.html").as_uri())
        page.wait_for_selector(".plot-container", timeout=20_000)
        screenshot = page.screenshot(full_page=False)
        shown = page.locator(".js-plotly-plot").count()
        page.evaluate("document.querySelectorAll('details').forEach(part => part.open = true)")
        page.wait_for_function(
            "document.querySelectorAll('.deferred-chart:not(.js-plotly-plot)').length === 0"
        )
        charts = page.locator(".js-plotly-plot").count()
        browser.close()
    assert errors == []
    assert shown < charts  # the diagnostics are folded until opened
    assert charts >= 8
    assert len(screenshot) > 10_000


def test_report_of_a_real_study_shows_its_controller(storage: str, tmp_path: Path):
    assert main(["report", "real", "--storage", storage, "--out", str(tmp_path), "--no-note"]) == 0
    numbers = json.loads((tmp_path / "report.json").read_text())["real"]
    assert numbers["AdamZ controller"]["numbers"]["groups"]["good"]["trials"] >= 2
    assert numbers["Tunability"]["numbers"]["references"]["paper settings"]["trial"] == 0
    assert numbers["Pruning and workers"]["numbers"]["pruning"]["epochs_run"] == 3


def test_a_plain_optuna_study_reports_and_says_what_it_skipped(storage: str, tmp_path: Path):
    assert main(["report", "plain", "--storage", storage, "--out", str(tmp_path)]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "- Skipped: no trial ran the library defaults or the paper settings" in summary
    assert "- Skipped: this study's trials did not run AdamZ: no controller to show" in summary
    numbers = json.loads((tmp_path / "report.json").read_text())
    assert numbers["plain"]["study"]["created_by_adamz_search"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "missing"], "Unknown study 'missing'"),
        (["report", "empty"], "has no trials yet"),
        (["report", "failed"], "no completed trial with a finite value (1 fail)"),
        (["export", "failed"], "no completed trial"),
        (["report", "synthetic", "--confirm", "1"], "--confirm must be at least 2"),
        (["report", "synthetic", "--margin", "0"], "Invalid --margin: must be > 0, got 0.0."),
    ],
)
def test_bad_input_is_a_one_line_error_with_exit_code_2(storage, tmp_path, capsys, args, message):
    code = main([*args, "--storage", storage])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_exported_configuration_builds_the_optimizer_it_recommends(storage, tmp_path, fmt):
    path = tmp_path / f"config.{fmt}"
    assert (
        main(["export", "synthetic", "--storage", storage, "--format", fmt, "--out", str(path)])
        == 0
    )
    study = optuna.load_study(study_name="synthetic", storage=storage)
    exported = json.loads(path.read_text()) if fmt == "json" else yaml.safe_load(path.read_text())
    trial = study.trials[exported["provenance"]["trial"]]
    assert trial.value >= study.best_value * 0.99  # within the flat region of the best
    optimizer = AdamZ.from_config(path, [torch.zeros(2, requires_grad=True)])
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(trial.params["lr"])
    assert group["lr_bounds"] == pytest.approx((trial.params["lr_bounds[0]"], 1.0))
    assert exported["provenance"]["study"] == "synthetic"


def test_export_of_several_studies_not_made_by_adamz_search_is_refused(storage, capsys):
    synthetic_study(storage=storage, name="synthetic-b", seed=1, n_trials=40)
    code = main(["export", "synthetic", "synthetic-b", "--storage", storage])
    err = capsys.readouterr().err
    assert code == 2
    assert "validated per workload: give one study per workload" in err
    assert len(err.strip().splitlines()) == 1


def test_the_page_loads_plotlys_own_bundle_written_once_beside_it(synthetic_report: Path):
    import plotly

    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    beside = synthetic_report / "plotly.min.js"
    assert beside.read_bytes() == bundle.read_bytes()
    assert "plotly.js v" not in (synthetic_report / "report.html").read_text()
    assert (synthetic_report / "report.html").stat().st_size < bundle.stat().st_size / 4


def test_plotly_js_beside_a_page_is_written_once_for_the_pages_that_share_it(tmp_path: Path):
    from adamz.reports._html import write_html

    write_html(tmp_path / "first.html", "first", [])
    (tmp_path / "plotly.min.js").write_text("// kept")
    write_html(tmp_path / "second.html", "second", [])
    assert (tmp_path / "plotly.min.js").read_text() == "// kept"
    assert 'src="plotly.min.js"' in (tmp_path / "second.html").read_text()


def test_the_margin_of_the_report_command_reaches_the_verdict(storage: str, tmp_path: Path):
    replicate_study(
        {
            "z #1": {"val": constant(0.9), "test": constant(0.9), "source": {"study": "z"}},
            "a #1": {"val": constant(0.9), "test": constant(0.9), "source": {"study": "a"}},
        },
        name="confirm-margin",
        storage=storage,
    )
    for margin, expected in ((None, 0.0025), ("2", 0.02)):
        out = tmp_path / str(margin)
        options = ["--margin", margin] if margin else []
        args = ["report", "confirm-margin", "--storage", storage, "--out", str(out), "--no-note"]
        assert main([*args, *options]) == 0
        numbers = json.loads((out / "report.json").read_text())["Verdict"]["Verdict"]["numbers"]
        assert numbers["confirm-margin"]["margin"] == pytest.approx(expected)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_a_confirmed_comparison_opens_with_its_answer_and_draws_nothing_from_too_few_trials(
    tmp_path: Path,
):
    playwright = pytest.importorskip("playwright.sync_api")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    # the main job in small: two searches of 12 trials (a ranking needs 20), confirmed
    for name, seed in (("z", 0), ("a", 1)):
        synthetic_study(storage=url, name=name, n_trials=12, seed=seed)
    replicate_study(
        {
            "z #3": {"val": constant(0.95), "test": constant(0.95), "source": {"study": "z"}},
            "a #5": {
                "val": constant(0.94),
                "test": constant(0.94),
                "optimizer": "adam",
                "hyperparameters": {"lr": 0.002, "betas": [0.9, 0.99]},
                "source": {"study": "a"},
            },
        },
        name="confirm-z+a-k10",
        storage=url,
    )
    out = tmp_path / "out"
    args = ["report", "z", "a", "confirm-z+a-k10", "--storage", url, "--out", str(out)]
    assert main([*args, "--no-note", "--repeats", "1"]) == 0
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.route("http*://**", lambda route: route.abort())
        page.goto((out / "report.html").as_uri())
        page.evaluate("document.querySelectorAll('details').forEach(part => part.open = true)")
        page.wait_for_function(
            "document.querySelectorAll('.deferred-chart:not(.js-plotly-plot)').length === 0"
        )
        first = page.locator("h2 + p").first.inner_text()
        first_table = page.locator("table").first
        headers = page.locator("table").evaluate_all(
            "tables => tables.map(t => [...t.querySelectorAll('th')].map(th => th.innerText))"
        )
        first_rows = first_table.locator("tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.innerText))"
        )
        titles = page.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')]"
            ".map(chart => chart.layout.title.text || '')"
        )
        hidden = page.locator("#no-plotly").is_hidden()
        browser.close()
    # one sentence a person can act on, before anything else
    assert first.startswith("On digits, AdamZ beats Adam: AdamZ − Adam = +1.00 points of ")
    assert first.endswith(".")
    assert first.count(". ") == 0
    # then the winners' configurations
    assert headers[0][-1] == "hyperparameters"
    assert first_rows[0][0] == "z (reference)"
    assert first_rows[1][-1] == "lr 0.002, betas (0.9, 0.99)"
    # every table with a difference names its reference, and every table of values its unit
    for header in headers:
        text = " ".join(header)
        if "−" in text:
            assert "(reference)" in text, header
        if "median" in text:
            assert "points" in text, header
    # 12 trials: no trend, no contour, no robustness curve, no "most important"
    assert titles, "the page has charts"
    for title in titles:
        assert "trend" not in title.replace("too few to draw a trend", ""), title
        assert "top two" not in title, title
        assert "distance to the best" not in title, title
    assert hidden  # plotly.js is there: no message
    (out / "plotly.min.js").unlink()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto((out / "report.html").as_uri())
        message = page.locator("#no-plotly")
        assert message.is_visible()
        assert message.inner_text().startswith("The charts cannot be drawn: this page loads")
        browser.close()
