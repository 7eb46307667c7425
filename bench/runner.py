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

import dataclasses
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import config as C
from bench import meter, output, policies, registry, store, tracking
from bench.api import (JSON, EvalContext, Method, MethodConfig, NonFiniteError, Start,
                       Tracking, TrainablePolicy, TrainContext, Trained, TrainView, World)
from bench.budget import (COMPUTE_UNITS, UNITS, BudgetExceeded, Ledger, charge_inference_flops,
                          charging, compute_capped)
from bench.logs import cell_log
from bench.models import resolve_device
from bench.output import OutputLocked  # noqa: F401 - part of this module's interface
from bench.seeding import derive_seed, rng_neutral, seed_everything
from bench.store import cache_root

log = logging.getLogger("alignbench")


@dataclass(frozen=True, eq=False)
class Cell:
    """One method at one seed and sweep point, with its method resolved and configured."""

    name: str  # the method's registered name
    method: Method
    config: MethodConfig
    seed: int
    budget: dict[str, float | None]
    point: dict[str, Any]  # the swept values that define this cell (for the report)

    @property
    def method_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    @property
    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.point.items()))
        return f"{self.name} seed={self.seed}{extra}"


def budget_units_used(plan: C.Plan, name: str, cfg: MethodConfig) -> set[str] | None:
    """The budget units a cell of method ``name`` with config ``cfg`` can depend on: what it
    spends (``MethodConfig.spends``), what every shared stage of the matrix spends (it starts
    from one, and its evals compare it with each of them at its own budget: win-rate against
    SFT), and the compute caps, which bound every training step (and the stages'). None when a
    config does not say: every unit may matter."""
    own = cfg.spends()
    stages = [plan.configs[n].spends() for n in sorted(plan.stage_names)]
    if own is None or None in stages:
        return None
    if not own and not stages:  # trains nothing and is compared with nothing trained
        return set()
    return set(COMPUTE_UNITS).union(own, *stages)


def expand(plan: C.Plan) -> list[Cell]:
    """method x seed x sweep point; a method option sweep only multiplies that method's cells,
    and a budget sweep only the cells that spend the swept unit (sft and base run once under a
    ``budget.comparisons`` sweep, and appear once)."""
    m = plan.matrix
    cells, seen = [], set()
    for point in C.sweep_points(m):
        for name in m.methods:
            own = {k: v for k, v in point.items() if k.split(".", 1)[0] == name}
            cfg = C.method_config(m, name, override={k.split(".", 1)[1]: v
                                                     for k, v in own.items()})
            used = budget_units_used(plan, name, cfg)
            swept = {k: v for k, v in point.items() if k.startswith("budget.")
                     and (used is None or k.split(".", 1)[1] in used)}
            budget = {**m.budget.model_dump(), **{k.split(".", 1)[1]: v for k, v in swept.items()}}
            for seed in m.seeds:
                sig = store.canonical([name, seed, budget, cfg.model_dump(mode="json")])
                if sig not in seen:
                    seen.add(sig)
                    cells.append(Cell(name, plan.methods[name], cfg, seed, budget,
                                      {**swept, **own}))
    return cells


def check_budgets(cells: list[Cell], plan: C.Plan) -> None:
    """Refuse a matrix whose cells cannot run under their budget, before anything is built or
    trained: each method's ``Config.planned_spend`` says what it will charge, so a PPO whose
    steps need more rollouts than the budget gives fails here in a second, not as a failed
    cell an hour into the run."""
    problems: dict[str, None] = {}  # ordered, and one line for all seeds of a cell
    for cell in cells:
        where = cell.name + "".join(f" {k}={v}" for k, v in sorted(cell.point.items()))
        try:
            for stage in plan.chain(cell.name):  # the stages it starts from must fit too
                plan.configs[stage].planned_spend(cell.budget)
            spend = cell.config.planned_spend(cell.budget)
        except ValueError as err:
            problems[f"{where}: {err}"] = None
            continue
        for unit, (need, why) in spend.items():
            cap = cell.budget.get(unit)
            if cap is not None and need > cap + 1e-9:
                problems[f"{where} needs {need:g} {unit} ({why}) but budget.{unit} is {cap:g}; "
                         f"raise budget.{unit} to at least {need:g} or configure {cell.name} "
                         f"to spend less"] = None
    if problems:
        raise C.ConfigError("the matrix does not fit its budget: " + "; ".join(problems))


