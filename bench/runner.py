"""Expands a matrix into cells, runs them with shared cached stages, and resumes.

Layout of an output folder (a stable contract):
    OUT/matrix.toml                 the resolved matrix
    OUT/cells/<key>/result.json     one cell: metrics, uncertainty, budget, provenance, status
    OUT/results.jsonl               one line per cell of this matrix, regenerated from cells/
    OUT/summary.csv, OUT/report.html, OUT/report.md
    OUT/events.jsonl                start/end of every cell computation (an audit trail)
    OUT/.alignbench/                the marker that alignbench owns the folder: its lock and
                                    the plan (the current matrix's cells; see bench/output.py)
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import config as C
from bench import output, registry, store
from bench.api import EvalContext, NonFiniteError, TrainContext, TrainView, World
from bench.budget import UNITS, BudgetExceeded, Ledger
from bench.models import HFPolicy, resolve_device
from bench.output import OutputLocked  # noqa: F401 - part of this module's interface

log = logging.getLogger("alignbench")


def cache_root() -> Path:
    return Path(os.environ.get("ALIGNBENCH_CACHE", Path.home() / ".cache" / "alignbench"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def rng_neutral() -> Iterator[None]:
    """Run a shared stage without touching the cell's global random state (python, numpy,
    torch, CUDA). A stage is built inside whichever cell first needs it and found cached by
    the rest; TRL's trainers reseed every global generator when created, so a stage built
    in-cell used to leave the cell's generators elsewhere than a cached one did, and e.g. the
    reward model's fresh score head, drawn from torch's global generator, differed between a
    fresh process and a long one (a kl_coef = 0 PPO cell: gold drop 1.94 against 1.80)."""
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@dataclass(frozen=True)
class Cell:
    method: str
    seed: int
    budget: dict[str, float | None]
    method_config: dict[str, Any]
    point: dict[str, Any]  # the swept values that define this cell (for the report)

    @property
    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.point.items()))
        return f"{self.method} seed={self.seed}{extra}"


def expand(m: C.Matrix) -> list[Cell]:
    """method x seed x sweep point; a method option sweep only multiplies that method's cells."""
    cells, seen = [], set()
    for point in C.sweep_points(m):
        for method in m.methods:
            relevant = {k: v for k, v in point.items()
                        if k.startswith("budget.") or k.split(".", 1)[0] == method}
            over = {k.split(".", 1)[1]: v for k, v in relevant.items()
                    if not k.startswith("budget.")}
            budget = m.budget.model_dump()
            budget.update({k.split(".", 1)[1]: v for k, v in relevant.items()
                           if k.startswith("budget.")})
            cfg = C.method_config(m, method, override=over).model_dump(mode="json")
            for seed in m.seeds:
                sig = store.canonical([method, seed, budget, cfg])
                if sig not in seen:
                    seen.add(sig)
                    cells.append(Cell(method, seed, budget, cfg, relevant))
    return cells


def check_budgets(cells: list[Cell]) -> None:
    """Refuse a matrix whose cells cannot run under their budget, before anything is built or
    trained: each method's ``Config.planned_spend`` says what it will charge, so a PPO whose
    steps need more rollouts than the budget gives fails here in a second, not as a failed
    cell an hour into the run."""
    problems: dict[str, None] = {}  # ordered, and one line for all seeds of a cell
    for cell in cells:
        cfg = registry.resolve("methods", cell.method).Config.model_validate(cell.method_config)
        where = cell.method + "".join(f" {k}={v}" for k, v in sorted(cell.point.items()))
        try:
            plan = cfg.planned_spend(cell.budget)
        except ValueError as err:
            problems[f"{where}: {err}"] = None
            continue
        for unit, (need, why) in plan.items():
            cap = cell.budget.get(unit)
            if cap is not None and need > cap + 1e-9:
                problems[f"{where} needs {need:g} {unit} ({why}) but budget.{unit} is {cap:g}; "
                         f"raise budget.{unit} to at least {need:g} or configure {cell.method} "
                         f"to spend less"] = None
    if problems:
        raise C.ConfigError("the matrix does not fit its budget: " + "; ".join(problems))


