"""A cell's record: built here (:class:`CellResult`, what a cell writes) and typed where it is
read (:class:`CellRecord`, what the report, the executors and the analysis tools read back).

A cell's ``result.json`` (one line of ``results.jsonl`` each) and the plan (``.alignbench/plan.json``) are JSON any file may replace: a record of the wrong
shape is listed as invalid with the first thing wrong in it, never read into a traceback. The
models type what the report reads; what plugins add (an eval's ``extra``, its per-example
``rows``, a record's own keys) stays free-form. Records are checked, never rewritten: the
report reads the stored dict itself, so no number changes on its way through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.api.evaluation import PerPrompt

Number = float | None  # a stored metric: NaN and inf are written as null (store.sanitize)


class _Open(BaseModel):
    """Typed where it is read, open to keys a later version or a plugin adds."""

    model_config = ConfigDict(extra="allow", strict=True)


class StoredValues(_Open):
    set: int = Field(ge=0)  # index into PerPromptRecord.prompt_sets
    values: list[Number]


class PerPromptRecord(_Open):
    """An eval's per-prompt values as a cell stores them (:func:`pack_per_prompt`)."""

    prompt_sets: list[list[str]]
    values: dict[str, StoredValues]

    @model_validator(mode="after")
    def _aligned(self) -> PerPromptRecord:
        for metric, v in self.values.items():
            if v.set >= len(self.prompt_sets) or len(v.values) != len(self.prompt_sets[v.set]):
                raise ValueError(f"per-prompt values of {metric} do not match a set of prompt "
                                 f"ids")
        return self


class EvalRecord(_Open):
    """One eval's part of a cell record (``record["evals"][NAME]``)."""

    version: str | None = None
    higher_is_better: dict[str, bool] = Field(default_factory=dict)
    bounds: dict[str, list[Number] | None] = Field(default_factory=dict)
    plots: list[dict[str, Any]] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    per_prompt: PerPromptRecord | None = None  # absent from cells written before it existed


class BudgetRecord(_Open):
    given: dict[str, Number] = Field(default_factory=dict)
    spent: dict[str, Number] = Field(default_factory=dict)


class PlannedCell(_Open):
    """A cell of the current matrix, as the plan (and each line of results.jsonl) names it."""

    key: str = Field(min_length=1)
    method: str = Field(min_length=1)
    seed: int | None = None
    point: dict[str, Any] = Field(default_factory=dict)


class CellRecord(PlannedCell):
    """A cell's result.json as it is read back: what :meth:`CellResult.to_json` writes (and a
    pending or invalid placeholder: status, error, no metrics)."""

    status: str = Field(min_length=1)
    error: str | None = None
    start: str | None = None
    scenario: str | None = None
    metrics: dict[str, Number] = Field(default_factory=dict)
    uncertainty: dict[str, Number] = Field(default_factory=dict)
    n: dict[str, Any] = Field(default_factory=dict)
    evals: dict[str, EvalRecord] = Field(default_factory=dict)
    curves: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    budget: BudgetRecord | None = None
    # what it cost: numbers, tables of them per phase, and words (peak_rss_scope)
    cost: dict[str, Number | dict[str, Number] | str] = Field(default_factory=dict)
    movement: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)
    method_config: dict[str, Any] = Field(default_factory=dict)
    eval_spend: dict[str, Number] | None = None
    failed_step: int | None = None
    policy: str | None = None
    traceback: str | None = None


class PlanFile(_Open):
    """``.alignbench/plan.json``: the current matrix's cells, in matrix order."""

    matrix: str | None = None
    cells: list[PlannedCell]


def pack_per_prompt(per: dict[str, PerPrompt]) -> dict[str, Any]:
    """How a cell stores an eval's per-prompt values, compactly: each distinct list of prompt
    ids once (``prompt_sets``; an eval's metrics mostly share one), and per metric the index
    of its ids and its values to 9 significant digits (each value within 5e-9 of itself,
    relative: a mean of signed values near 0, such as a KL estimate, keeps its first digits
    too; NaN is stored as null)."""
    sets: list[tuple[str, ...]] = []
    values: dict[str, dict[str, Any]] = {}
    for metric, pp in per.items():
        if pp.prompts not in sets:
            sets.append(pp.prompts)
        values[metric] = {"set": sets.index(pp.prompts),
                          "values": [float(f"{v:.9g}") if math.isfinite(v) else None
                                     for v in pp.values]}
    return {"prompt_sets": [list(x) for x in sets], "values": values}


def unpack_per_prompt(stored: dict[str, Any] | None) -> dict[str, PerPrompt]:
    """What :func:`pack_per_prompt` stored, back as :class:`PerPrompt` per metric ({} for a
    cell written before cells stored them)."""
    if not stored:
        return {}
    rec = PerPromptRecord.model_validate(stored)
    return {m: PerPrompt.of(rec.prompt_sets[v.set],
                            [math.nan if x is None else x for x in v.values])
            for m, v in rec.values.items()}