def check_claim_rows(cells: list[Cell], plan: C.Plan) -> None:
    """Every row a claim reads is a row this matrix makes (with its sweep point exactly as
    the report writes it), so that a typo is refused before the run, not found as a claim
    "not measured" after it."""
    rows = sorted({C.row_label(c.name, c.point) for c in cells})
    for c in plan.matrix.claims:
        for row in c.rows():
            if row not in rows:
                raise C.ConfigError(f"claim {c.id}: row {row!r} is not a row of this matrix; "
                                    f"its rows: {', '.join(rows)}")


def check_worlds(cells: list[Cell], world: World) -> None:
    """Each method config's own preflight against the built world
    (``MethodConfig.check_world``): one line for the first setting it cannot serve."""
    seen, train_view = set(), view(world)
    for cell in cells:
        sig = (cell.name, store.canonical(cell.method_config))
        if sig in seen:
            continue
        seen.add(sig)
        try:
            cell.config.check_world(train_view)
        except ValueError as err:
            where = cell.name + "".join(f" {k}={x}" for k, x in sorted(cell.point.items()))
            raise C.ConfigError(f"{where}: {err}") from None


def check_data(cells: list[Cell], plan: C.Plan, world: World) -> None:
    """A budget the scenario's data cannot fill is refused before any cell trains, naming
    both (``World.data_limits``: rows per budget unit, for data drawn without replacement); so
    is a method that needs paired comparisons when the preference data is unpaired."""
    prefs = world.preferences
    for cell in cells:
        units = {u for n in (*plan.chain(cell.name), cell.name)
                 for u in (plan.configs[n].spends() or ())}
        for unit, rows in world.data_limits.items():
            cap = cell.budget.get(unit)
            if unit in units and cap is not None and cap > rows:
                raise C.ConfigError(
                    f"{cell.label}: budget.{unit} is {cap:g} but the scenario's data holds "
                    f"{rows} for it (drawn without replacement); lower budget.{unit} to at "
                    f"most {rows} or give more data")
        if prefs is not None and not prefs.paired and "comparisons" in units:
            raise C.ConfigError(
                f"{cell.label}: {cell.name} trains on paired comparisons, but "
                f"scenario.options.preferences holds unpaired rows (prompt/completion/label); "
                f"give paired data (prompt/chosen/rejected) or drop {cell.name} (kto reads "
                f"unpaired rows with method.kto.source = \"ratings\")")


def check_compute(cells: list[Cell], stages: Stages) -> None:
    """The compute caps' preflight, once the world is built. A method's start stage (SFT for
    ppo, dpo and rlaif) knows its training tokens before anything trains
    (``MethodConfig.planned_tokens``, a lower bound): a cap below that is refused here. Every
    other overrun is stopped by the ledger before the step that would cross it (each trainer
    step and PPO step is charged before it runs)."""
    from bench.budget import training_flops
    from bench.models import n_params
    problems: dict[str, None] = {}
    capped = [c for c in cells if compute_capped(c.budget)]
    if not capped:
        return
    base = stages.base()  # the frozen base every run loads anyway

    def count(text: str) -> int:
        return len(base.tokenizer.encode(text))

    for cell in capped:
        own = [cell.name] if cell.name in stages.plan.stage_names else []
        for stage in stages.plan.chain(cell.name) + own:
            cfg = stages.plan.configs[stage]
            planned = cfg.planned_tokens(cell.budget, stages.world.demonstrations, cell.seed,
                                         count)
            if planned is None:
                continue
            tokens, why = planned
            need = {"train_tokens": tokens, "flops": training_flops(n_params(base.model), tokens)}
            for unit, amount in need.items():
                cap = cell.budget.get(unit)
                if cap is not None and amount > cap:
                    problems[f"{cell.name}: the shared {stage.upper()} stage alone needs at least "
                             f"{amount:.4g} {unit} ({why}) but budget.{unit} is {cap:.4g}; "
                             f"raise budget.{unit} or lower budget.demonstrations"] = None
    if problems:
        raise C.ConfigError("the matrix does not fit its compute budget: " + "; ".join(problems))


