"""The report's figures, from the collected values and the plots the records declare.

No method or eval is known here. The figures, in order: every headline metric by row; then,
for each eval in matrix order, the plots its records declare (``record["evals"][NAME]["plots"]``,
:class:`bench.api.Plot` as dicts; an eval that declares none gets one ``"bars"`` figure of its
headline metrics); then every training curve the cells stored (``record["curves"]``). Declared
plots sharing an id are panels of one figure (:func:`reports.declared.figures`). One function
per plot kind turns a plot into panels (a drawing function and its size), so a figure with no
data has no panel and is left out, never drawn as empty axes. Each panel also carries the
values it draws, as flat rows (``Panel.data``), so every figure can be downloaded as CSV beside
its SVG. Figures are embedded as PNG data URIs (the page's CSP allows images from ``data:``
only).
"""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from functools import partial
from typing import Any, Callable, NamedTuple

import numpy as np

from bench.api.evaluation import CURVES_FIGURE, METRICS_FIGURE
from reports.intervals import mean_interval
from reports.model import Report, Row
from reports.records import (bounds_of, eval_extra, finite, group_label, null, row_label,
                             row_method)

# colours by position in the matrix's method order: the quickstart's base, sft, ppo, dpo,
# rlaif keep the colours they always had
PALETTE = ("#888888", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e",
           "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
           "#7b4173", "#000000")  # 16: the zoo's 14 rows each get their own
BAR = "#4a7fb5"
COUNTERS = ("step", "round")  # curve keys that count, rather than measure
COUNT_PREFIXES = ("pairs.",)  # the reward-model monitor's pair counts (bench.api)
SEED_STYLES = ("-", "--", ":", "-.")


class Panel(NamedTuple):
    draw: Callable[[Any], None]  # draws onto one matplotlib Axes
    size: tuple[float, float]  # inches, width and height
    data: list[dict[str, Any]]  # the values drawn, one flat row each ("panel" names the panel)


class Figure(NamedTuple):
    id: str
    title: str
    src: str  # the PNG, as a data URI
    svg: bytes  # the same figure as SVG, for download
    data: list[dict[str, Any]]  # every panel's rows, for the CSV download


