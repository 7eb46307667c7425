"""report.html: the model rendered through templates/report.html, with autoescaping, so model
text is always shown as text; the page runs exactly one script, allowed by its hash."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from typing import Any

from bench import store
from reports import figures
from reports.model import Report
from reports.samples import example_rows, sample_filters, samples
from reports.tables_csv import HEADLINE_BUDGET, figure_csv
from reports.text import (FINDINGS_NOTE, INTERVALS, LENGTH_NOTE, arrow, breakable,
                          finding_cells, fmt)


def render(d: Report) -> str:
    """The page's HTML."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    env = Environment(autoescape=select_autoescape(["html"], default=True),
                      loader=PackageLoader("reports", "templates"))
    env.filters["fmt"] = fmt
    env.filters["breakable"] = breakable
    env.filters["arrow"] = arrow
    sample_groups = samples(d)
    plots_ = plots(d)
    script, script_src = report_script()
    return env.get_template("report.html").render(
        d=d, intervals=INTERVALS, length_note=LENGTH_NOTE, plots=plots_,
        samples=sample_groups, filters=sample_filters(sample_groups), examples=example_rows(d),
        groups=column_groups(d.columns), budget_units=HEADLINE_BUDGET,
        findings_note=FINDINGS_NOTE, finding_cells=finding_cells,
        figure_anchors=figure_anchors(plots_), script=script, script_src=script_src,
        data_json=json_for_html(page_data(d)),
        # columns with an interval over seeds on these prompts only (marked † in the header)
        seeds_only={m for row in d.rows for m, c in row.cells.items() if c.population == "seeds"
                    and c.lo is not None and c.lo == c.lo})


def page_data(d: Report) -> dict[str, Any]:
    """The page's embedded data (``<script id="report-data">``): the rows, the length control
    and the cells that failed, are pending or belong to another configuration."""
    return {"rows": [r.as_json() for r in d.rows],
            "length_control": [dataclasses.asdict(x) for x in d.length_control], **{
                part: [{"key": r["key"], "method": r["method"], "seed": r.get("seed"),
                        "status": r["status"], "error": r.get("error")} for r in recs]
                for part, recs in (("failed", d.bad), ("pending", d.pending),
                                   ("other", d.other))}}


def plots(d: Report) -> list[dict[str, str]]:
    """The figures as ``[{"id", "title", "src", "svg", "csv"}]`` (see reports.figures): the
    PNG shown, and the SVG and the drawn values as CSV, each a data URI to download."""
    return [{"id": f.id, "title": f.title, "src": f.src,
             "svg": "data:image/svg+xml;base64," + base64.b64encode(f.svg).decode(),
             "csv": "data:text/csv;charset=utf-8;base64,"
                    + base64.b64encode(figure_csv(f.data).encode()).decode()}
            for f in figures.render(d)]


def figure_anchors(plots_: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """A claim's ``figure`` -> the page anchor and title of the figure it names: by id, or by
    title as an older matrix's claims named them (a figure with no data is not on the page)."""
    links = {p["title"]: {"anchor": "fig-" + p["id"], "title": p["title"]}
             for p in reversed(plots_)}
    return {**links, **{p["id"]: {"anchor": "fig-" + p["id"], "title": p["title"]}
                        for p in plots_}}


def column_groups(columns: list[str]) -> list[dict[str, Any]]:
    """The comparison table's column groups, in column order: each eval's headline metrics
    (``eval.metric``), shown; then each metric's slices (``eval.metric.SLICE``, a plugin's
    ``rate.Unknown`` or TruthfulQA's categories), one group per metric, hidden until the
    reader shows them. ``short``: the header without the group's prefix."""
    groups: dict[str, dict[str, Any]] = {}
    for c in columns:
        parts = c.split(".")
        name = parts[0] if len(parts) == 2 else ".".join(parts[:2])
        g = groups.setdefault(name, {"name": name, "slices": len(parts) > 2, "columns": [],
                                     "id": "g-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)})
        g["columns"].append({"metric": c, "short": c[len(name) + 1:]})
    return ([g for g in groups.values() if not g["slices"]]
            + [g for g in groups.values() if g["slices"]])


def report_script() -> tuple[str, str]:
    """The page's one script (sorting, column groups, the sample filter) and its CSP source:
    the page allows exactly this script, by its SHA-256, and no other."""
    from importlib.resources import files
    js = files("reports").joinpath("templates", "report.js").read_text(encoding="utf-8")
    # inserted as is into <script>: text that ends the element would cut the script short
    if re.search(r"</script|<!--", js, re.IGNORECASE):
        raise RuntimeError("reports/templates/report.js must not contain '</script' or '<!--'")
    digest = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    return js, f"'sha256-{digest}'"


def json_for_html(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&' or line
    separators survive unescaped, so '</script>' in model text cannot close the element."""
    s = json.dumps(store.sanitize(obj), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s