def check_compute(cells: list[Cell], stages: Stages, m: C.Matrix) -> None:
    """The compute caps' preflight, once the world is built. Every method but base is charged
    the shared SFT stage, whose tokens are known before anything trains: its demonstrations'
    tokens times its epochs (a lower bound: the trainer adds special tokens). A cap below that
    is refused here; every other overrun is stopped by the ledger before the step that would
    cross the cap (each trainer step and PPO step is charged before it runs)."""
    capped_cells = [c for c in cells if c.method != "base" and (
        c.budget.get("train_tokens") is not None or c.budget.get("flops") is not None)]
    if not capped_cells:
        return
    from bench.budget import training_flops
    from bench.models import n_params
    base = stages.base()  # the frozen base every run loads anyway
    epochs = C.method_config(m, C.SHARED_STAGE).epochs
    problems: dict[str, None] = {}
    for cell in capped_cells:
        demos = stages.world.demonstrations(int(cell.budget.get("demonstrations") or 0),
                                            cell.seed)
        tokens = int(sum(len(base.tokenizer.encode(d["prompt"] + d["completion"]))
                         for d in demos) * epochs)
        need = {"train_tokens": tokens, "flops": training_flops(n_params(base.model), tokens)}
        for unit, amount in need.items():
            cap = cell.budget.get(unit)
            if cap is not None and amount > cap:
                problems[f"{cell.method}: the shared SFT stage alone needs at least "
                         f"{amount:.4g} {unit} ({len(demos)} demonstrations x {epochs:g} "
                         f"epochs) but budget.{unit} is {cap:.4g}; raise budget.{unit} or "
                         f"lower budget.demonstrations"] = None
    if problems:
        raise C.ConfigError("the matrix does not fit its compute budget: " + "; ".join(problems))


def cell_key(cell: Cell, world: World, m: C.Matrix, device: str) -> str:
    """Hashes everything that can move a number; nothing cosmetic (names, paths, progress)."""
    evals = {}
    for name in m.evals:
        ev = registry.resolve("evals", name)
        options = ev.Options.model_validate(m.eval.get(name, {})).model_dump(mode="json")
        evals[name] = {"version": ev.version, "options": options,  # defaults filled in
                       "provider": registry.identity("evals", name)}
    return store.content_key({
        "method": cell.method, "method_provider": registry.identity("methods", cell.method),
        "scenario_provider": registry.identity("scenarios", m.scenario.name),
        "numerics": numerics(device),
        "method_config": cell.method_config, "seed": cell.seed, "budget": cell.budget,
        # every method but base starts from the shared SFT stage: its config moves numbers too
        "sft_stage": C.method_config(m, C.SHARED_STAGE).model_dump(mode="json"),
        "evals": evals, "world": world.key, "world_identity": identity(world.describe),
        "code": store.code_version(),
    })


def numerics(device: str) -> dict[str, Any]:
    """What changes float results without changing the code: the device, the thread count
    (reduction order), and the versions of the libraries that do the arithmetic or set its
    defaults (TRL's configs default to bf16, say). Part of every cell and stage key."""
    return {"device": device, "n_threads": torch.get_num_threads(),
            "packages": store.package_versions()}


def identity(describe: dict[str, Any]) -> dict[str, Any]:
    """A world's description without its cosmetic part (``describe["timing"]``: how long the
    build took), which must never enter a key: a rebuilt world with the same weights is the
    same world."""
    return {k: v for k, v in describe.items() if k != "timing"}


