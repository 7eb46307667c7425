"""Typed matrix config: one TOML file in, validated models out.

Unknown keys and wrong types fail with the key's dotted path and what was expected; method and
eval names resolve only through the registry; each method's table is validated against that
method's own ``Config``.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from dataclasses import dataclass

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError,
                      model_validator)
from pydantic_core import PydanticCustomError

from bench import registry, tracking
from bench.api import Eval, EvalOptions, Method, MethodConfig, Scenario
from bench.budget import UNITS
from bench.errors import UserError


class ConfigError(UserError, ValueError):
    """A config problem, stated in one line that names the key and the fix."""


SEEDS = range(2**32)  # what numpy's and torch's seeding accept


def _in_seed_range(seed: int) -> int:
    if seed not in SEEDS:
        raise PydanticCustomError("seed_range", "a seed must be in [0, 2**32), i.e. 0 to "
                                  f"{SEEDS[-1]}")
    return seed


class _Strict(BaseModel):
    # strict: no coercion, so "2" or true is refused for a number and "no" for a boolean; and
    # every float finite (a cap that means "none" is None, not inf)
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Budget(_Strict):
    """The one shared budget every method in the matrix gets (None = uncapped)."""

    demonstrations: int | None = Field(256, ge=0, description="SFT examples")
    comparisons: int | None = Field(1000, ge=0, description="human pairwise labels")
    ai_comparisons: int | None = Field(1000, ge=0, description="AI-judge pairwise labels")
    ratings: int | None = Field(None, ge=0, description="human binary ratings (is this answer "
                                "acceptable?), cheaper than a comparison: kto's direct source")
    rollouts: int | None = Field(20000, ge=0, description="responses sampled in training")
    samples_per_response: int | None = Field(
        None, ge=1, description="responses sampled at inference per answer served (best-of-n's "
        "n; 1 for a policy that answers with one sample)")
    train_tokens: int | None = Field(None, ge=0, description="cap on training tokens")
    flops: float | None = Field(None, ge=0, description="cap on estimated FLOPs")


class MethodResources(_Strict):
    """One method's resources on the Ray executor; a key left out takes the matrix's."""

    num_cpus: float | None = Field(None, gt=0, description="CPUs per cell")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per cell (fractions allowed)")
    memory: float | None = Field(None, gt=0, description="GiB of RAM reserved per cell")


class Resources(_Strict):
    """What each cell asks of the Ray executor (``executor = "ray"``); the local executor runs
    one cell at a time with torch's own thread count and ignores this table. A cell runs torch
    on ``floor(num_cpus)`` threads (at least 1): float rounding depends on the thread count, so
    it is part of every key, and a Ray run matches a local run bitwise when its cells get the
    local run's thread count."""

    num_cpus: float = Field(1, gt=0, description="CPUs per cell")
    num_gpus: float = Field(0, ge=0, description="GPUs per cell (fractions allowed)")
    memory: float | None = Field(None, gt=0, description="GiB of RAM reserved per cell "
                                 "(Ray schedules by it; it is not a hard limit)")
    max_retries: int = Field(3, ge=0, description="reruns of a cell whose worker or node was "
                             "lost mid-cell (a cell that fails by itself is not rerun)")
    method: dict[str, MethodResources] = Field(
        default_factory=dict, description="per-method overrides: [resources.method.ppo]")

    def of(self, method: str) -> MethodResources:
        """The resources one method's cells ask for, the overrides applied."""
        own = self.method.get(method, MethodResources())
        return MethodResources(num_cpus=own.num_cpus or self.num_cpus,
                               num_gpus=self.num_gpus if own.num_gpus is None else own.num_gpus,
                               memory=own.memory or self.memory)

    def threads(self, method: str) -> int:
        return max(1, int(self.of(method).num_cpus or 1))