def thread_counts(plan: C.Plan) -> dict[str, int]:
    """The torch thread count each method's cells (and stages) run on: this process's own on
    the local executor, ``floor(num_cpus)`` of the method's resources on Ray. It enters every
    cell and stage key (float reduction order depends on it)."""
    m = plan.matrix
    if m.executor == "ray":
        return {name: m.resources.threads(name) for name in plan.methods}
    return {name: torch.get_num_threads() for name in plan.methods}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block on ``n`` torch threads (a stage on its own method's count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cell_key(cell: Cell, world: World, plan: C.Plan, device: str,
             threads: dict[str, int]) -> str:
    """Hashes everything that can move a number; nothing cosmetic (names, paths, progress,
    the executor)."""
    evals = {name: {"version": ev.version, "options": options.model_dump(mode="json"),
                    "provider": registry.identity("evals", name)}
             for name, (ev, options) in plan.evals.items()}
    # every stage: the cell may start from one, and its evals compare it with all of them
    stages = {s: {"config": plan.configs[s].model_dump(mode="json"),
                  "provider": registry.identity("methods", s), "n_threads": threads[s]}
              for s in sorted(plan.stage_names)}
    return store.content_key({
        "method": cell.name, "method_provider": registry.identity("methods", cell.name),
        "scenario_provider": registry.identity("scenarios", plan.matrix.scenario.name),
        "numerics": numerics(device, threads[cell.name]),
        "method_config": cell.method_config, "seed": cell.seed, "budget": cell.budget,
        "stages": stages,
        "evals": evals, "world": world.key, "world_identity": identity(world.describe),
        "code": store.code_version(),
    })


def numerics(device: str, threads: int | None = None) -> dict[str, Any]:
    """What changes float results without changing the code: the device, the thread count
    (reduction order; this process's unless given), and the versions of the libraries that do
    the arithmetic or set its defaults (TRL's configs default to bf16, say). Part of every cell
    and stage key."""
    return {"device": device, "n_threads": threads or torch.get_num_threads(),
            "packages": store.package_versions()}


def identity(describe: dict[str, Any]) -> dict[str, Any]:
    """A world's description without what must never enter a key: how long the build took
    (``describe["timing"]``) and where its inputs were read from (``describe["where"]``,
    paths): a rebuilt world with the same weights and data is the same world, wherever they
    lie."""
    return {k: v for k, v in describe.items() if k not in ("timing", "where")}


