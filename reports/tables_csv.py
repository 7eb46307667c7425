"""summary.csv (one line per cell of the matrix) and a figure's drawn values as CSV, each cell
that a spreadsheet would run as a formula neutralized."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from bench import store
from reports.model import Report
from reports.records import finite

HEADLINE_BUDGET = ("demonstrations", "comparisons", "ai_comparisons", "ratings", "rollouts",
                   "samples_per_response", "flops", "inference_flops")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(cell: Any) -> Any:
    """CSV injection guard: a cell that a spreadsheet would run as a formula gets a leading
    apostrophe (OWASP); numbers are left as numbers."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell


def write_csv(d: Report, path: Path) -> None:
    """summary.csv: each cell's key, method, seed, point, status, error, every column's value
    and standard error, and its spend of the headline budget units."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["key", "method", "seed", "point", "status", "error"] + d.columns
               + [f"{c}.se" for c in d.columns] + [f"spent.{u}" for u in HEADLINE_BUDGET])
    for r in d.records:
        m, u = r.get("metrics", {}), r.get("uncertainty", {}) or {}
        spent = (r.get("budget") or {}).get("spent", {})
        w.writerow([neutralize(x) for x in
                    [r["key"], r["method"], r.get("seed"), json.dumps(r.get("point") or {}),
                     r.get("status"), r.get("error") or ""]
                    + [m.get(c) for c in d.columns] + [u.get(c) for c in d.columns]
                    + [spent.get(x) for x in HEADLINE_BUDGET]])
    store.atomic_write_text(path, buf.getvalue())


def figure_csv(rows: list[dict[str, Any]]) -> str:
    """A figure's drawn values as CSV: one column per key in order of first appearance, an
    empty field where a row has none or its value is not finite (an interval below 3 seeds),
    formulas neutralized as in summary.csv."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([neutralize(c) for c in cols])  # a plugin's curve key names a column
    for r in rows:
        w.writerow([neutralize(v if finite(v := r.get(c)) or isinstance(v, str) else "")
                    for c in cols])
    return buf.getvalue()