class Claim(_Strict):
    """A claim the matrix tests (``[[claims]]``): one metric, the cells it compares and the
    test, so that its verdict comes from the run's own numbers (reports/findings.py), never
    from a constant. ``method`` and ``against`` are report rows: a method's name, with its
    sweep point as the report writes it (``"ppo [ppo.kl_coef=0.0]"``). With ``against`` (or
    ``against_metric``) the effect is the difference (or, with ``scale = "ratio"``, the ratio)
    ``method``'s ``metric`` minus ``against``'s ``against_metric``, paired over the seeds the
    two rows share; without, it is ``method``'s mean, tested against ``null``. A metric is
    ``eval.metric[.slice]`` or a cost (``cost.train_flops``, ``cost.phase_seconds.training``).

    ``expect``: "greater" holds when the 95% interval lies above ``null`` and does not hold
    when it lies below it ("less" the mirror); "within" holds when the interval lies inside
    ``range`` (an equivalence or non-inferiority margin, stated) and does not hold when it lies
    outside it. Anything else is not resolved at the run's seed count."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,24}$", description="short name, e.g. C5a")
    claim: str = Field(min_length=1, description="the claim, as the field states it")
    source: str = Field("", description="where the claim comes from")
    metric: str = Field(min_length=3, description="eval.metric[.slice] or cost.FIELD")
    method: str = Field(min_length=1, description="the row the claim is about")
    against: str | None = Field(None, description="the row it is compared with (paired)")
    against_metric: str | None = Field(None, description="the other row's metric, when it "
                                       "differs (default: metric)")
    expect: Literal["greater", "less", "within"] = Field("greater", description="the test: "
                                                         "above null, below it, or inside range")
    null: float = Field(0.0, description="the value of no effect (1.0 for a ratio)")
    range: list[float] | None = Field(None, description="[low, high], for expect = within")
    scale: Literal["difference", "ratio"] = Field("difference", description="the effect "
                                                  "against a row: difference or ratio")
    figure: str = Field("", description="the title of the report's figure that shows it")

    @model_validator(mode="after")
    def _consistent(self) -> "Claim":
        if (self.expect == "within") != (self.range is not None):
            raise ValueError("range is for expect = 'within', and needed there; set both or "
                             "neither")
        if self.range is not None and not (len(self.range) == 2 and self.range[0] < self.range[1]):
            raise ValueError("range must be [low, high] with low < high")
        if self.scale == "ratio" and self.against is None and self.against_metric is None:
            raise ValueError("a ratio needs against or against_metric")
        if self.scale == "ratio" and (self.null <= 0 or any(x <= 0 for x in self.range or ())):
            raise ValueError("a ratio's null and range are ratios, above 0 (null = 1.0 is no "
                             "effect)")
        return self

    def rows(self) -> list[str]:
        """The report rows it reads."""
        return [self.method] + ([self.against] if self.against else [])

    def metrics(self) -> list[str]:
        return [self.metric] + ([self.against_metric] if self.against_metric else [])


class ScenarioCfg(_Strict):
    """The world every cell trains and is evaluated in (``[scenario]``)."""

    name: str = Field("micro", description="a registered scenario: micro (the offline "
                      "micro-world) or real (a Hugging Face model on your data)")
    options: dict[str, Any] = Field(default_factory=dict, description="the scenario's own "
                                    "options ([scenario.options]), listed under its name below")


class Matrix(_Strict):
    name: str = Field("matrix", description="the matrix's name, the report's title")
    out: str = Field("runs/matrix", description="output folder (alignbench run --out "
                     "overrides it)")
    scenario: ScenarioCfg = Field(default_factory=ScenarioCfg, description="the world: "
                                  "[scenario] and its [scenario.options]")
    methods: list[str] = Field(default_factory=lambda: ["base", "sft", "ppo", "dpo", "rlaif"],
                               min_length=1, description="the methods compared, one row each")
    method: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method config")
    evals: list[str] = Field(
        default_factory=lambda: ["truthfulqa", "toxicity", "win_rate", "labeler_agreement", "kl"],
        description="the evals every cell is scored by")
    eval: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-eval options")
    seeds: list[Annotated[int, AfterValidator(_in_seed_range)]] = Field(
        default_factory=lambda: [0, 1, 2], min_length=1, description="one cell per method, "
        "sweep point and seed; each seed in [0, 2**32)")
    budget: Budget = Field(default_factory=Budget, description="the shared budget: [budget]")
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict,
        description='"budget.UNIT" or "METHOD.OPTION" -> list of values, or "METHOD" -> list '
        'of option tables (variants: each table is one point, {} the method as configured); '
        'cells span the product of the keys')
    device: Literal["cpu", "cuda", "auto"] = Field(
        "auto", description='where cells train and are evaluated: "auto" is cuda when one is '
        'visible, else cpu (under the ray executor, which decides nothing on the driver, a '
        'device left unset is cpu and "cuda" must be set)')
    progress: bool = Field(True, description="progress bars (alignbench run --no-progress)")
    report_to: Literal["none", "trackio", "tensorboard", "wandb"] = Field(
        "none", description="stream each cell's training curves as it trains: trackio (local "
        "SQLite in OUT/tracking), tensorboard or wandb (offline, in cells/KEY/tracking); the "
        "results stay the record (bench/tracking.py)")
    save_policies: bool = Field(
        False, description="keep each cell's trained policy as a Hugging Face folder in "
        "cells/KEY/policy (safetensors, tokenizer, model card, the world it was trained in)")
    executor: Literal["local", "ray"] = Field(
        "local", description='"local" (one process, the reference) or "ray" (bench/ray_executor.py)')
    ray_address: str | None = Field(
        None, description='a running Ray cluster ("auto" or HOST:PORT); none starts a local one')
    resources: Resources = Field(default_factory=Resources, description="what each cell asks "
                                 "of the Ray executor: [resources]")
    claims: list[Claim] = Field(default_factory=list, description="claims the report tests "
                                "and opens with (reports/findings.py)")
    prices: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="dollars per unit of a budget unit (e.g. comparisons "
        "= 1.00, ai_comparisons = 0.10): results.jsonl and the report give each cell the "
        "prices and the dollars its training spent (cost.dollars); unpriced units are free. "
        "Not in any cell's key: a price moves no number a cell computes")


def executor_device(m: Matrix) -> str:
    """The device cells run on as the executor sees it: the local executor resolves "auto"
    where it runs; the Ray executor's cells run on other nodes, so an unset device is "cpu"
    there and "auto" set explicitly is refused (ray_executor.check_matrix)."""
    if m.executor == "ray" and "device" not in m.model_fields_set:
        return "cpu"
    return m.device


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
    _check_claims(m, source)
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


def load(path_or_preset: str | Path) -> Matrix:
    """A TOML file path, or the name of a built-in preset (see ``presets()``)."""
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
        raise ConfigError(f"{source}: the matrix file sets nothing; give at least 'methods' (e.g. "
                          f"methods = [\"sft\", \"dpo\"]) or use a preset: "
                          f"{', '.join(presets())}")
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


def overridden(m: Matrix, *, methods: list[str] | None = None, seeds: list[int] | None = None,
               sets: list[str] | tuple[str, ...] = ()) -> Matrix:
    """``m`` with the command line's subset and settings (``--methods``, ``--seeds``,
    ``--set KEY=VALUE``) applied, then validated exactly as a matrix file is; the result is
    what OUT/matrix.toml records. ``--methods`` drops the tables and sweeps of the methods it
    leaves out (and of stages no kept method starts from), and the claims that read them, so
    a preset's other tables are no error. A VALUE is read as TOML (``300``, ``true``, ``[0, 1]``, ``"x"``), else as a string."""
    d = m.model_dump(mode="json")
    if methods is not None:
        d["methods"] = methods
        try:
            keep = set(methods) | stage_names(methods)
        except (registry.UnknownName, ConfigError):  # parse names the unknown method below
            keep = set(methods)
        d["method"] = {k: v for k, v in d["method"].items() if k in keep}
        d["resources"]["method"] = {k: v for k, v in d["resources"]["method"].items()
                                    if k in keep}
        d["sweep"] = {k: v for k, v in d["sweep"].items()
                      if k.startswith("budget.") or k.split(".", 1)[0] in keep}
        d["claims"] = [c for c in d["claims"]
                       if all(row_method(row) in methods
                              for row in (c["method"], c.get("against")) if row)]
    if seeds is not None:
        d["seeds"] = seeds
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: give KEY=VALUE, e.g. --set budget.comparisons=300")
        _set(d, key.strip(), _toml_value(raw.strip()), item)
    return parse(d, source="the command line")


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


