"""Build report.html, report.md and summary.csv from an output folder's stored results alone.

Nothing here imports or names a method or an eval: the records carry their metric directions,
uncertainties, the stage each cell started from (``start``: the reference of the paired Δ) and
the figures their evals declare (drawn by :mod:`reports.figures`). Rows and colours follow the
matrix's method order. :func:`collect` turns the records into plain values; the template
renders them with autoescaping, so model text is always shown as text.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench import output, store
from bench.errors import UserError
from bench.stats import MIN_SEEDS, paired_seed_delta, report_interval
from reports import figures, findings, length_control, ranking
from reports.records import (bounds_of, eval_extra, finite, group_label, metric_bounds, null,
                             paired_reference, se)

INTERVALS = ("Intervals: Student-t over seeds on the variance max(spread of the seed values, "
             "mean squared per-seed standard error) / n, so never narrower than the evaluation "
             "noise each seed carries (a floored random-effects interval, for this scenario's "
             "evaluation prompts). Metrics whose eval records no per-seed standard error (curve "
             "summaries, agreement indices) get the plain t-interval. A metric with a range "
             "(rates, toxicity, kappas) has its interval cut to that range, which keeps its "
             "coverage, since the true value lies in it. Below 3 seeds no interval or paired "
             "difference is shown: with 2 seeds a t-interval is 12.7 standard errors wide and "
             "means nothing.")
LENGTH_NOTE = ("Raw: the win-rate as judged. LC (per cell): the win_rate eval's own length "
               "control (AlpacaEval 2's length model fitted on the cell's pairs, no prompt "
               "term). LC (joint): the same model with each prompt's difficulty fitted jointly "
               "over every cell of this matrix, read at equal length and averaged over its pairs "
               "(reports/length_control.py). (!): the joint rate is more than 0.10 from the raw "
               "one (AlpacaEval 2's safeguard): read the raw rate, or give the eval more "
               "prompts. Intervals over seeds, none below 3 seeds; the joint rate's is floored "
               "by the per-cell LC's standard error, as it has no bootstrap of its own.")
BASE_START = "base"  # a record's "start" when its method starts from the base model
HEADLINE_BUDGET = ("demonstrations", "comparisons", "ai_comparisons", "ratings", "rollouts",
                   "samples_per_response", "flops", "inference_flops")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReportError(UserError, ValueError):
    """The stored results cannot make an honest report (stated in one line with the fix)."""


def read_records(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the current matrix's cells in matrix order, cells in the folder from another
    configuration): see :func:`bench.output.records`. Only the first are ever averaged, and
    they carry the matrix's prices (:func:`priced`)."""
    current, other = output.records(out)
    return priced(current, read_prices(Path(out) / "matrix.toml")), other


def read_prices(toml: Path) -> dict[str, float]:
    """The prices of the matrix that wrote the folder (OUT/matrix.toml's ``[prices]``),
    validated as the matrix was; none when it has none."""
    from bench.config import Matrix
    return _matrix_part(toml, "prices", {}, lambda raw: Matrix.model_validate(
        {"prices": raw}).prices)


def priced(recs: list[dict[str, Any]], prices: dict[str, float]) -> list[dict[str, Any]]:
    """Each record with the matrix's ``prices`` and the dollars its training spent at them
    (``cost.dollars``: each priced unit of its budget's spent, shared stages included, times
    its price; unpriced units free). Priced here, from the matrix that wrote the folder, not
    by the cell: the prices move no number a cell computes, so changing them reruns nothing.
    Records as they are when the matrix prices nothing."""
    if not prices:
        return recs
    out = []
    for r in recs:
        spent = (r.get("budget") or {}).get("spent")
        if r.get("status") != "ok" or not isinstance(spent, dict):
            out.append(r)
            continue
        dollars = sum(float(spent.get(u) or 0.0) * p for u, p in prices.items())
        out.append({**r, "prices": dict(prices), "cost": {**(r.get("cost") or {}),
                                                          "dollars": dollars}})
    return out