def problem(model: type[BaseModel], data: Any) -> str | None:
    """None when ``data`` has ``model``'s shape; else the first thing wrong, in a few words
    (``evals.NAME: Input should be a valid dictionary``)."""
    try:
        model.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "the record"
        return f"{where}: {e['msg']}"
    return None


# what a cell's ``cost`` holds, in the order it is written; a claim may read each as cost.FIELD
# (cost.phase_seconds.PHASE for one phase; dollars is added by the report from the prices)
COST_FIELDS = ("wall_seconds", "peak_rss_bytes", "peak_gpu_bytes", "train_tokens", "train_flops",
               "inference_flops", "eval_flops", "rollouts", "samples_per_response",
               "phase_seconds", "phase_peak_rss_bytes", "dollars")
# the cost fields read off the training ledger's spend: cost field -> budget unit
SPENT_COSTS = {"train_tokens": "train_tokens", "train_flops": "flops",
               "inference_flops": "inference_flops"}


@dataclass
class Measured:
    """What running a cell took on this machine (not a result: two runs differ here)."""

    wall_seconds: float
    peak: dict[str, Any]  # meter.peak: peak_rss_bytes, peak_rss_scope, peak_gpu_bytes
    phase_seconds: dict[str, float]
    phase_peak_rss_bytes: dict[str, int]


@dataclass
class CellResult:
    """A cell's result as the harness builds it: every field a result has, filled as the cell
    trains, is evaluated and saved; :meth:`to_json` is the one place its ``result.json`` is laid
    out. The cost's tokens, FLOPs and rollouts are read off the budget and the evaluation's
    spend when written, never copied."""

    key: str
    method: str
    seed: int
    point: dict[str, Any]
    method_config: dict[str, Any]
    scenario: str
    start: str  # the method's starts_from
    metrics: dict[str, float | None] = field(default_factory=dict)
    uncertainty: dict[str, float | None] = field(default_factory=dict)
    n: dict[str, Any] = field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    movement: dict[str, Any] | None = None  # how far training moved the policy from its start
    warnings: list[str] = field(default_factory=list)  # what may make its numbers mean else
    eval_spend: dict[str, float] | None = None  # set once every eval has run
    budget: dict[str, dict[str, float | None]] | None = None  # training's ledger (stages too)
    saved: bool = False  # whether saving the policy was tried to the end (``policy`` is its say)
    policy: str | None = None  # the policy folder's name in the cell's folder, if one was saved
    traceback: str | None = None
    measured: Measured | None = None  # None for a cell that returned nothing (a lost one)
    status: str = "ok"
    error: str | None = None
    failed_step: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def cost(self) -> dict[str, Any] | None:
        """``cost``: what the cell took (measured) and what its training and evaluation spent
        (derived from ``budget`` and ``eval_spend``)."""
        if self.measured is None:
            return None
        spent = (self.budget or {}).get("spent") or {}
        derived = {f: spent.get(unit, 0.0) for f, unit in SPENT_COSTS.items()}
        return {"wall_seconds": self.measured.wall_seconds, **self.measured.peak, **derived,
                "eval_flops": (self.eval_spend or {}).get("inference_flops", 0.0),
                "rollouts": spent.get("rollouts", 0.0),
                "samples_per_response": spent.get("samples_per_response", 0.0),
                "phase_seconds": self.measured.phase_seconds,
                "phase_peak_rss_bytes": self.measured.phase_peak_rss_bytes}

    def to_json(self) -> dict[str, Any]:
        """The stored record, its keys in the order every result has had: a finished
        evaluation's spend and the budget before the policy and any traceback; a cell that
        failed before its evaluation ended gets the budget after them."""
        d: dict[str, Any] = {
            "key": self.key, "method": self.method, "seed": self.seed, "point": self.point,
            "method_config": self.method_config, "scenario": self.scenario, "start": self.start,
            "metrics": self.metrics, "uncertainty": self.uncertainty, "n": self.n,
            "evals": self.evals, "curves": self.curves, "movement": self.movement,
            "warnings": self.warnings}
        if self.eval_spend is not None:
            d.update(eval_spend=self.eval_spend, budget=self.budget)
        if self.saved:
            d["policy"] = self.policy
        if self.traceback is not None:
            d["traceback"] = self.traceback
        if "budget" not in d and self.budget is not None:
            d["budget"] = self.budget
        cost = self.cost()
        if cost is not None:
            d["cost"] = cost
        d.update(status=self.status, error=self.error, failed_step=self.failed_step,
                 provenance=self.provenance)
        return d