class Stages:
    """The matrix's shared work (``bench.api.Stages``), computed once and cached under content
    keys: the frozen base model, each shared stage method's policy (per seed and the budget it
    spends: SFT per demonstration budget), and compute-once JSON such as a labeled comparison
    set. A cell that uses a stage is charged the stage's spend, so every result's budget shows
    what it really consumed."""

    def __init__(self, world: World, plan: C.Plan, device: str, progress: bool,
                 threads: dict[str, int]):
        self.world, self.plan, self.device, self.progress = world, plan, device, progress
        self.threads = threads  # each stage trains on its own method's thread count
        self.root = cache_root() / "stages"
        self.built: list[dict[str, str]] = []  # what this process computed (not read from cache)
        self._base: TrainablePolicy | None = None
        # stage key -> (its policy, what building it spent): verified and read once per process
        self._mem: dict[str, tuple[TrainablePolicy, dict[str, float]]] = {}
        self._refs: dict[int, FrozenReference] = {}
        self._scenario_refs: dict[str, TrainablePolicy] = {}  # World.reference_models, loaded

    def base(self) -> TrainablePolicy:
        if self._base is None:
            self._base = self._load(self.world.base_model)
        return self._base

    def scenario_model(self, name: str) -> TrainablePolicy:
        """One of the scenario's further frozen models (``World.reference_models``), loaded
        once and shared by the evals' references and a method that serves it, so that a row
        compared with itself is recognized as such. KeyError when the scenario has none."""
        if name not in self._scenario_refs:
            self._scenario_refs[name] = self._load(self.world.reference_models[name])
        return self._scenario_refs[name]

    def _load(self, path: Path) -> TrainablePolicy:
        p = self.world.load_policy(path)
        p.model.to(self.device)
        return p

    def base_start(self) -> Start:
        return Start(name="base", reference=self.base(), path=self.world.base_model,
                     key=self.world.key, load=lambda: self._load(self.world.base_model))

    def start(self, name: str, seed: int, budget: dict[str, float | None],
              ledger: Ledger) -> Start:
        """The start of a method that ``starts_from`` ``name``: the base model, or the shared
        stage ``name`` at this seed and budget (built once, its spend charged to ``ledger``)."""
        if name == "base":
            return self.base_start()
        key, caps = self.stage_key(name, seed, budget)
        path = self.root / name / key
        if key not in self._mem:
            def build(tmp: Path) -> None:
                self.built.append({"kind": name, "key": key})
                self._build_stage(name, seed, caps, ledger, tmp)
            with meter.phase(f"stage {name}"):  # built here, or read from the cache
                store.build_once(path, build)
                spent = json.loads((path / "stage.json").read_text())["spent"]
                self._mem[key] = (self._load(path), spent)
        policy, spent = self._mem[key]
        ledger.absorb(spent)
        return Start(name=name, reference=policy, path=path, key=key,
                     load=lambda: self._load(path))

    def stage_key(self, name: str, seed: int, budget: dict[str, float | None]
                  ) -> tuple[str, dict[str, float]]:
        """A stage's content key and the caps it trains under: the budget units its config
        plans to spend (SFT: demonstrations), which alone decide what it trains on."""
        cfg = self.plan.configs[name]
        caps = {u: budget.get(u) or 0 for u in cfg.planned_spend(budget)}
        return store.content_key({
            "stage": name, "world": self.world.key, "seed": seed, "caps": caps,
            "code": store.code_version(), "config": cfg.model_dump(mode="json"),
            "provider": registry.identity("methods", name),
            "numerics": numerics(self.device, self.threads[name]),
        }), caps

    def _build_stage(self, name: str, seed: int, caps: dict[str, float], ledger: Ledger,
                     tmp: Path) -> None:
        # the cell's compute caps bound the stage too: it stops at the cap, not after it
        stage_ledger = Ledger(caps={**caps, **{u: ledger.remaining(u) for u in COMPUTE_UNITS
                                               if ledger.caps.get(u) is not None}})
        sub = TrainContext(scenario=view(self.world), ledger=stage_ledger, seed=seed,
                           cell_dir=tmp, log=log.getChild(name), stages=self,
                           progress=self.progress, device=self.device)
        with rng_neutral(), torch_threads(self.threads[name]), charging(stage_ledger):
            trained = typed(name, self.plan.methods[name].train(self.base_start(), sub,
                                                                self.plan.configs[name]))
        policy = trained.policy
        policy.model.save_pretrained(tmp, safe_serialization=True)
        policy.tokenizer.save_pretrained(tmp)
        store.atomic_write_json(tmp / "stage.json", {"spent": stage_ledger.spent})

    def references(self, seed: int, budget: dict[str, float | None]) -> dict[str, FrozenReference]:
        """What evals compare a cell with: the base model and every shared stage of the
        matrix at this cell's seed and budget (its spend goes to a throwaway ledger)."""
        refs = {"base": self.as_reference(self.base())}
        for name in self.world.reference_models:
            refs[name] = self.as_reference(self.scenario_model(name))
        for name in self.plan.stage_names:
            start = self.start(name, seed, budget, Ledger())
            refs[name] = self.as_reference(start.reference)
        return refs

    def as_reference(self, policy: TrainablePolicy) -> FrozenReference:
        """The one :class:`FrozenReference` of a cached, frozen policy (base, a stage)."""
        if id(policy) not in self._refs:
            self._refs[id(policy)] = FrozenReference(policy)
        return self._refs[id(policy)]

    def once(self, kind: str, key: dict[str, JSON], ledger: Ledger,
             compute: Callable[[Ledger], JSON]) -> JSON:
        """Compute-once JSON stage (e.g. a labeled comparison set). ``compute`` gets a ledger
        with this cell's caps; what it spent is charged to the cell on every use."""
        full = self.once_key(kind, key)

        def fill() -> dict[str, Any]:
            self.built.append({"kind": kind, "key": full})
            sub = Ledger(caps=dict(ledger.caps))
            sub.spent.update({u: 0.0 for u in UNITS})
            with rng_neutral(), charging(sub):
                data = compute(sub)
            return {"spent": sub.spent, "data": data}

        rec = store.once_json(self.root / kind / f"{full}.json", fill)
        ledger.absorb(rec["spent"])
        return rec["data"]

    def once_key(self, kind: str, key: dict[str, JSON]) -> str:
        return store.content_key({"stage": kind, "world": self.world.key,
                                  "code": store.code_version(),
                                  "numerics": numerics(self.device), **key})