def row_label(method: str, point: dict[str, Any]) -> str:
    """A report row's name: a method at its sweep point (``"ppo [ppo.kl_coef=0.0]"``), as
    claims name rows and the report writes them."""
    return method + "".join(f" [{k}={v}]" for k, v in sorted(point.items()))


def row_method(row: str) -> str:
    """The method of a report row's name (:func:`row_label`)."""
    return row.split(" [", 1)[0]


# what a cell's record["cost"] holds (bench/runner.py), which a claim may read as cost.FIELD
# (cost.phase_seconds.PHASE for one phase)
COST_FIELDS = ("wall_seconds", "peak_rss_bytes", "peak_gpu_bytes", "train_tokens", "train_flops",
               "inference_flops", "eval_flops", "rollouts", "samples_per_response",
               "phase_seconds", "phase_peak_rss_bytes", "dollars")


def _check_claims(m: Matrix, source: str) -> None:
    """Each claim reads rows of this matrix's methods and metrics of its evals (or a cost), so
    that a typo is refused before the run, not found as an empty finding after it."""
    ids = [c.id for c in m.claims]
    for i, c in enumerate(m.claims):
        where = f"claims[{i}] ({c.id})"
        if ids.count(c.id) > 1:
            raise ConfigError(f"{source}: {where}: id {c.id!r} is used twice; give each claim "
                              "its own")
        for row in c.rows():
            if row_method(row) not in m.methods:
                raise ConfigError(f"{source}: {where}: row {row!r} is not a method of this "
                                  f"matrix ({', '.join(m.methods)}); add it to 'methods' or fix "
                                  "the claim")
        for metric in c.metrics():
            problem = _metric_problem(m, metric)
            if problem:
                raise ConfigError(f"{source}: {where}: {problem}")


