"""Build report.html, report.md and summary.csv from an output folder's stored results alone.

Nothing here imports a method or an eval: the records carry their metric directions and
uncertainties. One function (:func:`collect`) turns the records into plain values; the template
renders them with autoescaping, so model text is always shown as text.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import output, store
from bench.stats import paired_seed_delta, seed_interval

INTERVALS = ("Intervals: Student-t over seeds on the variance max(spread of the seed values, "
             "mean squared per-seed standard error) / n, so never narrower than the evaluation "
             "noise each seed carries (a floored random-effects interval, for this scenario's "
             "evaluation prompts). Metrics whose eval records no per-seed standard error (the "
             "RL curve summaries, the agreement indices) get the plain t-interval.")
HEADLINE_BUDGET = ("demonstrations", "comparisons", "ai_comparisons", "rollouts", "flops")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReportError(ValueError):
    """The stored results cannot make an honest report (stated in one line with the fix)."""


def read_records(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the current matrix's cells in matrix order, cells in the folder from another
    configuration): see :func:`bench.output.records`. Only the first are ever averaged."""
    return output.records(out)


def group_label(r: dict[str, Any]) -> str:
    pt = r.get("point") or {}
    return r["method"] + "".join(f" [{k}={v}]" for k, v in sorted(pt.items()))


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


def _budget_point(r: dict[str, Any]) -> str:
    """The budget part of a cell's sweep point: the SFT cell a row is paired with shares it."""
    return store.canonical({k: v for k, v in (r.get("point") or {}).items()
                            if k.startswith("budget.")})


def _se(r: dict[str, Any], metric: str) -> float | None:
    return (r.get("uncertainty") or {}).get(metric)


def _null(r: dict[str, Any], metric: str) -> float | None:
    """The value an eval says this metric must take in expectation (an A/A comparison: a
    model against itself), from ``extra["null"]`` of its record; None for most metrics."""
    ev, _, name = metric.partition(".")
    return (((r.get("evals") or {}).get(ev) or {}).get("extra") or {}).get("null", {}).get(name)