class FrozenReference:
    """A reference policy that every cell of a matrix compares with (the base model, a seed's
    SFT model) and that nothing trains. Sampling is seeded per call, so the same prompts, options
    and seed give the same completions in every cell: they are drawn once per matrix process and
    reused (in the quickstart they were two of the three sample sets the win-rate drew in every
    cell); each cell that uses them is charged the inference FLOPs of drawing them, so a cell's
    evaluation cost does not depend on which cell came first. Everything else is the wrapped
    policy's."""

    def __init__(self, policy: TrainablePolicy):
        self.policy = policy
        self._samples: dict[tuple, list[str]] = {}

    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
                 seed: int = 0) -> list[str]:
        key = (tuple(prompts), max_new_tokens, float(temperature), seed)
        if key not in self._samples:
            ledger = Ledger()  # what drawing them costs, charged to every cell that uses them
            with charging(ledger):
                texts = self.policy.generate(prompts, max_new_tokens=max_new_tokens,
                                             temperature=temperature, seed=seed)
            self._samples[key] = (texts, ledger.spent["inference_flops"])
        texts, flops = self._samples[key]
        charge_inference_flops(flops)
        return list(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)


def view(world: World) -> TrainView:
    return TrainView(train_prompts=world.train_prompts, demonstrations=world.demonstrations,
                     make_panel=world.make_panel, make_ai_judge=world.make_ai_judge,
                     load_policy=world.load_policy, describe=world.describe,
                     reference_models=dict(world.reference_models),
                     make_likelihood_judge=world.make_likelihood_judge,
                     preferences=world.preferences, has_labeler=world.has_labeler)


def write_event(out: Path, **kw: Any) -> None:
    kw["time"] = datetime.now(timezone.utc).isoformat()
    with open(out / "events.jsonl", "a") as f:
        f.write(json.dumps(kw) + "\n")
        f.flush()
        os.fsync(f.fileno())


def train_cell(cell: Cell, stages: Stages, ctx: TrainContext) -> tuple[Trained, Start]:
    """Train one cell: a shared stage method is served from the stage cache (its own row is
    the stage every other method starts from); any other method starts from its start.
    Returns what it trained and where that started (a stage's row: the base model)."""
    if cell.name in stages.plan.stage_names:
        start = stages.start(cell.name, cell.seed, cell.budget, ctx.ledger)
        return Trained(policy=start.reference), stages.base_start()
    start = stages.start(cell.method.starts_from, cell.seed, cell.budget, ctx.ledger)
    return typed(cell.name, cell.method.train(start, ctx, cell.config)), start


MOVE_TOLERANCE = 1e-6  # relative weight change below which a trained policy "did not move"


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


def typed(name: str, result: object) -> Trained:
    """A method's result, checked: a plugin written to the old contract (returning a Policy)
    fails in its training phase with the fix, not later inside an eval."""
    if not isinstance(result, Trained):
        raise TypeError(f"method {name!r} returned {type(result).__name__}, not "
                        f"bench.api.Trained; return Trained(policy=...)")
    return result


def evaluate_cell(cell: Cell, trained: Trained, ctx: TrainContext, world: World,
                  stages: Stages, record: dict[str, Any]) -> Ledger:
    """Run every eval of the matrix on the trained policy, filling ``record``; returns the
    evaluation's own ledger (its spend never counts against the method's budget)."""
    refs = stages.references(cell.seed, cell.budget)
    eval_ledger = Ledger()
    with charging(eval_ledger):  # every forward pass of the evaluation is its own spend
        for name, (ev, options) in stages.plan.evals.items():
            record["_phase"] = f"eval {name}"
            seed_everything(derive_seed(cell.seed, "eval"))
            ectx = EvalContext(world=world, seed=cell.seed, references=refs, trained=trained,
                               curves=ctx.curves, options=options, ledger=eval_ledger,
                               data=world.eval_data.get(name), progress=stages.progress)
            with meter.phase(f"eval {name}"):
                res = ev.evaluate(trained.policy, ectx)
            meter.release_memory()  # the next eval starts from what the cell holds
            for k, v in res.metrics.items():
                record["metrics"][f"{name}.{k}"] = v
                if k in res.uncertainty:
                    record["uncertainty"][f"{name}.{k}"] = res.uncertainty[k]
            record["n"][name] = res.n
            record["warnings"] += [f"{name}: {w}" for w in res.warnings]
            record["evals"][name] = {"version": ev.version, "higher_is_better": ev.metrics,
                                     "bounds": dict(getattr(ev, "bounds", {})),
                                     "rows": res.rows, "extra": res.extra,
                                     "plots": [dataclasses.asdict(p) for p in res.plots]}
            bad = [k for k, v in res.metrics.items() if v is not None and not np.isfinite(v)]
            if bad:
                raise ValueError(f"metric {name}.{bad[0]} is not finite ({res.metrics[bad[0]]})")
    return eval_ledger


