"""Every numeric option a user can write (each registered method's config, each eval's and
scenario's options, the budget) refuses a value outside its declared range, NaN, infinity, a
wrong type and an empty value with one line and exit 2, through the command line's own entry
point, before anything is created.

Values are drawn at random (seeded, so a failure reproduces) from outside each field's own
range only. A field declared ``ge=0`` (a budget unit, a count or rate that may be 0: the
budget's units, flip and skip rates, reference_scale, many methods' warm-up and weight
options) is never drawn 0; a field with no declared lower bound (methods' beta, gamma, clip,
temperatures and the reward-centering coefficient, which their methods own) is drawn no
negative, only non-finite, wrong-typed and empty values; scenario options must declare a
range (the last test)."""

from __future__ import annotations

import math
import random
import types
import typing

import pytest
from pydantic import BaseModel

from bench import cli, registry, runner
from bench.config import Budget

RANDOM = random.Random(20240607)
WRONG_TYPE = ['"x"', '"1"', "true", "[1]"]
EMPTY = ['""', "[]", "{}"]


def _bare(t: typing.Any) -> typing.Any:
    return typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t


def _options(annotation: typing.Any) -> tuple[typing.Any, ...]:
    """The types a field takes: each member of a union (``int | None``), or the one type."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return typing.get_args(annotation) if union else (annotation,)


def _numeric(annotation: typing.Any) -> tuple[type | None, int]:
    """(int or float, the length of the tuple it is, 0 for a number) for a numeric field;
    (None, 0) for any other."""
    for a in _options(annotation):
        if a in (int, float):
            return a, 0
        inner = [_bare(x) for x in typing.get_args(a) if x is not Ellipsis] \
            if typing.get_origin(a) is tuple else []
        if inner and all(x in (int, float) for x in inner):
            return inner[0], len(inner)
    return None, 0


def _range(field) -> dict[str, float]:
    """The field's declared bounds; a tuple's from its first element's (``Annotated``)."""
    metadata = list(field.metadata)
    for a in _options(field.annotation):
        if typing.get_origin(a) is tuple and typing.get_args(a):
            first = typing.get_args(a)[0]
            metadata += list(typing.get_args(first)[1:]) \
                if typing.get_origin(first) is typing.Annotated else []
    metadata = [x for m in metadata for x in [m, *getattr(m, "metadata", [])]]
    return {k: getattr(m, k) for m in metadata for k in ("ge", "gt", "le", "lt")
            if getattr(m, k, None) is not None}


def _toml(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def outside(kind: type, bounds: dict[str, float]) -> list[str]:
    """Values just and far outside the declared range (TOML literals), of the field's type."""
    step = (lambda: RANDOM.randint(1, 1000)) if kind is int else (lambda: RANDOM.uniform(1e-3, 1e3))
    out = []
    if "ge" in bounds:
        out.append(bounds["ge"] - step())
    if "gt" in bounds:
        out += [bounds["gt"], bounds["gt"] - step()]
    if "le" in bounds:
        out.append(bounds["le"] + step())
    if "lt" in bounds:
        out += [bounds["lt"], bounds["lt"] + step()]
    return [_toml(kind(x)) for x in out]


def invalid(kind: type, length: int, bounds: dict[str, float]) -> list[str]:
    """Every kind of invalid value for one field, a random draw of each kind."""
    bad = outside(kind, bounds) + [RANDOM.choice(["nan", "inf", "-inf"]),
                                   RANDOM.choice(WRONG_TYPE), RANDOM.choice(EMPTY)]
    if kind is int:
        bad.append(repr(RANDOM.randint(1, 9) + 0.5))  # a float for a count
    if length:  # each drawn value as a tuple's first element, the rest valid-looking
        rest = ", 1" * (length - 1)
        bad = [f"[{b}{rest}]" for b in bad if b[0] not in '"[{t'] + ["[]", '"x"']
    return bad


def option_tables() -> list[tuple[str, list[str], str, type[BaseModel]]]:
    """(what, the arguments that select it, the --set prefix of its fields, its model)."""
    tables = [("budget", ["--methods", "base"], "budget", Budget)]
    for name in registry.names("methods"):
        tables.append((f"method {name}", ["--methods", name], f"method.{name}",
                       registry.resolve("methods", name).Config))
    for name in registry.names("evals"):
        tables.append((f"eval {name}", ["--methods", "base", "--set", f'evals=["{name}"]'],
                       f"eval.{name}", registry.resolve("evals", name).Options))
    for name in registry.names("scenarios"):
        tables.append((f"scenario {name}", ["--methods", "base"], f"scenario:{name}",
                       registry.resolve("scenarios", name).Options))
    return tables


def cases() -> list[tuple[str, list[str], str, str]]:
    out = []
    for what, args, prefix, model in option_tables():
        for field_name, field in model.model_fields.items():
            kind, length = _numeric(field.annotation)
            if kind is None:
                continue
            for value in invalid(kind, length, _range(field)):
                if prefix.startswith("scenario:"):
                    sets = ["--set", f'scenario={{name = "{prefix[9:]}", options = '
                            f'{{{field_name} = {value}}}}}']
                    path = f"scenario.options.{field_name}"
                elif prefix.startswith("eval."):
                    sets = ["--set", f"eval={{{prefix[5:]} = {{{field_name} = {value}}}}}"]
                    path = f"{prefix}.{field_name}"
                else:
                    sets = ["--set", f"{prefix}.{field_name}={value}"]
                    path = f"{prefix}.{field_name}"
                out.append((f"{what}.{field_name}={value}", [*args, *sets], path, value))
    return out


CASES = cases()


def test_every_registered_option_table_has_numeric_fields_drawn():
    tables = {what.split(".", 1)[0] for what, *_ in CASES}
    assert {"budget", "method ppo", "method dpo", "eval toxicity", "scenario micro"} <= tables
    assert len(CASES) > 200


@pytest.fixture
def no_run(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the matrix was accepted and the run started")
    monkeypatch.setattr(runner, "run", refuse)


@pytest.mark.parametrize("what, args, path, value", CASES, ids=[c[0] for c in CASES])
def test_an_invalid_number_is_one_line_and_exit_2(what, args, path, value, capsys, tmp_path,
                                                  no_run):
    out = tmp_path / "out"
    code = cli.main(["run", "smoke", *args, "--out", str(out)])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, (what, err)
    assert len(lines) == 1 and lines[0].startswith("alignbench: error: "), err
    assert "; " in lines[0] and "Traceback" not in err, lines[0]
    assert f"'{path}" in lines[0], (what, lines[0])  # names the field it refused
    assert not out.exists()  # refused before anything was created


def test_scenario_options_declare_every_numeric_range():
    """A scenario's count or rate without a range would reach the world build (a zero panel
    fails every cell after the whole run): each declares one, or is listed here with why."""
    unbounded: set[tuple[str, str]] = set()  # (scenario, option) that may take any number
    missing = []
    for name in registry.names("scenarios"):
        for field_name, field in registry.resolve("scenarios", name).Options.model_fields.items():
            if _numeric(field.annotation)[0] and not _range(field) \
                    and (name, field_name) not in unbounded:
                missing.append(f"{name}.{field_name}")
    assert not missing, f"scenario options without a declared range: {missing}"