def collect(out: Path, records: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
            ) -> dict[str, Any]:
    """Everything the report shows, as plain values (from ``records``, read from the folder
    when not given)."""
    recs, other = records if records is not None else read_records(out)
    ok = [r for r in recs if r.get("status") == "ok"]
    pending = [r for r in recs if r.get("status") == "pending"]
    bad = [r for r in recs if r.get("status") not in ("ok", "pending")]
    directions: dict[str, bool] = {}
    for r in ok:
        for ev, info in (r.get("evals") or {}).items():
            for m, hib in info.get("higher_is_better", {}).items():
                directions[f"{ev}.{m}"] = hib
    columns = [m for m in directions if any(m in r["metrics"] for r in ok)]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        groups[group_label(r)].append(r)
    for g, rs in groups.items():
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise ReportError(f"{out}: row {g!r} holds seed {max(seeds, key=seeds.count)} twice "
                              f"(two configurations under one label); rerun into a new --out "
                              f"folder")
    methods = list(dict.fromkeys(r["method"] for r in recs))  # the matrix's order
    order = sorted(groups, key=lambda g: (methods.index(groups[g][0]["method"]), g))
    sft_by = {(r["seed"], _budget_point(r)): r for r in ok if r["method"] == "sft"}
    rows: list[dict[str, Any]] = []
    aa_checks: list[dict[str, Any]] = []
    for g in order:
        rs = groups[g]
        cells = {}
        for m in columns:
            have = [r for r in rs if r["metrics"].get(m) is not None]
            mean, lo, hi = seed_interval([r["metrics"][m] for r in have],
                                         [_se(r, m) for r in have])
            delta = None
            if rs[0]["method"] != "sft":
                paired = [(r, sft_by[(r["seed"], _budget_point(r))]) for r in have
                          if (r["seed"], _budget_point(r)) in sft_by]
                paired = [(a, b) for a, b in paired if b["metrics"].get(m) is not None]
                if len(paired) >= 2:
                    d, dlo, dhi = paired_seed_delta(
                        [a["metrics"][m] for a, _ in paired], [b["metrics"][m] for _, b in paired],
                        [_se(a, m) for a, _ in paired], [_se(b, m) for _, b in paired])
                    delta = {"mean": d, "lo": dlo, "hi": dhi,
                             "significant": bool(dlo > 0 or dhi < 0),
                             "better": bool((d > 0) == directions[m])}
            cells[m] = {"mean": mean, "lo": lo, "hi": hi, "n": len(have), "delta": delta,
                        "se": _se(rs[0], m) if len(rs) == 1 else None}
            null = {_null(r, m) for r in have}
            if len(null) == 1 and None not in null and math.isfinite(lo):
                value = null.pop()
                cells[m]["null"] = value
                aa_checks.append({"row": g, "metric": m, "null": value, "mean": mean, "lo": lo,
                                  "hi": hi, "ok": bool(lo <= value <= hi)})
        spent = defaultdict(list)
        for r in rs:
            for u, v in (r.get("budget", {}).get("spent") or {}).items():
                spent[u].append(v or 0.0)
        budget = {u: (sum(v) / len(v)) for u, v in spent.items()}
        rows.append({"label": g, "method": rs[0]["method"], "seeds": sorted(r["seed"] for r in rs),
                     "cells": cells, "budget": budget})
    for m in columns:  # mark the best per column
        vals = [(row["cells"][m]["mean"], i) for i, row in enumerate(rows)
                if row["cells"][m]["mean"] is not None and math.isfinite(row["cells"][m]["mean"])]
        if vals:
            top = (max if directions[m] else min)(v for v, _ in vals)
            winners = [i for v, i in vals if v == top]
            if len(winners) == 1:  # no award on an exact tie
                rows[winners[0]]["cells"][m]["best"] = True
    first = ok[0] if ok else (recs[0] if recs else {})
    prov = first.get("provenance", {})
    world = prov.get("world", {})
    sources = {}
    for r in ok:
        tq = (r.get("evals") or {}).get("truthfulqa", {}).get("extra", {}).get("source")
        if tq:
            sources["truthfulqa"] = tq
        tox = (r.get("evals") or {}).get("toxicity", {}).get("extra")
        if tox:
            sources["toxicity"] = {k: tox.get(k) for k in ("scorer", "k", "paper_k")}
    matrix_toml = (Path(out) / "matrix.toml").read_text() if (Path(out) / "matrix.toml").is_file() \
        else ""
    total_seconds = sum((r.get("provenance") or {}).get("seconds", 0.0) for r in recs)
    return {
        "title": prov.get("matrix_name") or Path(out).name, "records": recs, "ok": ok, "bad": bad,
        "pending": pending, "other": other, "aa_checks": aa_checks,
        "columns": columns, "directions": directions, "rows": rows, "world": world,
        "provenance": prov, "sources": sources, "matrix_toml": matrix_toml,
        "given": (first.get("budget") or {}).get("given", {}), "total_seconds": total_seconds,
        "seeds": sorted({r["seed"] for r in ok if r.get("seed") is not None}),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------- plots


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(d: dict[str, Any]) -> list[dict[str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    # labels are method names and sweep values, drawn as plain text: a "$" in one must not be
    # parsed as mathtext (which raised and left no report)
    with matplotlib.rc_context({"text.parse_math": False}):
        return _plots(d)


def _plots(d: dict[str, Any]) -> list[dict[str, str]]:
    import matplotlib.pyplot as plt

    out = []
    rows, cols = d["rows"], [c for c in d["columns"] if c.count(".") == 1]
    if rows and cols:
        n = len(cols)
        ncol = 4
        fig, axes = plt.subplots(math.ceil(n / ncol), ncol, figsize=(14, 2.6 * math.ceil(n / ncol)),
                                 squeeze=False)
        for ax, m in zip(axes.flat, cols):
            means = [r["cells"][m]["mean"] for r in rows]
            err = [[0 if not math.isfinite(r["cells"][m]["lo"] or math.nan) else
                    r["cells"][m]["mean"] - r["cells"][m]["lo"] for r in rows],
                   [0 if not math.isfinite(r["cells"][m]["hi"] or math.nan) else
                    r["cells"][m]["hi"] - r["cells"][m]["mean"] for r in rows]]
            means = [v if v is not None and math.isfinite(v) else 0 for v in means]
            ax.bar(range(len(rows)), means, yerr=err, capsize=3, color="#4a7fb5")
            ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, fontsize=7)
            ax.set_title(f"{m} {'↑' if d['directions'][m] else '↓'}", fontsize=9)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        out.append({"id": "plot-bars", "title": "Every metric by method (mean, 95% interval "
                    "over seeds)", "src": _png(fig)})
    # trade-off frontier
    pairs = [("toxicity.emt", "win_rate.vs_sft"), ("kl.k1", "win_rate.vs_sft")]
    avail = [(x, y) for x, y in pairs if x in d["columns"] and y in d["columns"]]
    if avail:
        fig, axes = plt.subplots(1, len(avail), figsize=(5.5 * len(avail), 3.8), squeeze=False)
        for ax, (x, y) in zip(axes.flat, avail):
            for r in d["ok"]:
                if x in r["metrics"] and y in r["metrics"]:
                    ax.scatter(r["metrics"][x], r["metrics"][y], s=25,
                               label=group_label(r), color=_color(r["method"]))
            h, lab = ax.get_legend_handles_labels()
            uniq = dict(zip(lab, h))
            ax.legend(uniq.values(), uniq.keys(), fontsize=7)
            ax.axhline(0.5, color="grey", lw=0.5)
            ax.set_xlabel(x)
            ax.set_ylabel(y)
        fig.tight_layout()
        out.append({"id": "plot-frontier", "title": "Trade-offs: win-rate against toxicity and "
                    "against KL (one point per cell)", "src": _png(fig)})
    # budget sweep
    swept = sorted({k for r in d["ok"] for k in (r.get("point") or {}) if k.startswith("budget.")})
    if swept and "win_rate.vs_sft" in d["columns"]:
        k = swept[0]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        by = defaultdict(lambda: defaultdict(list))
        for r in d["ok"]:
            if k in (r.get("point") or {}):
                by[r["method"]][r["point"][k]].append(r["metrics"].get("win_rate.vs_sft"))
        for meth, pts in by.items():
            xs = sorted(pts)
            ax.plot(xs, [sum(pts[x]) / len(pts[x]) for x in xs], marker="o", label=meth,
                    color=_color(meth))
        ax.set_xlabel(k)
        ax.set_ylabel("win_rate.vs_sft")
        ax.legend(fontsize=7)
        out.append({"id": "plot-budget", "title": f"Win-rate against {k}", "src": _png(fig)})
    # RL curves and overoptimization
    curves = [(r, name, c) for r in d["ok"] for name, c in (r.get("curves") or {}).items() if c]
    if curves:
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
        for r, name, c in curves:
            steps = [p["step"] for p in c]
            lab = f"{group_label(r)} s{r['seed']}"
            axes[0].plot(steps, [p.get("proxy_reward") for p in c], label=lab, lw=1)
            if "gold_reward" in c[0]:
                axes[1].plot(steps, [p["gold_reward"] for p in c], label=lab, lw=1)
                sk = [math.sqrt(max(p.get("kl", 0.0), 0.0)) for p in c]
                g = [p["gold_reward"] for p in c]
                line, = axes[2].plot(sk, g, lw=1, label=f"gold {lab}")
                axes[2].plot(sk, [p.get("proxy_reward") for p in c], lw=1, ls="--",
                             color=line.get_color())
                i = max(range(len(g)), key=g.__getitem__)
                axes[2].scatter([sk[i]], [g[i]], marker="*", s=80, color=line.get_color())
        for ax, t in zip(axes, ("proxy reward (reward model) per step", "gold reward per step",
                                "gold (solid) and proxy (dashed) vs sqrt(KL); * = peak gold")):
            ax.set_title(t, fontsize=9)
        axes[0].legend(fontsize=6)
        fig.tight_layout()
        out.append({"id": "plot-rl", "title": "RL training curves and the overoptimization view "
                    "(Gao et al. 2022)", "src": _png(fig)})
    # labeler agreement
    la = [r for r in d["ok"] if "labeler_agreement" in (r.get("evals") or {})]
    if la:
        import numpy as np
        ex = la[0]["evals"]["labeler_agreement"]["extra"]
        mat = np.array(ex.get("labeler_matrix", [[math.nan]]), dtype=float)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        im = axes[0].imshow(mat, vmin=0.4, vmax=1.0, cmap="viridis")
        fig.colorbar(im, ax=axes[0])
        axes[0].set_title(f"labeler x labeler agreement ({la[0]['method']}, seed "
                          f"{la[0]['seed']})", fontsize=9)
        names, vals = [], []
        for r in la:
            m = r["metrics"]
            for key, lab in (("labeler_agreement.rm_vs_labelers", "RM"),
                             ("labeler_agreement.ai_judge_vs_majority", "AI judge")):
                if key in m and m[key] is not None:
                    names.append(f"{lab} ({r['method']} s{r['seed']})")
                    vals.append(m[key])
        ceiling = [r["metrics"].get("labeler_agreement.inter_labeler") for r in la]
        ceiling = [c for c in ceiling if c is not None]
        axes[1].barh(range(len(vals)), vals, color="#4a7fb5")
        axes[1].set_yticks(range(len(vals)), names, fontsize=7)
        if ceiling:
            axes[1].axvline(sum(ceiling) / len(ceiling), color="red", ls="--",
                            label="labeler-labeler ceiling")
            axes[1].legend(fontsize=7)
        axes[1].set_xlim(0, 1)
        axes[1].set_title("learned judges against the panel", fontsize=9)
        fig.tight_layout()
        out.append({"id": "plot-agreement", "title": "Labeler agreement", "src": _png(fig)})
    # truthfulqa by type / category
    tq = [c for c in d["columns"] if c.startswith("truthfulqa.mc1")]
    slices = sorted({m.split(".", 2)[2] for r in d["ok"] for m in r["metrics"]
                     if m.startswith("truthfulqa.mc1.")})
    if tq and slices and d["rows"]:
        fig, ax = plt.subplots(figsize=(max(6, len(slices) * 0.9), 3.6))
        w = 0.8 / len(d["rows"])
        for i, row in enumerate(d["rows"]):
            rs = [r for r in d["ok"] if group_label(r) == row["label"]]
            vals = [sum(r["metrics"].get(f"truthfulqa.mc1.{s}", 0) for r in rs) / len(rs)
                    for s in slices]
            ax.bar([j + i * w for j in range(len(slices))], vals, w, label=row["label"],
                   color=_color(row["method"]))
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(slices))], slices, rotation=30,
                      fontsize=7)
        ax.set_ylabel("MC1")
        ax.legend(fontsize=7)
        out.append({"id": "plot-truthfulqa", "title": "TruthfulQA MC1 by Type and category",
                    "src": _png(fig)})
    return out