class Stages:
    """Stages shared by the cells of a matrix, computed once and cached under content keys:
    the SFT model (per seed and demonstration budget) and the labeled comparison set drawn
    from it (per seed and comparison budget). A cell that uses a stage is charged the stage's
    spend, so every result's budget shows what it really consumed."""

    def __init__(self, world: World, m: C.Matrix, device: str, progress: bool):
        self.world, self.m, self.device, self.progress = world, m, device, progress
        self.root = cache_root() / "stages"
        self._base: HFPolicy | None = None
        self._mem: dict[str, Any] = {}
        self._refs: dict[int, FrozenReference] = {}

    def base(self) -> HFPolicy:
        if self._base is None:
            self._base = self.world.load_policy(self.world.base_model)
            self._base.model.to(self.device)
        return self._base

    def fresh_base(self) -> HFPolicy:
        """A trainable copy of the base model (the cached one stays frozen)."""
        p = self.world.load_policy(self.world.base_model)
        p.model.to(self.device)
        return p

    def _sft_cfg(self):
        return C.method_config(self.m, C.SHARED_STAGE)

    def sft_key(self, seed: int, n_demos: int) -> str:
        return store.content_key({"stage": "sft", "world": self.world.key, "seed": seed,
                                  "demonstrations": n_demos, "code": store.code_version(),
                                  "config": self._sft_cfg().model_dump(mode="json"),
                                  "numerics": numerics(self.device)})

    def sft(self, ctx: TrainContext) -> HFPolicy:
        """The shared SFT policy for this cell's seed and demonstration budget."""
        n = int(ctx.ledger.caps.get("demonstrations") or 0)
        key = self.sft_key(ctx.seed, n)

        def build(tmp: Path) -> None:
            with rng_neutral():
                train(tmp)

        def train(tmp: Path) -> None:
            # the cell's compute caps bound the stage too: it stops at the cap, not after it
            caps = {"demonstrations": n, **{u: ctx.ledger.remaining(u) for u in
                                           ("train_tokens", "flops")
                                           if ctx.ledger.caps.get(u) is not None}}
            stage_ledger = Ledger(caps=caps)
            sub = TrainContext(scenario=ctx.scenario, ledger=stage_ledger, seed=ctx.seed,
                               cell_dir=tmp, log=ctx.log, stages=self, progress=ctx.progress,
                               device=self.device)
            sft = registry.resolve("methods", "sft")
            policy = sft.train_stage(self.fresh_base(), sub, self._sft_cfg())
            policy.model.save_pretrained(tmp, safe_serialization=True)
            policy.tokenizer.save_pretrained(tmp)
            store.atomic_write_json(tmp / "stage.json", {"spent": stage_ledger.spent})

        path = self.root / "sft" / key
        if key not in self._mem:  # verified once per process, then served from memory
            store.build_once(path, build)
        spent = json.loads((path / "stage.json").read_text())["spent"]
        ctx.ledger.absorb(spent)
        if key not in self._mem:
            pol = self.world.load_policy(path)
            pol.model.to(self.device)
            self._mem[key] = pol
        ctx.artifacts["sft_key"] = key
        return self._mem[key]

    def sft_start(self, ctx: TrainContext) -> tuple[HFPolicy, HFPolicy]:
        """(frozen shared SFT policy, a trainable copy of it): where ppo, dpo and rlaif start."""
        sft = self.sft(ctx)
        policy = self.world.load_policy(self.sft_path(ctx))
        policy.model.to(sft.device)
        return sft, policy

    def sft_path(self, ctx: TrainContext) -> Path:
        return self.root / "sft" / ctx.artifacts["sft_key"]

    def reference_sft(self, seed: int, n_demos: int) -> HFPolicy:
        """The SFT model a cell is compared with (its seed, its demonstration budget)."""
        ctx = TrainContext(scenario=view(self.world), ledger=Ledger(caps={"demonstrations": n_demos}),
                           seed=seed,
                           cell_dir=self.root, log=log, stages=self, progress=self.progress,
                           device=self.device)
        return self.sft(ctx)

    def as_reference(self, policy: HFPolicy) -> FrozenReference:
        """The one :class:`FrozenReference` of a cached, frozen policy (``base()``, ``sft()``)."""
        if id(policy) not in self._refs:
            self._refs[id(policy)] = FrozenReference(policy)
        return self._refs[id(policy)]

    def cached_json(self, kind: str, key_parts: dict[str, Any], ledger: Ledger,
                    compute: Callable[[Ledger], Any]) -> Any:
        """Compute-once JSON stage (e.g. a labeled comparison set). ``compute`` gets a ledger
        with this cell's caps; what it spent is charged to the cell on every use."""
        key = store.content_key({"stage": kind, "world": self.world.key,
                                 "code": store.code_version(),
                                 "numerics": numerics(self.device), **key_parts})

        def fill() -> dict[str, Any]:
            sub = Ledger(caps=dict(ledger.caps))
            sub.spent.update({u: 0.0 for u in UNITS})
            with rng_neutral():
                data = compute(sub)
            return {"spent": sub.spent, "data": data}

        rec = store.once_json(self.root / kind / f"{key}.json", fill)
        ledger.absorb(rec["spent"])
        return rec["data"]


