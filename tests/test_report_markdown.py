"""report.md rendered by a real CommonMark renderer (markdown-it-py, with raw HTML and GFM
tables on, as a repository host or a notebook would show it): a hostile matrix name, method
names, sweep values, metric names, claims and plugin error messages stay text. No raw HTML, no
link, no image, and every table row has its header's columns."""

from __future__ import annotations

import pytest

from bench import store
from reports.build import build_report
from reports.markdown import md_text
from tests.test_report import record

markdown_it = pytest.importorskip("markdown_it")

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    "[click](javascript:alert(1))",
    "![x](javascript:alert(1))",
    "[x][y] [r]: javascript:alert(1)",
    "[escaped\\](javascript:alert(1))",
    "<javascript:alert(1)>",
    "a|b",
    "ends in a backslash\\|then a pipe",
    "`code | span`",
    "&lt;script&gt;entity&#60;",
    "line\nbreak <b>bold</b>",
]


def renderer():
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")


def hostile_out(tmp_path):
    """A folder of plugin records whose every text field is hostile."""
    out = tmp_path / "out"
    for i, text in enumerate(HOSTILE):
        for seed in (0, 1, 2):
            r = record("base" if i == 0 else f"m{i} {text}", seed,
                       point={"m.option": text}, key=f"{i:02d}{seed}")
            r["metrics"][f"plug.{text}"] = 0.5
            r["evals"]["plug"] = {"higher_is_better": {text: True}}
            r["provenance"]["matrix_name"] = HOSTILE[1]
            r["warnings"] = [text] if seed == 1 else []
            if seed == 2 and i % 2:
                r.update(status="failed", error=text, metrics={})
            store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
    build_report(out)
    return out


def test_report_md_has_no_raw_html_link_or_extra_column(tmp_path):
    text = (hostile_out(tmp_path) / "report.md").read_text()
    assert text.startswith("# alignbench: &lt;img src=x onerror=alert(1)&gt;\n")
    tokens = renderer().parse(text)
    flat = [t for tok in tokens for t in [tok, *(tok.children or [])]]
    kinds = {t.type for t in flat}
    assert not kinds & {"html_block", "html_inline", "link_open", "image"}, kinds
    html = renderer().render(text)
    for bad in ("<script", "<img", "<iframe", "<a ", "<b>"):  # as tags, not text
        assert bad not in html, bad
    # each table's rows have exactly its header's cells: no value adds a column
    widths, tables = [], 0
    for tok in tokens:
        if tok.type == "table_open":
            tables, widths = tables + 1, []
        elif tok.type == "tr_open":
            widths.append(0)
        elif tok.type in ("th_open", "td_open"):
            widths[-1] += 1
        elif tok.type == "table_close":
            assert len(set(widths)) == 1, widths
    assert tables >= 3
    # and the hostile names are there, as the text they are
    assert "m8 a|b [m.option=a|b]" in html  # a row label reads as it is written
    assert "[click](javascript:alert(1))" in html


@pytest.mark.parametrize("text", HOSTILE)
def test_md_text_renders_back_to_the_text_itself(text):
    """What md_text writes, a renderer shows as the original text (whitespace folded): the
    escaping loses nothing and adds nothing."""
    from html import unescape
    rendered = renderer().render(f"| x |\n|---|\n| {md_text(text)} |\n")
    cell = rendered.split("<td>", 1)[1].split("</td>", 1)[0]
    assert unescape(cell) == " ".join(text.split())
