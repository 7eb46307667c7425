"""The typed shape of what an output folder stores about its cells, checked where it is read.

A cell's ``result.json`` (written by :mod:`bench.runner`, one line of ``results.jsonl`` each)
and the plan (``.alignbench/plan.json``) are JSON any file may replace: a record of the wrong
shape is listed as invalid with the first thing wrong in it, never read into a traceback. The
models type what the report reads; what plugins add (an eval's ``extra``, its per-example
``rows``, a record's own keys) stays free-form. Records are checked, never rewritten: the
report reads the stored dict itself, so no number changes on its way through.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Number = float | None  # a stored metric: NaN and inf are written as null (store.sanitize)


class _Open(BaseModel):
    """Typed where it is read, open to keys a later version or a plugin adds."""

    model_config = ConfigDict(extra="allow", strict=True)


class EvalRecord(_Open):
    """One eval's part of a cell record (``record["evals"][NAME]``)."""

    version: str | None = None
    higher_is_better: dict[str, bool] = Field(default_factory=dict)
    bounds: dict[str, list[Number] | None] = Field(default_factory=dict)
    plots: list[dict[str, Any]] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


class BudgetRecord(_Open):
    given: dict[str, Number] = Field(default_factory=dict)
    spent: dict[str, Number] = Field(default_factory=dict)


class PlannedCell(_Open):
    """A cell of the current matrix, as the plan (and each line of results.jsonl) names it."""

    key: str = Field(min_length=1)
    method: str = Field(min_length=1)
    seed: int | None = None
    point: dict[str, Any] = Field(default_factory=dict)


class CellRecord(PlannedCell):
    """A cell's result.json: what :func:`bench.runner.new_record` and ``compute_cell`` write
    (and a pending or invalid placeholder: status, error, no metrics)."""

    status: str = Field(min_length=1)
    error: str | None = None
    start: str | None = None
    scenario: str | None = None
    metrics: dict[str, Number] = Field(default_factory=dict)
    uncertainty: dict[str, Number] = Field(default_factory=dict)
    n: dict[str, Any] = Field(default_factory=dict)
    evals: dict[str, EvalRecord] = Field(default_factory=dict)
    curves: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    budget: BudgetRecord | None = None
    # what it cost: numbers, tables of them per phase, and words (peak_rss_scope)
    cost: dict[str, Number | dict[str, Number] | str] = Field(default_factory=dict)
    movement: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)
    method_config: dict[str, Any] = Field(default_factory=dict)


class PlanFile(_Open):
    """``.alignbench/plan.json``: the current matrix's cells, in matrix order."""

    matrix: str | None = None
    cells: list[PlannedCell]


def problem(model: type[BaseModel], data: Any) -> str | None:
    """None when ``data`` has ``model``'s shape; else the first thing wrong, in a few words
    (``evals.truthfulqa: Input should be a valid dictionary``)."""
    try:
        model.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "the record"
        return f"{where}: {e['msg']}"
    return None