def read_claims(toml: Path) -> list[Any]:
    """The claims of the matrix that wrote the folder (OUT/matrix.toml's ``[[claims]]``),
    validated as the matrix was; none when the folder has no matrix.toml."""
    from bench.config import Claim
    return _matrix_part(toml, "claims", [], lambda raw: [Claim.model_validate(c) for c in raw])


def _matrix_part(toml: Path, key: str, empty: Any, parse: Callable[[Any], Any]) -> Any:
    """OUT/matrix.toml's ``key`` through ``parse`` (``empty`` without the file or the key);
    a file that cannot be read so is one ReportError line naming the fix."""
    import tomllib

    from pydantic import ValidationError
    if not toml.is_file():
        return empty
    try:
        raw = tomllib.loads(toml.read_text()).get(key)
        return empty if raw is None else parse(raw)
    except (tomllib.TOMLDecodeError, ValidationError, AttributeError, TypeError) as err:
        first = str(err).splitlines()[0]
        raise ReportError(f"{toml}: its {key} cannot be read ({first}); restore the file "
                          f"alignbench wrote, or rerun the matrix") from None


def neutralize(cell: Any) -> Any:
    """CSV injection guard: a cell that a spreadsheet would run as a formula gets a leading
    apostrophe (OWASP); numbers are left as numbers."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell


def _fmt(x: float | None, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


# --------------------------------------------------------------------------- the values


def _directions(ok: list[dict[str, Any]]) -> dict[str, bool]:
    """Full metric name -> higher_is_better, as each record's evals declared them, and each
    slice of a declared metric with its metric's direction."""
    directions: dict[str, bool] = {}
    for r in ok:
        for ev, info in (r.get("evals") or {}).items():
            for m, hib in (info or {}).get("higher_is_better", {}).items():
                directions[f"{ev}.{m}"] = hib
    # a slice (``eval.metric.SLICE``: TruthfulQA's categories, a plugin's ``rate.Unknown``)
    # goes the way its headline metric does, and is a column of its own (hidden at first)
    slices = {m: directions[head] for r in ok for m in r.get("metrics") or {}
              if m.count(".") >= 2 and (head := ".".join(m.split(".")[:2])) in directions}
    return {**directions, **slices}


