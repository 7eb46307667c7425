"""Typed matrix config: one TOML file in, validated models out.

Unknown keys and wrong types fail with the key's dotted path and what was expected; method and
eval names resolve only through the registry; each method's table is validated against that
method's own ``Config``.
"""

from __future__ import annotations

import copy
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bench import registry, tracking
from bench.api import Eval, EvalOptions, Method, MethodConfig, Scenario
from bench.budget import UNITS
from bench.errors import UserError
# the matrix file's models, read by their callers as bench.config's
from bench.matrix import (SEEDS, Budget, Claim, Matrix, MethodResources,  # noqa: F401
                          Resources, ScenarioCfg, drop_none, executor_device, presets,
                          sweep_points)
from bench import claims
from bench.claims import claims_problem, row_label, row_method  # noqa: F401
from bench.record import COST_FIELDS  # noqa: F401 - what a claim's cost.FIELD may name


class ConfigError(UserError, ValueError):
    """A config problem, stated in one line that names the key and the fix."""


def _fmt_pydantic(err: ValidationError, prefix: str = "") -> str:
    e = err.errors()[0]
    path = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(e["loc"]))
    if e["type"] == "extra_forbidden":
        return f"unknown key '{path}'; remove it or check its spelling"
    if e["type"] == "value_error":  # a model validator's own sentence names the fix
        return f"'{path}': {e['msg'].removeprefix('Value error, ')}"
    if e["type"] == "finite_number":
        return (f"'{path}': must be a finite number (got {e.get('input')!r}); give a finite "
                "number in the option's range")
    inp = e.get("input")
    if isinstance(inp, str) and e["type"] in ("int_type", "float_type", "bool_type"):
        return f"'{path}': {e['msg']} (got the string {inp!r}); write it without quotes"
    return f"'{path}': {e['msg']} (got {inp!r}); fix the value in the matrix file"


def parse(data: dict[str, Any], *, source: str = "<matrix>") -> Matrix:
    """Validate a matrix dict. Every failure is a ConfigError with a one-line message."""
    try:
        m = Matrix.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_fmt_pydantic(err)}") from None
    unpriced = [u for u in m.prices if u not in UNITS]
    if unpriced:
        raise ConfigError(f"{source}: prices.{unpriced[0]} is no budget unit; price one of "
                          f"{', '.join(UNITS)}")
    problem = tracking.check(m.report_to, m.executor)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    try:
        for name in m.methods:
            registry.resolve("methods", name)
        for name in m.evals:
            registry.resolve("evals", name)
        registry.resolve("scenarios", m.scenario.name)
    except registry.UnknownName as err:
        raise ConfigError(f"{source}: {err}") from None
    stages = stage_names(m.methods, source)
    for name in m.method:
        if name not in m.methods and name not in stages:  # a stage's table configures it
            raise ConfigError(f"{source}: table 'method.{name}' configures a method that is not "
                              f"in 'methods' ({m.methods}) nor a stage they start from; add it "
                              f"there or remove the table")
    for name in m.resources.method:
        if name not in registry.names("methods"):  # a known method not in this matrix is fine
            raise ConfigError(f"{source}: table 'resources.method.{name}' names no registered "
                              f"method; known: {', '.join(registry.names('methods'))}")
    for name in m.eval:
        if name not in m.evals:
            raise ConfigError(f"{source}: table 'eval.{name}' configures an eval that is not in "
                              f"'evals' ({m.evals}); add it there or remove the table")
    for name in set(m.methods) | set(m.method) | stages:  # each against its own Config
        method_config(m, name, source=source)
    _check_stages(m, stages, source)
    for name in m.evals:
        try:
            registry.resolve("evals", name).Options.model_validate(m.eval.get(name, {}))
        except ValidationError as err:
            raise ConfigError(f"{source}: {_fmt_pydantic(err, f'eval.{name}')}") from None
    problem = claims_problem(m)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    try:
        scenario_options(registry.resolve("scenarios", m.scenario.name), m.scenario.options)
    except TypeError:  # only TOML dates and times get here
        raise ConfigError(f"{source}: 'scenario.options' holds a TOML date or time, which no "
                          "option takes; quote it as a string") from None
    except ValidationError as err:
        raise ConfigError(f"{source}: {_fmt_pydantic(err, 'scenario.options')}") from None
    _check_sweep(m, stages, source)
    return m


def scenario_options(scenario: Scenario, options: dict[str, Any]) -> BaseModel:
    """A scenario's validated options, read as JSON: as strict as the rest (finite floats, no
    coercion), but a TOML or JSON array fills a tuple option. The one way every caller (the
    matrix, its plan, OUT/matrix.toml, ``alignbench eval`` of a saved policy) reads them."""
    return scenario.Options.model_validate_json(json.dumps(options, allow_nan=True),
                                                strict=True)