def colors(methods: list[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


# --------------------------------------------------------------------------- drawing


def render(d: Report) -> list[Figure]:
    """Every figure that has data, in order."""
    import matplotlib
    matplotlib.use("Agg")
    headline = [c for c in d.columns if c.count(".") == 1]
    figures = [(METRICS_FIGURE.id, METRICS_FIGURE.title, bars(d, {"metrics": headline}, ""))]
    for fig in d.figures:
        figures.append((fig.id, fig.title, [
            panel for p in fig.panels for panel in KINDS[p["kind"]](d, p, p["eval"])]))
    figures.append((CURVES_FIGURE.id, CURVES_FIGURE.title, curves(d)))
    # labels are method names, sweep values and declared titles, drawn as plain text: a "$"
    # in one must not be parsed as mathtext (which raised and left no report)
    # SVG text stays text (smaller, searchable) and its ids do not change between builds
    with matplotlib.rc_context({"text.parse_math": False, "svg.fonttype": "none",
                                "svg.hashsalt": "alignbench"}):
        return [Figure(i, t, *_figure(panels), [row for p in panels for row in p.data])
                for i, t, panels in figures if panels]


def _figure(panels: list[Panel], ncol: int = 4) -> tuple[str, bytes]:
    import matplotlib.pyplot as plt
    ncol = min(ncol, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    w, h = max(p.size[0] for p in panels), max(p.size[1] for p in panels)
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, h * nrow), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        p.draw(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=90, bbox_inches="tight")
    fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(png.getvalue()).decode(), svg.getvalue()


def _stat(d: Report, row: Row, metric: str) -> tuple[float, float, float] | None:
    """(mean, low, high) of ``metric`` over the row's seeds: the table's cell, or for a metric
    the table leaves out (a slice) the same interval; None where the row has no value."""
    cell = row.cells.get(metric)
    if cell is not None:
        return (cell.mean, cell.lo, cell.hi) if finite(cell.mean) else None
    have = [r for r in row.records if finite(r["metrics"].get(metric))]
    if not have:
        return None
    est = mean_interval(have, metric, bounds_of(d.bounds, metric))
    return (est.mean, est.lo, est.hi) if finite(est.mean) else None


def _metric_title(d: Report, metric: str) -> str:
    arrow = {True: " ↑", False: " ↓"}.get(d.directions.get(metric), "")
    return metric + arrow


def _color(d: Report, method: str) -> str:
    return d.colors.get(method, PALETTE[-1])


def bars(d: Report, plot: dict[str, Any], ev: str) -> list[Panel]:
    """One panel per metric: its mean for each row (method and sweep point) with the 95%
    interval over seeds; a row without a value leaves its slot empty."""
    panels = []
    for m in plot["metrics"]:
        stats = [_stat(d, row, m) for row in d.rows]
        if any(stats):
            data = [{"panel": m, "row": row.label, "mean": st[0], "lo": st[1], "hi": st[2]}
                    for row, st in zip(d.rows, stats) if st]
            panels.append(Panel(partial(_draw_bars, d, m, stats), (3.5, 2.6), data))
    return panels


def _draw_bars(d: Report, metric: str, stats: list, ax: Any) -> None:
    at = [i for i, s in enumerate(stats) if s]
    mean = [stats[i][0] for i in at]
    below = [stats[i][0] - stats[i][1] if finite(stats[i][1]) else 0 for i in at]
    above = [stats[i][2] - stats[i][0] if finite(stats[i][2]) else 0 for i in at]
    ax.bar(at, mean, yerr=[below, above], capsize=3, color=BAR)
    ax.set_xticks(range(len(d.rows)), [r.label for r in d.rows], rotation=30,
                  fontsize=7)
    ax.set_title(_metric_title(d, metric), fontsize=9)


def slices(d: Report, plot: dict[str, Any], ev: str) -> list[Panel]:
    """Every metric named ``metrics[0] + SLICE`` (``"truthfulqa.mc1."``): grouped bars, one
    group per slice, one bar per row (its mean over seeds), coloured by method."""
    prefix = plot["metrics"][0] if plot["metrics"] else ""
    names = sorted({m[len(prefix):] for r in d.ok for m in r["metrics"]
                    if prefix and m.startswith(prefix) and len(m) > len(prefix)})
    if not names or not d.rows:
        return []
    data = [{"panel": prefix.rstrip("."), "row": row.label, "slice": n, "mean": st[0],
             "lo": st[1], "hi": st[2]}
            for row in d.rows for n in names if (st := _stat(d, row, prefix + n))]
    return [Panel(partial(_draw_slices, d, prefix, names), (max(6, len(names) * 0.9), 3.6),
                  data)]


def _draw_slices(d: Report, prefix: str, names: list[str], ax: Any) -> None:
    w = 0.8 / len(d.rows)
    for i, row in enumerate(d.rows):
        stats = [_stat(d, row, prefix + s) for s in names]
        at = [j for j, s in enumerate(stats) if s]
        ax.bar([j + i * w for j in at], [stats[j][0] for j in at], w, label=row.label,
               color=_color(d, row.method))
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names, rotation=30, fontsize=7)
    ax.set_ylabel(prefix.rstrip("."))
    ax.legend(fontsize=7)


def pareto_front(points: dict[str, tuple[float, float]], x_higher: bool, y_higher: bool
                 ) -> list[str]:
    """The labels whose (x, y) no other point dominates (at least as good on both, better on
    one), in ``points``' order: the trade-off view's front, each metric in its direction."""
    sx, sy = (1 if x_higher else -1), (1 if y_higher else -1)

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return sx * a[0] >= sx * b[0] and sy * a[1] >= sy * b[1] and a != b
    return [k for k, p in points.items() if not any(beats(q, p) for q in points.values())]


def scatter(d: Report, plot: dict[str, Any], ev: str) -> list[Panel]:
    """``metrics = (x, y)``: one small point per cell and one large point per row (its mean
    over seeds), coloured by method; the rows on the Pareto front (no other row better on
    both, each metric in its direction) joined by a dashed line and named; a horizontal line
    at the value y must take in an A/A comparison, where its eval declares one."""
    if len(plot["metrics"]) != 2:
        return []
    x, y = plot["metrics"]
    cells = [r for r in d.ok if finite(r["metrics"].get(x)) and finite(r["metrics"].get(y))]
    data = [{"panel": f"{y} against {x}", "row": group_label(r), "seed": r.get("seed"),
             x: r["metrics"][x], y: r["metrics"][y]} for r in cells]
    return [Panel(partial(_draw_scatter, d, x, y, cells), (5.5, 3.8), data)] if cells else []


def _draw_scatter(d: Report, x: str, y: str, cells: list, ax: Any) -> None:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in cells:
        rows[group_label(r)].append(r)
        ax.scatter(r["metrics"][x], r["metrics"][y], s=12, alpha=0.45,
                   color=_color(d, r["method"]))
    means = {g: (float(np.mean([r["metrics"][x] for r in rs])),
                 float(np.mean([r["metrics"][y] for r in rs]))) for g, rs in rows.items()}
    for g, (mx, my) in means.items():
        ax.scatter(mx, my, s=60, label=g, color=_color(d, rows[g][0]["method"]),
                   edgecolors="black", linewidths=0.6, zorder=3)
    if d.directions.get(x) is not None and d.directions.get(y) is not None:
        front = sorted(pareto_front(means, d.directions[x], d.directions[y]),
                       key=lambda g: means[g][0])
        ax.plot([means[g][0] for g in front], [means[g][1] for g in front], ls="--",
                color="black", lw=0.8, zorder=2, label="Pareto front (row means)")
        for g in front:
            ax.annotate(g, means[g], fontsize=6, xytext=(3, 3), textcoords="offset points")
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    ax.legend(uniq.values(), uniq.keys(), fontsize=6)
    for value in sorted({v for r in d.ok if finite(v := null(r, y))}):
        ax.axhline(value, color="grey", lw=0.5)
    ax.set_xlabel(_metric_title(d, x))
    ax.set_ylabel(_metric_title(d, y))


def sweep(d: Report, plot: dict[str, Any], ev: str) -> list[Panel]:
    """``metrics[0]`` against each swept budget unit (mean over the cells at each value), one
    line per method."""
    y = plot["metrics"][0] if plot["metrics"] else ""
    units = sorted({k for r in d.ok for k, v in (r.get("point") or {}).items()
                    if k.startswith("budget.") and finite(v) and finite(r["metrics"].get(y))})
    panels = [Panel(partial(_draw_sweep, d, y, k), (6, 3.8),
                    [{"panel": f"{y} against {k}", "method": method, k: x, y: v, "n": n}
                     for method, pts in _sweep_means(d, y, k).items()
                     for x, (v, n) in pts.items()])
              for k in units]
    money = _money_means(d, y)
    if units and money:  # the same rows against what their labels cost (the matrix's prices)
        panels.append(Panel(partial(_draw_money, d, y, money), (6, 3.8),
                            [{"panel": f"{y} against dollars", "line": line, "row": row,
                              "dollars": x, y: v, "n": n}
                             for line, pts in money.items() for row, (x, v, n) in pts.items()]))
    return panels


def _money_means(d: Report, y: str) -> dict[str, dict[str, tuple[float, float, int]]]:
    """line -> row -> (mean dollars, mean ``y``, cells) over the cells that priced their
    spending (``cost.dollars``, from the matrix's prices); a line is a method at its sweep
    point less the budget (each variant its own line, through its budget points)."""
    by: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in d.ok:
        x, v = (r.get("cost") or {}).get("dollars"), r["metrics"].get(y)
        if finite(x) and finite(v):
            line = row_label(r["method"], {k: p for k, p in (r.get("point") or {}).items()
                                           if not k.startswith("budget.")})
            by[line][group_label(r)].append((x, v))
    return {m: dict(sorted(((g, (float(np.mean([x for x, _ in xs])),
                                 float(np.mean([v for _, v in xs])), len(xs)))
                            for g, xs in rows.items()), key=lambda kv: kv[1][0]))
            for m, rows in by.items()}


def _draw_money(d: Report, y: str, money: dict, ax: Any) -> None:
    for line, pts in money.items():
        ax.plot([x for x, _, _ in pts.values()], [v for _, v, _ in pts.values()], marker="o",
                label=line, color=_color(d, row_method(line)))
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("dollars spent on training (the matrix's prices)")
    ax.set_ylabel(_metric_title(d, y))
    ax.legend(fontsize=7)


def _sweep_means(d: Report, y: str, unit: str
                 ) -> dict[str, dict[float, tuple[float, int]]]:
    """method -> swept value -> (mean of ``y`` over the cells there, how many cells)."""
    by: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in d.ok:
        x, v = (r.get("point") or {}).get(unit), r["metrics"].get(y)
        if finite(x) and finite(v):
            by[r["method"]][x].append(v)
    return {m: {x: (sum(vs) / len(vs), len(vs)) for x, vs in sorted(pts.items())}
            for m, pts in by.items()}


def _draw_sweep(d: Report, y: str, unit: str, ax: Any) -> None:
    for method, pts in _sweep_means(d, y, unit).items():
        ax.plot(list(pts), [v for v, _ in pts.values()], marker="o", label=method,
                color=_color(d, method))
    ax.set_xlabel(unit)
    ax.set_ylabel(_metric_title(d, y))
    ax.legend(fontsize=7)


def matrix(d: Report, plot: dict[str, Any], ev: str) -> list[Panel]:
    """The square matrix under ``extra[key]`` of eval ``ev``, from the first cell that has
    one (a heat map with its colour bar)."""
    for r in d.ok:
        mat = eval_extra(r, ev).get(plot["key"])
        if (isinstance(mat, list) and mat and all(isinstance(row, list) and len(row) == len(mat)
                                                  and all(finite(v) for v in row)
                                                  for row in mat)):
            title = f"{ev} {plot['key']} ({r['method']}, seed {r.get('seed')})"
            data = [{"panel": title, "i": i, "j": j, "value": v}
                    for i, row in enumerate(mat) for j, v in enumerate(row)]
            return [Panel(partial(_draw_matrix, mat, title), (5.5, 4), data)]
    return []


def _draw_matrix(mat: list[list[float]], title: str, ax: Any) -> None:
    im = ax.imshow(mat, cmap="viridis")
    ax.figure.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)


