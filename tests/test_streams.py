"""No two draws of one cell share a random stream: the purposes that used to draw alike now
differ, and no call site seeds a generator with a root seed (the cell's, the world's) or with a
seed another call site of its function also seeds one with. Static scan: read with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.seeding import derive_seed

ROOT = Path(__file__).resolve().parent.parent
CELL_CODE = ("bench", "methods", "evals", "scenarios")

# the helpers that seed a generator with what they get: name -> (position, keyword) of the seed
SEEDED = {"pick_prompts": (2, "seed"), "sample_k": (None, "seed"), "default_rng": (0, "seed"),
          "manual_seed": (0, "seed"), "generate": (None, "seed"), "generate_ids": (None, "seed")}
# a trainer's arguments (TRL's configs, or the dict that becomes one): weights and data order
TRAINER_SEEDS = ("seed", "data_seed")
# where a root seed lives: a cell's, a world's, a split's
ROOT_SEEDS = ("seed", "split_seed")


def test_the_streams_that_drew_alike_now_differ():
    for s in range(21):
        # a PPO round's label sampling and its rollouts
        assert derive_seed(s, "labels.round", 1) != derive_seed(s, "ppo.round", 1)
        # the world's facts, its model's init, the real scenario's question split
        assert len({derive_seed(s, p) for p in ("world.facts", "world.model", "real.split")}) == 3
        # the evals' global generators, and the corpus of a world whose seed is the cell's
        assert derive_seed(s, "eval") != derive_seed(s, "world.corpus")


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def seeds_given(call: ast.Call) -> list[ast.expr]:
    """The seeds ``call`` seeds a generator with (none when it seeds nothing)."""
    name = _name(call)
    kws = {k.arg: k.value for k in call.keywords}
    if name == "dict" or name.endswith(("Config", "Arguments")):
        return [kws[k] for k in TRAINER_SEEDS if k in kws]
    if name not in SEEDED:
        return []
    pos, kw = SEEDED[name]
    if kw in kws:
        return [kws[kw]]
    return [call.args[pos]] if pos is not None and len(call.args) > pos else []


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _chain(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[ast.AST]:
    out = [node]
    while out[-1] in parents:
        out.append(parents[out[-1]])
    return out[::-1]  # root first


def exclusive(a: ast.AST, b: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether no run reaches both: they sit in the two branches of one ``if``, or the first
    sits in an ``if`` whose body ends by returning (or raising) before the second."""
    if a is b:  # one call, two seeds (a trainer's weights and data order)
        return False
    ca, cb = _chain(a, parents), _chain(b, parents)
    i = next(i for i, (x, y) in enumerate(zip(ca, cb)) if x is not y)
    top, xa, xb = ca[i - 1], ca[i], cb[i]
    if isinstance(top, ast.If):
        return (xa in top.body) != (xb in top.body) and xa is not top.test and xb is not top.test
    for field in ("body", "orelse", "finalbody"):
        block = getattr(top, field, None)
        if isinstance(block, list) and xa in block and xb in block:
            first, other = sorted((xa, xb), key=block.index)
            inner = ca[i + 1] if first is xa else cb[i + 1]
            return isinstance(first, ast.If) and inner in first.body and \
                isinstance(first.body[-1], (ast.Return, ast.Raise))
    return False


def shared_streams(tree: ast.AST) -> list[str]:
    """Where a root seed seeds a generator, or one function seeds two generators alike."""
    bad = []
    parents = _parents(tree)
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        given = [(call, seed) for call in ast.walk(fn) if isinstance(call, ast.Call)
                 for seed in seeds_given(call)]
        bad += [f"{call.lineno}: {_name(call)} seeded with the root {ast.unparse(seed)}"
                for call, seed in given
                if isinstance(seed, ast.Attribute) and seed.attr in ROOT_SEEDS]
        bad += [f"{c2.lineno}: {_name(c2)} seeded as line {c1.lineno}'s {_name(c1)}"
                for n, (c1, s1) in enumerate(given) for c2, s2 in given[n + 1:]
                if ast.unparse(s1) == ast.unparse(s2) and not exclusive(c1, c2, parents)]
    return sorted(set(bad))


@pytest.mark.parametrize("src, found", [
    ("def f(ctx):\n    return pick_prompts(pool, 3, ctx.seed)\n", 1),
    ("def f(ctx):\n    return dict(seed=ctx.seed, data_seed=ctx.seed)\n", 2),  # root; alike
    ("def f(o):\n    np.random.default_rng(o.split_seed)\n", 1),
    ("def f(seed):\n    p = pick_prompts(pool, 3, seed)\n    sample_k(m, p, seed=seed)\n", 1),
    ("def f(seed):\n    torch.Generator().manual_seed(seed)\n    g.generate(x, seed=seed)\n", 1),
    # each its own stream, a root handed to what derives its own, one seed per branch
    ("def f(ctx):\n    pick_prompts(pool, 3, derive_seed(ctx.seed, 'a'))\n"
     "    sample_k(m, p, seed=derive_seed(ctx.seed, 'b'))\n"
     "    ranked_pairs(m, seed=ctx.seed)\n    make_panel(ledger, ctx.seed)\n", 0),
    ("def f(seed, t):\n    if t:\n        return g.generate(x, seed=seed)\n"
     "    return g.generate(y, seed=seed)\n", 0),
    ("def f(seed, t):\n    if t:\n        a = g.generate(x, seed=seed)\n"
     "    else:\n        a = g.generate(y, seed=seed)\n", 0),
    ("def f(seed, t):\n    if t:\n        a = g.generate(x, seed=seed)\n"
     "    return g.generate(y, seed=seed)\n", 1),  # no early return: both can run
])
def test_the_scan_finds_shared_streams_only(src, found):
    assert len(shared_streams(ast.parse(src))) == found, shared_streams(ast.parse(src))


@pytest.mark.parametrize("package", CELL_CODE)
def test_no_two_draws_of_a_cell_share_a_stream(package):
    """A generator seeded with a root seed draws what every other such generator of the cell
    draws; give it ``derive_seed(root, "<its purpose>")``, or hand the root to a function that
    derives its own streams from it (ranked_pairs, a scenario's make_panel)."""
    bad = [f"{f.relative_to(ROOT)}:{line}" for f in sorted((ROOT / package).rglob("*.py"))
           for line in shared_streams(ast.parse(f.read_text()))]
    assert not bad, "one stream per draw: " + "; ".join(bad)
