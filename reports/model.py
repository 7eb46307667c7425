"""The report's typed model: what :func:`reports.assemble.assemble` computes from the stored
records and every writer (HTML, Markdown, CSV, figures) reads.

Numbers are the stored ones or computed from them once, here in shape and in
:mod:`reports.table` in value; the writers only format them. A record itself stays the stored
dict (``Record``): the report reads it as stored, so no number changes on its way through.
:meth:`Report.as_json` is the model as plain JSON values, for the page's embedded data and for
tools outside the report (docs/analysis/results_page.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reports.findings import Finding
from reports.ranking import HeadlineRow, Ranking
from reports.records import Record

Interval = tuple[float, float, float]  # mean, low, high (NaN ends below 3 seeds)


@dataclass
class Delta:
    """A cell's paired difference against the reference row, over at least 3 seeds.
    ``better``: the difference goes the metric's better way; None for a descriptive metric,
    which has none."""

    mean: float
    lo: float
    hi: float
    significant: bool
    better: bool | None


@dataclass
class Cell:
    """One row's value of one metric: its mean over seeds with the 95% interval, the seeds
    that hold it (``n``), the paired Δ, the one seed's own SE (a single-seed row), the A/A
    value it must take (``null``), whether it is the column's best, and the population its
    interval generalizes to (a key of :data:`reports.intervals.POPULATIONS`)."""

    mean: float
    lo: float
    hi: float
    n: int
    delta: Delta | None
    se: float | None
    null: float | None = None
    best: bool = False
    population: str = "seeds"  # what the interval generalizes to (reports.intervals)

    def as_json(self) -> dict[str, Any]:
        """Its fields; ``null`` and ``best`` only where set (most cells have neither)."""
        out = dataclasses.asdict(self)
        for k, unset in (("null", None), ("best", False)):
            if out[k] is unset:
                del out[k]
        return out


@dataclass
class Phase:
    """Where a row's cells spent time and memory (bench.meter's phase paths)."""

    path: str
    depth: int
    seconds: float
    peak_rss_bytes: float


@dataclass
class Cost:
    """A row's cost per cell: means over its seeds; peaks are the largest of any cell."""

    wall_seconds: float
    train_tokens: float
    train_flops: float
    inference_flops: float
    eval_flops: float
    rollouts: float
    samples_per_response: float
    peak_rss_bytes: float
    peak_rss_scope: str  # "cell", or "process" where a cell measured the process's peak
    peak_gpu_bytes: float | None
    phases: list[Phase]


@dataclass
class Row:
    """One table row: a method at one sweep point, each seed once. ``records``: its cells in
    seed order (for the samples, examples and figures)."""

    label: str
    method: str
    seeds: list[int]
    cells: dict[str, Cell]
    budget: dict[str, float]  # each budget unit's mean spend
    cost: Cost | None
    records: list[Record] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method, "seeds": self.seeds,
                "cells": {m: c.as_json() for m, c in self.cells.items()},
                "budget": self.budget,
                "cost": dataclasses.asdict(self.cost) if self.cost else None}


@dataclass
class AACheck:
    """An A/A cell (a model compared with itself) and whether its interval holds its null."""

    row: str
    metric: str
    null: float
    mean: float
    lo: float
    hi: float
    ok: bool


@dataclass
class LengthRow:
    """One row's win-rate against one reference: raw, the eval's own length-controlled rate,
    and the rate fitted jointly over the matrix (:mod:`reports.length_control`), each with
    its interval; ``gap``: joint minus raw, ``warn`` past AlpacaEval 2's 10 points."""

    reference: str
    row: str
    n: int
    raw: Interval | None
    lc: Interval | None
    joint: Interval
    gap: float | None
    warn: bool


@dataclass
class DeclaredFigure:
    """A figure the evals declare, and the plots (its panels) that draw it."""

    id: str
    title: str
    panels: list[dict[str, Any]]  # each a stored Plot's fields and the "eval" declaring it


@dataclass
class Report:
    """Everything the report shows. ``directions``: each column's better direction (True:
    higher), None for a descriptive metric."""

    title: str
    records: list[Record]  # the matrix's cells, in matrix order
    ok: list[Record]
    other: list[Record]  # cells of another configuration in the folder: listed, not averaged
    pending: list[Record]
    bad: list[Record]
    warned: list[Record]
    directions: dict[str, bool | None]
    bounds: dict[str, tuple[float | None, float | None]]
    columns: list[str]
    methods: list[str]
    colors: dict[str, str]
    reference: str | None
    seeds: list[int]
    figures: list[DeclaredFigure]
    sources: dict[str, Any]
    generated: str
    rows: list[Row] = field(default_factory=list)
    aa_checks: list[AACheck] = field(default_factory=list)
    length_control: list[LengthRow] = field(default_factory=list)
    headline: list[HeadlineRow] = field(default_factory=list)
    ranking: Ranking | None = None
    findings: list[Finding] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)
    matrix_toml: str = ""
    given: dict[str, Any] = field(default_factory=dict)
    total_seconds: float = 0.0

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)

    def as_json(self) -> dict[str, Any]:
        """The model as plain JSON values, its field names as keys."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(rows=[r.as_json() for r in self.rows],
                   aa_checks=[dataclasses.asdict(c) for c in self.aa_checks],
                   length_control=[dataclasses.asdict(x) for x in self.length_control],
                   figures=[dataclasses.asdict(f) for f in self.figures],
                   findings=[f.as_json() for f in self.findings])
        return out
