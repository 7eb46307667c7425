"""What every option means, read from the option models themselves.

Each key a user can write in a matrix file (the matrix's own keys and tables, a method's
``[method.NAME]`` table, an eval's ``[eval.NAME]`` table, a scenario's
``[scenario.options]``) is a pydantic field: its name, type, default, ``Field`` description
and constraints (``ge``, ``lt``, ``pattern``, a ``Literal``'s choices) are rendered from the
field, never restated by hand, so that ``alignbench options NAME`` and docs/reference.md say
what the code accepts. Rendering is pure (models in, text out); only :func:`lookup`,
:func:`plugin_sections` and :func:`preset_summary` read the registry or the package.

docs/reference.md is this module's Markdown output for the built-in plugins::

    python -m bench.describe --markdown > docs/reference.md
"""

from __future__ import annotations

import argparse
import difflib
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bench.option_rows import Row, doc_text, rows

COMMAND = "python -m bench.describe --markdown > docs/reference.md"

# kind as the command line names it -> (registry table, the attribute holding its options model)
KINDS = {"method": ("methods", "Config"), "eval": ("evals", "Options"),
         "scenario": ("scenarios", "Options")}
# where each kind's options go in a matrix file
TABLES = {"method": "[method.{name}]", "eval": "[eval.{name}]",
          "scenario": '[scenario.options], with [scenario] name = "{name}"'}

LONG = 40  # a default longer than this is written out below its table, not in a cell
PROSE = ("required", "its defaults", "(below)")  # defaults that are words, not values


@dataclass(frozen=True)
class Section:
    """One table of keys with its heading and what it is for."""

    title: str
    intro: str
    rows: tuple[Row, ...]


def matrix_sections() -> list[Section]:
    """The matrix file's own keys: the top level, then each table bench/config.py defines."""
    from bench import config
    tables = [("[budget]", config.Budget), ("[scenario]", config.ScenarioCfg),
              ("[resources]", config.Resources),
              ("[resources.method.NAME]", config.MethodResources),
              ("[[claims]]", config.Claim)]
    top = Section("Top-level keys", doc_text(config.Matrix), rows(config.Matrix))
    return [top] + [Section(title, doc_text(model), rows(model)) for title, model in tables]


def plugin_section(kind: str, name: str, plugin: Any) -> Section:
    """One registered method's config, eval's options or scenario's options."""
    model = getattr(plugin, KINDS[kind][1])
    where = TABLES[kind].format(name=name)
    intro = " ".join(str(getattr(plugin, "description", "")).split())
    facts = eval_facts(plugin) if kind == "eval" else ""
    intro = "\n\n".join(p for p in (intro, facts, doc_text(model),
                                     f"Set in the matrix file's {where}.") if p)
    return Section(f"{kind} {name}", intro, rows(model))


def eval_facts(ev: Any) -> str:
    """An eval's headline metrics with their direction, and the ids of its figures (what a
    claim's ``figure`` names), as one paragraph."""
    descriptive = set(getattr(ev, "descriptive", ()))

    def direction(metric: str, higher: bool) -> str:
        if metric in descriptive:
            return "descriptive"
        return "higher is better" if higher else "lower is better"
    metrics = ", ".join(f"{m} ({direction(m, up)})" for m, up in getattr(ev, "metrics", {}).items())
    figures = ", ".join(f"{p.id} ({p.title})" for p in getattr(ev, "figures", ()))
    return f"Metrics: {metrics}." + (f" Figures: {figures}." if figures else "")


def plugin_sections(kind: str, *, builtin_only: bool = False) -> list[Section]:
    """Every registered plugin of a kind, by name; ``builtin_only`` leaves out installed
    third-party plugins, so that the reference page is the same on every machine."""
    from bench import registry
    table = KINDS[kind][0]
    names = registry.builtin_names(table) if builtin_only else registry.names(table)
    return [plugin_section(kind, n, registry.resolve(table, n)) for n in names]


def lookup(name: str, kind: str | None = None) -> list[tuple[str, Any]]:
    """The plugins called ``name`` as (kind, plugin): one per kind that has the name, or only
    ``kind``'s. An unknown name raises the registry's UnknownName, with a did-you-mean."""
    from bench import registry
    if kind is not None:
        return [(kind, registry.resolve(KINDS[kind][0], name))]
    found = [(k, registry.resolve(table, name)) for k, (table, _) in KINDS.items()
             if name in registry.names(table)]
    if found:
        return found
    known = {n: k for k, (table, _) in KINDS.items() for n in registry.names(table)}
    close = difflib.get_close_matches(name, list(known), n=1)
    article = {"method": "a", "eval": "an", "scenario": "a"}
    did = (f"; did you mean {close[0]!r} ({article[known[close[0]]]} {known[close[0]]})?"
           if close else ";")
    raise registry.UnknownName(f"no method, eval or scenario is called {name!r}{did} "
                               f"'alignbench list' shows them all")


