"""The one indirection in alignbench: names -> methods, evals and scenarios.

Built-ins are lazy ``"module:attr"`` strings (importing a name costs nothing until it is used);
external plugins register through the entry-point groups ``alignbench.methods``,
``alignbench.evals`` and ``alignbench.scenarios``. Names come from configs, so a name is only
ever looked up in these tables: a config can never make us import an arbitrary module path.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import sys
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from bench.errors import UserError

BUILTIN: dict[str, dict[str, str]] = {
    "methods": {
        "base": "methods.base:Base",
        "large_base": "methods.large_base:LargeBase",
        "sft": "methods.sft:SFT",
        "ppo": "methods.ppo:PPO",
        "dpo": "methods.dpo:DPO",
        "rlaif": "methods.rlaif:RLAIF",
        "rloo": "methods.rloo:RLOO",
        "grpo": "methods.grpo:GRPO",
        "kto": "methods.kto:KTO",
        "simpo": "methods.simpo:SimPO",
        "orpo": "methods.orpo:ORPO",
        "best_of_n": "methods.best_of_n:BestOfN",
        "rsft": "methods.rsft:RSFT",
    },
    "evals": {
        "truthfulqa": "evals.truthfulqa:TruthfulQA",
        "toxicity": "evals.toxicity:Toxicity",
        "win_rate": "evals.win_rate:WinRate",
        "labeler_agreement": "evals.labeler_agreement:LabelerAgreement",
        "kl": "evals.kl:KL",
    },
    "scenarios": {
        "micro": "bench.scenarios.micro:Micro",
        "real": "bench.scenarios.real:Real",
    },
}


BUILTIN_PROVIDER = "alignbench (built-in)"


class UnknownName(UserError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class DuplicatePlugin(UserError, RuntimeError):
    pass


@cache
def _table(kind: str) -> dict[str, tuple[str, str]]:
    """name -> (target "module:attr", who provides it), read once per process (entry points
    are scanned on first use; ``reset()`` rescans). Duplicates are a hard error."""
    table = {name: (target, BUILTIN_PROVIDER) for name, target in BUILTIN[kind].items()}
    for ep in entry_points(group=f"alignbench.{kind}"):
        dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
        _versions[dist] = getattr(ep.dist, "version", None)
        if ep.name in table:
            raise DuplicatePlugin(
                f"two plugins register the {kind[:-1]} {ep.name!r}: {table[ep.name][1]} and "
                f"{dist}; uninstall one or rename its entry point"
            )
        table[ep.name] = (ep.value, dist)
    return table


def reset() -> None:
    """Forget the tables and resolved plugins (tests that install plugins call this)."""
    _table.cache_clear()
    source_hash.cache_clear()
    _resolved.clear()
    _versions.clear()


_resolved: dict[tuple[str, str], Any] = {}


def names(kind: str) -> list[str]:
    return sorted(_table(kind))


def resolve(kind: str, name: str) -> Any:
    """Return the plugin object (class or instance) registered as ``name``."""
    table = _table(kind)
    if name not in table:
        hint = ""
        if "." in name or ":" in name or "/" in name:
            hint = " (names are looked up in the registry, never imported as module paths;" \
                   " register a plugin through an entry point instead)"
        close = difflib.get_close_matches(name, list(table), n=1)
        did = f"; did you mean {close[0]!r}?" if close else ";"
        raise UnknownName(
            f"unknown {kind[:-1]} {name!r}{hint}{did} available: {', '.join(sorted(table))}"
        )
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
    if dist == BUILTIN_PROVIDER:
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
