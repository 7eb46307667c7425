"""report.md: the report's tables as Markdown, from the model :func:`reports.assemble.assemble`
computed.

Every piece of text that did not come from this module (the matrix's name, row labels with
their sweep values, metric names, a plugin's error messages and warnings, claims, cell keys)
goes through :func:`md_text`, the one escaping function: a renderer shows it as the text it
is, never as HTML, a link, or an extra table column. Numbers are formatted here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from bench import store
from reports.findings import Finding
from reports.model import Cell, LengthRow, Report
from reports.ranking import HeadlineRow, Ranking
from reports.records import group_label
from reports.text import FINDINGS_NOTE, INTERVALS, LENGTH_NOTE, arrow, finding_cells
from reports.text import fmt as _fmt

# backslash first, so that an escape added below is never itself escaped away; then what
# CommonMark reads as HTML or an entity (< > &), a code span (`) and a GFM table's cell break
# (|); a link, an image or a link definition needs "](", "][" or "]:", escaped below, so a
# row label's "[budget.comparisons=200]" stays as it reads
_ESCAPES = (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`"),
            ("|", "\\|"))
_LINK = re.compile(r"\](?=[(\[:])")


def md_text(text: Any) -> str:
    """Any text safe in a Markdown line or table cell: one line, no cell break, no HTML, no
    link, no entity a renderer would decode; a renderer shows the text as written."""
    out = " ".join(str(text).split())
    for raw, escaped in _ESCAPES:
        out = out.replace(raw, escaped)
    return _LINK.sub(r"\\]", out)


def write_markdown(d: Report, path: Path) -> None:
    cols = [c for c in d.columns if c.count(".") == 1]
    delta = (f" Δ: paired difference against {md_text(d.reference)} at the same seed and "
             f"budget point; * when its 95% interval excludes 0." if d.reference else "")
    lines = [f"# alignbench: {md_text(d.title)}", "",
             f"Seeds: {md_text(d.seeds)}; mean with 95% interval over seeds. {INTERVALS}"
             f"{delta}",
             *findings_markdown(d.findings),
             *headline_markdown(d.headline), "", "## Comparison", "",
             "| method | " + " | ".join(f"{md_text(c)} {arrow(d.directions[c])}"
                                      for c in cols) + " | comparisons | ai_comparisons |",
             "|---" * (len(cols) + 3) + "|"]
    for row in d.rows:
        b = row.budget
        lines.append(f"| {md_text(row.label)} | "
                     + " | ".join(_cell(row.cells[c]) for c in cols)
                     + f" | {b.get('comparisons', 0):.0f} | {b.get('ai_comparisons', 0):.0f} |")
    lines += ranking_markdown(d.ranking)
    lines += length_markdown(d.length_control)
    for c in d.aa_checks:
        if not c.ok:
            lines.append(f"\n- A/A CHECK FAILED: {md_text(c.row)} {md_text(c.metric)} = "
                         f"{_fmt(c.mean)} [{_fmt(c.lo)}, {_fmt(c.hi)}] excludes "
                         f"{md_text(c.null)}, the value a model compared with itself must "
                         "give")
    for title, recs in (("Failed cells", d.bad), ("Warnings", d.warned),
                        ("Pending cells (planned, no result)", d.pending),
                        ("Not in this matrix (other configurations; never averaged)",
                         d.other)):
        if recs:
            lines += ["", f"## {title}", ""]
            lines += [_cell_line(r) for r in recs]
    store.atomic_write_text(path, "\n".join(lines) + "\n")


def _cell(cell: Cell) -> str:
    """One comparison cell: mean [interval], bold when best, Δ against the reference."""
    s = _fmt(cell.mean)
    if cell.lo is not None and math.isfinite(cell.lo):
        s += f" [{_fmt(cell.lo)}, {_fmt(cell.hi)}]" + ("†" if cell.population == "seeds" else "")
    if cell.best:
        s = f"**{s}**"
    if cell.delta:  # the paired difference against the reference; * = resolved
        s += f" Δ {cell.delta.mean:+.3f}{'*' if cell.delta.significant else ''}"
    return s


def _cell_line(r: dict[str, Any]) -> str:
    """A failed, warned, pending or foreign cell as one list item."""
    why = r.get("error") or "; ".join(str(w) for w in r.get("warnings") or [])
    return (f"- {md_text(str(r['status']).upper())}: {md_text(group_label(r))} seed "
            f"{md_text(r.get('seed'))} (cell {md_text(r['key'])}): {md_text(why)}")


def findings_markdown(rows: list[Finding]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Findings", "", FINDINGS_NOTE, "",
             "| claim | verdict | effect [95% interval] | expected | compared | test | seeds "
             "| seeds for 80% power |", "|---|---|---|---|---|---|---|---|"]
    for f in rows:
        c = finding_cells(f)
        note = f" ({md_text(f.note)})" if f.note else ""
        lines.append(f"| {md_text(f.id)}: {md_text(f.claim)} | **{md_text(f.verdict)}**"
                     f"{note} | {c['effect']} | {md_text(c['expected'])} | "
                     f"{md_text(f.compared)} | {md_text(f.test)} | {c['seeds']} | "
                     f"{c['needed']} |")
    return lines


def headline_markdown(rows: list[HeadlineRow]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Summary: who wins on what", "",
             "| metric | best | mean [95% interval] | runner-up | best - runner-up | resolved "
             "| after BH |", "|---|---|---|---|---|---|---|"]
    for h in rows:
        best = "tie: " + ", ".join(map(md_text, h["tied"])) if h["tied"] else md_text(h["best"])
        gap = "–" if h["delta"] is None else \
            f"{h['delta']:+.3f} [{h['d_lo']:+.3f}, {h['d_hi']:+.3f}]"
        verdict = ("yes" if h["resolved"] else "no") if h["delta"] is not None else \
            ("tied" if h["tied"] else f"not at {h['n_seeds']} seed(s)")
        adjusted = "–" if h["delta"] is None else ("yes" if h["resolved_bh"] else "no")
        second = "–" if h["runner_up"] is None else \
            f"{md_text(h['runner_up'])} ({_fmt(h['runner_up_mean'])})"
        lines.append(f"| {md_text(h['metric'])} {arrow(h['higher_is_better'])} | {best} | "
                     f"{_fmt(h['mean'])} [{_fmt(h['lo'])}, {_fmt(h['hi'])}] | {second} | "
                     f"{gap} | {verdict} | {adjusted} |")
    return lines


def length_markdown(rows: list[LengthRow]) -> list[str]:
    if not rows:
        return []

    def iv(v: tuple[float, float, float] | None) -> str:
        if v is None:
            return "–"
        return _fmt(v[0]) + (f" [{_fmt(v[1])}, {_fmt(v[2])}]" if math.isfinite(v[1]) else "")
    lines = ["", "## Length control", "", LENGTH_NOTE, "",
             "| reference | method | raw | LC (per cell) | LC (joint) | joint − raw |",
             "|---|---|---|---|---|---|"]
    for x in rows:
        gap = "–" if x.gap is None else f"{x.gap:+.3f}" + (" (!)" if x.warn else "")
        lines.append(f"| {md_text(x.reference)} | {md_text(x.row)} | {iv(x.raw)} | "
                     f"{iv(x.lc)} | {iv(x.joint)} | {gap} |")
    return lines


def ranking_markdown(rk: Ranking | None) -> list[str]:
    if not rk:
        return []
    lines = ["", f"## Ranking on {md_text(rk['metric'])}", "",
             "| rank | method | mean [95% interval] | P(first) |", "|---|---|---|---|"]
    for i, r in enumerate(rk["rows"], 1):
        p = "n/a" if r["p_first"] is None else f"{r['p_first']:.2f}"
        lines.append(f"| {i} | {md_text(r['label'])} | {_fmt(r['mean'])} [{_fmt(r['lo'])}, "
                     f"{_fmt(r['hi'])}] | {p} |")
    resolved = [p for p in rk["pairs"] if p["resolved_holm"]]
    raw = sum(p["resolved"] for p in rk["pairs"])
    lines += ["", f"{len(resolved)} of {len(rk['pairs'])} pairs resolved at this seed count "
              f"after Holm's adjustment over the pairs ({raw} at 95% each on its own)"
              + (": " + "; ".join(f"{md_text(p['a'])} {'>' if p['delta'] > 0 else '<'} "
                                  f"{md_text(p['b'])} ({p['delta']:+.3f} [{p['lo']:+.3f}, "
                                  f"{p['hi']:+.3f}])" for p in resolved) if resolved else ".")]
    return lines