def preset_summary(name: str) -> str:
    """A preset's first sentence from its leading comment, else its ``name``."""
    text = resources.files("bench.presets").joinpath(f"{name}.toml").read_text()
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not line.strip("# "):  # the first paragraph is the summary
            break
        comment.append(line.lstrip("#").strip())
    first = " ".join(comment).split(". ")[0].rstrip(".")
    if first:
        return first if len(first) <= 120 else first[:119].rsplit(" ", 1)[0] + " ..."
    return str(tomllib.loads(text).get("name", name))


# --------------------------------------------------------------------------- terminal text

HEAD = ("KEY", "TYPE", "DEFAULT", "CONSTRAINTS", "DESCRIPTION")
CAPS = (28, 24, 20, 22)  # the widest key, type, default and constraints cells; wrapped beyond
DESC_MIN = 36  # the description's width worth narrowing the other columns for
FLOORS = (0, 18, 14, 12)  # how far type, default and constraints narrow for it


def _cells(section: Section) -> tuple[list[tuple[str, ...]], list[tuple[str, str]]]:
    """The table's cells, and the (key, default) pairs too long for a cell."""
    cells, long = [], []
    for r in section.rows:
        default = r.default
        if len(default) > LONG:
            long.append((r.key, default))
            default = "(below)"
        cells.append((r.key, r.type, default, r.constraints, r.description))
    return cells, long


def _wrap(text: str, width: int) -> list[str]:
    # no break at a hyphen: "5e-05" and regular expressions stay whole where they fit
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def text_table(cells: list[tuple[str, ...]], width: int = 100) -> list[str]:
    """Aligned columns, each cell wrapped within its column; a column empty in every row is
    left out. The description takes the width the other columns leave."""
    cols = [c for c in range(len(HEAD)) if c in (0, 4) or any(row[c] for row in cells)]
    widths = [min(max(len(row[c]) for row in [HEAD, *cells]), CAPS[c]) for c in cols[:-1]]
    # narrow the widest of type, default and constraints (never the key) until the
    # description has room to read, or they are as narrow as is useful
    floors = [len(HEAD[c]) if c == 0 else max(len(HEAD[c]), FLOORS[c]) for c in cols[:-1]]
    while width - 2 - sum(w + 2 for w in widths) < DESC_MIN:
        slack = [i for i in range(1, len(widths)) if widths[i] > floors[i]]
        if not slack:
            break
        widths[max(slack, key=lambda i: widths[i] - floors[i])] -= 1
    widths.append(max(24, width - 2 - sum(w + 2 for w in widths)))
    lines = []
    for row in [HEAD, *cells]:
        wrapped = [_wrap(row[c], w) for c, w in zip(cols, widths)]
        for i in range(max(len(col) for col in wrapped)):
            parts = [(col[i] if i < len(col) else "").ljust(w) for col, w in zip(wrapped, widths)]
            lines.append(("  " + "  ".join(parts)).rstrip())
    return lines


def text_section(section: Section, width: int = 100) -> str:
    """One table for a terminal: its title, its intro wrapped, the keys, the long defaults."""
    lines = [section.title]
    for paragraph in section.intro.split("\n\n") if section.intro else []:
        lines += textwrap.wrap(paragraph, width, initial_indent="  ", subsequent_indent="  ")
        lines.append("")
    if not section.rows:
        return "\n".join(lines + ["  (no options)"])
    cells, long = _cells(section)
    lines += text_table(cells, width)
    for key, default in long:
        lines += ["", f"  {key} defaults to:"]
        lines += textwrap.wrap(default, width, initial_indent="    ", subsequent_indent="    ",
                               break_on_hyphens=False)
    return "\n".join(lines)


# --------------------------------------------------------------------------- Markdown

