"""The project's layout holds: no import cycle anywhere, the harness (bench/) sits below the
methods, evals, scenarios and reports and names none of the built-ins, and every function and
module stays readable (at most 60 and 450 lines). Static: read with ast, nothing imported."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import registry

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods", "evals", "reports", "scenarios")
MAX_FUNCTION, MAX_MODULE = 60, 450
# the composition root: the command line builds the report after a run
ALLOWED_UPWARD = {("bench/cli.py", "reports.build")}
# "base" is also the contracts' own word for the base model (Method.starts_from = "base",
# EvalContext.references["base"]), not only the name of the method that serves it
CONTRACT_WORDS = {"base"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (the package itself for a name it defines)
    where: str  # file:line


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files(*packages: str) -> list[Path]:
    return [f for p in packages for f in sorted((ROOT / p).rglob("*.py"))
            if "__pycache__" not in f.parts]


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks: never run, no edge."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The project modules an import statement loads (a name that is a submodule counts as
    that submodule; any other name as the module that defines it)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: from the importing module's package upward
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def imports(files: list[Path]) -> list[Import]:
    """Every import of a project module, at module level or inside a function, from
    ``files``, TYPE_CHECKING blocks left out."""
    known = {module_name(f) for f in project_files(*PACKAGES)}
    out = []
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        skip, module = _type_checking_only(tree), module_name(f)
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, module, f.name == "__init__.py", known):
                if target.split(".")[0] in PACKAGES:
                    out.append(Import(module, target, f"{f.relative_to(ROOT)}:{node.lineno}"))
    return out


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.module != e.target:
            graph.setdefault(e.module, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the project's module count
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere():
    """A module that imports another which imports it back (directly or around a longer
    circle, at module level or inside a function) fails, naming the circle's imports."""
    edges = imports(project_files(*PACKAGES))
    found = cycles(edges)
    detail = ["{" + ", ".join(c) + "}: " + "; ".join(sorted({
        f"{e.where} imports {e.target}" for e in edges
        if e.module in c and e.target in c and e.module != e.target})) for c in found]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_the_cycle_check_finds_a_circle_through_a_function(tmp_path):
    a = Import("bench.a", "bench.b", "a:1")
    b = Import("bench.b", "bench.c", "b:1")
    c = Import("bench.c", "bench.a", "c:9")
    assert cycles([a, b, c]) == [["bench.a", "bench.b", "bench.c"]]
    assert cycles([a, b]) == []
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import bench.x\n"
                   "def f():\n    from bench import registry\n")
    tree = ast.parse(src.read_text())
    skip = _type_checking_only(tree)
    loaded = [ast.unparse(n) for n in ast.walk(tree)
              if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]
    assert loaded == ["from typing import TYPE_CHECKING", "from bench import registry"]


def test_the_harness_imports_nothing_above_it():
    """bench/ sits below methods/, evals/, scenarios/ and reports/: only the command line, the
    composition root, imports the report builder."""
    bad = [f"{e.where} imports {e.target}" for e in imports(project_files("bench"))
           if e.target.split(".")[0] != "bench"
           and (e.where.split(":")[0], e.target) not in ALLOWED_UPWARD]
    assert not bad, "bench/ imports from above it: " + "; ".join(bad)


def builtin_names() -> set[str]:
    return {n for kind in ("methods", "evals") for n in registry.builtin_names(kind)}


def named_builtins(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line, literal) of each string literal that is a built-in's name or starts with one
    followed by a dot (a metric or option path such as "win_rate.vs_sft")."""
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and any(node.value == n or node.value.startswith(n + ".") for n in names)]


def test_the_harness_names_no_built_in_method_or_eval():
    """Built-ins are found through their entry points, like any plugin: a string literal in
    bench/ that equals a registered built-in method or eval (or starts with "NAME.") fails."""
    names = builtin_names() - CONTRACT_WORDS
    assert {"dpo", "sft", "win_rate", "kl"} <= names
    bad = [f"{f.relative_to(ROOT)}:{line} {value!r}" for f in project_files("bench")
           for line, value in named_builtins(ast.parse(f.read_text()), names)]
    assert not bad, "bench/ names built-ins: " + "; ".join(bad)


def test_the_name_scan_matches_whole_literals_only():
    tree = ast.parse('x = ["dpo", "win_rate.vs_sft", "dpo_0", "sft model", "a dpo"]')
    assert named_builtins(tree, {"dpo", "win_rate"}) == [(1, "dpo"), (1, "win_rate.vs_sft")]


def long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_outgrows_a_screen(package):
    bad = [f"{f.relative_to(ROOT)}: {name} has {n} lines" for f in project_files(package)
           for name, n in long_functions(ast.parse(f.read_text()))]
    assert not bad, f"functions over {MAX_FUNCTION} lines: " + "; ".join(bad)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_outgrows_its_job(package):
    bad = [f"{f.relative_to(ROOT)}: {n} lines" for f in project_files(package)
           if (n := len(f.read_text().splitlines())) > MAX_MODULE]
    assert not bad, f"modules over {MAX_MODULE} lines: " + "; ".join(bad)


def test_the_size_checks_count_what_they_say():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    assert long_functions(ast.parse(f"def f():\n{body}\n")) == [("f", MAX_FUNCTION + 1)]
    assert long_functions(ast.parse("def g():\n    return 1\n")) == []
