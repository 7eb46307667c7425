"""What the stored records say their evals declared (``record["evals"][NAME]``, written by the
harness from :class:`bench.api.Eval` and :func:`bench.api.evaluation.declarations`): each
metric's better direction or none, its range, the metric offered for ranking, where judged
pairs for length control are stored, the figures drawn and each eval's data source.

The report names no eval: whatever it reads of one comes through here. A declaration a record
does not carry (a record that predates it) is absent, never guessed: no ranking, no joint
length control, every metric directional.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, get_args

from bench import store
from bench.api.evaluation import FIGURE_ID, PlotKind, figure_id
from reports.model import DeclaredFigure
from reports.records import Record, eval_extra

KINDS = get_args(PlotKind)


def _evals(ok: list[Record]) -> list[tuple[str, dict[str, Any]]]:
    """Every (eval name, its stored part) of every record, in record order."""
    return [(ev, info or {}) for r in ok for ev, info in (r.get("evals") or {}).items()]


def directions(ok: list[Record]) -> dict[str, bool | None]:
    """Full metric name -> higher_is_better as the evals declared it, None for a metric an
    eval declares descriptive (no better direction); each slice of a declared metric
    (``eval.metric.SLICE``) with its metric's."""
    out: dict[str, bool | None] = {}
    for ev, info in _evals(ok):
        descriptive = info.get("descriptive") or []
        for m, hib in (info.get("higher_is_better") or {}).items():
            out[f"{ev}.{m}"] = None if m in descriptive else hib
    # a slice (TruthfulQA's categories, a plugin's ``rate.Unknown``) goes the way its headline
    # metric does, and is a column of its own (hidden at first)
    slices = {m: out[head] for r in ok for m in r.get("metrics") or {}
              if m.count(".") >= 2 and (head := ".".join(m.split(".")[:2])) in out}
    return {**out, **slices}


def metric_bounds(ok: list[Record]) -> dict[str, tuple[float | None, float | None]]:
    """Full metric name -> its range, as each record's evals declared them (``Eval.bounds``;
    None for an open side); a malformed range is left out (the metric is then unbounded)."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for ev, info in _evals(ok):
        for m, b in (info.get("bounds") or {}).items():
            if isinstance(b, (list, tuple)) and len(b) == 2 and all(
                    x is None or (isinstance(x, (int, float)) and math.isfinite(x))
                    for x in b) and b != [None, None] and b != (None, None):
                out[f"{ev}.{m}"] = tuple(None if x is None else float(x) for x in b)
    return out


def ranking_metric(ok: list[Record]) -> str | None:
    """The metric the rows are ranked on: the first ``ranking_metric`` an eval declares, in
    the matrix's eval order (``eval.metric``); None when none declares one."""
    return next((f"{ev}.{m}" for ev, info in _evals(ok)
                 if isinstance(m := info.get("ranking_metric"), str) and m), None)


def length_sources(ok: list[Record]) -> dict[str, dict[str, str]]:
    """Eval name -> where its results store judged pairs for length control
    (:class:`bench.api.evaluation.LengthPairs` as stored: ``pairs``, ``prompt_ids``,
    ``lc_prefix``), for each eval that declares it, in eval order."""
    out: dict[str, dict[str, str]] = {}
    for ev, info in _evals(ok):
        decl = info.get("length_pairs")
        if isinstance(decl, dict) and all(isinstance(decl.get(k), str)
                                          for k in ("pairs", "prompt_ids", "lc_prefix")):
            out.setdefault(ev, decl)
    return out


def sources(ok: list[Record]) -> dict[str, Any]:
    """Each eval's data source, as its records state it (``extra["source"]``)."""
    return {ev: src for r in ok for ev in (r.get("evals") or {})
            if (src := eval_extra(r, ev).get("source"))}


def _plot(p: Any) -> dict[str, Any] | None:
    """A stored plot (``dataclasses.asdict(Plot)``) in a normal form, or None when it is not
    one this report can draw (a kind from a newer version, a malformed record). A plot stored
    before figures had ids, or with an id no eval could declare, is named by its title's
    slug."""
    if not isinstance(p, dict) or p.get("kind", "bars") not in KINDS:
        return None
    metrics = p.get("metrics") or []
    if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics):
        return None
    title, ident = str(p.get("title") or ""), p.get("id")
    return {"title": title, "kind": p.get("kind", "bars"), "metrics": list(metrics),
            "key": str(p.get("key") or ""),
            "id": ident if isinstance(ident, str) and FIGURE_ID.fullmatch(ident)
            else figure_id(title)}


def figures(ok: list[Record], reserved: tuple[str, ...] = ()) -> list[DeclaredFigure]:
    """The eval figures, in order: each eval's plots from its records in record order,
    identical ones once (a matrix is the only kind that depends on its eval); plots sharing
    an id are the panels of one figure, placed where the first one is and titled by it. An
    eval that declares none gets one ``"bars"`` figure of its headline metrics. An id in
    ``reserved`` (the report's own figures) or taken before gets a number."""
    by_eval: dict[str, list[dict[str, Any]]] = {}
    headline: dict[str, list[str]] = defaultdict(list)
    for ev, info in _evals(ok):
        by_eval.setdefault(ev, []).extend(p for p in map(_plot, info.get("plots") or []) if p)
        headline[ev] += [f"{ev}.{m}" for m in info.get("higher_is_better") or {}]
    out: dict[str, DeclaredFigure] = {}
    seen: set[str] = set()
    for ev, plots in by_eval.items():
        plots = plots or [{"title": f"{ev} by method (mean, 95% interval over seeds)",
                           "kind": "bars", "metrics": list(dict.fromkeys(headline[ev])),
                           "key": "", "id": f"{ev}-bars"}]
        for p in plots:
            ident = store.canonical({**p, "eval": ev if p["kind"] == "matrix" else ""})
            if ident not in seen:
                seen.add(ident)
                out.setdefault(p["id"], DeclaredFigure(p["id"], p["title"], [])).panels.append(
                    {"eval": ev, **p})
    used = set(reserved)
    for fig in out.values():  # a figure's id is unique on the page
        base, i = fig.id, 2
        while fig.id in used:
            fig.id, i = f"{base}-{i}", i + 1
        used.add(fig.id)
    return list(out.values())
