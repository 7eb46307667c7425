"""A matrix's claims against its rows and metrics: the name of a report row (a method at its
sweep point), and why a claim's row or metric cannot exist in the matrix, checked when the
matrix is validated (:func:`bench.config.parse`)."""

from __future__ import annotations

from typing import Any

from bench import registry
from bench.api.evaluation import declared_figures
from bench.matrix import Matrix
from bench.record import COST_FIELDS


def row_label(method: str, point: dict[str, Any]) -> str:
    """A report row's name: a method at its sweep point (``"ppo [ppo.kl_coef=0.0]"``), as
    claims name rows and the report writes them."""
    return method + "".join(f" [{k}={v}]" for k, v in sorted(point.items()))


def row_method(row: str) -> str:
    """The method of a report row's name (:func:`row_label`)."""
    return row.split(" [", 1)[0]


def claims_problem(m: Matrix) -> str | None:
    """Why a claim of ``m`` cannot be tested (None when each can): each claim reads rows of
    this matrix's methods and metrics of its evals (or a cost), so that a typo is refused
    before the run, not found as an empty finding after it."""
    ids = [c.id for c in m.claims]
    figures = eval_figures(m.evals) if any(c.figure for c in m.claims) else []
    for i, c in enumerate(m.claims):
        where = f"claims[{i}] ({c.id})"
        if ids.count(c.id) > 1:
            return f"{where}: id {c.id!r} is used twice; give each claim its own"
        for row in c.rows():
            if row_method(row) not in m.methods:
                return (f"{where}: row {row!r} is not a method of this matrix "
                        f"({', '.join(m.methods)}); add it to 'methods' or fix the claim")
        for metric in c.metrics():
            problem = metric_problem(m, metric)
            if problem:
                return f"{where}: {problem}"
        if c.figure and c.figure not in figures:
            return (f"{where}: figure {c.figure!r} is no figure of this matrix's evals; use one "
                    f"of {', '.join(figures)}")
    return None


def eval_figures(evals: list[str]) -> list[str]:
    """The ids of every figure a report of these evals can show: the report's own and each
    eval's declared figures (:func:`bench.api.evaluation.declared_figures`)."""
    return list(declared_figures(registry.resolve("evals", e) for e in evals))


COST_KEYED = ("phase_seconds", "phase_peak_rss_bytes")  # cost.FIELD.PHASE, one key each


def metric_problem(m: Matrix, metric: str) -> str | None:
    """Why a claim's metric cannot exist in this matrix (None when it can): an eval it does
    not run, a metric or cost field nobody records, a sub-key where the field has none, a
    phase table without its phase, dollars without prices. A slice (``mc1.Adversarial``) or a
    phase's name depends on the data and the trainers: the report's finding on one that no
    cell measured says so."""
    head, _, rest = metric.partition(".")
    name, _, sub = rest.partition(".")
    if head == "cost":
        known = COST_FIELDS
    elif head in m.evals:
        known = tuple(registry.resolve("evals", head).metrics)
    else:
        return (f"metric {metric!r} is of no eval in this matrix ({', '.join(m.evals)}) nor a "
                "cost; fix the claim")
    if name not in known:
        return f"{head} has no {name!r} (metric {metric!r}); it has {', '.join(known)}"
    if head != "cost":
        return None
    if name in COST_KEYED and not sub:
        return (f"metric {metric!r} is a table of phases; name one, e.g. "
                f"cost.{name}.training")
    if sub and name not in COST_KEYED:
        return (f"metric {metric!r}: cost.{name} is one number, with no {sub!r} in it; write "
                f"cost.{name}")
    if name == "dollars" and not m.prices:
        return ("metric 'cost.dollars' needs the matrix's [prices] (none is set, so no cell "
                "has dollars); add a [prices] table or claim another cost")
    return None
