"""The report: real-browser rendering, hostile model text, CSV injection, failed/missing cells."""

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench import store
from reports.build import build_report
from reports.tables_csv import neutralize

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '" onmouseover="window.__pwned=3" x="',
    "</script><script>window.__pwned = 4</script>",
    "line\u2028separator\u2029para",
    "=HYPERLINK(\"http://x\")",
]


def plot(title, kind="bars", metrics=(), key="", id=""):
    """A declared figure as the runner stores it (dataclasses.asdict of bench.api.Plot)."""
    return {"title": title, "kind": kind, "metrics": list(metrics), "key": key, "id": id}


def declared(module) -> list[dict]:
    """The figures a built-in eval really declares, as the runner stores them."""
    import dataclasses
    import importlib
    return [{**dataclasses.asdict(p), "metrics": list(p.metrics)}
            for p in importlib.import_module(f"evals.{module}").PLOTS]


def declares(name: str) -> dict:
    """What the harness stores of a built-in eval's declarations in each cell record
    (bench.api.evaluation.declarations: ranking metric, length pairs, descriptive metrics)."""
    from bench.api.evaluation import declarations
    from bench.registry import resolve
    return dict(declarations(resolve("evals", name)))


def record(method, seed, hostile=False, **kw):
    rng = np.random.default_rng(seed + len(method))
    metrics = {"truthfulqa.mc1": float(rng.random()), "truthfulqa.mc1.Adversarial": 0.2,
               "toxicity.emt": float(rng.random()), "win_rate.vs_sft": float(rng.random()),
               "kl.k1": float(rng.random()), "labeler_agreement.inter_labeler": 0.7,
               "echo.length": float(rng.random()), "echo.length.Unknown": 0.3}
    if method == "ppo":
        metrics["labeler_agreement.rm_vs_labelers"] = 0.6
    text = HOSTILE[seed % len(HOSTILE)] if hostile else " records show it is red ."
    rows = [{"prompt": f"<user> q{i} {HOSTILE[i % len(HOSTILE)] if hostile else ''} <assistant>",
             "method": text, "reference": "x", "p_method": 0.5,
             "method_attributes": {"truth": "true"}} for i in range(6)]
    rec = {"key": f"{method}{seed}", "method": method, "seed": seed, "point": {}, "status": "ok",
           "start": "base" if method in ("base", "sft") else "sft",
           "error": None, "metrics": metrics, "uncertainty": {k: 0.01 for k in metrics},
           "evals": {"truthfulqa": {"higher_is_better": {"mc1": True}, "plots": [
                         plot(HOSTILE[0] + " $x$", "slices", ("truthfulqa.mc1.",),
                              "", "truthfulqa-slices")]
                         if hostile else declared("truthfulqa")},
                     "toxicity": {"higher_is_better": {"emt": False},
                                  "plots": declared("toxicity")},
                     "win_rate": {"higher_is_better": {"vs_sft": True}, "rows": rows,
                                  "plots": declared("win_rate"), **declares("win_rate")},
                     "kl": {"higher_is_better": {"k1": False}, "plots": declared("kl")},
                     "labeler_agreement": {"higher_is_better": {"inter_labeler": True},
                                           "plots": declared("labeler_agreement"), "extra": {
                         "labeler_matrix": [[1, 0.6], [0.6, 1]]}},
                     # a plugin: no plots, a slice, per-example rows of its own shape
                     "echo": {"higher_is_better": {"length": True}, "rows": [
                         {"item": f"e{i}", "length": i, "note": text} for i in range(3)]}},
           "curves": {"ppo": [{"step": s, "round": 0, "proxy_reward": s / 10,
                               "gold_reward": 1 - (s - 3) ** 2 / 10, "kl": s / 5}
                              for s in range(8)]} if method == "ppo" else
                     {"sft": [{"step": s, "loss": 2 - s / 10} for s in range(0, 30, 5)]}
                     if method == "sft" else {},
           "budget": {"given": {"comparisons": 100}, "spent": {"comparisons": 100, "flops": 1e12}},
           "provenance": {"seconds": 1.0, "started": "t", "matrix_name": "report-test",
                          "world": {"scenario": "micro"}, "platform": "linux", "device": "cpu"}}
    rec.update(kw)
    return rec