def _check_sweep(m: Matrix, stages: set[str], source: str) -> None:
    """Every swept key names a budget unit or a method's option (or lists a method's
    variants), never a shared stage, and every value validates where it lands."""
    for key, values in m.sweep.items():
        head, _, opt = key.partition(".")
        if not values:
            raise ConfigError(f"{source}: sweep '{key}' has no values; give at least one")
        if head == "budget":
            if opt not in UNITS:
                raise ConfigError(f"{source}: sweep '{key}': unknown budget unit; use one of "
                                  f"{list(UNITS)}")
            for v in values:
                try:
                    Budget.model_validate({opt: v})
                except ValidationError as err:
                    raise ConfigError(f"{source}: sweep {_fmt_pydantic(err, 'budget')}") \
                        from None
        elif head in stages:
            # the stage is trained once and every method that starts from it shares it,
            # configured by [method.NAME]; a sweep would label rows with settings no cell used
            raise ConfigError(f"{source}: sweep '{key}' would vary the shared {head.upper()} stage, "
                              f"which "
                              f"other methods start from and [method.{head}] configures once; "
                              f"run one matrix per value instead")
        elif head in m.methods and not opt:  # variants: a list of option tables
            for v in values:
                if not isinstance(v, dict):
                    raise ConfigError(f"{source}: sweep '{key}' lists variants of {head}, each "
                                      f"a table of its options (e.g. {{ rounds = 3 }}); got "
                                      f"{v!r}, write it as '{key}.OPTION' = [...] or a table")
                clash = [f"{head}.{k}" for k in v if f"{head}.{k}" in m.sweep]
                if clash:
                    raise ConfigError(f"{source}: sweep '{key}' and sweep '{clash[0]}' both set "
                                      "that option; keep one")
            resolved = [json.dumps(method_config(m, head, source=source, override=v)
                                   .model_dump(mode="json"), sort_keys=True) for v in values]
            if len(set(resolved)) < len(values):  # {} and the configured value spelled out
                raise ConfigError(f"{source}: sweep '{key}' lists the same variant twice (as "
                                  "configured, two tables give one config); remove the repeat")
        elif head in m.methods:
            for v in values:
                method_config(m, head, source=source, override={opt: v})
        else:
            raise ConfigError(f"{source}: sweep '{key}' must start with 'budget.' or a method in "
                              f"'methods' ({m.methods}); fix the sweep's key")


def stage_names(methods: list[str], source: str = "<matrix>") -> set[str]:
    """The shared stages of a matrix: every listed method that is one (``shared_stage``) and
    every stage a listed method ``starts_from``. A stage starts from the base model."""
    out = set()
    for name in methods:
        method = registry.resolve("methods", name)
        start = getattr(method, "starts_from", None)
        if getattr(method, "shared_stage", False):
            if start != "base":
                raise ConfigError(f"{source}: method {name!r} is a shared stage but starts from "
                                  f"{start!r}; a shared stage starts from \"base\"")
            out.add(name)
        if not isinstance(start, str):
            raise ConfigError(f"{source}: method {name!r} declares no starts_from; its class "
                              f"needs starts_from = \"base\" or the name of a shared stage "
                              f"(\"sft\"), see bench/api/training.py: Method")
        if start != "base":
            try:
                stage = registry.resolve("methods", start)
            except registry.UnknownName as err:
                raise ConfigError(f"{source}: method {name!r} starts_from: {err}") from None
            if not getattr(stage, "shared_stage", False) or stage.starts_from != "base":
                raise ConfigError(f"{source}: method {name!r} starts from {start!r}, which is "
                                  f"not a shared stage that starts from the base model; fix its "
                                  f"starts_from")
            out.add(start)
    return out


def _check_stages(m: Matrix, stages: set[str], source: str) -> None:
    """A shared stage is cached per seed and the budget units its ``planned_spend`` names
    (SFT: demonstrations), and trains under those caps alone: one that names none would be
    keyed and capped by nothing."""
    for name in sorted(stages):
        try:
            spend = method_config(m, name, source=source).planned_spend(m.budget.model_dump())
        except ValueError:  # an uncapped unit: the budget preflight names it
            continue
        if not spend:
            raise ConfigError(f"{source}: shared stage {name!r} declares no planned_spend; a "
                              f"stage must name the budget units it spends (they key its cache "
                              f"and cap it)")


