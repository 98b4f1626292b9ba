"""``adamz-search dashboard``: the real optuna-dashboard, over HTTP and in headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from search_helpers import write_study

from adamz.cli._study_commands import create_study
from adamz.search import load_study_file, open_storage

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A study made by ``create`` with five trials, served by ``adamz-search dashboard`` on a
    free loopback port."""
    directory = tmp_path_factory.mktemp("dashboard")
    storage = f"sqlite:///{directory / 'adamz-search.db'}"
    study_file = write_study(directory, "shown")
    create_study(load_study_file(study_file), open_storage(storage), study_file=study_file)
    study = optuna.load_study(study_name="shown", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=5)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "adamz.cli", "dashboard", "--storage", storage, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/studies", timeout=2).read()
            break
        except OSError:
            if server.poll() is not None:
                raise AssertionError(
                    server.stderr.read().decode() if server.stderr else ""
                ) from None
            time.sleep(0.3)
    try:
        yield url, study._study_id
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_dashboard_serves_the_study_and_its_trials_over_its_api(
    dashboard: tuple[str, int],
) -> None:
    url, study_id = dashboard
    studies = json.loads(urllib.request.urlopen(f"{url}/api/studies", timeout=10).read())
    assert [s["study_name"] for s in studies["study_summaries"]] == ["shown"]
    detail = json.loads(urllib.request.urlopen(f"{url}/api/studies/{study_id}", timeout=10).read())
    assert [trial["number"] for trial in detail["trials"]] == [0, 1, 2, 3, 4]


def test_the_dashboards_study_attributes_are_short_values_without_the_definition(
    dashboard: tuple[str, int],
) -> None:
    url, study_id = dashboard
    detail = json.loads(urllib.request.urlopen(f"{url}/api/studies/{study_id}", timeout=10).read())
    shown = {attr["key"]: attr["value"] for attr in detail["user_attrs"]}
    # The panel's first page (five rows) answers what the study trains and how long.
    assert list(shown)[:5] == ["workload", "optimizer", "metric", "budget", "study_file"]
    assert shown["workload"].startswith("digits")
    assert shown["optimizer"] == "adamz"
    assert shown["metric"] == "val_accuracy"
    assert "digest" not in shown
    # The worker reads its copy of the definition there; every other value is short.
    assert all(len(value) <= 80 for key, value in shown.items() if key != "definition")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_study_page_shows_the_trials_in_a_real_browser(
    dashboard: tuple[str, int], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    url, study_id = dashboard
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}/dashboard/studies/{study_id}/trials", wait_until="networkidle")
            page.get_by_text("Trial 4", exact=False).first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "study.png"))
            body = page.inner_text("body")
        finally:
            browser.close()
    assert "shown" in body
    for number in range(5):
        assert f"Trial {number}" in body
    assert errors == []
