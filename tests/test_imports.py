"""Every import of the shipped packages belongs to a declared dependency: core, or the extra
that guards it (a clean ``pip install -e .`` must run the quickstart)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from bench.extras import OPTIONAL

ROOT = Path(__file__).resolve().parent.parent
OWN = {"bench", "methods", "evals", "reports", "scenarios"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return core, extras


def imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(top-level module, line, at module level?) of every absolute import."""
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module.split(".")[0], node.lineno, id(node) in top_level))
    return out


def test_every_import_is_a_declared_dependency():
    core, extras = declared()
    dists = {m: {d.lower().replace("_", "-") for d in ds}
             for m, ds in packages_distributions().items()}
    problems = []
    for pkg in sorted(OWN):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            for mod, line, _ in imports(ast.parse(f.read_text(), str(f))):
                if mod in OWN or mod in sys.stdlib_module_names or mod == "__future__":
                    continue
                where = f"{f.relative_to(ROOT)}:{line} imports {mod}"
                if mod in OPTIONAL:
                    problems.append(f"{where}: optional, import it through bench.extras.require")
                elif not dists.get(mod, set()) & core:
                    problems.append(f"{where}: distribution {sorted(dists.get(mod, []))} is not "
                                    f"a core dependency in pyproject.toml")
    assert not problems, "\n".join(problems)


def test_optional_modules_match_their_extras():
    _, extras = declared()
    for mod, (dist, extra) in OPTIONAL.items():
        assert dist in extras[extra], f"{mod}: {dist} is not in the {extra!r} extra"


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    import pytest

    from bench.extras import MissingExtra, require
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    with pytest.raises(MissingExtra) as err:
        require("peft", "lora = true")
    msg = str(err.value)
    assert "\n" not in msg and "lora = true" in msg and 'pip install -e ".[real]"' in msg


def test_merging_needs_no_peft_when_nothing_has_adapters(monkeypatch):
    """The quickstart's stages call merged() on plain models: that must not import peft."""
    import torch

    from methods.common import merged
    monkeypatch.delitem(sys.modules, "peft", raising=False)
    model = torch.nn.Linear(2, 2)
    assert merged(model) is model and "peft" not in sys.modules


def test_every_test_import_is_declared_for_the_test_command():
    """The test command installs core + dev + real + ray: every import of tests/ and benchmarks/
    belongs to one of them (benchmarks/anchors/ runs the reference tools in side venvs that
    its docstrings describe, so it is left out)."""
    core, extras = declared()
    allowed = core | extras["dev"] | extras["real"] | extras["ray"]
    dists = {m: {d.lower().replace("_", "-") for d in ds}
             for m, ds in packages_distributions().items()}
    problems = []
    for folder in ("tests", "benchmarks"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            if "anchors" in f.parts:
                continue
            for mod, line, _ in imports(ast.parse(f.read_text(), str(f))):
                if mod in OWN | {"tests", "benchmarks"} or mod in sys.stdlib_module_names \
                        or mod == "__future__":
                    continue
                if not dists.get(mod, set()) & allowed:
                    problems.append(f"{f.relative_to(ROOT)}:{line} imports {mod} "
                                    f"({sorted(dists.get(mod, []))}), not declared")
    assert not problems, "\n".join(problems)