# the generic figure, each eval's declared figures by id (the agreement's two plots share an
# id, so one figure; the trade-offs likewise, across two evals; kl's overoptimization view from
# ppo's curve), the plugin eval's default bars, and the training curves; no budget sweep
# here, so no sweep figure
FIGURES = ["fig-metrics", "fig-truthfulqa-slices", "fig-trade-offs", "fig-overoptimization",
           "fig-labeler-agreement", "fig-echo-bars", "fig-training-curves"]


def make_out(tmp_path: Path, hostile=False, with_failures=False) -> Path:
    recs = [record(m, s, hostile) for m in ("base", "sft", "ppo") for s in (0, 1, 2)]
    if with_failures:
        recs.append(record("dpo", 0, status="failed", error="non-finite loss at step 7",
                           failed_step=7, metrics={}))
        recs.append({"key": "missing1", "method": "rlaif", "seed": 0, "point": {},
                     "status": "missing", "error": "no valid result.json (not run yet, or killed)",
                     "metrics": {}, "uncertainty": {}})
    if hostile:
        recs[0]["error"] = HOSTILE[1]
    out = tmp_path / "out"
    for r in recs:
        if r["status"] != "missing":
            store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
    store.atomic_write_text(out / "results.jsonl", "\n".join(json.dumps(r) for r in recs) + "\n")
    build_report(out)
    return out


def open_in_browser(html: Path, screenshot: Path | None = None):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 1300, "height": 1000})
        console = []
        page.on("console", lambda m: console.append((m.type, m.text)))
        page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        info = page.evaluate("""() => ({
            pwned: window.__pwned === undefined ? null : window.__pwned,
            scripts: [...document.querySelectorAll('script')].map(s => s.type),
            script_text: [...document.querySelectorAll('script')].map(s => s.textContent),
            csp: document.querySelector('meta[http-equiv="Content-Security-Policy"]').content,
            handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(
                a => a.name.startsWith('on'))).length,
            imgs: [...document.querySelectorAll('img')].map(i => i.src.slice(0, 22)),
            text: document.body.innerText,
            figures: [...document.querySelectorAll('figure')].map(f => f.id),
            table: !!document.querySelector('#comparison-table tbody tr'),
            summary: [...document.querySelectorAll('#summary-table tbody tr')].map(
                tr => [tr.dataset.metric, tr.dataset.best]),
            data: JSON.parse(document.getElementById('report-data').textContent),
        })""")
        if screenshot:
            page.screenshot(path=str(screenshot))
        b.close()
    return info, console


# a developer machine without chromium may skip; in CI (which installs it) a skip is a failure
needs_browser = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                   reason="Debian chromium not installed")


@needs_browser
@pytest.mark.browser
def test_report_renders_in_a_real_browser(tmp_path):
    from PIL import Image
    out = make_out(tmp_path)
    shot = tmp_path / "shot.png"
    info, console = open_in_browser(out / "report.html", shot)
    assert [c for c in console if c[0] in ("error", "pageerror")] == []
    assert info["table"]
    assert info["figures"] == FIGURES
    # the summary names, per headline metric, the row with the best mean (none on a tie)
    recs = [record(m, s) for m in ("base", "sft", "ppo") for s in (0, 1, 2)]
    want = []
    for ev in ("truthfulqa", "toxicity", "win_rate", "kl", "labeler_agreement", "echo"):
        for name, higher in recs[0]["evals"][ev]["higher_is_better"].items():
            m = f"{ev}.{name}"
            means = {meth: np.mean([r["metrics"][m] for r in recs if r["method"] == meth])
                     for meth in ("base", "sft", "ppo")}
            top = (max if higher else min)(means.values())
            best = [k for k, v in means.items() if v == top]
            want.append([m, best[0] if len(best) == 1 else ""])
    assert sorted(info["summary"]) == sorted(want)
    assert ["labeler_agreement.inter_labeler", ""] in info["summary"]  # 0.7 everywhere: a tie
    assert all(src.startswith("data:image/png;base64") for src in info["imgs"])
    px = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert px.std() > 10  # not blank


def test_hostile_generations_are_escaped_in_the_file(tmp_path):
    """The static half: checked on the file itself, so it runs with or without a browser."""
    from markupsafe import escape  # what the template's autoescape writes
    out = make_out(tmp_path, hostile=True)
    html = (out / "report.html").read_text()
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    data = html.split('id="report-data">')[1].split("</script>")[0]
    assert "\u2028" not in data and "<" not in data and ">" not in data
    assert html.count("<script") == 2  # the JSON data block and the page's own script
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    for h in HOSTILE[:4]:
        assert str(escape(h)) in html
    assert re.findall(r'<figure id="([^"]+)"', html) == FIGURES