def _lines(d: Report) -> list[tuple[dict[str, Any], str, list]]:
    return [(r, name, c) for r in d.ok for name, c in (r.get("curves") or {}).items()
            if isinstance(c, list)]


def curves(d: Report) -> list[Panel]:
    """One panel per value the cells' training curves record (every numeric key but the
    counters), against the step; one line per cell and curve, coloured by method."""
    lines = _lines(d)
    keys = dict.fromkeys(k for _, _, c in lines for p in c if isinstance(p, dict)
                         and finite(p.get("step"))
                         for k, v in p.items() if k not in COUNTERS
                         and not k.startswith(COUNT_PREFIXES) and finite(v))
    return [Panel(partial(_draw_curves, d, lines, k, legend=i == 0), (5, 3.4),
                  _curve_data(lines, k)) for i, k in enumerate(keys)]


def trajectory(d: Report, plot: dict[str, Any], ev: str) -> list[Panel]:
    """``metrics = (x, y, ...)``, names of values in the training curves: each y against x
    along every curve that records both (Gao et al.'s gold and proxy reward against KL)."""
    if len(plot["metrics"]) < 2:
        return []
    x, lines = plot["metrics"][0], _lines(d)
    return [Panel(partial(_draw_curves, d, lines, y, legend=i == 0, x=x), (5, 3.4),
                  _curve_data(lines, y, x))
            for i, y in enumerate(plot["metrics"][1:])
            if any(isinstance(p, dict) and finite(p.get(x)) and finite(p.get(y))
                   for _, _, c in lines for p in c)]