def run_cell(cell: Cell, key: str, world: World, stages: Stages, out: Path,
             device: str) -> dict[str, Any]:
    """Compute one cell into its folder in OUT and write its result (the local executor); the
    trainers' log lines go to the cell's ``log.txt``, not the terminal."""
    cell_dir = output.make_cell_dir(out, key)
    before = output.files_under(cell_dir)  # what it writes there is recorded, for --fresh
    tracked = tracking.for_cell(stages.plan.matrix.report_to, out, cell_dir, key, {
        "method": cell.name, "seed": cell.seed, "point": cell.point,
        "method_config": cell.method_config, "matrix": stages.plan.matrix.name})
    with cell_log(cell_dir / "log.txt"):
        record = compute_cell(cell, key, world, stages, cell_dir, device, tracked)
    output.record_written(cell_dir, before)
    store.atomic_write_json(cell_dir / "result.json", record)  # the completion marker
    return record


def new_record(cell: Cell, key: str, plan: C.Plan) -> dict[str, Any]:
    """A cell's result as it starts: every field a result has, nothing measured yet."""
    return {
        "key": key, "method": cell.name, "seed": cell.seed, "point": cell.point,
        "method_config": cell.method_config, "scenario": plan.matrix.scenario.name,
        "start": cell.method.starts_from,
        "metrics": {}, "uncertainty": {}, "n": {}, "evals": {}, "curves": {},
        "movement": None,  # how far training moved the policy from its start
        "warnings": [],  # what may make a finished cell's numbers mean something else
    }


def compute_cell(cell: Cell, key: str, world: World, stages: Stages, cell_dir: Path,
                 device: str, tracked: Tracking | None = None) -> dict[str, Any]:
    """Train and evaluate one cell, with ``cell_dir`` as its scratch folder; returns its
    result, written by the caller (the local executor into OUT, Ray's driver likewise).
    ``tracked``: where its training streams its curves (the matrix's report_to), if anywhere."""
    started = datetime.now(timezone.utc).isoformat()
    t0 = time.perf_counter()
    scope = meter.reset_peak()
    ledger = Ledger(caps={u: cell.budget.get(u) for u in UNITS if cell.budget.get(u) is not None})
    gold = world.gold_reward
    ctx = TrainContext(scenario=view(world), ledger=ledger, seed=cell.seed, cell_dir=cell_dir,
                       log=log.getChild(cell.name), stages=stages, progress=stages.progress,
                       device=device, tracking=tracked or Tracking(),
                       _gold_scores=(lambda p, c: list(gold(p, c))) if gold else None)
    record = new_record(cell, key, stages.plan)
    record["_phase"] = "training"  # or "eval NAME": a failure names where it happened
    with meter.timing() as timings:
        status, error, step = run_phases(cell, stages, ctx, world, record, cell_dir)
    record.setdefault("budget", ledger.snapshot())
    record["curves"] = ctx.curves
    spent = record["budget"]["spent"]  # training's own (shared stages' included), not evals'
    record["cost"] = {"wall_seconds": time.perf_counter() - t0, **meter.peak(scope, timings),
                      "train_tokens": spent.get("train_tokens", 0.0),
                      "train_flops": spent.get("flops", 0.0),
                      "inference_flops": spent.get("inference_flops", 0.0),
                      "eval_flops": record.get("eval_spend", {}).get("inference_flops", 0.0),
                      "rollouts": spent.get("rollouts", 0.0),
                      "samples_per_response": spent.get("samples_per_response", 0.0),
                      "phase_seconds": timings.seconds, "phase_peak_rss_bytes":
                      timings.peak_rss_bytes}
    record.update(status=status, error=error, failed_step=step, provenance={
        **store.provenance(device), "started": started,
        "ended": datetime.now(timezone.utc).isoformat(), "seconds": time.perf_counter() - t0,
        "seeds": {"cell": cell.seed, "world": world.describe.get("options", {}).get("seed")},
        "world": world.describe, "matrix_name": stages.plan.matrix.name,
    })
    return record


