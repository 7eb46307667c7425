"""The one indirection in alignbench: names -> methods, evals and scenarios.

Every name, built-in or not, is an entry point: alignbench's own methods, evals and scenarios
are registered in its ``pyproject.toml`` exactly as a plugin registers its own, under the groups
``alignbench.methods``, ``alignbench.evals`` and ``alignbench.scenarios``, and the harness names
none of them. Importing a name costs nothing until it is used. Names come from configs, so a
name is only ever looked up in these tables: a config can never make us import an arbitrary
module path.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path
from typing import Any

from bench.errors import UserError

KINDS = ("methods", "evals", "scenarios")
DISTRIBUTION = "alignbench"  # this project's distribution: its entry points are the built-ins
BUILTIN_PROVIDER = "alignbench (built-in)"

# names that installed plugin packages provide, so that a matrix naming one before its package
# is installed learns what to install; only packages that exist and register these names
KNOWN_PLUGINS: dict[str, dict[str, str]] = {
    "methods": {"raft": "alignbench-examples: pip install ./docs/examples"},
    "evals": {"distinct": "alignbench-examples: pip install ./docs/examples"},
}


class UnknownName(UserError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class DuplicatePlugin(UserError, RuntimeError):
    pass


def _provider(ep: Any) -> str:
    """Who registers an entry point: alignbench itself, or the distribution that holds it."""
    dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
    return BUILTIN_PROVIDER if dist == DISTRIBUTION else dist


@cache
def _table(kind: str) -> dict[str, tuple[str, str]]:
    """name -> (target "module:attr", who provides it), read once per process (entry points
    are scanned on first use; ``reset()`` rescans). Entry points come in no guaranteed order,
    so the built-ins are read first and the rest by distribution and name: a duplicate always
    blames the plugin, and nothing depends on the order the metadata lists them in (every
    listing sorts by name). Duplicates are a hard error."""
    eps = sorted(entry_points(group=f"alignbench.{kind}"),
                 key=lambda ep: (_provider(ep) != BUILTIN_PROVIDER, _provider(ep), ep.name))
    table: dict[str, tuple[str, str]] = {}
    for ep in eps:
        who = _provider(ep)
        if who != BUILTIN_PROVIDER:
            _versions[who] = getattr(ep.dist, "version", None)
        if ep.name in table:
            raise DuplicatePlugin(
                f"two plugins register the {kind[:-1]} {ep.name!r}: {table[ep.name][1]} and "
                f"{who}; uninstall one or rename its entry point"
            )
        table[ep.name] = (ep.value, who)
    return table


def reset() -> None:
    """Forget the tables and resolved plugins (tests that install plugins call this)."""
    _table.cache_clear()
    source_hash.cache_clear()
    _resolved.clear()
    _versions.clear()


_resolved: dict[tuple[str, str], Any] = {}


def names(kind: str) -> list[str]:
    """Every registered name of ``kind`` ("methods", "evals", "scenarios"), sorted."""
    return sorted(_table(kind))


def builtin_names(kind: str) -> list[str]:
    """The names alignbench itself registers, sorted (what the reference page documents, the
    same on every machine whatever else is installed)."""
    return sorted(n for n, (_, who) in _table(kind).items() if who == BUILTIN_PROVIDER)


def _unknown(kind: str, name: str, table: dict[str, tuple[str, str]]) -> UnknownName:
    """One line for a name nobody registers: the package to install where the name is a known
    plugin's, else what it might have meant; and what exists."""
    hint = ""
    if "." in name or ":" in name or "/" in name:
        hint = " (names are looked up in the registry, never imported as module paths;" \
               " register a plugin through an entry point instead)"
    close = difflib.get_close_matches(name, list(table), n=1)
    did = f"; did you mean {close[0]!r}?" if close else ";"
    if name in KNOWN_PLUGINS.get(kind, {}):
        did = f" (a plugin: install {KNOWN_PLUGINS[kind][name]});"
    return UnknownName(f"unknown {kind[:-1]} {name!r}{hint}{did} available: "
                       f"{', '.join(sorted(table)) or 'none'}{_uninstalled(kind, table)}")


def _uninstalled(kind: str, table: dict[str, tuple[str, str]]) -> str:
    """Why no built-in is registered, when none is: alignbench's metadata is missing, or an
    old copy found first (a stale ``alignbench.egg-info`` in the working folder) hides it."""
    if any(who == BUILTIN_PROVIDER for _, who in table.values()):
        return ""
    try:
        found = getattr(distribution(DISTRIBUTION), "_path", DISTRIBUTION)
    except PackageNotFoundError:
        return "; alignbench itself is not installed: run pip install -e . in its repository"
    return (f"; the alignbench metadata found first ({found}) registers no {kind}: remove it "
            f"if it is an old build folder, else run pip install -e . again")


def resolve(kind: str, name: str) -> Any:
    """Return the plugin object (class or instance) registered as ``name``."""
    table = _table(kind)
    if name not in table:
        raise _unknown(kind, name, table)
    if (kind, name) not in _resolved:  # one object per name: resolved once, then shared
        module, _, attr = table[name][0].partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        _resolved[kind, name] = obj() if isinstance(obj, type) else obj
    return _resolved[kind, name]


def provider(kind: str, name: str) -> str:
    return _table(kind)[name][1]


_versions: dict[str, str | None] = {}


def identity(kind: str, name: str) -> dict[str, Any]:
    """What a cell key must know of a plugin: its distribution, that distribution's version,
    and a hash of its source. The hash matters for a plugin installed from a local or editable
    source, whose code changes without a new version; built-ins are covered by
    ``store.code_version`` instead."""
    target, dist = _table(kind)[name]
    if dist == BUILTIN_PROVIDER:  # the same record as when built-ins were listed in code
        return {"distribution": dist}
    resolve(kind, name)  # imported, so its module's file is known
    return {"distribution": dist, "version": _versions.get(dist),
            "source_sha256": source_hash(target.partition(":")[0])}


@cache
def source_hash(module: str) -> str | None:
    """sha256 over the .py files of the top-level package that holds ``module`` (or the module's
    own file when it is not in a package): a plugin's helpers move its numbers too."""
    top = sys.modules[module.split(".")[0]]
    root = Path(getattr(top, "__file__", "") or "")
    own = Path(getattr(sys.modules[module], "__file__", "") or "")
    if root.name == "__init__.py":  # a regular package: all of it
        files = sorted(root.parent.rglob("*.py"))
    elif "." in module and own.name:  # a namespace package: the module's folder (siblings too)
        files = sorted(own.parent.glob("*.py"))
    else:  # a lone top-level module: its own file (its folder is site-packages)
        files = [own] if own.name else []
    files = [f for f in files if f.is_file() and "__pycache__" not in f.parts]
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
