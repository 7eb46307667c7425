"""One cell top to bottom: train it (or serve its stage from the cache), evaluate it with every
eval of the matrix, save its policy when asked, and build its result (:class:`CellResult`). A
failure of any kind is the cell's own result: one bad cell must not sink the matrix."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import meter, saved_policies, store, tracking
from bench.api import (
    EvalContext, EvalResult, NonFiniteError, Start, Tracking, TrainContext, Trained, World)
from bench.api.evaluation import declarations
from bench.budget import UNITS, BudgetExceeded, Ledger, charging
from bench.cells import Cell
from bench.logs import method_log
from bench.record import CellResult, Measured, pack_per_prompt
from bench.seeding import derive_seed, seed_everything
from bench.stage_cache import StageCache, typed, view

log = logging.getLogger("alignbench")
MOVE_TOLERANCE = 1e-6  # relative weight change below which a trained policy "did not move"


@dataclasses.dataclass
class Phase:
    """Where the cell is (training, an eval, saving): a failure's error names it."""

    name: str = "training"


def new_result(cell: Cell, key: str, scenario: str) -> CellResult:
    """A cell's result as it starts: every field a result has, nothing measured yet."""
    return CellResult(key=key, method=cell.name, seed=cell.seed, point=cell.point,
                      method_config=cell.method_config, scenario=scenario,
                      start=cell.method.starts_from)


def compute_cell(cell: Cell, key: str, world: World, stages: StageCache, cell_dir: Path,
                 device: str, tracked: Tracking | None = None) -> CellResult:
    """Train and evaluate one cell, with ``cell_dir`` as its scratch folder; returns its
    result, written by the executor's writer. ``tracked``: where its training streams its
    curves (the matrix's report_to), if anywhere."""
    started = datetime.now(timezone.utc).isoformat()
    t0 = time.perf_counter()
    scope = meter.reset_peak()
    ledger = Ledger(caps={u: cell.budget.get(u) for u in UNITS if cell.budget.get(u) is not None})
    gold = world.gold_reward
    ctx = TrainContext(scenario=view(world), ledger=ledger, seed=cell.seed, cell_dir=cell_dir,
                       log=method_log(cell.name), stages=stages, progress=stages.progress,
                       device=device, tracking=tracked or Tracking(),
                       _gold_scores=(lambda p, c: list(gold(p, c))) if gold else None)
    result = new_result(cell, key, stages.plan.matrix.scenario.name)
    with meter.timing() as timings:
        run_phases(cell, stages, ctx, world, result, cell_dir)
    if result.budget is None:  # it failed before its evaluation ended: what it spent so far
        result.budget = ledger.snapshot()
    result.curves = ctx.curves
    result.measured = Measured(wall_seconds=time.perf_counter() - t0,
                               peak=meter.peak(scope, timings),
                               phase_seconds=timings.seconds,
                               phase_peak_rss_bytes=timings.peak_rss_bytes)
    result.provenance = {
        **store.provenance(device), "started": started,
        "ended": datetime.now(timezone.utc).isoformat(), "seconds": time.perf_counter() - t0,
        "seeds": {"cell": cell.seed, "world": world.describe.get("options", {}).get("seed")},
        "world": world.describe, "matrix_name": stages.plan.matrix.name,
    }
    return result


def run_phases(cell: Cell, stages: StageCache, ctx: TrainContext, world: World,
               result: CellResult, cell_dir: Path) -> None:
    """Train, evaluate and (``save_policies``) save one cell into ``result``, each a timed
    phase; a failure sets its status, error and failed step there."""
    ledger, phase = ctx.ledger, Phase()
    try:
        seed_everything(derive_seed(cell.seed, "train"))  # the global generators' stream
        # charged: what training samples and scores without gradients; the session streams
        # its curves to the matrix's tracker, if any
        with charging(ledger), tracking.session(ctx.tracking), meter.phase("training"):
            trained, start = train_cell(cell, stages, ctx)
        # what serving one answer takes: 1 sample, or best-of-n's n (capped before training
        # by its planned_spend, recorded for every method)
        ledger.charge("samples_per_response", trained.samples_per_response)
        result.movement = movement(trained, start)
        if result.movement and not result.movement["moved"]:
            result.warnings.append(
                f"the trained policy did not move from its start ({start.name}: relative "
                f"weight change {result.movement['relative_change']:.1e}); its numbers are "
                f"the start's")
        train_budget = ledger.snapshot()
        result.eval_spend = evaluate_cell(cell, trained, ctx, world, stages, result, phase).spent
        result.budget = train_budget
        if stages.plan.matrix.save_policies:
            phase.name = "saving the policy"
            with meter.phase("saving"):
                result.policy = keep_policy(trained, result, world, stages.plan, cell_dir)
            result.saved = True
    except NonFiniteError as err:
        result.status, result.error, result.failed_step = "failed", f"{phase.name}: {err}", err.step
    except BudgetExceeded as err:
        result.status, result.error = "failed", f"{phase.name}: {err}"
    except Exception as err:  # noqa: BLE001 - one bad cell must not sink the matrix
        result.status, result.error = "failed", f"{phase.name}: {type(err).__name__}: {err}"
        result.traceback = traceback.format_exc()[-4000:]