# what CommonMark would read as HTML, an entity or a GFM table's cell break; backslash first,
# so that an escape added here is never itself escaped
_MD_ESCAPES = (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"))


def md_text(text: str) -> str:
    """Prose (a description, an intro) as one Markdown line: no HTML, no cell break."""
    out = " ".join(text.split())
    for raw, escaped in _MD_ESCAPES:
        out = out.replace(raw, escaped)
    return out


def md_code(text: str, *, cell: bool = True) -> str:
    """A code span that holds ``text`` as is (a backtick in it lengthens the fence); in a
    table cell a pipe is escaped, which GFM removes again inside the span."""
    if not text:
        return ""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    body = text.replace("|", "\\|") if cell else text
    return f"{fence}{pad}{body}{pad}{fence}"


def md_section(section: Section, heading: str) -> str:
    """One table as Markdown, under ``heading`` (a full heading line)."""
    lines = [heading, ""]
    for paragraph in section.intro.split("\n\n") if section.intro else []:
        lines += [md_text(paragraph), ""]
    if not section.rows:
        return "\n".join(lines + ["No options."])
    cells, long = _cells(section)
    lines += ["| key | type | default | constraints | description |",
              "| --- | --- | --- | --- | --- |"]
    for key, tp, default, bounds, description in cells:
        default = md_text(default) if default.startswith(PROSE) else md_code(default)
        lines.append(f"| {md_code(key)} | {md_code(tp)} | {default} | {md_code(bounds)} | "
                     f"{md_text(description)} |")
    if long:
        lines += ["", "Defaults written out:", ""]
        lines += [f"- {md_code(key, cell=False)}: " + (
            md_text(default) if default.startswith(PROSE) else md_code(default, cell=False))
            for key, default in long]
    return "\n".join(lines)


PLURAL = {"scenario": "Scenarios", "method": "Methods", "eval": "Evals"}


def reference_markdown() -> str:
    """docs/reference.md: the matrix file's keys, then every built-in scenario's options,
    method's config and eval's options. What :data:`COMMAND` writes."""
    parts = ["# alignbench reference", "",
             f"Generated by `{COMMAND}` from the option models in the code; do not edit by "
             "hand. Whoever changes an option regenerates it with that command "
             "(tests/test_reference_docs.py fails until the page matches the code).", "",
             "Every key a matrix file may set, with its type, default and meaning; then the "
             "options of every built-in scenario, method and eval. A key left out takes its "
             "default; `None` is TOML's missing value: leave the key out. `alignbench options "
             "NAME` prints one plugin's options, an installed plugin's too.", "",
             "## The matrix file", ""]
    for section in matrix_sections():
        parts += [md_section(section, f"### {_md_title(section.title)}"), ""]
    for kind in ("scenario", "method", "eval"):
        parts += [f"## {PLURAL[kind]}", ""]
        for section in plugin_sections(kind, builtin_only=True):
            name = section.title.split(" ", 1)[1]
            parts += [md_section(section, f"### {md_code(name)}"), ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def _md_title(title: str) -> str:
    return md_code(title, cell=False) if title.startswith("[") else title


def stale(page: str) -> str | None:
    """None when ``page`` is what :data:`COMMAND` writes now; else one line naming the first
    line that differs and the command that brings the page up to date."""
    want = reference_markdown()
    if page == want:
        return None
    have_lines, want_lines = page.splitlines(), want.splitlines()
    i = next((i for i, (a, b) in enumerate(zip(have_lines, want_lines)) if a != b),
             min(len(have_lines), len(want_lines)))
    have = have_lines[i] if i < len(have_lines) else "<end of page>"
    now = want_lines[i] if i < len(want_lines) else "<end of page>"
    return (f"docs/reference.md is stale at line {i + 1}: it reads {have!r} where the code "
            f"gives {now!r}; run `{COMMAND}`")


# --------------------------------------------------------------------------- entry points


def options_text(name: str, kind: str | None = None, *, markdown: bool = False,
                 width: int = 100) -> str:
    """What ``alignbench options NAME`` prints: each plugin called ``name``, headed by its
    kind."""
    out = []
    for k, plugin in lookup(name, kind):
        section = plugin_section(k, name, plugin)
        out.append(md_section(section, f"### {k} {md_code(name, cell=False)}") if markdown
                   else text_section(section, width))
    return "\n\n".join(out) + "\n"


def reference_text(width: int = 100) -> str:
    """The reference page's content for a terminal."""
    sections = matrix_sections() + [s for kind in ("scenario", "method", "eval")
                                     for s in plugin_sections(kind, builtin_only=True)]
    return "\n\n".join(text_section(s, width) for s in sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.describe",
                                description="The matrix file's keys and every built-in plugin's "
                                "options, from the code (docs/reference.md is --markdown).")
    p.add_argument("--markdown", action="store_true", help="write docs/reference.md's Markdown")
    p.add_argument("--width", type=int, default=100, help="text width (without --markdown)")
    args = p.parse_args(argv)
    sys.stdout.write(reference_markdown() if args.markdown else reference_text(args.width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
