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
from optuna.storages import BaseStorage
from tqdm import tqdm

from adamz.reports._advice import (
    is_sweep_study,
    noninferiority_section,
    sweep_section,
    wants_noninferiority,
)
from adamz.reports._atlas_report import (
    StudyAtlas,
    across_workloads_section,
    atlas_section,
    is_sensitivity_study,
    study_atlas,
)
from adamz.reports._budget import budget_section
from adamz.reports._controller import controller_section
from adamz.reports._data import ReportError, Section, StudyData, load_study_data
from adamz.reports._html import markdown_summary, write_html, write_json
from adamz.reports._importance import importance_section, ranked_estimator, ranked_params
from adamz.reports._pruning import pruning_section
from adamz.reports._replicates import is_replicate_study, replicates_section
from adamz.reports._robustness import robustness_section, tunability_section
from adamz.reports._search_replicates import replicate_of
from adamz.reports._sensitivity import sensitivity_section
from adamz.reports._verdict import verdict_sections
from adamz.search.study_attrs import note_header

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
    storage: BaseStorage,
    importance_repeats: int = 5,
    fanova_trees: int = 16,
    fanova_max_trials: int = 300,
    save_note: bool = True,
    progress: bool = True,
    plotly_js: Path | None = None,
    margin: float | None = None,
    safe_margin: float | None = None,
    atlas_resamples: int = 100,
) -> ReportFiles:
    """Report ``studies`` into ``out_dir`` (``report.html``, ``summary.md``, ``report.json``).

    With ``save_note`` the summary also becomes each study's note in optuna-dashboard; with
    ``plotly_js`` the page loads plotly.js from that file (default: ``plotly.min.js`` beside
    the page); ``margin`` is the verdict's equivalence margin in the page's unit (points of an
    accuracy, the metric's units otherwise; None: the study file's, the default for an
    accuracy, or one derived from the seed spread, as the page says).

    Sensitivity studies (``kind: sensitivity``) get the atlas instead of a search's sections,
    on a page of its own (the whole report when every study is one): each study's atlas, and
    with several the table across workloads first. ``safe_margin`` is the margin of their safe
    ranges (None: 0.5 points of accuracy, 0.01 of a loss); ``atlas_resamples`` the bootstrap
    resamples of their importance's intervals.

    Raises:
        ReportError: a study cannot be reported (see :func:`load_study_data`), or
            ``safe_margin`` is negative.
    """
    if safe_margin is not None and not safe_margin >= 0:
        raise ReportError(f"Invalid safe margin: must be >= 0, got {safe_margin}.")
    datas = [load_study_data(study, storage) for study in studies]
    atlases = [data for data in datas if is_sensitivity_study(data)]
    # Sweeps and non-inferiority studies answer their own question (a rate, a curve, "no
    # worse than"): they get their sections, not a verdict that ranks their runs.
    advice = [data for data in datas if is_sweep_study(data) or wants_noninferiority(data)]
    others = [data for data in datas if not is_sensitivity_study(data) and data not in advice]
    searches = [data for data in others if not is_replicate_study(data)]
    # (group in report.json, question on the page, the section's job: one section or several)
    jobs: list[tuple[str, str, Callable[[], Section | list[Section]]]] = []
    if others:
        jobs.append((VERDICT, VERDICT, lambda: verdict_sections(others, margin=margin)))
    if searches:
        jobs.append(("All studies", EQUAL_BUDGET, lambda: budget_section(searches)))
    found: dict[str, StudyAtlas] = {}

    def atlas_of(data: StudyData) -> StudyAtlas:
        if data.name not in found:
            found[data.name] = study_atlas(data, margin=safe_margin, resamples=atlas_resamples)
        return found[data.name]

    if len(atlases) > 1:
        jobs.append(
            (
                "All studies",
                ATLAS,
                lambda: across_workloads_section([atlas_of(data) for data in atlases]),
            )
        )
    for data in atlases:
        jobs.append((data.name, ATLAS, partial(lambda d: atlas_section(atlas_of(d)), data)))
    for data in advice:
        if wants_noninferiority(data):
            jobs.append((data.name, ADVICE, partial(noninferiority_section, data)))
        if is_sweep_study(data):
            jobs.append((data.name, ADVICE, partial(sweep_section, data)))
    importance: dict[str, Section] = {}

    def study_jobs(data: StudyData) -> list[tuple[str, str, Callable[[], Section | list[Section]]]]:
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
                    data,
                    ranked_params(importance[data.name], data.params),
                    ranked_by=ranked_estimator(importance[data.name]),
                ),
            ),
            (data.name, WHAT_MATTERS, lambda: robustness_section(data)),
            (data.name, DIAGNOSTICS, lambda: controller_section(data)),
            (data.name, DIAGNOSTICS, lambda: pruning_section(data)),
        ]

    # Fixed configurations over seeds: the detail behind a search's verdict, or on their own
    # (the paper's tables), the report's body.
    replicates_page = DIAGNOSTICS if searches else EVERY_SEED
    # A search replicate (NAME~r2, ...) counts in the verdict and the budget curves; the
    # sections of one search describe the original alone (its replicates would repeat them).
    for data in others:
        if is_replicate_study(data):
            jobs.append((data.name, replicates_page, partial(replicates_section, data)))
        elif replicate_of(data.name)[1] == 1:
            jobs += study_jobs(data)
    groups: dict[str, list[Section]] = {}
    pages: dict[str, list[Section]] = {question: [] for question in QUESTIONS}
    for group, question, job in tqdm(jobs, desc="report", unit="section", disable=not progress):
        done = job()
        for section in done if isinstance(done, list) else [done]:
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
        numbers.setdefault(data.name, {})["study"] = {
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
            storage,
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
ADVICE = "Sweeps and the recommendation's validation"
ATLAS = "The sensitivity atlas: what matters, what is safe, where the controller acts"
QUESTIONS = (VERDICT, ATLAS, ADVICE, EVERY_SEED, EQUAL_BUDGET, WHAT_MATTERS, DIAGNOSTICS)
"""The report's pages, in the order a reader asks them; the last one is folded."""


def _titled(section: Section, study: str) -> Section:
    """``section`` headed by its study's name, as the pages mix studies under one question."""
    return replace(section, title=f"{study}: {section.title}")


def _title(datas: list[StudyData]) -> str:
    """The page's title: the studies compared (the searches, whose confirmation is a study of
    its own), or the first and how many more when there are many."""
    if all(map(is_sensitivity_study, datas)):
        return "AdamZ sensitivity atlas: " + ", ".join(data.name for data in datas)
    searches = [data.name for data in datas if not is_replicate_study(data)]
    originals = list(dict.fromkeys(replicate_of(name)[0] for name in searches))
    names = originals or [data.name for data in datas]
    shown = " vs ".join(names) if len(names) <= 3 else f"{names[0]} and {len(names) - 1} more"
    most = max((replicate_of(name)[1] for name in searches), default=1)
    replicated = f", {most} search replicates each" if most > 1 else ""
    confirmed = ", confirmed on fresh seeds" if searches and len(searches) < len(datas) else ""
    return f"AdamZ Search report: {shown}{replicated}{confirmed}"


NOTE_ATTR = "note"
"""Study attribute saying which report wrote the study's dashboard note."""


def _save_notes(
    studies: list[optuna.Study],
    storage: BaseStorage,
    summary: str,
    *,
    compared: list[str],
    confirmed: bool,
) -> None:
    """Save ``summary`` as each study's dashboard note, except over a note with a verdict
    (written by a report with seed replicates) when this report has none, below the lines
    saying what diverged and a replicate study's medians (:func:`note_header`);
    :data:`NOTE_ATTR` names the searches ``compared`` (or every study, when none is a search)."""
    import optuna_dashboard  # heavy; only for this

    names = "+".join(compared or [study.study_name for study in studies])
    for study in studies:
        if not confirmed and str(study.user_attrs.get(NOTE_ATTR, "")).startswith("verdict"):
            logger.info("%s: kept the note with a verdict", study.study_name)
            continue
        note = comparison_links(study, studies, storage) + summary
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not optuna_dashboard.get_note(study).rstrip().endswith(note.rstrip()):
                optuna_dashboard.save_note(study, note)  # a note already there is not written
            note_header(study, storage)  # again: a report rebuilt writes nothing
        written_by = f"{'verdict' if confirmed else 'report'} of {names}"
        if study.user_attrs.get(NOTE_ATTR) != written_by:
            study.set_user_attr(NOTE_ATTR, written_by)


def comparison_links(study: optuna.Study, studies: list[optuna.Study], storage: BaseStorage) -> str:
    """A Markdown line linking ``study``'s dashboard note to the other studies of its report
    (optuna-dashboard's study pages are ``/dashboard/studies/ID``); empty for one study."""
    others = [other for other in studies if other.study_name != study.study_name]
    if not others:
        return ""
    links = ", ".join(
        f"[{other.study_name}](/dashboard/studies/"
        f"{storage.get_study_id_from_name(other.study_name)})"
        for other in others
    )
    return f"Compared in one report with: {links}\n\n"