@needs_browser
@pytest.mark.browser
def test_hostile_generations_stay_text(tmp_path):
    out = make_out(tmp_path, hostile=True)
    info, console = open_in_browser(out / "report.html")
    assert info["pwned"] is None
    # no foreign element: the JSON data block and the page's own script, which the CSP allows
    # by its hash and nothing else (an injected inline script would be blocked even unescaped)
    assert info["scripts"] == ["application/json", ""]
    js = (Path(build_report.__code__.co_filename).parent / "templates" / "report.js").read_text(
        encoding="utf-8")
    assert info["script_text"][1] == js
    digest = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    assert re.search(r"script-src 'sha256-([^']+)';", info["csp"]).group(1) == digest
    assert "unsafe-inline" not in info["csp"].split("script-src")[1].split(";")[0]
    assert info["handlers"] == 0
    assert all(src.startswith("data:image/png") for src in info["imgs"])
    for h in HOSTILE[:4]:
        assert h in info["text"]  # shown literally
    assert [c for c in console if c[0] == "pageerror"] == []


def test_csv_neutralizes_formulas_and_reads_back(tmp_path):
    out = make_out(tmp_path, with_failures=True)
    result = out / "cells" / "dpo0" / "result.json"  # the cells are the source of truth
    rec = json.loads(result.read_text())
    rec["error"] = "=cmd|'/C calc'!A0"
    rec["method"] = "@SUM(A1)"
    result.write_text(json.dumps(rec))
    build_report(out)
    rows = list(csv.DictReader(open(out / "summary.csv", newline="")))
    bad = next(r for r in rows if r["key"] == rec["key"])
    assert bad["error"] == "'=cmd|'/C calc'!A0" and bad["method"] == "'@SUM(A1)"
    assert bad["error"][1:] == rec["error"]  # still read back
    for cell in ("+1", "-1+2", "\tx", "\rx"):
        assert neutralize(cell).startswith("'")
    assert neutralize(-1.5) == -1.5  # numbers stay numbers
    for r in rows:
        for v in r.values():
            assert not (v or "").startswith(("=", "+", "@"))


def test_failed_and_missing_cells_are_shown(tmp_path):
    out = make_out(tmp_path, with_failures=True)
    html = (out / "report.html").read_text()
    assert 'id="failed-table"' in html and 'id="pending-table"' in html
    assert "FAILED" in html and "non-finite loss at step 7" in html and "(step 7)" in html
    assert "PENDING" in html and "no result yet" in html
    md = (out / "report.md").read_text()
    assert "FAILED" in md and "PENDING" in md


def test_partial_matrix_without_index(tmp_path):
    out = make_out(tmp_path)
    (out / "results.jsonl").unlink()
    victim = next((out / "cells").iterdir()) / "result.json"
    victim.write_text("{trunc")
    build_report(out)
    html = (out / "report.html").read_text()
    # with no plan and no index, a cell that cannot be read is listed, never averaged
    assert "UNREADABLE" in html and "not a cell record" in html


