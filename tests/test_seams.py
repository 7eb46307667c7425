"""The seams between harness, methods and evals stay where the architecture puts them: bench/
knows no method or eval, the contracts are typed, every random stream is named, no function
outgrows a screen, and the registry resolves each name once."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from bench import registry
from bench.seeding import derive_seed

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("bench", "methods", "evals", "reports", "scenarios")


def _modules(*dirs: str):
    for d in dirs:
        for f in sorted((ROOT / d).rglob("*.py")):
            yield f, ast.parse(f.read_text())


def test_the_harness_imports_no_method_or_eval():
    bad = []
    for f, tree in _modules("bench"):
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [f"{f.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                    if n.split(".")[0] in ("methods", "evals")]
    assert not bad, "bench/ sits below methods/ and evals/: " + "; ".join(bad)


def _annotations(tree: ast.Module):
    """(owner, annotation source) of every field and every parameter and return of every
    function in the module's classes and at its top level."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    yield f"{node.name}.{ast.unparse(item.target)}", ast.unparse(item.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            for a in args:
                if a.annotation is not None:
                    yield f"{node.name}({a.arg})", ast.unparse(a.annotation)
            if node.returns is not None:
                yield f"{node.name} return", ast.unparse(node.returns)


# JSON-shaped detail (descriptions, per-example rows, extras) is the one place Any belongs
JSON_SHAPES = {"dict[str, Any]", "list[dict[str, Any]]"}


def test_the_contracts_use_protocols_not_any():
    loose = [f"{path.name} {owner}: {ann}" for path in sorted((ROOT / "bench" / "api").glob("*.py"))
             for owner, ann in _annotations(ast.parse(path.read_text()))
             if "Any" in ann and ann not in JSON_SHAPES]
    assert not loose, "typed seams: " + "; ".join(loose)