COST_KEYED = ("phase_seconds", "phase_peak_rss_bytes")  # cost.FIELD.PHASE, one key each


def _metric_problem(m: Matrix, metric: str) -> str | None:
    """Why a claim's metric cannot exist in this matrix (None when it can): an eval it does
    not run, a metric or cost field nobody records, a sub-key where the field has none, a
    phase table without its phase, dollars without prices. A slice (``mc1.Adversarial``) or a
    phase's name depends on the data and the trainers: the report names one that no cell
    measured, instead of blaming the seed count."""
    head, _, rest = metric.partition(".")
    name, _, sub = rest.partition(".")
    if head == "cost":
        known = COST_FIELDS
    elif head in m.evals:
        known = tuple(registry.resolve("evals", head).metrics)
    else:
        return (f"metric {metric!r} is of no eval in this matrix ({', '.join(m.evals)}) nor a "
                "cost; fix the claim")
    if name not in known:
        return f"{head} has no {name!r} (metric {metric!r}); it has {', '.join(known)}"
    if head != "cost":
        return None
    if name in COST_KEYED and not sub:
        return (f"metric {metric!r} is a table of phases; name one, e.g. "
                f"cost.{name}.training")
    if sub and name not in COST_KEYED:
        return (f"metric {metric!r}: cost.{name} is one number, with no {sub!r} in it; write "
                f"cost.{name}")
    if name == "dollars" and not m.prices:
        return ("metric 'cost.dollars' needs the matrix's [prices] (none is set, so no cell "
                "has dollars); add a [prices] table or claim another cost")
    return None


def presets() -> list[str]:
    return sorted(f.name[:-5] for f in resources.files("bench.presets").iterdir()
                  if f.name.endswith(".toml"))


def resolved(m: Matrix) -> dict[str, Any]:
    """The fully resolved matrix (defaults filled in), as written to OUT/matrix.toml."""
    d = m.model_dump(mode="json")
    names = list(m.methods) + sorted(stage_names(m.methods) - set(m.methods))
    d["method"] = {n: method_config(m, n).model_dump(mode="json") for n in names}
    d["scenario"]["options"] = scenario_options(registry.resolve(
        "scenarios", m.scenario.name), m.scenario.options).model_dump(mode="json")
    return _drop_none(d)


def _drop_none(x: Any) -> Any:  # TOML has no null
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


def sweep_points(m: Matrix) -> list[dict[str, Any]]:
    """Cartesian product of the sweep, as a list of {"METHOD.OPTION": value} dicts ([{}]
    without one); a method's variants (sweep key "METHOD", a list of option tables) are one
    axis, each table spelled out as its dotted keys."""
    axes = [[{f"{k}.{o}": x for o, x in v.items()} if "." not in k else {k: v}
             for v in m.sweep[k]] for k in sorted(m.sweep)]
    return [{k: v for part in parts for k, v in part.items()}
            for parts in itertools.product(*axes)]