class FrozenReference:
    """A reference policy that every cell of a matrix compares with (the base model, a seed's
    SFT model) and that nothing trains. Sampling is seeded per call, so the same prompts, options
    and seed give the same completions in every cell: they are drawn once per matrix process and
    reused (in the quickstart they were two of the three sample sets the win-rate drew in every
    cell). Everything else is the wrapped policy's."""

    def __init__(self, policy: HFPolicy):
        self.policy = policy
        self._samples: dict[tuple, list[str]] = {}

    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
                 seed: int = 0) -> list[str]:
        key = (tuple(prompts), max_new_tokens, float(temperature), seed)
        if key not in self._samples:
            self._samples[key] = self.policy.generate(
                prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        return list(self._samples[key])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def view(world: World) -> TrainView:
    return TrainView(train_prompts=world.train_prompts, demonstrations=world.demonstrations,
                     make_panel=world.make_panel, make_ai_judge=world.make_ai_judge,
                     load_policy=world.load_policy, describe=world.describe)


def _event(out: Path, **kw: Any) -> None:
    kw["time"] = datetime.now(timezone.utc).isoformat()
    with open(out / "events.jsonl", "a") as f:
        f.write(json.dumps(kw) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_cell(cell: Cell, key: str, world: World, stages: Stages, m: C.Matrix, out: Path,
             device: str) -> dict[str, Any]:
    cell_dir = output.make_cell_dir(out, key)
    started = datetime.now(timezone.utc).isoformat()
    t0 = time.perf_counter()
    ledger = Ledger(caps={u: cell.budget.get(u) for u in UNITS if cell.budget.get(u) is not None})
    gold = world.gold_reward
    ctx = TrainContext(scenario=view(world), ledger=ledger, seed=cell.seed, cell_dir=cell_dir,
                       log=log.getChild(cell.method), stages=stages, progress=m.progress,
                       device=device,
                       _gold_monitor=(lambda p, c: float(np.mean(gold(p, c)))) if gold else None)
    record: dict[str, Any] = {
        "key": key, "method": cell.method, "seed": cell.seed, "point": cell.point,
        "method_config": cell.method_config, "scenario": m.scenario.name,
        "metrics": {}, "uncertainty": {}, "n": {}, "evals": {}, "curves": {},
    }
    status, error, step = "ok", None, None
    phase = "training"  # or "eval NAME": a failure names where it happened
    try:
        seed_everything(cell.seed)
        method = registry.resolve("methods", cell.method)
        cfg = method.Config.model_validate(cell.method_config)
        policy = method.train(stages.fresh_base() if cell.method != "base" else stages.base(),
                              ctx, cfg)
        train_budget = ledger.snapshot()
        refs = {"base": stages.as_reference(stages.base())}
        if "sft" in m.methods or cell.method != "base":
            refs["sft"] = stages.as_reference(stages.reference_sft(
                cell.seed, int(cell.budget.get("demonstrations") or 0)))
        eval_ledger = Ledger()
        for name in m.evals:
            phase = f"eval {name}"
            seed_everything(cell.seed + 1)
            ev = registry.resolve("evals", name)
            ectx = EvalContext(world=world, seed=cell.seed, method=cell.method, references=refs,
                               artifacts=ctx.artifacts, curves=ctx.curves,
                               options=m.eval.get(name, {}), ledger=eval_ledger,
                               progress=m.progress)
            res = ev.evaluate(policy, ectx)
            for k, v in res.metrics.items():
                record["metrics"][f"{name}.{k}"] = v
                if k in res.uncertainty:
                    record["uncertainty"][f"{name}.{k}"] = res.uncertainty[k]
            record["n"][name] = res.n
            record["evals"][name] = {"version": ev.version, "higher_is_better": ev.metrics,
                                     "rows": res.rows, "extra": res.extra}
            bad = [k for k, v in res.metrics.items() if v is not None and not np.isfinite(v)]
            if bad:
                raise ValueError(f"metric {name}.{bad[0]} is not finite ({res.metrics[bad[0]]})")
        record["budget"] = train_budget
        record["eval_spend"] = eval_ledger.spent
    except NonFiniteError as err:
        status, error, step = "failed", f"{phase}: {err}", err.step
    except BudgetExceeded as err:
        status, error = "failed", f"{phase}: {err}"
    except Exception as err:  # noqa: BLE001 - one bad cell must not sink the matrix
        status, error = "failed", f"{phase}: {type(err).__name__}: {err}"
        record["traceback"] = traceback.format_exc()[-4000:]
    record.setdefault("budget", ledger.snapshot())
    record["curves"] = ctx.curves
    record.update(status=status, error=error, failed_step=step, provenance={
        **store.provenance(device), "started": started,
        "ended": datetime.now(timezone.utc).isoformat(), "seconds": time.perf_counter() - t0,
        "seeds": {"cell": cell.seed, "world": world.describe.get("options", {}).get("seed")},
        "world": world.describe, "matrix_name": m.name,
    })
    store.atomic_write_json(cell_dir / "result.json", record)  # the completion marker
    return record


def is_done(out: Path, key: str) -> bool:
    rec = store.read_json(out / "cells" / key / "result.json")
    return isinstance(rec, dict) and rec.get("key") == key and rec.get("status") == "ok"


def run(m: C.Matrix, out: Path | None = None, *, fresh: bool = False) -> Path:
    """Run (or resume) a matrix. Returns the output folder."""
    cells = expand(m)
    check_budgets(cells)  # before --fresh deletes anything
    out = output.claim(Path(out or m.out))  # refuses a folder that is not alignbench's
    if not m.progress:  # the libraries' own bars too, so logs stay readable
        import datasets
        import transformers
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    with output.locked(out):
        # everything that can refuse the matrix runs before anything in OUT is touched
        device = resolve_device(m.device)
        scenario = registry.resolve("scenarios", m.scenario.name)
        world = scenario.build(scenario.Options.model_validate(m.scenario.options),
                               cache_root(), progress=m.progress)
        stages = Stages(world, m, device, m.progress)
        check_compute(cells, stages, m)
        keys = [cell_key(c, world, m, device) for c in cells]
        if fresh:
            output.clear(out)
        output.remove_stale_temp_files(out)
        import tomli_w
        resolved = {**C.resolved(m), "out": str(out.resolve())}  # the folder actually written
        store.atomic_write_text(out / "matrix.toml", tomli_w.dumps(resolved))
        output.write_plan(out, m.name, [
            {"key": k, "method": c.method, "seed": c.seed, "point": c.point}
            for c, k in zip(cells, keys)])
        todo = [(c, k) for c, k in zip(cells, keys) if not is_done(out, k)]
        bar = tqdm(todo, desc="cells", disable=not m.progress)
        for cell, key in bar:
            bar.set_postfix_str(cell.label)
            _event(out, event="cell_start", key=key, cell=cell.label)
            rec = run_cell(cell, key, world, stages, m, out, device)
            _event(out, event="cell_end", key=key, cell=cell.label, status=rec["status"])
            if rec["status"] != "ok":
                log.warning("cell %s failed: %s", cell.label, rec["error"])
        from reports.build import build_report
        build_report(out)  # regenerates results.jsonl from cells/ first
        return out
