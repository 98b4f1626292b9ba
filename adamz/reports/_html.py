"""The report's files: one HTML page (plotly.js beside it), a Markdown summary, JSON numbers."""

from __future__ import annotations

import html
import importlib.resources
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import plotly.io

from adamz.reports._data import Section

__all__ = ["PLOTLY_JS", "markdown_summary", "plain_numbers", "write_html"]

PLOTLY_JS = "plotly.min.js"
"""The name of plotly's bundle beside a page that has no other copy to load."""


def plain_numbers(value: Any) -> Any:
    """``value`` with NaN and infinities as None and NumPy scalars as Python numbers (for JSON)."""
    if isinstance(value, dict):
        return {str(k): plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_numbers(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_summary(title: str, parts: list[tuple[str, list[Section]]]) -> str:
    """The summary: per question, each section's lines, what it skipped, its tables and its
    notes; a section titled like its question gets no title of its own, as on the page."""
    lines = [f"# {title}", ""]
    for heading, sections in parts:
        lines += [f"## {heading}", ""]
        for section in sections:
            named = section.title != heading
            if named and (section.summary or section.skipped or section.tables):
                lines += [f"### {section.title}", ""]
            lines += [f"- {line}" for line in section.summary]
            lines += [f"- Skipped: {reason}" for reason in section.skipped]
            for table in section.tables:
                lines += ["", *_markdown_table(table), ""]
            lines += [f"> {note}" for note in section.notes]
            if section.notes:
                lines.append("")
        lines.append("")
    return "\n".join(lines)


def _markdown_table(table: list[list[str]]) -> list[str]:
    header, *rows = table
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _html_table(table: list[list[str]]) -> str:
    header, *rows = table
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(
    path: Path,
    title: str,
    parts: list[tuple[str, list[Section]]],
    *,
    plotly_js: Path | None = None,
    folded: set[str] | frozenset[str] = frozenset(),
) -> int:
    """Write the page; return the number of charts on it. It opens offline (no CDN).

    The page loads plotly.js (4.6 MB: inlined, it would be most of the page) by a relative
    path from ``plotly_js``, by default :data:`PLOTLY_JS` beside the page; the file is the
    installed plotly package's own minified bundle, copied there once (if it is not there
    yet), so several pages can share one copy.
    The parts whose heading is in ``folded`` start closed (a ``<details>`` element); their
    charts are drawn when it opens (drawn while hidden, plotly gets no size and errs).
    """
    body: list[str] = []
    charts = 0
    for heading, sections in parts:
        fold = heading in folded
        body.append(
            f"<details><summary><h2>{html.escape(heading)}</h2></summary>"
            if fold
            else f"<h2>{html.escape(heading)}</h2>"
        )
        for section in sections:
            if section.title != heading:
                body.append(f"<h3>{html.escape(section.title)}</h3>")
            body += [f"<p>{html.escape(line).replace('**', '')}</p>" for line in section.summary]
            body += [
                f'<p class="skipped">Skipped: {html.escape(reason)}</p>'
                for reason in section.skipped
            ]
            body += [_html_table(table) for table in section.tables]
            notes = [
                f'<p class="note">{html.escape(note).replace("**", "")}</p>'
                for note in section.notes
            ]
            for figure in section.figures:
                if fold:  # drawn when the part opens: a chart drawn hidden has no size
                    body.append(
                        '<div class="deferred-chart" data-figure="'
                        + html.escape(plotly.io.to_json(figure), quote=True)
                        + '"></div>'
                    )
                else:
                    body.append(plotly.io.to_html(figure, full_html=False, include_plotlyjs=False))
                charts += 1
            body += notes
        if fold:
            body.append("</details>")
    plotly_js = path.parent / PLOTLY_JS if plotly_js is None else plotly_js
    if not plotly_js.exists():
        plotly_js.parent.mkdir(parents=True, exist_ok=True)
        bundle = importlib.resources.files("plotly") / "package_data" / PLOTLY_JS
        with importlib.resources.as_file(bundle) as source_file:
            shutil.copyfile(source_file, plotly_js)
    source = Path(os.path.relpath(plotly_js.resolve(), path.resolve().parent)).as_posix()
    script = f'<script type="text/javascript" src="{html.escape(source)}"></script>'
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
{script}
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}} .skipped{{color:#888}}
.note{{font-size:smaller;color:#555}} #no-plotly{{background:#fee;padding:4px 8px}}
summary h2{{display:inline;cursor:pointer}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p id="no-plotly" hidden>The charts cannot be drawn: this page loads plotly.js from
{html.escape(source)}, which is not there (copy the report's whole folder, or open the page
where it was written).</p>
{chr(10).join(body)}
<script>
if (typeof Plotly === "undefined") document.getElementById("no-plotly").hidden = false;
// The charts of a folded part are drawn the first time it opens, in page order.
document.querySelectorAll("details").forEach(function (part) {{
  part.addEventListener("toggle", function () {{
    if (!part.open) return;
    part.querySelectorAll(".deferred-chart:not(.js-plotly-plot)").forEach(function (chart) {{
      var figure = JSON.parse(chart.dataset.figure);
      Plotly.newPlot(chart, figure.data, figure.layout, {{responsive: true}});
    }});
  }});
}});
</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return charts


def write_json(path: Path, numbers: dict[str, Any]) -> None:
    path.write_text(json.dumps(plain_numbers(numbers), indent=2, sort_keys=True) + "\n")
