"""The matrix file's typed models: its top-level keys and each table (budget, scenario,
resources, claims), with their defaults, ranges and meaning (``alignbench options`` and
docs/reference.md print them from here). Validation across keys, and names resolved through
the registry, are :mod:`bench.config`'s."""

from __future__ import annotations

import itertools
import tomllib
from functools import cache
from importlib import resources as files
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

DEFAULT_PRESET = "quickstart"  # what a matrix that names no methods or evals compares


@cache
def _preset(name: str) -> dict[str, Any]:
    return tomllib.loads(files.files("bench.presets").joinpath(f"{name}.toml").read_text())


def _default(key: str) -> list[str]:
    """The default preset's ``methods`` or ``evals`` (its scenario likewise): the harness names
    no method, eval or scenario of its own."""
    return list(_preset(DEFAULT_PRESET)[key])


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
    figure: str = Field("", description="the id of the report's figure that shows it "
                        "(alignbench options EVAL lists each eval's; the report's own are "
                        "metrics and training-curves)")

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

    name: str = Field(default_factory=lambda: _preset(DEFAULT_PRESET)["scenario"]["name"],
                      description="a registered scenario: micro (the offline "
                      "micro-world) or real (a Hugging Face model on your data)")
    options: dict[str, Any] = Field(default_factory=dict, description="the scenario's own "
                                    "options ([scenario.options]), listed under its name below")


class Matrix(_Strict):
    name: str = Field("matrix", description="the matrix's name, the report's title")
    out: str = Field("runs/matrix", description="output folder (alignbench run --out "
                     "overrides it)")
    scenario: ScenarioCfg = Field(default_factory=ScenarioCfg, description="the world: "
                                  "[scenario] and its [scenario.options]")
    methods: list[str] = Field(default_factory=lambda: _default("methods"), min_length=1,
                               description="the methods compared, one row each (default: the "
                               "quickstart preset's)")
    method: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method config")
    evals: list[str] = Field(default_factory=lambda: _default("evals"),
                             description="the evals every cell is scored by (default: the "
                             "quickstart preset's)")
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
    there and "auto" set explicitly is refused (preflight.check_ray)."""
    if m.executor == "ray" and "device" not in m.model_fields_set:
        return "cpu"
    return m.device


def presets() -> list[str]:
    return sorted(f.name[:-5] for f in files.files("bench.presets").iterdir()
                  if f.name.endswith(".toml"))


def drop_none(x: Any) -> Any:  # TOML has no null
    if isinstance(x, dict):
        return {k: drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [drop_none(v) for v in x]
    return x


def sweep_points(m: Matrix) -> list[dict[str, Any]]:
    """Cartesian product of the sweep, as a list of {"METHOD.OPTION": value} dicts ([{}]
    without one); a method's variants (sweep key "METHOD", a list of option tables) are one
    axis, each table spelled out as its dotted keys."""
    axes = [[{f"{k}.{o}": x for o, x in v.items()} if "." not in k else {k: v}
             for v in m.sweep[k]] for k in sorted(m.sweep)]
    return [{k: v for part in parts for k, v in part.items()}
            for parts in itertools.product(*axes)]