@dataclass(frozen=True)
class Plan:
    """A validated matrix with every name resolved once: what the runner executes. The
    :class:`Matrix` stays the plain value written to OUT/matrix.toml."""

    matrix: Matrix
    methods: dict[str, Method]  # every listed method and every stage they start from
    configs: dict[str, MethodConfig]  # each one's config from its [method.NAME] table
    stage_names: frozenset[str]
    evals: dict[str, tuple[Eval, EvalOptions]]  # in the matrix's order, options validated
    scenario: Scenario
    scenario_options: BaseModel

    def chain(self, name: str) -> list[str]:
        """The shared stages a method's cells start from ([] for base and for the stages)."""
        start = self.methods[name].starts_from
        return [] if start == "base" or name in self.stage_names else [start]


def plan(m: Matrix) -> Plan:
    """Resolve a parsed matrix's names once (``parse`` has validated every one of them)."""
    stages = stage_names(m.methods)
    names = list(m.methods) + sorted(stages - set(m.methods))
    scenario = registry.resolve("scenarios", m.scenario.name)
    return Plan(
        matrix=m, methods={n: registry.resolve("methods", n) for n in names},
        configs={n: method_config(m, n) for n in names}, stage_names=frozenset(stages),
        evals={n: (ev, ev.Options.model_validate(m.eval.get(n, {})))
               for n in m.evals for ev in [registry.resolve("evals", n)]},
        scenario=scenario, scenario_options=scenario_options(scenario, m.scenario.options))


def _merged(table: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``table`` with ``override`` applied; a dotted key ("ppo.steps", a sweep of a nested
    option) sets that key inside the nested table instead of replacing the table."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in table.items()}
    for key, value in override.items():
        head, _, rest = key.partition(".")
        if rest:
            out[head] = _merged(out.get(head) if isinstance(out.get(head), dict) else {},
                                {rest: value})
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def method_config(m: Matrix, name: str, *, source: str = "<matrix>",
                  override: dict[str, Any] | None = None) -> MethodConfig:
    cls = registry.resolve("methods", name).Config
    # the scenario's profile (real models' learning rates, lengths, LoRA) where the matrix is
    # silent, the matrix's table over it, a sweep's override over both
    profile = getattr(registry.resolve("scenarios", m.scenario.name), "profile", None)
    data = _merged(_merged(cls.profiles.get(profile, {}) if profile else {},
                           m.method.get(name, {})), override or {})
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_fmt_pydantic(err, f'method.{name}')}") from None


def load(path_or_preset: str | Path, flags: Flags | None = None) -> Matrix:
    """A TOML file path, or the name of a built-in preset (see ``presets()``), with the command
    line's ``flags`` applied to what it sets before the one validation."""
    p = Path(path_or_preset)
    if p.suffix != ".toml" and not p.exists():
        if str(path_or_preset) not in presets():
            raise ConfigError(f"no matrix file or preset named {str(path_or_preset)!r}; presets: "
                              f"{', '.join(presets())}, or give a path to a .toml file")
        text = resources.files("bench.presets").joinpath(f"{path_or_preset}.toml").read_text()
        source = f"preset {path_or_preset}"
    else:
        text, source = _read_matrix_file(p), str(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err}); fix the syntax") from None
    if not data:  # an empty file would silently run the whole default matrix
        raise ConfigError(f"{source}: the matrix file sets nothing; give at least 'methods' (the "
                          f"names 'alignbench list' shows) or use a preset: "
                          f"{', '.join(presets())}")
    if flags is not None and flags.given():
        data, source = flags.applied(data), f"{source} with the command line's settings"
    return parse(data, source=source)


def _read_matrix_file(p: Path) -> str:
    if p.is_dir():
        raise ConfigError(f"matrix path {str(p)!r} is a directory; give a .toml file (or a "
                          f"preset: {', '.join(presets())})")
    if not p.is_file():
        raise ConfigError(f"matrix file {str(p)!r} does not exist; check the path")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                          f"{err.start}); save the file as UTF-8, as TOML requires") from None
    except OSError as err:
        raise ConfigError(f"cannot read matrix file {str(p)!r} ({err.strerror}); check its "
                          f"permissions") from None