def test_report_never_imports_methods_or_evals():
    import subprocess
    import sys
    code = ("import sys, reports.build; "
            "bad=[m for m in sys.modules if m.split('.')[0] in ('methods','evals')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def wide_out(tmp_path: Path) -> Path:
    """A matrix as wide as the real ones: every registered eval's real headline metrics (29
    columns today; labeler_agreement 1.3 added the held-out accuracies of the reward model and
    the judges), sweep-point row labels, three seeds (so every cell has an interval and a paired Δ), and a
    slice per TruthfulQA metric."""
    from bench import registry
    rng = np.random.default_rng(0)
    evals = {ev: registry.resolve("evals", ev).metrics for ev in registry.names("evals")}
    out = tmp_path / "wide"
    labels = [("sft", {}), ("base", {})] + [
        (m, {"budget.comparisons": n}) for m in ("ppo", "dpo", "rlaif") for n in (300, 1000)]
    for method, point in labels:
        for seed in (0, 1, 2):
            metrics = {f"{ev}.{m}": float(rng.random()) for ev, ms in evals.items() for m in ms}
            metrics.update({f"truthfulqa.{m}.Non-Adversarial": float(rng.random())
                            for m in evals["truthfulqa"]})
            key = f"{method}{seed}-" + "-".join(map(str, point.values()))
            store.atomic_write_json(out / "cells" / key / "result.json", {
                "key": key, "method": method, "seed": seed, "point": point, "status": "ok",
                "start": "base" if method in ("base", "sft") else "sft", "error": None,
                "metrics": metrics, "uncertainty": {k: 0.01 for k in metrics},
                "evals": {ev: {"higher_is_better": ms, "bounds": {m: [0, 1] for m in ms}}
                          for ev, ms in evals.items()},
                "budget": {"given": {}, "spent": {"comparisons": point.get(
                    "budget.comparisons", 0)}},
                "provenance": {"seconds": 1.0, "matrix_name": "wide", "world": {}}})
    build_report(out)
    return out


def _page(html: Path, width: int = 1400):
    """A page of the report in Debian's chromium at ``width`` px, as a context manager."""
    from contextlib import contextmanager
    from playwright.sync_api import sync_playwright

    @contextmanager
    def go():
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = b.new_page(viewport={"width": width, "height": 1000}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(html.as_uri())
            yield page
            assert errors == []
            b.close()
    return go()


COLUMN_VALUES = """(col) => [...document.querySelectorAll('#comparison-table tbody tr')].map(
    tr => [tr.dataset.row, tr.cells[col].dataset.v])"""


@needs_browser
@pytest.mark.browser
def test_the_comparison_table_fits_1400px_sorts_and_hides_groups(tmp_path):
    out = wide_out(tmp_path)
    with _page(out / "report.html") as page:
        size = page.evaluate("""() => { const t = document.getElementById('comparison-table');
            return {table: t.getBoundingClientRect().right, box: t.parentElement.clientWidth,
                    scroll: t.parentElement.scrollWidth, page: document.documentElement.scrollWidth,
                    cols: t.tHead.rows[1].cells.length,
                    sticky: getComputedStyle(t.tBodies[0].rows[0].cells[0]).position,
                    groups: [...t.tHead.rows[0].cells].filter(c => c.colSpan > 1 || c.dataset.group)
                        .map(c => [c.textContent, c.classList.contains('hide')])}}""")
        from bench import registry
        headline = sum(len(registry.resolve("evals", ev).metrics) for ev in registry.names("evals"))
        assert headline >= 29  # as wide as the real matrices, or wider
        assert size["cols"] == headline + 4  # every headline metric, and the hidden slices
        assert size["scroll"] <= size["box"] and size["page"] <= 1400  # no horizontal scroll
        assert size["sticky"] == "sticky"
        assert ["truthfulqa", False] in size["groups"]
        assert ["truthfulqa.mc1 by slice", True] in size["groups"]
        # budgets left the comparison table for the cost table
        heads = page.inner_text("#comparison-table thead")
        assert "comparisons" not in heads.replace("ai_comparisons", "")
        # sorting: the first click puts the best first (higher-is-better: descending), the
        # second reverses; the order is the rows' means as the report data holds them
        data = json.loads(page.inner_text("#report-data"))
        for metric in ("truthfulqa.mc1", "toxicity.emt"):
            th = page.locator(f'#comparison-table th[title="{metric}"]')
            col = int(th.get_attribute("data-col"))
            higher = th.get_attribute("data-higher") == "1"
            means = {r["label"]: r["cells"][metric]["mean"] for r in data["rows"]}
            want = sorted(means, key=means.get, reverse=higher)
            th.click()
            got = page.evaluate(COLUMN_VALUES, col)
            assert [g for g, _ in got] == want
            assert [float(v) for _, v in got] == pytest.approx([means[g] for g in want])
            th.click()
            assert [g for g, _ in page.evaluate(COLUMN_VALUES, col)] == want[::-1]
        # a group's checkbox hides its columns and shows a hidden group's
        page.uncheck('#column-groups input[data-group="g-toxicity"]')
        assert page.locator('#comparison-table td[data-group="g-toxicity"]').first.is_hidden()
        slices = page.locator('#comparison-table td[data-metric="truthfulqa.mc1.Non-Adversarial"]')
        assert slices.first.is_hidden()
        page.check('#column-groups input[data-group="g-truthfulqa-mc1"]')
        assert slices.first.is_visible()
        # no interval of a bounded metric leaves its range
        for row in data["rows"]:
            for m, c in row["cells"].items():
                assert 0 <= c["lo"] <= c["mean"] <= c["hi"] <= 1, (row["label"], m, c)


@needs_browser
@pytest.mark.browser
def test_the_sample_browser_filters_by_method_seed_prompt_and_attribute(tmp_path):
    from reports.samples import attribute_tags
    out = make_out(tmp_path)
    recs = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*/result.json"))]
    for i, r in enumerate(recs):  # parsed attributes that differ between answers
        for j, row in enumerate(r["evals"]["win_rate"]["rows"]):
            row["method_attributes"] = {"truth": ("true", "false", "unknown_admitted")[(i + j) % 3],
                                        "myth": (i + j) % 4 == 0, "toxicity": (i * j) % 3,
                                        "label": ("a", "a|b")[(i + 2 * j) % 2]}
        store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
    build_report(out)
    shown = """() => [...document.querySelectorAll('.card')].filter(c => c.offsetParent !== null)
        .map(c => [c.dataset.method, Number(c.dataset.seed), c.closest('.prompt-block').dataset.prompt,
                   c.dataset.tags])"""
    every = [(r["method"], r["seed"], str(j), row["method_attributes"])
             for r in recs for j, row in enumerate(r["evals"]["win_rate"]["rows"])]

    def expect(method="", seed=None, prompt="", tag=""):
        return sorted((m, s, p) for m, s, p, a in every if (not method or m == method)
                      and (seed is None or s == seed) and (not prompt or p == prompt)
                      and (not tag or tag in attribute_tags(a)))

    with _page(out / "report.html") as page:
        def got():
            return sorted((m, s, p) for m, s, p, _ in page.evaluate(shown))
        assert got() == expect(seed=0)  # the first seed, at first
        page.select_option("#f-seed", "")
        assert got() == expect() and len(got()) == 3 * 3 * 6
        page.select_option("#f-method", "ppo")
        page.select_option("#f-seed", "2")
        assert got() == expect("ppo", 2)
        page.select_option("#f-prompt", "3")
        assert got() == expect("ppo", 2, "3") and len(got()) == 1
        page.select_option("#f-prompt", "")
        page.select_option("#f-method", "")
        page.select_option("#f-seed", "")
        for tag in ("truth=unknown_admitted", "myth", "toxicity>0", "label=a", "label=a|b"):
            page.select_option("#f-tag", tag)
            assert got() == expect(tag=tag) and 0 < len(got()) < 54
            assert page.inner_text("#samples-count") == f"{len(got())} answer(s) shown."
        # the judge's preference is on every answer
        assert page.locator(".card:visible").first.inner_text().count("P = 0.50") == 1


@needs_browser
@pytest.mark.browser
def test_every_figure_downloads_as_svg_and_csv_and_every_curve_is_drawn(tmp_path):
    from reports.figures import PALETTE
    out = make_out(tmp_path)
    with _page(out / "report.html") as page:
        data = json.loads(page.inner_text("#report-data"))
        # the browser downloads a figure's two links (Chromium throttles a page's rapid
        # downloads after a dozen, so the rest are read from the links themselves)
        with page.expect_download() as svg:
            page.click("#fig-training-curves a[download$='.svg']")
        with page.expect_download() as table:
            page.click("#fig-training-curves a[download$='.csv']")
        assert (svg.value.suggested_filename, table.value.suggested_filename) == (
            "training-curves.svg", "training-curves.csv")
        links = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
            'figure')].map(f => [f.id, [...f.querySelectorAll('a[download]')].map(a => a.href)]))""")
        assert list(links) == FIGURES
        for fig in FIGURES:
            svg_uri, csv_uri = links[fig]
            text = base64.b64decode(svg_uri.split(",", 1)[1]).decode()
            body = base64.b64decode(csv_uri.split(",", 1)[1]).decode()
            if fig == "fig-training-curves":
                assert text == Path(svg.value.path()).read_bytes().decode()
                assert body == Path(table.value.path()).read_bytes().decode()
            assert text.startswith("<?xml") and "<svg" in text
            rows = list(csv.DictReader(io.StringIO(body)))
            assert rows and all(r["panel"] for r in rows)
            if fig == "fig-metrics":  # the bars' CSV is the table's means
                means = {(r["panel"], r["row"]): float(r["mean"]) for r in rows}
                for row in data["rows"]:
                    for m, c in row["cells"].items():
                        if m.count(".") == 1:
                            assert means[(m, row["label"])] == pytest.approx(c["mean"])
            if fig == "fig-training-curves":  # every method with curves has a line, in its colour
                assert {r["row"] for r in rows} == {"sft", "ppo"}
                assert {r["panel"] for r in rows} == {"loss", "proxy_reward", "gold_reward", "kl"}
                for i, method in enumerate(("base", "sft", "ppo")):
                    drawn = f"stroke: {PALETTE[i]}" in text
                    assert drawn == (method != "base"), method


def test_attribute_tags_known_answers():
    from reports.samples import attribute_tags
    assert attribute_tags({"truth": "unknown_admitted", "myth": True, "answered": False,
                           "toxicity": 2, "length": 0, "fact_kind": None}) == [
        "truth=unknown_admitted", "myth", "toxicity>0"]
    assert attribute_tags({}) == []


def test_a_plugins_slice_and_per_example_rows_are_shown(tmp_path):
    """A plugin eval's slice (``echo.length.Unknown``) is a column of a hidden group, and its
    per-example rows, of a shape the report does not know, are a table of their own."""
    out = make_out(tmp_path, hostile=True)
    html = (out / "report.html").read_text()
    assert 'data-metric="echo.length.Unknown"' in html
    assert 'data-group="g-echo-length"' in html
    block = html.split('id="examples-echo"')[1].split("</details>")[0]
    assert block.count("<tr>") == 1 + 3 * 3  # the header, 3 rows of each row's first seed
    assert "<th class=\"l\">note</th>" in block and ">e2</td>" in block
    assert "<script>window.__pwned" not in block  # model text stays text here too
    assert 'id="examples-truthfulqa"' not in html  # the fixture's truthfulqa stores no rows
    assert 'id="examples-win_rate"' not in html  # its rows are the sample browser's


@needs_browser
@pytest.mark.browser
def test_sorting_puts_numbers_first_and_empty_cells_last_either_way(tmp_path):
    """Only ppo has ``labeler_agreement.rm_vs_labelers``: it leads in both directions, the
    rows without a value keep their order after it; a per-example table's text column sorts
    as text."""
    out = make_out(tmp_path)
    for path in (out / "cells").glob("*/result.json"):  # the metric gets a column
        r = json.loads(path.read_text())
        r["evals"]["labeler_agreement"]["higher_is_better"]["rm_vs_labelers"] = True
        store.atomic_write_json(path, r)
    build_report(out)
    with _page(out / "report.html") as page:
        th = page.locator('#comparison-table th[title="labeler_agreement.rm_vs_labelers"]')
        col = int(th.get_attribute("data-col"))
        for _ in range(2):
            th.click()
            assert [g for g, _ in page.evaluate(COLUMN_VALUES, col)] == ["ppo", "base", "sft"]
        page.click("#examples-echo summary")
        head = page.locator("#examples-echo th", has_text="item")
        head.click()
        items = page.eval_on_selector_all(
            "#examples-echo tbody tr", "trs => trs.map(t => t.cells[2].textContent)")
        assert items == sorted(items)


def test_figure_csv_neutralizes_its_header_and_leaves_non_finite_values_empty():
    from reports.tables_csv import figure_csv
    text = figure_csv([{"panel": "p", "=HYPERLINK(1)": 1.0, "lo": float("nan")},
                       {"panel": "@x", "other": -0.5}])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["panel", "'=HYPERLINK(1)", "lo", "other"]
    assert rows[1] == ["p", "1.0", "", ""] and rows[2] == ["'@x", "", "", "-0.5"]


SECTIONS = """() => Object.fromEntries(['failed', 'pending', 'other', 'warnings'].map(id => {
    const h = document.getElementById(id);
    const t = document.getElementById(id + '-table');
    return [id, h && t && h.offsetParent !== null ? [h.textContent,
        [...t.tBodies[0].rows].map(r => r.cells[1].textContent.trim())] : null]; }))"""


def sections_in_browser(html: Path) -> dict:
    """The failed, pending, other-configuration and warnings sections as the browser shows
    them: ``{id: [heading, [cell, ...]] or None}``."""
    with _page(html) as page:
        return page.evaluate(SECTIONS)


@needs_browser
@pytest.mark.browser
def test_failed_and_pending_cells_have_their_own_sections_in_the_browser(tmp_path):
    out = make_out(tmp_path, with_failures=True)
    got = sections_in_browser(out / "report.html")
    assert got["failed"] == ["Failed cells (1)", ["dpo"]]
    assert got["pending"] == ["Pending cells (1)", ["rlaif"]]
    assert got["other"] is None and got["warnings"] is None  # none such here