def _points(c: list, x: str, key: str) -> list[tuple[float, float]]:
    return [(p[x], p[key]) for p in c if isinstance(p, dict) and finite(p.get(x))
            and finite(p.get(key))]


def _curve_data(lines: list, key: str, x: str = "step") -> list[dict[str, Any]]:
    return [{"panel": key, "row": group_label(r), "seed": r.get("seed"), "curve": name,
             x: a, key: b} for r, name, c in lines for a, b in _points(c, x, key)]


def _draw_curves(d: Report, lines: list, key: str, ax: Any, legend: bool,
                 x: str = "step") -> None:
    for r, name, c in lines:
        pts = _points(c, x, key)
        if not pts:
            continue
        seed = d.seeds.index(r["seed"]) if r.get("seed") in d.seeds else 0
        label = group_label(r) + f" s{r.get('seed')}" + (f" {name}" if name != r["method"]
                                                          else "")
        ax.plot([s for s, _ in pts], [v for _, v in pts], lw=1, label=label,
                color=_color(d, r["method"]), ls=SEED_STYLES[seed % len(SEED_STYLES)])
    ax.set_title(key, fontsize=9)
    ax.set_xlabel(x)
    if legend:
        ax.legend(fontsize=6)


KINDS: dict[str, Callable[[dict[str, Any], dict[str, Any], str], list[Panel]]] = {
    "bars": bars, "slices": slices, "scatter": scatter, "sweep": sweep, "matrix": matrix,
    "trajectory": trajectory}