def test_no_function_is_longer_than_80_lines():
    long = [f"{f.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for f, tree in _modules(*SHIPPED) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > 80]
    assert not long, "split these: " + "; ".join(long)


def test_seed_offsets_live_only_in_derive_seed():
    """An integer added to or multiplied with a seed anywhere else is a stream without a name."""
    bad = []
    for f, tree in _modules(*SHIPPED):
        if f.name == "seeding.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
                text = ast.unparse(node)
                sides = (node.left, node.right)
                if "seed" in text and any(isinstance(s, ast.Constant) and
                                          isinstance(s.value, int) for s in sides):
                    bad.append(f"{f.relative_to(ROOT)}:{node.lineno} {text}")
    assert not bad, "use bench.seeding.derive_seed: " + "; ".join(bad)


def _hashed(seed: int, purpose: str, index: int = 0) -> int:
    """The rule, written out apart from bench.seeding."""
    digest = hashlib.blake2b(f"{seed}/{purpose}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**32


def test_derive_seed_known_answers():
    """Every purpose, whatever its age, is the BLAKE2b hash of root, purpose and index."""
    for seed, purpose, index in [(3, "labels.round", 2), (5, "ppo.batch", 7), (0, "eval", 0),
                                 (2, "win_rate.reference", 0), (0, "raft.samples", 1)]:
        assert derive_seed(seed, purpose, index) == _hashed(seed, purpose, index)
    assert derive_seed(3, "labels.round", 2) == 1867279178  # pinned: the rule never drifts
    assert derive_seed(5, "ppo.batch", 7) == 830015249
    a, b = derive_seed(0, "raft.samples"), derive_seed(0, "raft.samples", 1)
    assert a == derive_seed(0, "raft.samples") and a != b and 0 <= a < 2**32


# functions that hand a purpose they were given on to derive_seed: (name, argument position)
PURPOSE_FORWARDERS = {"seeded_draw": 3, "Drawn": 1}


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def shipped_purposes() -> set[str]:
    """Every purpose the shipped code derives a stream for: derive_seed's string purposes, and
    the strings a forwarder passes on to it."""
    found = set()
    for _, tree in _modules("bench", "methods", "evals", "scenarios"):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            pos = 1 if _name(node) == "derive_seed" else PURPOSE_FORWARDERS.get(_name(node))
            if pos is not None and len(node.args) > pos and \
                    isinstance(node.args[pos], ast.Constant):
                found.add(node.args[pos].value)
    return found


def test_every_purpose_is_collected():
    """A purpose derive_seed gets as a variable comes through a known forwarder, so the scan
    above sees every stream the shipped code draws."""
    loose = [f"{f.relative_to(ROOT)}:{n.lineno}"
             for f, tree in _modules("bench", "methods", "evals", "scenarios")
             for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n) == "derive_seed"
             and not isinstance(n.args[1], ast.Constant)]
    assert loose == ["scenarios/userdata.py:61"], loose  # seeded_draw's ``stream``
    assert {"labels.round", "ppo.round", "eval", "world.corpus", "preferences.draw",
            "trl.init", "trl.data"} <= shipped_purposes()


def test_no_two_streams_collide():
    """No two (purpose, index) streams draw alike: for one root (0..50), and across roots
    (0..20), e.g. one cell's "eval" never equals another's "world.corpus"."""
    purposes = sorted(shipped_purposes())
    for seed in range(51):
        drawn = [derive_seed(seed, p, i) for p in purposes for i in range(4)]
        assert len(set(drawn)) == len(drawn), seed
    grid = [derive_seed(seed, p, i) for seed in range(21) for p in purposes for i in range(4)]
    assert len(set(grid)) == len(grid)


def test_the_registry_resolves_each_name_once(monkeypatch):
    from tests.plugins import FakeEP, patch_entry_points
    first = registry.resolve("methods", "dpo")
    assert registry.resolve("methods", "dpo") is first  # cached: one object per name
    patch_entry_points(monkeypatch, {"alignbench.methods": [FakeEP("echo", "tests.plugins:Echo")]})
    assert "echo" in registry.names("methods")  # reset() rescans the entry points
    assert registry.resolve("methods", "dpo") is not first


@pytest.mark.parametrize("name", registry.names("methods"))
def test_every_method_returns_a_typed_result(name):
    import inspect
    train = inspect.signature(registry.resolve("methods", name).train)
    assert train.parameters["start"].annotation == "Start", name  # postponed annotations
    assert train.return_annotation == "Trained", name
    assert "artifacts" not in inspect.getsource(type(registry.resolve("methods", name)))


def test_every_error_a_user_can_fix_shares_one_base_and_the_cli_prints_one_line(monkeypatch,
                                                                                 capsys):
    """The command line turns any UserError (the harness's, the report's, a plugin's own
    subclass) into one line and exit 2; each also keeps the built-in base that names it."""
    from bench import cli, config
    from bench.api import DataError, UserError
    from bench.assets import AssetError
    from bench.budget import BudgetExceeded
    from bench.config import ConfigError
    from bench.data.sources import SourceError
    from bench.extras import MissingExtra
    from bench.models import ModelLoadError
    from bench.output import OutputLocked
    from bench.registry import DuplicatePlugin, UnknownName
    from bench.store import CacheError, OutputFolderError
    from reports.build import ReportError
    errors = (ConfigError, DataError, SourceError, AssetError, BudgetExceeded, MissingExtra,
              ModelLoadError, OutputLocked, DuplicatePlugin, UnknownName, CacheError,
              OutputFolderError, ReportError)
    assert all(issubclass(e, UserError) for e in errors)
    assert issubclass(ConfigError, ValueError) and issubclass(UnknownName, KeyError)

    class PluginSetting(UserError):
        pass

    def refuse(*args, **kwargs):
        raise PluginSetting("method.slic.margin: must be positive; set a margin above 0")

    monkeypatch.setattr(config, "load", refuse)
    assert cli.main(["run", "smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["alignbench: error: method.slic.margin: must be positive; set a margin above 0"]


def test_built_ins_are_the_entry_points_pyproject_declares():
    """alignbench registers its own methods, evals and scenarios as any plugin does; the
    installed metadata must list what pyproject.toml declares (edit it, then pip install -e .
    again), and each is provided by alignbench itself."""
    import tomllib
    from pathlib import Path
    declared = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml")
                             .read_text())["project"]["entry-points"]
    for kind in registry.KINDS:
        assert registry.builtin_names(kind) == sorted(declared[f"alignbench.{kind}"]), kind
        for name in registry.builtin_names(kind):
            assert registry.identity(kind, name) == {"distribution": registry.BUILTIN_PROVIDER}


def test_an_unknown_name_names_the_plugin_package_that_provides_it():
    with pytest.raises(registry.UnknownName) as err:
        registry.resolve("methods", "raft")
    msg = str(err.value)
    assert "install alignbench-examples: pip install ./docs/examples" in msg
    assert "did you mean" not in msg and len(msg.splitlines()) == 1


def test_no_built_in_registered_says_how_to_install(monkeypatch):
    import bench.registry as reg
    monkeypatch.setattr(reg, "entry_points", lambda group: [])
    reg.reset()
    with pytest.raises(registry.UnknownName, match="registers no methods.*pip install -e"):
        registry.resolve("methods", "dpo")