def run_phases(cell: Cell, stages: Stages, ctx: TrainContext, world: World,
               record: dict[str, Any], cell_dir: Path) -> tuple[str, str | None, int | None]:
    """Train, evaluate and (``save_policies``) save one cell into ``record``, each a timed
    phase; returns its status, error and failed step. A failure of any kind is the cell's
    own: one bad cell must not sink the matrix."""
    ledger = ctx.ledger
    status, error, step = "ok", None, None
    try:
        seed_everything(cell.seed)
        # charged: what training samples and scores without gradients; the session streams
        # its curves to the matrix's tracker, if any
        with charging(ledger), tracking.session(ctx.tracking), meter.phase("training"):
            trained, start = train_cell(cell, stages, ctx)
        # what serving one answer takes: 1 sample, or best-of-n's n (capped before training
        # by its planned_spend, recorded for every method)
        ledger.charge("samples_per_response", trained.samples_per_response)
        record["movement"] = movement(trained, start)
        if record["movement"] and not record["movement"]["moved"]:
            record["warnings"].append(
                f"the trained policy did not move from its start ({start.name}: relative "
                f"weight change {record['movement']['relative_change']:.1e}); its numbers are "
                f"the start's")
        train_budget = ledger.snapshot()
        record["eval_spend"] = evaluate_cell(cell, trained, ctx, world, stages, record).spent
        record["budget"] = train_budget
        if stages.plan.matrix.save_policies:
            record["_phase"] = "saving the policy"
            with meter.phase("saving"):
                record["policy"] = keep_policy(trained, record, world, stages.plan, cell_dir)
    except NonFiniteError as err:
        status, error, step = "failed", f"{record['_phase']}: {err}", err.step
    except BudgetExceeded as err:
        status, error = "failed", f"{record['_phase']}: {err}"
    except Exception as err:  # noqa: BLE001 - one bad cell must not sink the matrix
        status, error = "failed", f"{record['_phase']}: {type(err).__name__}: {err}"
        record["traceback"] = traceback.format_exc()[-4000:]
    del record["_phase"]
    return status, error, step


def keep_policy(trained: Trained, record: dict[str, Any], world: World, plan: C.Plan,
                cell_dir: Path) -> str | None:
    """``save_policies``: the trained policy as a Hugging Face folder in the cell's folder
    (:mod:`bench.policies`); the folder's name, or None for a policy that is not one set of
    weights or (with a warning) one that could not be written."""
    if not policies.savable(trained.policy):  # best-of-n: a reward model choosing samples
        log.info("save_policies: %s's policy is not one set of weights; nothing saved",
                 record["method"])
        return None
    options = {name: opts.model_dump(mode="json") for name, (_, opts) in plan.evals.items()}
    try:
        policies.save(trained.policy, record, world.describe, plan.matrix.scenario.name,
                      options, cell_dir / policies.POLICY_DIR)
    except OSError as err:  # a full disk must not throw away a trained and evaluated cell
        record["warnings"].append(f"save_policies: the policy could not be saved ({err})")
        return None
    return policies.POLICY_DIR


def is_done(out: Path, key: str, save_policies: bool = False) -> bool:
    """A cell's result is there and ok; with ``save_policies``, and it was saved with its
    policy (the setting is not in the key, so a finished cell run without it is redone, to
    the same numbers, to keep its policy)."""
    rec = store.read_json(out / "cells" / key / "result.json")
    ok = isinstance(rec, dict) and rec.get("key") == key and rec.get("status") == "ok"
    return ok and (not save_policies or "policy" in rec)


