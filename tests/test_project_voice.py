"""The project speaks of itself, not of how it was worked on.

A lint over the tracked README.md, docs/**/*.md, *.py and *.toml files (CHANGELOG.md is a log
and is left out, and so is this file, which names every pattern; so are the run facts at the
top of the generated docs/results.md, between its ``<!-- run-facts -->`` and
``<!-- /run-facts -->`` comments). It fails naming ``file:line`` on:

- issue numbers (``issue 21``, ``Issue #3``) and work-log names (``stop 29``, ``this session``,
  ``the development machine``);
- first-person readings (``I read``, ``I measured``, ``I ran``, ``I think``, ``my reading``);
- a commit hash (7 to 12 hex digits with at least one digit and one letter) in prose: anywhere
  in a Markdown file outside fenced code blocks, in docstrings (triple-quoted text), and in the
  comment part of any other .py or .toml line with its quoted strings taken out, so cell keys
  and sha256s in test fixtures' strings are not matched;
- a dated measurement (``2026-12-06``) in Markdown prose or comments, the same way;
- a claim in a preset whose ``source`` cites "the seed" rather than the paper it comes from.

Papers are cited by author and year; results live in docs/results.md, generated from a
recorded run, which is the one place a run's commit, machine and date are written.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EVERYWHERE = [
    (re.compile(r"\b[Ii]ssues? #?\d+"), "an issue number"),
    (re.compile(r"\b[Ss]top \d+"), "a work-log name ('stop N')"),
    (re.compile(r"\b[Tt]his session\b"), "a work-log name ('this session')"),
    (re.compile(r"\b[Dd]evelopment machine\b"), "'the development machine'"),
    (re.compile(r"\b[Tt]he issue\b"), "an issue as a source"),
    (re.compile(r"\bthe seed's (four|\")"), "'the seed' as a source"),
    (re.compile(r"\bI (read|measured|ran|think)\b"), "a first-person reading"),
    (re.compile(r"\b[Mm]y reading\b"), "a first-person reading"),
]
PROSE_ONLY = [
    (re.compile(r"(?<![0-9A-Za-z_./-])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,12}"
                r"(?![0-9A-Za-z_-])"), "a commit hash in prose"),
    (re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b"), "a dated measurement"),
]
SEED_SOURCE = (re.compile(r"^\s*source\s*=.*\bthe seed\b"), "a claim citing 'the seed'")
SELF = "tests/test_project_voice.py"  # names every pattern it looks for
QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")


TRIPLE = re.compile(r'"""|\'\'\'')


def _comment(line: str) -> str:
    """The comment part of a .py or .toml line, quoted strings taken out first."""
    bare = QUOTED.sub('""', line)
    return bare[bare.index("#"):] if "#" in bare else ""


def lint_text(name: str, text: str) -> list[str]:
    """Every violation in one file's text, as ``name:line: what: the line``."""
    markdown, toml = name.endswith(".md"), name.endswith(".toml")
    preset = toml and "presets/" in name
    out, fenced, facts, doc = [], False, False, False
    for i, line in enumerate(text.splitlines(), 1):
        in_doc = doc or bool(TRIPLE.search(line))  # a docstring or other triple-quoted text
        if not markdown and len(TRIPLE.findall(line)) % 2:
            doc = not doc
        if markdown and line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if "<!-- run-facts -->" in line:
            facts = True
        if "<!-- /run-facts -->" in line:
            facts = False
            continue
        if facts:
            continue
        rules = list(EVERYWHERE)
        if markdown:
            prose = "" if fenced else line
        else:
            prose = TRIPLE.sub("", line) if in_doc else _comment(line)
        hits = [what for rx, what in rules if rx.search(line)]
        hits += [what for rx, what in PROSE_ONLY if prose and rx.search(prose)]
        if preset and SEED_SOURCE[0].search(line):
            hits.append(SEED_SOURCE[1])
        out += [f"{name}:{i}: {what}: {line.strip()[:100]}" for what in hits]
    return out


def linted_files() -> list[str]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    keep = []
    for n in names:
        if n in ("CHANGELOG.md", SELF) or not (ROOT / n).is_file():
            continue
        if n == "README.md" or (n.startswith("docs/") and n.endswith(".md")) \
                or n.endswith((".py", ".toml")):
            keep.append(n)
    return keep


def lint(names: list[str], root: Path = ROOT) -> list[str]:
    return [v for n in names for v in lint_text(n, (root / n).read_text(encoding="utf-8"))]


def test_the_tracked_files_speak_of_the_project():
    bad = lint(linted_files())
    assert not bad, "\n".join([f"{len(bad)} lines speak of the work, not the project:"] + bad)


def test_the_lint_names_file_and_line_of_a_planted_violation(tmp_path):
    (tmp_path / "planted.py").write_text("x = 1\n# issue 12: fixed\n", encoding="utf-8")
    (tmp_path / "clean.py").write_text('KEY = "3f2a9c1d"  # a cell key, quoted\n',
                                       encoding="utf-8")
    bad = lint(["planted.py", "clean.py"], root=tmp_path)
    assert bad == ["planted.py:2: an issue number: # issue 12: fixed"]


def test_the_lint_finds_each_kind_of_violation():
    text = "\n".join([
        "Measured in stop 29 on the development machine.",
        "I measured 3 s at `1b464e0` on 2026-12-06.",
        "```",
        "git checkout 1b464e0",  # a hash in a code block is not prose
        "```",
        "<!-- run-facts -->",
        "commit 1b464e0, 2026-12-06",
        "<!-- /run-facts -->",
    ])
    kinds = [v.split(": ")[1] for v in lint_text("docs/x.md", text)]
    assert kinds == ["a work-log name ('stop N')", "'the development machine'",
                     "a first-person reading", "a commit hash in prose", "a dated measurement"]
    preset = 'source = "the seed; Bai et al. 2022"\n'
    assert lint_text("bench/presets/claims.toml", preset)[0].endswith(
        "a claim citing 'the seed': source = \"the seed; Bai et al. 2022\"")
