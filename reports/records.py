"""Reading one stored cell record: its row label, budget point, stored uncertainty and the A/A
null its eval declared. Plain accessors shared by the tables, the findings and the figures."""

from __future__ import annotations

import math
from typing import Any

from bench import store
from bench.claims import row_label, row_method  # noqa: F401 - the one definition of a row's name

Record = dict[str, Any]  # one stored cell record (bench.record.CellRecord's shape), as stored


def group_label(r: Record) -> str:
    """The table row a cell belongs to: its method at its sweep point."""
    return row_label(r["method"], r.get("point") or {})


def bounds_of(bounds: dict[str, tuple[float | None, float | None]], metric: str
              ) -> tuple[float | None, float | None] | None:
    """A metric's range: its own, or its headline metric's for a slice (``mc1.Adversarial``
    is a rate like ``mc1``); None when unbounded."""
    ev, _, rest = metric.partition(".")
    return bounds.get(metric) or bounds.get(f"{ev}.{rest.split('.', 1)[0]}")


def _budget_items(r: dict[str, Any]) -> set[tuple[str, str]]:
    return {(k, store.canonical(v)) for k, v in (r.get("point") or {}).items()
            if k.startswith("budget.")}


def paired_reference(r: dict[str, Any], refs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The reference cell a cell is paired with: the same seed, and the same budget point, or
    the part of it the reference's method spends (under a ``budget.comparisons`` sweep the SFT
    stage's own row runs once, with no point, and pairs with every point's cells)."""
    mine = _budget_items(r)
    fits = [x for x in refs if x["seed"] == r["seed"] and _budget_items(x) <= mine]
    return max(fits, key=lambda x: len(_budget_items(x)), default=None)


def se(r: dict[str, Any], metric: str) -> float | None:
    return (r.get("uncertainty") or {}).get(metric)


def eval_extra(r: dict[str, Any], ev: str) -> dict[str, Any]:
    """``extra`` of eval ``ev`` in this record ({} when absent)."""
    return (((r.get("evals") or {}).get(ev) or {}).get("extra") or {})


def null(r: dict[str, Any], metric: str) -> float | None:
    """The value an eval says this metric must take in expectation (an A/A comparison: a
    model against itself), from ``extra["null"]`` of its record; None for most metrics."""
    ev, _, name = metric.partition(".")
    return (eval_extra(r, ev).get("null") or {}).get(name)


def finite(x: Any) -> bool:
    """A real number that can be drawn (not None, a bool, NaN or infinite)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