def train_cell(cell: Cell, stages: StageCache, ctx: TrainContext) -> tuple[Trained, Start]:
    """Train one cell: a shared stage method is served from the stage cache (its own row is
    the stage every other method starts from); any other method starts from its start.
    Returns what it trained and where that started (a stage's row: the base model)."""
    if cell.name in stages.plan.stage_names:
        start = stages.start(cell.name, cell.seed, cell.budget, ctx.ledger)
        return Trained(policy=start.reference), stages.base_start()
    start = stages.start(cell.method.starts_from, cell.seed, cell.budget, ctx.ledger)
    return typed(cell.name, cell.method.train(start, ctx, cell.config)), start


def movement(trained: Trained, start: Start) -> dict[str, Any] | None:
    """How far training moved the policy from its start: ||theta - theta_start|| /
    ||theta_start|| over every parameter. None when the method hands back its start itself
    (base, a stage's own row) or a policy without comparable weights. A trained copy whose
    weights did not change (a learning rate of 0, a warm-up that spans the only step) reads
    exactly like its start, so the result and the report flag it."""
    if trained.policy is start.reference or not hasattr(trained.policy, "model"):
        return None
    a, b = trained.policy.model.state_dict(), start.reference.model.state_dict()
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return None
    with torch.no_grad():
        num = sum(float(((a[k].float() - b[k].float().to(a[k].device)) ** 2).sum()) for k in a)
        den = sum(float((b[k].float() ** 2).sum()) for k in b)
    rel = (num / den) ** 0.5 if den else float(num > 0)
    return {"from": start.name, "relative_change": rel, "moved": rel >= MOVE_TOLERANCE}


def evaluate_cell(cell: Cell, trained: Trained, ctx: TrainContext, world: World,
                  stages: StageCache, result: CellResult, phase: Phase) -> Ledger:
    """Run every eval of the matrix on the trained policy, filling ``result``; returns the
    evaluation's own ledger (its spend never counts against the method's budget)."""
    phase.name = "the evals' references"  # a stage built here, under the cell's caps
    refs = stages.references(cell.seed, cell.budget)
    eval_ledger = Ledger()
    with charging(eval_ledger):  # every forward pass of the evaluation is its own spend
        for name, (ev, options) in stages.plan.evals.items():
            phase.name = f"eval {name}"
            seed_everything(derive_seed(cell.seed, "eval"))
            ectx = EvalContext(world=world, seed=cell.seed, references=refs, trained=trained,
                               curves=ctx.curves, options=options, ledger=eval_ledger,
                               data=world.eval_data.get(name), progress=stages.progress)
            with meter.phase(f"eval {name}"):
                res = ev.evaluate(trained.policy, ectx)
            meter.release_memory()  # the next eval starts from what the cell holds
            for k, v in res.metrics.items():
                result.metrics[f"{name}.{k}"] = v
                if k in res.uncertainty:
                    result.uncertainty[f"{name}.{k}"] = res.uncertainty[k]
            result.n[name] = res.n
            result.warnings += [f"{name}: {w}" for w in res.warnings]
            result.evals[name] = {"version": ev.version, "higher_is_better": ev.metrics,
                                  "bounds": dict(getattr(ev, "bounds", {})),
                                  "rows": res.rows, "extra": res.extra,
                                  "plots": [dataclasses.asdict(p) for p in res.plots],
                                  **declarations(ev)}
            if res.per_prompt:
                check_per_prompt(name, res)
                result.evals[name]["per_prompt"] = pack_per_prompt(res.per_prompt)
            bad = [k for k, v in res.metrics.items() if v is not None and not np.isfinite(v)]
            if bad:
                raise ValueError(f"metric {name}.{bad[0]} is not finite ({res.metrics[bad[0]]})")
    return eval_ledger


def check_per_prompt(name: str, res: EvalResult) -> None:
    """An eval's per-prompt values must be those its metrics are the means of: a name that is
    no metric, or a mean that is not the metric, fails the cell naming both."""
    for metric, pp in res.per_prompt.items():
        if metric not in res.metrics:
            raise ValueError(f"eval {name}: per_prompt names {metric!r}, which is not one of "
                             f"its metrics")
        got, want = pp.mean(), res.metrics[metric]
        if want is not None and math.isfinite(want) and not math.isclose(
                got, want, rel_tol=1e-6, abs_tol=1e-9):
            raise ValueError(f"eval {name}: the mean of per_prompt[{metric!r}] is {got!r}, "
                             f"not the metric's {want!r}; store the values it averages")


def keep_policy(trained: Trained, result: CellResult, world: World, plan: Any,
                cell_dir: Path) -> str | None:
    """``save_policies``: the trained policy as a Hugging Face folder in the cell's folder
    (:mod:`bench.saved_policies`); the folder's name, or None for a policy that is not one set of
    weights or (with a warning) one that could not be written."""
    if not saved_policies.savable(trained.policy):  # best-of-n: a reward model choosing samples
        log.info("save_policies: %s's policy is not one set of weights; nothing saved",
                 result.method)
        return None
    options = {name: opts.model_dump(mode="json") for name, (_, opts) in plan.evals.items()}
    try:
        saved_policies.save(trained.policy, result.to_json(), world.describe,
                            plan.matrix.scenario.name, options,
                            cell_dir / saved_policies.POLICY_DIR)
    except OSError as err:  # a full disk must not throw away a trained and evaluated cell
        result.warnings.append(f"save_policies: the policy could not be saved ({err})")
        return None
    return saved_policies.POLICY_DIR
