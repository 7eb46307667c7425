"""The plugin examples of docs/plugins.md are real: docs/examples is a package with one method and one
eval, installed here through its entry points (``pip install --target``, no alignbench code
involved in finding them) and run in a matrix by the real command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


def _distinct_module():
    """The example eval's module, loaded from its file: docs/examples never goes on sys.path,
    where its metadata would register the plugins for every later test of the session."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "_example_distinct", EXAMPLES / "alignbench_examples" / "distinct.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_distinct_n_known_answers():
    distinct_n = _distinct_module().distinct_n
    assert distinct_n(["a b a b"], 1) == 2 / 4
    assert distinct_n(["a b a b"], 2) == 2 / 3  # (a b) (b a) (a b)
    assert distinct_n(["a b", "a b"], 2) == 1 / 2  # pooled over texts
    assert distinct_n(["a"], 2) == 0.0


def test_the_plugin_docs_quote_the_example_files():
    """Every python block of docs/plugins.md is a verbatim excerpt of an example (the README's
    shortened block points there)."""
    section = (ROOT / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    sources = [f.read_text() for f in (EXAMPLES / "alignbench_examples").glob("*.py")]
    assert len(blocks) >= 2
    for block in blocks:
        body = "\n".join(line for line in block.splitlines() if not line.startswith("# docs/"))
        assert any(body.strip() in src for src in sources), body[:200]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    # built from a copy (setuptools writes build/ and egg-info beside the sources) as any
    # user's pip builds it (an isolated build, setuptools from the index), and installed into
    # a folder of its own: the repository and the suite's environment stay untouched
    source = tmp_path_factory.mktemp("src") / "examples"
    shutil.copytree(EXAMPLES, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert list(target.glob("alignbench_examples-*.dist-info"))
    return target


def _cli(target: Path, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]),
           "ALIGNBENCH_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env,
                          capture_output=True, text=True, timeout=1200)


def test_the_examples_install_and_run_in_a_matrix(installed, tmp_path, cache_dir):
    listed = _cli(installed, "list", cache=cache_dir)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"raft .*alignbench-examples", listed.stdout)
    assert re.search(r"distinct .*alignbench-examples", listed.stdout)
    matrix = tmp_path / "m.toml"
    matrix.write_text('''
name = "examples"
methods = ["sft", "raft"]
evals = ["distinct", "win_rate"]
seeds = [0]
[scenario.options]  # the smoke preset's tiny world
n_entities = 8
hidden = 32
ffn = 64
layers = 1
statement_rounds = 3
dialogues_per_fact = 3
judgments = 100
pretrain_epochs = 2
panel_size = 5
n_eval_prompts = 12
[budget]
demonstrations = 16
comparisons = 200
ai_comparisons = 0
rollouts = 200
[method.sft]
epochs = 1
[method.raft]
prompts = 16
n = 4
epochs = 2
lr = 1e-3
[eval.win_rate]
samples_per_prompt = 1
''')
    p = _cli(installed, "run", str(matrix), "--no-progress", "--out", str(tmp_path / "out"),
             cache=cache_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = {r["method"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl")
                                        .read_text().splitlines())}
    raft, sft = recs["raft"], recs["sft"]
    assert raft["status"] == "ok" and raft["start"] == "sft"
    spent = raft["budget"]["spent"]
    # through the ledger: the SFT stage's demonstrations, its samples, the panel's rankings,
    # and its own training steps on top of the stage's
    assert spent["demonstrations"] == 16 and spent["rollouts"] == 16 * 4
    assert spent["comparisons"] == 16 * 6
    assert spent["train_tokens"] > sft["budget"]["spent"]["train_tokens"]
    assert not list(EXAMPLES.glob("*.egg-info")) and not (EXAMPLES / "build").exists()
    for r in (raft, sft):
        assert 0 < r["metrics"]["distinct.distinct_1"] <= 1
        assert r["uncertainty"]["distinct.distinct_1"] > 0
    assert raft["evals"]["distinct"]["plots"][0]["kind"] == "bars"
    # it trained something: raft's samples differ from the SFT model it started from
    assert raft["evals"]["win_rate"]["rows"] != sft["evals"]["win_rate"]["rows"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Diversity of sampled answers" in html  # the eval's own figure, no reports/ edit
