"""The matrix's shared work, computed once and cached under content keys: the frozen base model,
each shared stage's policy (per seed and the budget it spends), compute-once JSON (a labeled
comparison set), and the frozen references every cell's evals compare it with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from bench import config as C
from bench import meter, registry, store
from bench.api import (JSON, Start, TrainablePolicy, TrainContext, Trained, TrainView, World)
from bench.budget import (COMPUTE_UNITS, UNITS, Ledger, charge_inference_flops, charging,
                          compute_caps)
from bench.cells import numerics, torch_threads
from bench.logs import method_log
from bench.seeding import rng_neutral
from bench.store import cache_root


class StageCache:
    """The matrix's shared work (it serves ``bench.api.Stages``), computed once and cached
    under content keys: the frozen base model, each shared stage method's policy (per seed and
    the budget units it spends), and compute-once JSON such as a labeled comparison set. A cell
    that uses a stage is charged the stage's spend, so every result's budget shows what it
    really consumed."""

    def __init__(self, world: World, plan: C.Plan, device: str, progress: bool,
                 threads: dict[str, int], processor: str | None = None):
        self.world, self.plan, self.device, self.progress = world, plan, device, progress
        self.threads = threads  # each stage trains on its own method's thread count
        self.processor = processor  # the chip stages compute on (None: this process's)
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
        plans to spend, which alone decide what it trains on. A compute cap does not enter it:
        a stage either fits its cell's cap and is the same stage, or stops with BudgetExceeded
        and is never cached."""
        cfg = self.plan.configs[name]
        caps = {u: budget.get(u) or 0 for u in cfg.planned_spend(budget)}
        return store.content_key({
            "stage": name, "world": self.world.key, "seed": seed, "caps": caps,
            "code": store.code_version(), "config": cfg.model_dump(mode="json"),
            "provider": registry.identity("methods", name),
            "numerics": numerics(self.device, self.threads[name], self.processor),
        }), caps

    def _build_stage(self, name: str, seed: int, caps: dict[str, float], ledger: Ledger,
                     tmp: Path) -> None:
        # the cell's compute caps bound the stage too: the step that would cross one raises
        # BudgetExceeded before it runs (so a stage that does not fit is never cached)
        stage_ledger = Ledger(caps={**caps, **{u: ledger.remaining(u) for u in COMPUTE_UNITS
                                               if ledger.caps.get(u) is not None}})
        sub = TrainContext(scenario=view(self.world), ledger=stage_ledger, seed=seed,
                           cell_dir=tmp, log=method_log(name), stages=self,
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
        matrix at this cell's seed and budget. A stage built here is built under the cell's
        compute caps, as the cell itself would build it, so that it is the same stage
        whichever cell builds it first (a cap it cannot fit fails the eval with
        BudgetExceeded); its spend is not the cell's training and goes to a ledger of its own."""
        refs = {"base": self.as_reference(self.base())}
        for name in self.world.reference_models:
            refs[name] = self.as_reference(self.scenario_model(name))
        for name in self.plan.stage_names:
            start = self.start(name, seed, budget, Ledger(caps=compute_caps(budget)))
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
                                  "numerics": numerics(self.device, None, self.processor), **key})


class FrozenReference:
    """A reference policy that every cell of a matrix compares with (the base model, a seed's
    stage model) and that nothing trains. Sampling is seeded per call, so the same prompts,
    options and seed give the same completions in every cell: they are drawn once per matrix
    process and reused; each cell that uses them is charged the inference FLOPs of drawing them,
    so a cell's evaluation cost does not depend on which cell came first. Everything else is the
    wrapped policy's."""

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
    """What training sees of the world (``TrainContext.scenario``)."""
    return world.train_view()


def typed(name: str, result: object) -> Trained:
    """A method's result, checked: a plugin written to the old contract (returning a Policy)
    fails in its training phase with the fix, not later inside an eval."""
    if not isinstance(result, Trained):
        raise TypeError(f"method {name!r} returned {type(result).__name__}, not "
                        f"bench.api.Trained; return Trained(policy=...)")
    return result
