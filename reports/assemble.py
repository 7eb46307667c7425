"""The report's model from an output folder's stored records: which cells count, the table, the
summary, the ranking, the joint length control, the findings and the figures to draw, each
computed once here and only formatted by the writers."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from bench.api.evaluation import STANDING_FIGURES
from reports import declared, findings, length_control, ranking, table
from reports.figures import colors
from reports.model import Report
from reports.records import Record, bounds_of
from reports.stored import matrix_text, method_order, read_claims, read_records


def assemble(out: Path, records: tuple[list[Record], list[Record]] | None = None) -> Report:
    """Everything the report shows (from ``records``: the current matrix's cells and the
    folder's foreign ones; read from the folder when not given)."""
    out = Path(out)
    recs, other = records if records is not None else read_records(out)
    d = _frame(out, recs, other)
    groups = table.groups(out, d.ok, d.methods)
    refs = [r for r in d.ok if r["method"] == d.reference]
    for g, rs in groups.items():
        row, checks = table.row(g, rs, d.columns, d.directions, d.bounds,
                                refs if rs[0]["method"] != d.reference else None)
        d.rows.append(row)
        d.aa_checks += checks
    table.mark_best(d.rows, d.columns, d.directions)
    sources = declared.length_sources(d.ok)
    d.length_control = length_control.length_rows(
        groups, length_control.matrix_length_control(d.ok, sources), sources)
    d.headline = ranking.headline(groups, d.directions, d.bounds,
                                  [m for m in d.columns if m.count(".") == 1])
    metric = declared.ranking_metric(d.ok)
    if metric is not None and d.directions.get(metric) is not None:
        d.ranking = ranking.rank(groups, metric, bool(d.directions[metric]),
                                 bounds=bounds_of(d.bounds, metric))
    d.findings = findings.findings(recs, read_claims(out / "matrix.toml"))
    return d


def _frame(out: Path, recs: list[Record], other: list[Record]) -> Report:
    """The report before its tables: which cells count, the columns and what the evals
    declared of them, the rows' method order and colours, the reference of Δ, the run's
    facts."""
    ok = [r for r in recs if r.get("status") == "ok"]
    directions = declared.directions(ok)
    methods = method_order(out, recs)
    first = ok[0] if ok else (recs[0] if recs else {})
    prov = first.get("provenance", {})
    return Report(
        title=prov.get("matrix_name") or out.name, records=recs, ok=ok, other=other,
        pending=[r for r in recs if r.get("status") == "pending"],
        bad=[r for r in recs if r.get("status") not in ("ok", "pending")],
        warned=[r for r in ok if r.get("warnings")], directions=directions,
        bounds=declared.metric_bounds(ok),
        columns=[m for m in directions if any(m in r["metrics"] for r in ok)],
        methods=methods, colors=colors(methods), reference=table.reference(ok, methods),
        seeds=sorted({r["seed"] for r in ok if r.get("seed") is not None}),
        figures=declared.figures(ok, tuple(f.id for f in STANDING_FIGURES)),
        sources=declared.sources(ok),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        provenance=prov, world=prov.get("world", {}), matrix_toml=matrix_text(out),
        given=(first.get("budget") or {}).get("given", {}),
        total_seconds=sum((r.get("provenance") or {}).get("seconds", 0.0) for r in recs))