def run(m: C.Matrix, out: Path | None = None, *, fresh: bool = False,
        statuses: list[str] | None = None) -> Path:
    """Run (or resume) a matrix. Returns the output folder; ``statuses``, when given, gets
    each cell's status from the index this run wrote, read while it still holds the folder's
    lock (after it, another run may be rewriting the index)."""
    plan = C.plan(m)
    cells = expand(plan)
    check_budgets(cells, plan)  # before --fresh deletes anything
    check_claim_rows(cells, plan)
    problem = tracking.check(m.report_to, m.executor, Path(out or m.out))  # --executor, too
    if problem:
        raise C.ConfigError(problem)
    if m.executor == "ray":  # before OUT or the world is touched: a missing extra costs nothing
        from bench import ray_executor
        ray_executor.require_ray()
        ray_executor.check_matrix(plan)
    out = output.check(Path(out or m.out))  # refuses a folder that is not alignbench's
    if not m.progress:  # the libraries' own bars too, so logs stay readable
        import datasets
        import transformers
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    new_folder = not out.exists()
    out = output.claim(out)
    with output.locked(out):
        try:  # everything that can refuse the matrix runs before anything in OUT is touched
            world, stages, device, world_threads, keys = _prepare(m, plan, cells)
        except BaseException:
            if new_folder:  # refused: the folder this run made goes, as if never asked for
                output.unclaim(out)
            raise
        session = ray_executor.Session(plan) if m.executor == "ray" else None
        try:
            if fresh:
                left = output.clear(out)
                if left:
                    log.warning("--fresh left %d file(s) alignbench did not write (or that "
                                "changed since), e.g. %s; remove them yourself if you do not "
                                "need them", len(left), left[0].relative_to(out))
            output.remove_stale_temp_files(out)
            _write_matrix(out, m, cells, keys)
            todo = [(c, k) for c, k in zip(cells, keys) if not is_done(out, k, m.save_policies)]
            if session is not None:
                session.run(todo, cells, stages, world_threads, device, out)
            else:
                _run_local(todo, world, stages, out, device)
        finally:
            if session is not None:
                session.close()
        from reports.build import build_report
        build_report(out)  # regenerates results.jsonl from cells/ first
        if statuses is not None:
            lines = (out / "results.jsonl").read_text().splitlines()
            statuses += [json.loads(line)["status"] for line in lines if line.strip()]
        return out


def _prepare(m: C.Matrix, plan: C.Plan, cells: list[Cell]
             ) -> tuple[World, Stages, str, int, list[str]]:
    """The world, its stages, the device, the world's thread count and every cell's key, with
    every check that needs the built world (the scenario reads its data here, and may refuse
    it). On Ray the device is the workers' ("cpu" or "cuda", checked where the cells run)."""
    device = C.executor_device(m) if m.executor == "ray" else resolve_device(m.device)
    world_threads = torch.get_num_threads()  # the micro world's key holds it
    world = plan.scenario.build(plan.scenario_options, cache_root(), progress=m.progress)
    threads = thread_counts(plan)
    stages = Stages(world, plan, device, m.progress, threads)
    check_worlds(cells, world)
    check_data(cells, plan, world)
    check_compute(cells, stages)
    return world, stages, device, world_threads, [cell_key(c, world, plan, device, threads)
                                                  for c in cells]


def _run_local(todo: list[tuple[Cell, str]], world: World, stages: Stages, out: Path,
               device: str) -> None:
    """The reference executor: every cell in this process, one after another."""
    bar = tqdm(todo, desc="cells", disable=not stages.progress)
    for cell, key in bar:
        bar.set_postfix_str(cell.label)
        write_event(out, event="cell_start", key=key, cell=cell.label)
        seen = len(stages.built)
        rec = run_cell(cell, key, world, stages, out, device)
        meter.release_memory()  # the next cell's peak starts from what the run still holds
        for built in stages.built[seen:]:
            write_event(out, event="stage_built", cell=cell.label, **built)
        write_event(out, event="cell_end", key=key, cell=cell.label, status=rec["status"])
        if rec["status"] != "ok":
            log.warning("cell %s failed: %s", cell.label, rec["error"])


def _write_matrix(out: Path, m: C.Matrix, cells: list[Cell], keys: list[str]) -> None:
    """OUT/matrix.toml (the resolved matrix, with the folder actually written) and the plan."""
    import tomli_w
    resolved = {**C.resolved(m), "out": str(out.resolve())}
    store.atomic_write_text(out / "matrix.toml", tomli_w.dumps(resolved))
    output.write_plan(out, m.name, [
        {"key": k, "method": c.name, "seed": c.seed, "point": c.point}
        for c, k in zip(cells, keys)])