def _color(method: str) -> str:
    return {"base": "#888888", "sft": "#1f77b4", "ppo": "#d62728", "dpo": "#2ca02c",
            "rlaif": "#9467bd"}.get(method, "#8c564b")


# --------------------------------------------------------------------------- outputs


def samples(d: dict[str, Any], n: int = 6) -> list[dict[str, Any]]:
    """The same eval prompts, each method's answer side by side (first seed of each group)."""
    by_prompt: dict[str, dict[str, Any]] = {}
    for row in d["rows"]:
        rs = [r for r in d["ok"] if group_label(r) == row["label"]]
        wr = (rs[0].get("evals") or {}).get("win_rate", {}).get("rows", []) if rs else []
        for s in wr[:n]:
            entry = by_prompt.setdefault(s["prompt"], {"prompt": s["prompt"], "answers": []})
            entry["answers"].append({"method": row["label"], "text": s["method"],
                                     "p": s["p_method"], "attrs": s.get("method_attributes", {})})
    return list(by_prompt.values())[:n]


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


def write_markdown(d: dict[str, Any], path: Path) -> None:
    cols = [c for c in d["columns"] if c.count(".") == 1]
    lines = [f"# alignbench: {d['title']}", "",
             f"Seeds: {d['seeds']}; mean with 95% interval over seeds. {INTERVALS} "
             f"Δ: paired difference against sft at the same seed and budget point; * when "
             f"its 95% interval excludes 0.", "",
             "| method | " + " | ".join(f"{c} {'↑' if d['directions'][c] else '↓'}" for c in cols)
             + " | comparisons | ai_comparisons |",
             "|---" * (len(cols) + 3) + "|"]
    for row in d["rows"]:
        vals = []
        for c in cols:
            cell = row["cells"][c]
            s = _fmt(cell["mean"])
            if cell["lo"] is not None and math.isfinite(cell["lo"]):
                s += f" [{_fmt(cell['lo'])}, {_fmt(cell['hi'])}]"
            if cell.get("best"):
                s = f"**{s}**"
            if cell["delta"]:  # the paired difference against sft; * = resolved
                s += f" Δ {cell['delta']['mean']:+.3f}{'*' if cell['delta']['significant'] else ''}"
            vals.append(s)
        b = row["budget"]
        lines.append(f"| {row['label']} | " + " | ".join(vals)
                     + f" | {b.get('comparisons', 0):.0f} | {b.get('ai_comparisons', 0):.0f} |")
    for c in d["aa_checks"]:
        if not c["ok"]:
            lines.append(f"\n- A/A CHECK FAILED: {c['row']} {c['metric']} = {_fmt(c['mean'])} "
                         f"[{_fmt(c['lo'])}, {_fmt(c['hi'])}] excludes {c['null']}, the value a "
                         f"model compared with itself must give")
    for title, recs in (("Failed cells", d["bad"]), ("Pending cells (planned, no result)",
                                                      d["pending"]),
                        ("Not in this matrix (other configurations; never averaged)",
                         d["other"])):
        if recs:
            lines += ["", f"## {title}", ""]
            lines += [f"- {r['status'].upper()}: {group_label(r)} seed {r.get('seed')} "
                      f"(cell {r['key']}): {r.get('error') or ''}" for r in recs]
    store.atomic_write_text(path, "\n".join(lines) + "\n")


def build_report(out: Path) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape

    out = Path(out)
    records = read_records(out)  # the cells are read once, for the index and the report
    output.write_index(out, records[0])  # results.jsonl: exactly the current matrix
    d = collect(out, records)
    env = Environment(autoescape=select_autoescape(["html"], default=True),
                      loader=PackageLoader("reports", "templates"))
    env.filters["fmt"] = _fmt
    html = env.get_template("report.html").render(
        d=d, intervals=INTERVALS, plots=plots(d), samples=samples(d), budget_units=HEADLINE_BUDGET,
        data_json=json_for_html({"rows": d["rows"], **{
            part: [{"key": r["key"], "method": r["method"], "seed": r.get("seed"),
                    "status": r["status"], "error": r.get("error")} for r in d[src]]
            for part, src in (("failed", "bad"), ("pending", "pending"), ("other", "other"))}}))
    store.atomic_write_text(out / "report.html", html)
    write_csv(d, out / "summary.csv")
    write_markdown(d, out / "report.md")
    return out / "report.html"
