"""``build_report``: every section for one or several studies, written to a folder."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from tqdm import tqdm

from adamz.reports._budget import budget_section
from adamz.reports._controller import controller_section
from adamz.reports._data import Section, StudyData, load_study_data
from adamz.reports._html import markdown_summary, write_html, write_json
from adamz.reports._importance import importance_section, ranked_params
from adamz.reports._pruning import pruning_section
from adamz.reports._replicates import is_replicate_study, replicates_section
from adamz.reports._robustness import robustness_section, tunability_section
from adamz.reports._sensitivity import sensitivity_section
from adamz.reports._verdict import verdict_section

__all__ = ["ReportFiles", "build_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written, and how many charts its page has."""

    html: Path
    markdown: Path
    json: Path
    charts: int
    summary: str


def build_report(
    studies: list[optuna.Study],
    out_dir: Path,
    *,
    importance_repeats: int = 5,
    fanova_trees: int = 16,
    fanova_max_trials: int = 300,
    save_note: bool = True,
    progress: bool = True,
    plotly_js: Path | None = None,
) -> ReportFiles:
    """Report ``studies`` into ``out_dir`` (``report.html``, ``summary.md``, ``report.json``).

    With ``save_note`` the summary also becomes each study's note in optuna-dashboard; with
    ``plotly_js`` the page loads plotly.js from that file instead of inlining it.

    Raises:
        ReportError: a study cannot be reported (see :func:`load_study_data`).
    """
    datas = [load_study_data(study) for study in studies]
    searches = [data for data in datas if not is_replicate_study(data)]
    # (group in report.json, question on the page, the section's job)
    jobs: list[tuple[str, str, Callable[[], Section]]] = [
        (VERDICT, VERDICT, lambda: verdict_section(datas))
    ]
    if searches:
        jobs.append(("All studies", EQUAL_BUDGET, lambda: budget_section(searches)))
    importance: dict[str, Section] = {}

    def study_jobs(data: StudyData) -> list[tuple[str, str, Callable[[], Section]]]:
        def run_importance() -> Section:
            importance[data.name] = importance_section(
                data,
                repeats=importance_repeats,
                fanova_trees=fanova_trees,
                fanova_max_trials=fanova_max_trials,
            )
            return importance[data.name]

        return [
            (data.name, EQUAL_BUDGET, lambda: tunability_section(data)),
            (data.name, WHAT_MATTERS, run_importance),
            (
                data.name,
                WHAT_MATTERS,
                lambda: sensitivity_section(
                    data, ranked_params(importance[data.name], data.params)
                ),
            ),
            (data.name, WHAT_MATTERS, lambda: robustness_section(data)),
            (data.name, DIAGNOSTICS, lambda: controller_section(data)),
            (data.name, DIAGNOSTICS, lambda: pruning_section(data)),
        ]

    # Fixed configurations over seeds: the detail behind a search's verdict, or on their own
    # (the paper's tables), the report's body.
    replicates_page = DIAGNOSTICS if searches else EVERY_SEED
    for data in datas:
        if is_replicate_study(data):
            jobs.append((data.name, replicates_page, partial(replicates_section, data)))
        else:
            jobs += study_jobs(data)
    groups: dict[str, list[Section]] = {}
    pages: dict[str, list[Section]] = {question: [] for question in QUESTIONS}
    for group, question, job in tqdm(jobs, desc="report", unit="section", disable=not progress):
        section = job()
        groups.setdefault(group, []).append(section)
        shown = section if group in (VERDICT, "All studies") else _titled(section, group)
        pages[question].append(shown)
    ordered = [(question, sections) for question, sections in pages.items() if sections]
    title = _title(datas)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        html=out_dir / "report.html",
        markdown=out_dir / "summary.md",
        json=out_dir / "report.json",
        charts=0,
        summary=markdown_summary(title, ordered),
    )
    charts = write_html(files.html, title, ordered, plotly_js=plotly_js, folded={DIAGNOSTICS})
    files.markdown.write_text(files.summary)
    numbers: dict[str, Any] = {
        group: {
            section.title: {"numbers": section.numbers, "skipped": section.skipped}
            for section in sections
        }
        for group, sections in groups.items()
    }
    for data in datas:
        numbers[data.name]["study"] = {
            "direction": "maximize" if data.maximize else "minimize",
            "trials": len(data.trials),
            "completed": len(data.completed),
            "params": data.params,
            "created_by_adamz_search": data.definition is not None,
        }
    write_json(files.json, numbers)
    if save_note:
        _save_notes(
            studies,
            files.summary,
            compared=[data.name for data in datas if not is_replicate_study(data)],
            confirmed=any(map(is_replicate_study, datas)),
        )
    return ReportFiles(files.html, files.markdown, files.json, charts, files.summary)


VERDICT = "Verdict"
EQUAL_BUDGET = "The comparison at equal budget"
WHAT_MATTERS = "Which hyperparameters matter"
EVERY_SEED = "Every run, seed by seed"
DIAGNOSTICS = "Diagnostics: the controller, pruning, workers, every seed"
QUESTIONS = (VERDICT, EVERY_SEED, EQUAL_BUDGET, WHAT_MATTERS, DIAGNOSTICS)
"""The report's pages, in the order a reader asks them; the last one is folded."""


def _titled(section: Section, study: str) -> Section:
    """``section`` headed by its study's name, as the pages mix studies under one question."""
    return replace(section, title=f"{study}: {section.title}")


def _title(datas: list[StudyData]) -> str:
    """The page's title: the studies compared (the searches, whose confirmation is a study of
    its own), or the first and how many more when there are many."""
    searches = [data.name for data in datas if not is_replicate_study(data)]
    names = searches or [data.name for data in datas]
    shown = " vs ".join(names) if len(names) <= 3 else f"{names[0]} and {len(names) - 1} more"
    confirmed = ", confirmed on fresh seeds" if searches and len(searches) < len(datas) else ""
    return f"AdamZ Search report: {shown}{confirmed}"


NOTE_ATTR = "note"
"""Study attribute saying which report wrote the study's dashboard note."""


def _save_notes(
    studies: list[optuna.Study], summary: str, *, compared: list[str], confirmed: bool
) -> None:
    """Save ``summary`` as each study's dashboard note, except over a note with a verdict
    (written by a report with seed replicates) when this report has none; :data:`NOTE_ATTR`
    names the searches ``compared`` (or every study, when none is a search)."""
    import optuna_dashboard  # heavy; only for this

    names = "+".join(compared or [study.study_name for study in studies])
    for study in studies:
        if not confirmed and str(study.user_attrs.get(NOTE_ATTR, "")).startswith("verdict"):
            logger.info("%s: kept the note with a verdict", study.study_name)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna_dashboard.save_note(study, comparison_links(study, studies) + summary)
        study.set_user_attr(NOTE_ATTR, f"{'verdict' if confirmed else 'report'} of {names}")


def comparison_links(study: optuna.Study, studies: list[optuna.Study]) -> str:
    """A Markdown line linking ``study``'s dashboard note to the other studies of its report
    (optuna-dashboard's study pages are ``/dashboard/studies/ID``); empty for one study."""
    others = [other for other in studies if other.study_name != study.study_name]
    if not others:
        return ""
    # Study objects do not expose their storage; the one they were loaded from is theirs.
    storage = study._storage
    links = ", ".join(
        f"[{other.study_name}](/dashboard/studies/"
        f"{storage.get_study_id_from_name(other.study_name)})"
        for other in others
    )
    return f"Compared in one report with: {links}\n\n"