def _groups(out: Path, ok: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The table's rows: cells by method and sweep point, each seed once."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        groups[group_label(r)].append(r)
    for g, rs in groups.items():
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise ReportError(f"{out}: row {g!r} holds seed {max(seeds, key=seeds.count)} twice "
                              f"(two configurations under one label); rerun into a new --out "
                              f"folder")
    return groups


def method_order(out: Path, recs: list[dict[str, Any]]) -> list[str]:
    """Methods in the order they first appear in the folder's plan (the matrix's cells in
    matrix order), or in the records where there is no plan. Rows and colours follow it."""
    cells = output.read_plan(out) or recs
    return list(dict.fromkeys([c["method"] for c in cells] + [r["method"] for r in recs]))


def reference(ok: list[dict[str, Any]], methods: list[str]) -> str | None:
    """The method every paired Δ is taken against: the shared stage the cells start from
    (``record["start"]``), when it is itself a method of this matrix; the first such in matrix
    order. ``"base"`` names the base model (``bench.api.Method.starts_from``), not a stage."""
    starts = {r.get("start") for r in ok} - {None, BASE_START}
    return next((m for m in methods if m in starts), None)


def _delta(have: list[dict[str, Any]], refs: list[dict[str, Any]], m: str, higher: bool
           ) -> dict[str, Any] | None:
    """The paired difference of metric ``m`` against the reference cell of the same seed and
    budget point (:func:`reports.records.paired_reference`), over at least ``MIN_SEEDS``
    such pairs; None otherwise (two seeds' t-interval is too wide to mean anything)."""
    paired = [(r, paired_reference(r, refs)) for r in have]
    paired = [(a, b) for a, b in paired if b is not None and b["metrics"].get(m) is not None]
    if len(paired) < MIN_SEEDS:
        return None
    d, lo, hi = paired_seed_delta(
        [a["metrics"][m] for a, _ in paired], [b["metrics"][m] for _, b in paired],
        [se(a, m) for a, _ in paired], [se(b, m) for _, b in paired])
    return {"mean": d, "lo": lo, "hi": hi, "significant": bool(lo > 0 or hi < 0),
            "better": bool((d > 0) == higher)}


def _row(g: str, rs: list[dict[str, Any]], d: dict[str, Any], refs: list[dict[str, Any]] | None
         ) -> dict[str, Any]:
    """One table row: every column's mean, interval and Δ; appends its A/A checks to
    ``d["aa_checks"]``."""
    cells = {}
    for m in d["columns"]:
        have = [r for r in rs if r["metrics"].get(m) is not None]
        mean, lo, hi = report_interval([r["metrics"][m] for r in have],
                                       [se(r, m) for r in have], bounds_of(d["bounds"], m))
        cells[m] = {"mean": mean, "lo": lo, "hi": hi, "n": len(have),
                    "delta": _delta(have, refs, m, d["directions"][m]) if refs else None,
                    "se": se(rs[0], m) if len(rs) == 1 else None}
        nulls = {null(r, m) for r in have}
        if len(nulls) == 1 and None not in nulls and math.isfinite(lo) and math.isfinite(hi):
            value = cells[m]["null"] = nulls.pop()
            d["aa_checks"].append({"row": g, "metric": m, "null": value, "mean": mean, "lo": lo,
                                   "hi": hi, "ok": bool(lo <= value <= hi)})
    spent = defaultdict(list)
    for r in rs:
        for u, v in (r.get("budget", {}).get("spent") or {}).items():
            spent[u].append(v or 0.0)
    return {"label": g, "method": rs[0]["method"], "seeds": sorted(r["seed"] for r in rs),
            "cells": cells, "budget": {u: (sum(v) / len(v)) for u, v in spent.items()},
            "cost": cost(rs)}


def length_rows(groups: dict[str, list[dict[str, Any]]], joint: dict[str, dict[str, float]]
                ) -> list[dict[str, Any]]:
    """Per reference and row: the raw win-rate, the eval's own length-controlled rate, the
    rate with each prompt's difficulty fitted jointly over the matrix
    (:mod:`reports.length_control`), each with its interval over seeds, and the joint rate's
    gap from the raw one (``warn`` past AlpacaEval 2's 10 points)."""
    out = []
    for name, by_key in joint.items():
        for g, rs in groups.items():
            have = [r for r in rs if r["key"] in by_key]
            if not have:
                continue
            raw, lc = f"win_rate.{name}", f"win_rate.lc_{name}"
            vals = {part: _interval(have, metric) for part, metric in (("raw", raw), ("lc", lc))}
            # the joint rate, floored by the per-cell LC's own SE (the same length model on the
            # same pairs): the seed spread alone ignores the evaluation noise each seed carries,
            # and read narrower than the raw rate
            vals["joint"] = report_interval([by_key[r["key"]] for r in have],
                                            [se(r, lc) for r in have], (0.0, 1.0))
            gaps = [by_key[r["key"]] - r["metrics"][raw] for r in have
                    if r["metrics"].get(raw) is not None]
            gap = sum(gaps) / len(gaps) if gaps else None
            out.append({"reference": name, "row": g, "n": len(have), **vals, "gap": gap,
                        "warn": gap is not None and abs(gap) > length_control.WARN})
    return out


def _interval(rs: list[dict[str, Any]], metric: str) -> tuple[float, float, float] | None:
    """A rate's mean and interval over the cells that have it, or None when none does."""
    use = [r for r in rs if r["metrics"].get(metric) is not None]
    return report_interval([r["metrics"][metric] for r in use],
                           [se(r, metric) for r in use], (0.0, 1.0)) if use else None


def cost(rs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A row's cost per cell: mean wall seconds, training tokens, training and inference FLOPs
    (while training, and while evaluating), rollouts and samples per served answer over its
    seeds, and the largest peak memory of any of them (None for cells that predate costs)."""
    have = [r["cost"] for r in rs if isinstance(r.get("cost"), dict)]
    if not have:
        return None
    out = {k: sum(c.get(k) or 0.0 for c in have) / len(have)
           for k in ("wall_seconds", "train_tokens", "train_flops", "inference_flops",
                     "eval_flops", "rollouts", "samples_per_response")}
    out["peak_rss_bytes"] = max(c.get("peak_rss_bytes") or 0 for c in have)
    out["peak_rss_scope"] = "cell" if all(c.get("peak_rss_scope") == "cell" for c in have) \
        else "process"
    gpu = [c["peak_gpu_bytes"] for c in have if c.get("peak_gpu_bytes") is not None]
    out["peak_gpu_bytes"] = max(gpu) if gpu else None
    out["phases"] = phases(have)
    return out


def phases(costs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a row's cells spent their time and memory (bench.meter's phases): per phase path,
    in the order the cells ran them, the mean wall seconds over the cells that ran it and the
    largest of its peak resident memories."""
    seconds = [c.get("phase_seconds") or {} for c in costs]  # cells that predate phases: {}
    peaks = [c.get("phase_peak_rss_bytes") or {} for c in costs]
    out = []
    for path in dict.fromkeys(p for s in seconds for p in s):
        secs = [s[path] for s in seconds if path in s]
        out.append({"path": path, "depth": path.count("/"), "seconds": sum(secs) / len(secs),
                    "peak_rss_bytes": max(p.get(path, 0) for p in peaks)})
    return out


def _mark_best(rows: list[dict[str, Any]], columns: list[str], directions: dict[str, bool]
               ) -> None:
    for m in columns:
        vals = [(row["cells"][m]["mean"], i) for i, row in enumerate(rows)
                if row["cells"][m]["mean"] is not None and math.isfinite(row["cells"][m]["mean"])
                and row["cells"][m].get("null") is None]  # an A/A cell is fixed, not best
        if vals:
            top = (max if directions[m] else min)(v for v, _ in vals)
            winners = [i for v, i in vals if v == top]
            if len(winners) == 1:  # no award on an exact tie
                rows[winners[0]]["cells"][m]["best"] = True


def _sources(ok: list[dict[str, Any]]) -> dict[str, Any]:
    """Each eval's data source, as its records state it (``extra["source"]``)."""
    return {ev: src for r in ok for ev in (r.get("evals") or {})
            if (src := eval_extra(r, ev).get("source"))}


def collect(out: Path, records: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
            ) -> dict[str, Any]:
    """Everything the report shows, as plain values (from ``records``, read from the folder
    when not given)."""
    recs, other = records if records is not None else read_records(out)
    ok = [r for r in recs if r.get("status") == "ok"]
    directions = _directions(ok)
    methods = method_order(Path(out), recs)
    ref = reference(ok, methods)
    d: dict[str, Any] = {
        "records": recs, "ok": ok, "other": other, "aa_checks": [], "directions": directions,
        "bounds": metric_bounds(ok),
        "columns": [m for m in directions if any(m in r["metrics"] for r in ok)],
        "methods": methods, "colors": figures.colors(methods), "reference": ref,
        "pending": [r for r in recs if r.get("status") == "pending"],
        "bad": [r for r in recs if r.get("status") not in ("ok", "pending")],
        "warned": [r for r in ok if r.get("warnings")],
        "seeds": sorted({r["seed"] for r in ok if r.get("seed") is not None}),
        "figures": figures.declared(ok), "sources": _sources(ok),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    groups = _groups(out, ok)
    order = sorted(groups, key=lambda g: (methods.index(groups[g][0]["method"]), g))
    refs = [r for r in ok if r["method"] == ref]
    # each row's cells in seed order, for the samples, examples and figures to read
    d["row_records"] = {g: sorted(groups[g], key=lambda r: r.get("seed") or 0) for g in order}
    d["rows"] = [_row(g, groups[g], d, refs if groups[g][0]["method"] != ref else None)
                 for g in order]
    _mark_best(d["rows"], d["columns"], directions)
    d["length_control"] = length_rows({g: groups[g] for g in order},
                                      length_control.matrix_length_control(ok))
    headline_metrics = [m for m in d["columns"] if m in directions and m.count(".") == 1]
    d["headline"] = ranking.headline({g: groups[g] for g in order}, directions, d["bounds"],
                                     headline_metrics)
    d["ranking"] = ranking.rank({g: groups[g] for g in order}, ranking.METRIC,
                                directions.get(ranking.METRIC, True),
                                bounds=bounds_of(d["bounds"], ranking.METRIC))
    first = ok[0] if ok else (recs[0] if recs else {})
    prov = first.get("provenance", {})
    toml = Path(out) / "matrix.toml"
    d["findings"] = [f.as_json() for f in findings.findings(recs, read_claims(toml))]
    d.update({
        "title": prov.get("matrix_name") or Path(out).name, "provenance": prov,
        "world": prov.get("world", {}), "matrix_toml": toml.read_text() if toml.is_file() else "",
        "given": (first.get("budget") or {}).get("given", {}),
        "total_seconds": sum((r.get("provenance") or {}).get("seconds", 0.0) for r in recs)})
    return d


def plots(d: dict[str, Any]) -> list[dict[str, str]]:
    """The figures as ``[{"id", "title", "src", "svg", "csv"}]`` (see reports.figures): the
    PNG shown, and the SVG and the drawn values as CSV, each a data URI to download."""
    return [{"id": f.id, "title": f.title, "src": f.src,
             "svg": "data:image/svg+xml;base64," + base64.b64encode(f.svg).decode(),
             "csv": "data:text/csv;charset=utf-8;base64,"
                    + base64.b64encode(figure_csv(f.data).encode()).decode()}
            for f in figures.render(d)]


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


# --------------------------------------------------------------------------- outputs


def samples(d: dict[str, Any], n: int = 8) -> list[dict[str, Any]]:
    """The same prompts answered by every row and seed, for every eval whose rows carry a
    ``prompt`` and the policy's answer under ``method`` (with ``p_method``, the judged
    probability that it beats the eval's reference answer, and the scenario's
    ``method_attributes`` where present): ``[{"eval", "prompts": [{"prompt", "answers"}]}]``,
    the first ``n`` prompts of each eval. Each answer carries ``tags``, its attributes as the
    sample browser filters on them (:func:`attribute_tags`)."""
    by_eval: dict[str, dict[str, dict[str, Any]]] = {}
    for row in d["rows"]:
        for r in d["row_records"][row["label"]]:
            for ev, info in (r.get("evals") or {}).items():
                shown = [s for s in (info or {}).get("rows") or [] if _is_sample(s)]
                for s in shown[:n]:
                    entry = by_eval.setdefault(ev, {}).setdefault(
                        s["prompt"], {"prompt": s["prompt"], "answers": []})
                    attrs = s.get("method_attributes") or {}
                    entry["answers"].append({"method": row["label"], "seed": r.get("seed"),
                                             "text": s["method"], "p": s.get("p_method"),
                                             "attrs": attrs, "tags": attribute_tags(attrs)})
    return [{"eval": ev, "prompts": list(prompts.values())[:n]}
            for ev, prompts in by_eval.items()]


def example_rows(d: dict[str, Any], n: int = 8, width: int = 160, max_columns: int = 20
                 ) -> list[dict[str, Any]]:
    """Each eval's per-example rows that the sample browser does not show (TruthfulQA's
    questions and picks, toxicity's samples, a plugin's rows, whatever their keys):
    ``[{"eval", "columns", "rows": [[row label, seed, value, ...]]}]``, the first ``n`` rows
    of each row's first seed, values as text cut to ``width`` characters; keys past the
    first ``max_columns`` share one last column, ``other``, as JSON."""
    out: dict[str, dict[str, Any]] = {}
    for row in d["rows"]:
        first = d["row_records"][row["label"]][0]
        for ev, info in (first.get("evals") or {}).items():
            shown = [x for x in (info or {}).get("rows") or [] if isinstance(x, dict)]
            if not shown or all(map(_is_sample, shown)):
                continue  # none, or the sample browser's
            g = out.setdefault(ev, {"eval": ev, "columns": [], "rows": []})
            for x in shown[:n]:
                g["columns"] += [k for k in x if k not in g["columns"]]
                g["rows"].append((row["label"], first.get("seed"), x))
    for g in out.values():
        cols, rest = g["columns"][:max_columns], g["columns"][max_columns:]
        g["rows"] = [[label, seed] + [_cell_text(x.get(c), width) for c in cols]
                     + ([_cell_text({c: x[c] for c in rest if c in x}, width)] if rest else [])
                     for label, seed, x in g["rows"]]
        g["columns"] = cols + (["other"] if rest else [])
    return list(out.values())


def _is_sample(x: Any) -> bool:
    """A stored row the sample browser shows: a prompt and the policy's answer to it."""
    return isinstance(x, dict) and isinstance(x.get("prompt"), str) \
        and isinstance(x.get("method"), str)


def _cell_text(v: Any, width: int) -> str:
    text = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else
                                 v if isinstance(v, str) else json.dumps(v))
    return text if len(text) <= width else text[:width - 1] + "…"


def attribute_tags(attrs: dict[str, Any]) -> list[str]:
    """A parsed answer's attributes as filter tags, whatever the scenario names them: a true
    flag by its name (``myth``), a text value as ``name=value`` (``truth=unknown_admitted``,
    the micro-world's "I do not know"), a positive count as ``name>0`` (``toxicity>0``)."""
    tags = []
    for k, v in attrs.items():
        if isinstance(v, bool):
            tags += [k] if v else []
        elif isinstance(v, str):
            tags.append(f"{k}={v}")
        elif finite(v) and v > 0:
            tags.append(f"{k}>0")
    return tags


def sample_filters(groups: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The sample browser's choices: rows, seeds, prompts and tags present, in order."""
    answers = [a for g in groups for s in g["prompts"] for a in s["answers"]]
    return {"methods": list(dict.fromkeys(a["method"] for a in answers)),
            "seeds": sorted({a["seed"] for a in answers if a["seed"] is not None}),
            "prompts": list(dict.fromkeys(s["prompt"] for g in groups for s in g["prompts"])),
            "tags": sorted({t for a in answers for t in a["tags"]})}


def column_groups(columns: list[str]) -> list[dict[str, Any]]:
    """The comparison table's column groups, in column order: each eval's headline metrics
    (``eval.metric``), shown; then each metric's slices (``eval.metric.SLICE``, a plugin's
    ``rate.Unknown`` or TruthfulQA's categories), one group per metric, hidden until the
    reader shows them. ``short``: the header without the group's prefix."""
    groups: dict[str, dict[str, Any]] = {}
    for c in columns:
        parts = c.split(".")
        name = parts[0] if len(parts) == 2 else ".".join(parts[:2])
        g = groups.setdefault(name, {"name": name, "slices": len(parts) > 2, "columns": [],
                                     "id": "g-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)})
        g["columns"].append({"metric": c, "short": c[len(name) + 1:]})
    return ([g for g in groups.values() if not g["slices"]]
            + [g for g in groups.values() if g["slices"]])


def report_script() -> tuple[str, str]:
    """The page's one script (sorting, column groups, the sample filter) and its CSP source:
    the page allows exactly this script, by its SHA-256, and no other."""
    from importlib.resources import files
    js = files("reports").joinpath("templates", "report.js").read_text(encoding="utf-8")
    # inserted as is into <script>: text that ends the element would cut the script short
    if re.search(r"</script|<!--", js, re.IGNORECASE):
        raise RuntimeError("reports/templates/report.js must not contain '</script' or '<!--'")
    digest = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    return js, f"'sha256-{digest}'"


def json_for_html(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&' or line
    separators survive unescaped, so '</script>' in model text cannot close the element."""
    s = json.dumps(store.sanitize(obj), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s


def write_csv(d: dict[str, Any], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["key", "method", "seed", "point", "status", "error"] + d["columns"]
               + [f"{c}.se" for c in d["columns"]] + [f"spent.{u}" for u in HEADLINE_BUDGET])
    for r in d["records"]:
        m, u = r.get("metrics", {}), r.get("uncertainty", {}) or {}
        spent = (r.get("budget") or {}).get("spent", {})
        w.writerow([neutralize(x) for x in
                    [r["key"], r["method"], r.get("seed"), json.dumps(r.get("point") or {}),
                     r.get("status"), r.get("error") or ""]
                    + [m.get(c) for c in d["columns"]] + [u.get(c) for c in d["columns"]]
                    + [spent.get(x) for x in HEADLINE_BUDGET]])
    store.atomic_write_text(path, buf.getvalue())


FINDINGS_NOTE = ("Each claim's effect is measured in this run: a row's mean over seeds, or its "
                 "difference from (ratio to) another row paired over the seeds they share, with "
                 "a 95% interval (floored t, as every interval here; for two untrained rows, "
                 "the same on every seed, the evaluation's own). Holds: the interval lies on "
                 "the claimed side of the null, or inside the claimed range (for a range, each "
                 "side a 2.5% test); does not hold: no part of it lies on that side, or it lies "
                 "outside the range; not resolved: neither, at this seed count; not measured: "
                 "fewer than 3 seeds hold the values. Each claim is tested at 5% on its own, "
                 "with no correction for testing several: among twenty claims with no true "
                 "effect, one may read as resolved. Seeds for 80% power: how many seeds an "
                 "effect of the observed size and spread needs to be resolved as claimed "
                 "(two-sided t-test at 5%; computed after the fact, so a guide, not a "
                 "guarantee); none where seeds cannot move it or it was resolved the other way.")


def finding_cells(f: dict[str, Any]) -> dict[str, str]:
    """A finding's table cells as text, shared by report.md and the page."""
    effect = "–" if f["effect"] is None else _fmt(f["effect"])
    if f["lo"] is not None:
        effect += f" [{_fmt(f['lo'])}, {_fmt(f['hi'])}]"
    return {"expected": findings.expectation(findings.Finding(**f)), "effect": effect,
            "seeds": ", ".join(str(s) for s in f["seeds"]) or "–",
            "needed": "–" if f["seeds_needed"] is None else str(f["seeds_needed"])}


def breakable(name: str) -> Any:
    """A metric's or row's name, escaped, that a narrow cell may wrap after each underscore,
    dot and equals sign (``krippendorff_<wbr>alpha``, ``budget.<wbr>comparisons=<wbr>300``)
    instead of inside a word."""
    from markupsafe import Markup, escape
    return Markup(re.sub(r"([_.=])", r"\1<wbr>", str(escape(name))))


def build_report(out: Path) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape

    from reports.markdown import write_markdown

    out = Path(out)
    records = read_records(out)  # the cells are read once, for the index and the report
    output.write_index(out, records[0])  # results.jsonl: exactly the current matrix
    d = collect(out, records)
    env = Environment(autoescape=select_autoescape(["html"], default=True),
                      loader=PackageLoader("reports", "templates"))
    env.filters["fmt"] = _fmt
    env.filters["breakable"] = breakable
    sample_groups = samples(d)
    plots_ = plots(d)
    script, script_src = report_script()
    html = env.get_template("report.html").render(
        d=d, intervals=INTERVALS, length_note=LENGTH_NOTE, plots=plots_,
        samples=sample_groups, filters=sample_filters(sample_groups), examples=example_rows(d),
        groups=column_groups(d["columns"]), budget_units=HEADLINE_BUDGET,
        findings_note=FINDINGS_NOTE, finding_cells=finding_cells,
        figure_ids={p["title"]: p["id"] for p in reversed(plots_)},
        script=script, script_src=script_src,
        data_json=json_for_html({"rows": d["rows"], "length_control": d["length_control"], **{
            part: [{"key": r["key"], "method": r["method"], "seed": r.get("seed"),
                    "status": r["status"], "error": r.get("error")} for r in d[src]]
            for part, src in (("failed", "bad"), ("pending", "pending"), ("other", "other"))}}))
    store.atomic_write_text(out / "report.html", html)
    store.atomic_write_json(out / "ranking.json", d["ranking"])  # null: nothing to rank
    store.atomic_write_json(out / "findings.json", d["findings"])  # []: the matrix has no claims
    write_csv(d, out / "summary.csv")
    write_markdown(d, out / "report.md")
    return out / "report.html"

