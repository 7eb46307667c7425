"""The comparison table: rows (a method at a sweep point, each seed once), each column's mean
and 95% interval over seeds, the paired Δ against the reference row, the column's best, the
A/A checks, and each row's cost.

The intervals are :func:`reports.intervals.mean_interval` (over seeds and prompts where the
cells store per-prompt values, else over seeds); the Δ is :func:`reports.intervals.difference`
over at least :data:`bench.stats.MIN_SEEDS` seeds paired by
:func:`reports.records.paired_reference`, and by prompt where both rows scored the same ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.stats import MIN_SEEDS
from reports.intervals import difference, mean_interval
from reports.model import AACheck, Cell, Cost, Delta, Phase, Row
from reports.records import Record, bounds_of, group_label, null, paired_reference, se
from reports.stored import ReportError

BASE_START = "base"  # a record's "start" when its method starts from the base model
COST_MEANS = ("wall_seconds", "train_tokens", "train_flops", "inference_flops", "eval_flops",
              "rollouts", "samples_per_response")


def groups(out: Path, ok: list[Record], methods: list[str]) -> dict[str, list[Record]]:
    """The table's rows, label -> cells, in matrix method order (then by label): each seed
    once, or a ReportError naming the folder to rerun into."""
    by: dict[str, list[Record]] = defaultdict(list)
    for r in ok:
        by[group_label(r)].append(r)
    for g, rs in by.items():
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise ReportError(f"{out}: row {g!r} holds seed {max(seeds, key=seeds.count)} twice "
                              f"(two configurations under one label); rerun into a new --out "
                              f"folder")
    order = sorted(by, key=lambda g: (methods.index(by[g][0]["method"]), g))
    return {g: by[g] for g in order}


def reference(ok: list[Record], methods: list[str]) -> str | None:
    """The method every paired Δ is taken against: the shared stage the cells start from
    (``record["start"]``), when it is itself a method of this matrix; the first such in matrix
    order. ``"base"`` names the base model (``bench.api.Method.starts_from``), not a stage."""
    starts = {r.get("start") for r in ok} - {None, BASE_START}
    return next((m for m in methods if m in starts), None)


def delta(have: list[Record], refs: list[Record], m: str, higher: bool | None) -> Delta | None:
    """The paired difference of metric ``m`` against the reference cell of the same seed and
    budget point, over at least ``MIN_SEEDS`` such pairs; None otherwise (two seeds'
    t-interval is too wide to mean anything). ``higher``: the metric's better direction, None
    for a descriptive metric (then the Δ is neither better nor worse)."""
    paired = [(r, paired_reference(r, refs)) for r in have]
    paired = [(a, b) for a, b in paired if b is not None and b["metrics"].get(m) is not None]
    if len(paired) < MIN_SEEDS:
        return None
    est = difference([a for a, _ in paired], [b for _, b in paired], m)
    return Delta(est.mean, est.lo, est.hi, bool(est.lo > 0 or est.hi < 0),
                 None if higher is None else bool((est.mean > 0) == higher))


def row(g: str, rs: list[Record], columns: list[str], directions: dict[str, bool | None],
        bounds: dict[str, tuple[float | None, float | None]], refs: list[Record] | None
        ) -> tuple[Row, list[AACheck]]:
    """One table row (``rs``: its cells in record order) and its A/A checks: every column's mean,
    interval and Δ (against ``refs``, the reference row's cells; None for that row itself)."""
    cells, checks = {}, []
    for m in columns:
        have = [r for r in rs if r["metrics"].get(m) is not None]
        est = mean_interval(have, m, bounds_of(bounds, m))
        mean, lo, hi = est.mean, est.lo, est.hi
        cell = cells[m] = Cell(mean, lo, hi, len(have),
                               delta(have, refs, m, directions[m]) if refs else None,
                               se(rs[0], m) if len(rs) == 1 else None,
                               population=est.population)
        nulls = {null(r, m) for r in have}
        if len(nulls) == 1 and None not in nulls and math.isfinite(lo) and math.isfinite(hi):
            value = cell.null = nulls.pop()
            checks.append(AACheck(g, m, value, mean, lo, hi, bool(lo <= value <= hi)))
    spent: dict[str, list[float]] = defaultdict(list)
    for r in rs:
        for u, v in (r.get("budget", {}).get("spent") or {}).items():
            spent[u].append(v or 0.0)
    # the means above follow record order, as they always did; the row keeps its cells in
    # seed order, for the samples, examples and figures to read
    return Row(g, rs[0]["method"], sorted(r["seed"] for r in rs), cells,
               {u: (sum(v) / len(v)) for u, v in spent.items()}, cost(rs),
               sorted(rs, key=lambda r: r.get("seed") or 0)), checks


def mark_best(rows: list[Row], columns: list[str], directions: dict[str, bool | None]) -> None:
    """Marks each column's single best mean (no award on an exact tie, to an A/A cell, whose
    value is fixed, or in a descriptive column, which has no better direction)."""
    for m in columns:
        if directions[m] is None:
            continue
        vals = [(row.cells[m].mean, i) for i, row in enumerate(rows)
                if row.cells[m].mean is not None and math.isfinite(row.cells[m].mean)
                and row.cells[m].null is None]
        if vals:
            top = (max if directions[m] else min)(v for v, _ in vals)
            winners = [i for v, i in vals if v == top]
            if len(winners) == 1:
                rows[winners[0]].cells[m].best = True


def cost(rs: list[Record]) -> Cost | None:
    """A row's cost per cell: mean wall seconds, training tokens, training and inference FLOPs
    (while training, and while evaluating), rollouts and samples per served answer over its
    seeds, and the largest peak memory of any of them (None for cells that predate costs)."""
    have = [r["cost"] for r in rs if isinstance(r.get("cost"), dict)]
    if not have:
        return None
    means = {k: sum(c.get(k) or 0.0 for c in have) / len(have) for k in COST_MEANS}
    gpu = [c["peak_gpu_bytes"] for c in have if c.get("peak_gpu_bytes") is not None]
    return Cost(**means, peak_rss_bytes=max(c.get("peak_rss_bytes") or 0 for c in have),
                peak_rss_scope="cell" if all(c.get("peak_rss_scope") == "cell" for c in have)
                else "process", peak_gpu_bytes=max(gpu) if gpu else None,
                phases=phases(have))


def phases(costs: list[dict[str, Any]]) -> list[Phase]:
    """Where a row's cells spent their time and memory (bench.meter's phases): per phase path,
    in the order the cells ran them, the mean wall seconds over the cells that ran it and the
    largest of its peak resident memories."""
    seconds = [c.get("phase_seconds") or {} for c in costs]  # cells that predate phases: {}
    peaks = [c.get("phase_peak_rss_bytes") or {} for c in costs]
    out = []
    for path in dict.fromkeys(p for s in seconds for p in s):
        secs = [s[path] for s in seconds if path in s]
        out.append(Phase(path, path.count("/"), sum(secs) / len(secs),
                         max(p.get(path, 0) for p in peaks)))
    return out
