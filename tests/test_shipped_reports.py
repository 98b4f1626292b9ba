"""The reports the project ships agree with the defaults it ships."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RECOMMENDED = ROOT / "adamz" / "optim" / "presets" / "recommended.yaml"
ADVICE = "Sweeps and the recommendation's validation"


RECOMMENDATION = re.compile(r"<!-- recommended -->(.*?)<!-- /recommended -->", re.DOTALL)


def _quoted(path: Path) -> str:
    """The recommended configuration ``path`` quotes (one marked block), spaces normalised."""
    [marked] = RECOMMENDATION.findall(path.read_text())
    return " ".join(marked.split())


def test_one_recommended_configuration_everywhere_a_recommendation_appears() -> None:
    preset = yaml.safe_load(RECOMMENDED.read_text())["hyperparameters"]
    made = json.loads((ROOT / "reports" / "data" / "recommendation.json").read_text())
    assert made["recommended"]["hyperparameters"] == preset  # the rule's output, shipped
    atlas = json.loads((ROOT / "reports" / "sensitivity-atlas" / "report.json").read_text())
    across = atlas["All studies"]["Across workloads"]["numbers"]["recommendation"]
    assert across["same_as_shipped_preset"]
    # The README and the findings quote the same block, and it names every changed value.
    quoted = _quoted(ROOT / "README.md")
    assert quoted == _quoted(ROOT / "reports" / "README.md")
    paper = yaml.safe_load((RECOMMENDED.parent / "paper.yaml").read_text())["hyperparameters"]
    for name, value in preset.items():
        if name != "lr" and value != paper[name]:
            assert f"{name} {value:g}" in quoted, name


def test_every_shipped_report_has_its_page_summary_and_numbers() -> None:
    folders = [
        path
        for path in (ROOT / "reports").iterdir()
        # defaults: exported configurations; data: the reproduction's storage (stages.py)
        if path.is_dir() and path.name not in {"defaults", "data", "__pycache__"}
    ]
    assert len(folders) >= 8
    for folder in folders:
        for name in ("report.html", "summary.md", "report.json"):
            assert (folder / name).is_file(), folder / name
        assert "../plotly.min.js" in (folder / "report.html").read_text()
    assert (ROOT / "reports" / "plotly.min.js").is_file()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHIPPED = sorted(path for path in (ROOT / "reports").iterdir() if (path / "report.html").is_file())
# Every axis of every chart, folded parts opened: its title, or nothing when it has one.
UNTITLED_AXES = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(chart => {
    const layout = chart._fullLayout;
    return Object.keys(layout)
        .filter(key => /^[xy]axis\\d*$/.test(key) && layout[key].visible !== false)
        .filter(key => !(layout[key].title && layout[key].title.text))
        .map(key => `${layout.title && layout.title.text}: ${key}`);
})"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("folder", SHIPPED, ids=lambda path: path.name)
def test_every_shipped_report_opens_without_console_errors_and_titles_every_axis(
    folder: Path,
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((folder / "report.html").as_uri(), wait_until="load")
        first = page.locator("h2").first.inner_text()
        page.evaluate("document.querySelectorAll('details').forEach(part => part.open = true)")
        page.wait_for_function(
            "document.querySelectorAll('.deferred-chart:not(.js-plotly-plot)').length === 0"
        )
        charts = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        untitled = page.evaluate(UNTITLED_AXES)
        browser.close()
    # A comparison opens with its verdict; an atlas (sensitivity studies: no verdict), sweeps
    # and a validation (fixed configurations: no winner to pick) with their own answer.
    opening = {
        "sensitivity-atlas": "The sensitivity atlas",
        "sweeps": ADVICE,
        "recommendation": ADVICE,
    }
    assert first.split(":")[0] == opening.get(folder.name, "Verdict")
    assert charts > 0
    assert errors == []
    assert untitled == []


FINDING = re.compile(r"<!-- finding -->(.*?)<!-- /finding -->", re.DOTALL)


def finding(path: Path) -> str:
    """The one finding ``path`` marks, its line breaks and indents as single spaces."""
    [marked] = FINDING.findall(path.read_text())
    return " ".join(marked.split())


def test_the_readme_opens_with_the_finding_of_the_shipped_reports_and_links_to_them() -> None:
    readme = ROOT / "README.md"
    sentence = finding(ROOT / "reports" / "README.md")
    assert finding(readme) == sentence
    assert re.search(r"\d", sentence)  # with its numbers
    first_screen = readme.read_text().split("\n## ", 1)[0]  # before the first section
    assert FINDING.search(first_screen)
    assert "(reports/README.md)" in first_screen