@dataclass(frozen=True)
class Flags:
    """The command line's settings over a matrix (``--methods``, ``--evals``, ``--seeds``,
    ``--set KEY=VALUE``, ``--no-progress``, ``--executor``, ``--address``; None: not given),
    applied to the matrix's own keys and then validated with them, exactly as a file is.
    ``--methods`` drops the tables and sweeps of the methods it leaves out (and of stages no
    kept method starts from), ``--evals`` the tables of the evals it leaves out, and each the
    claims that read them, so a preset's other tables are no error. A VALUE is read as TOML
    (``300``, ``true``, ``[0, 1]``, ``"x"``), else as a string."""

    methods: list[str] | None = None
    evals: list[str] | None = None
    seeds: list[int] | None = None
    sets: tuple[str, ...] = ()
    progress: bool | None = None
    executor: str | None = None
    ray_address: str | None = None

    def given(self) -> bool:
        return bool(self.sets) or any(v is not None for v in (
            self.methods, self.evals, self.seeds, self.progress, self.executor,
            self.ray_address))

    def applied(self, data: dict[str, Any]) -> dict[str, Any]:
        """The matrix's keys ``data`` (what it sets, nothing more) with these settings."""
        if self.ray_address is not None and (self.executor or data.get("executor")) != "ray":
            raise ConfigError("--address joins a Ray cluster; add --executor ray (or set "
                              "executor = \"ray\" in the matrix)")
        d = copy.deepcopy(data)
        if self.methods is not None:
            _keep_methods(d, self.methods)
        if self.evals is not None:
            _keep_evals(d, self.evals)
        given = {"seeds": self.seeds, "progress": self.progress, "executor": self.executor,
                 "ray_address": self.ray_address}
        d.update({k: v for k, v in given.items() if v is not None})
        for item in self.sets:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set {item!r}: give KEY=VALUE, e.g. "
                                  f"--set budget.comparisons=300")
            _set(d, key.strip(), _toml_value(raw.strip()), item)
        return d


def overridden(m: Matrix, **flags: Any) -> Matrix:
    """``m`` with the command line's settings (:class:`Flags`' fields) applied, validated
    again; what the matrix left unset stays unset (under Ray an unset device means "cpu")."""
    return parse(Flags(**flags).applied(m.model_dump(mode="json", exclude_unset=True)),
                 source="the command line")


def _keep_methods(d: dict[str, Any], methods: list[str]) -> None:
    """``--methods``: the matrix dict ``d`` with only these methods, their stages' tables, and
    the claims that read only them (anything of the wrong shape is left for parse to name)."""
    d["methods"] = methods
    try:
        keep = set(methods) | stage_names(methods)
    except (registry.UnknownName, ConfigError):  # parse names the unknown method below
        keep = set(methods)

    def kept(table: Any, own: Any) -> Any:
        return {k: v for k, v in table.items() if own(k)} if isinstance(table, dict) else table

    d["method"] = kept(d.get("method", {}), lambda k: k in keep)
    if isinstance(d.get("resources"), dict):
        d["resources"]["method"] = kept(d["resources"].get("method", {}), lambda k: k in keep)
    d["sweep"] = kept(d.get("sweep", {}),
                      lambda k: k.startswith("budget.") or k.split(".", 1)[0] in keep)
    if isinstance(d.get("claims"), list):
        d["claims"] = [c for c in d["claims"] if not isinstance(c, dict)
                       or all(row_method(str(row)) in methods
                              for row in (c.get("method"), c.get("against")) if row)]


def _keep_evals(d: dict[str, Any], evals: list[str]) -> None:
    """``--evals``: the matrix dict ``d`` with only these evals, their option tables, and the
    claims whose metric is a kept eval's or a cost; a kept claim shown in a dropped eval's
    figure keeps its finding and loses the link."""
    d["evals"] = evals
    if isinstance(d.get("eval"), dict):
        d["eval"] = {k: v for k, v in d["eval"].items() if k in evals}
    if not isinstance(d.get("claims"), list):
        return
    d["claims"] = [c for c in d["claims"] if not isinstance(c, dict) or str(
        c.get("metric", "")).split(".", 1)[0] in (*evals, "cost")]
    try:
        shown = claims.eval_figures(evals)
    except registry.UnknownName:  # parse names the unknown eval below
        return
    for c in d["claims"]:
        if isinstance(c, dict) and c.get("figure") and c["figure"] not in shown:
            c["figure"] = ""


def _toml_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: the string it spells


def _set(d: dict[str, Any], key: str, value: Any, item: str) -> None:
    """Set a dotted ``key`` in the matrix dict; under ``sweep`` the rest of the key is one
    name ("sweep.ppo.kl_coef" sets the sweep "ppo.kl_coef")."""
    parts = key.split(".")
    if parts[0] == "sweep" and len(parts) > 1:
        d.setdefault("sweep", {})[".".join(parts[1:])] = value
        return
    node = d
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: '{'.'.join(parts[:i + 1])}' is a value, not a "
                              f"table; set it directly")
    node[parts[-1]] = value


def resolved(m: Matrix) -> dict[str, Any]:
    """The fully resolved matrix (defaults filled in), as written to OUT/matrix.toml."""
    d = m.model_dump(mode="json")
    names = list(m.methods) + sorted(stage_names(m.methods) - set(m.methods))
    d["method"] = {n: method_config(m, n).model_dump(mode="json") for n in names}
    d["scenario"]["options"] = scenario_options(registry.resolve(
        "scenarios", m.scenario.name), m.scenario.options).model_dump(mode="json")
    return drop_none(d)
