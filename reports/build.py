"""Build report.html, report.md and summary.csv from an output folder's stored results alone.

Nothing here imports or names a method or an eval: the records carry their metric directions,
uncertainties, the stage each cell started from (``start``: the reference of the paired Δ) and
what their evals declared for the report (:mod:`reports.declared`). The jobs, one module each:
reading the folder (:mod:`reports.stored`), the typed model (:mod:`reports.model`) computed by
:mod:`reports.assemble` from the table (:mod:`reports.table`), the summary and ranking
(:mod:`reports.ranking`), joint length control (:mod:`reports.length_control`) and the claims
(:mod:`reports.findings`); then the writers: the page (:mod:`reports.page`, its figures
:mod:`reports.figures`, samples :mod:`reports.samples`), report.md (:mod:`reports.markdown`)
and the CSV (:mod:`reports.tables_csv`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import output, store
from reports import page
from reports.assemble import assemble
from reports.markdown import write_markdown
from reports.model import Record
from reports.stored import ReportError, read_records
from reports.tables_csv import write_csv

__all__ = ["ReportError", "build_report", "collect"]


def build_report(out: Path) -> Path:
    """Every report file of the output folder ``out``: results.jsonl (exactly the current
    matrix's cells), report.html, ranking.json, findings.json, summary.csv and report.md;
    returns report.html's path."""
    out = Path(out)
    records = read_records(out)  # the cells are read once, for the index and the report
    output.write_index(out, records[0])
    d = assemble(out, records)
    store.atomic_write_text(out / "report.html", page.render(d))
    store.atomic_write_json(out / "ranking.json", d.ranking)  # null: nothing to rank
    # []: the matrix has no claims
    store.atomic_write_json(out / "findings.json", [f.as_json() for f in d.findings])
    write_csv(d, out / "summary.csv")
    write_markdown(d, out / "report.md")
    return out / "report.html"


def collect(out: Path, records: tuple[list[Record], list[Record]] | None = None
            ) -> dict[str, Any]:
    """The report's model as plain JSON values (:meth:`reports.model.Report.as_json`), for
    tools outside the report that quote its numbers (docs/analysis/results_page.py)."""
    return assemble(Path(out), records).as_json()
