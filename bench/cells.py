"""A matrix as cells: method x seed x sweep point, each with its budget, and each cell's
content key (everything that can move one of its numbers, nothing cosmetic), including the
numerics a key holds: the device, the torch thread count and the arithmetic's library versions."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from bench import config as C
from bench import registry, store
from bench.api import Method, MethodConfig, World
from bench.budget import COMPUTE_UNITS


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

    @property
    def where(self) -> str:
        """The cell's row without its seed, as a preflight message names it."""
        return self.name + "".join(f" {k}={v}" for k, v in sorted(self.point.items()))


def budget_units_used(plan: C.Plan, name: str, cfg: MethodConfig) -> set[str] | None:
    """The budget units a cell of method ``name`` with config ``cfg`` can depend on: what it
    spends (``MethodConfig.spends``), what every shared stage of the matrix spends (it starts
    from one, and its evals compare it with each of them at its own budget), and the compute
    caps, which bound every training step (and the stages'). None when a config does not say:
    every unit may matter."""
    own = cfg.spends()
    stages = [plan.configs[n].spends() for n in sorted(plan.stage_names)]
    if own is None or None in stages:
        return None
    if not own and not stages:  # trains nothing and is compared with nothing trained
        return set()
    return set(COMPUTE_UNITS).union(own, *stages)


def expand(plan: C.Plan) -> list[Cell]:
    """method x seed x sweep point; a method option sweep only multiplies that method's cells,
    and a budget sweep only the cells that spend the swept unit (a method that spends nothing
    swept runs once under a budget sweep, and appears once)."""
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
             threads: dict[str, int], processor: str | None = None) -> str:
    """Hashes everything that can move a number; nothing cosmetic (names, paths, progress,
    the executor). ``processor``: the chip the cells compute on (this process's unless
    given: a Ray driver names its workers')."""
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
        "numerics": numerics(device, threads[cell.name], processor),
        "method_config": cell.method_config, "seed": cell.seed, "budget": cell.budget,
        "stages": stages,
        "evals": evals, "world": world.key, "world_identity": identity(world.describe),
        "code": store.code_version(),
    })


def numerics(device: str, threads: int | None = None, processor: str | None = None
             ) -> dict[str, Any]:
    """What changes float results without changing the code: the device and the processor
    model behind it (chips round differently), the thread count (reduction order; this
    process's unless given), and the versions of the libraries that do the arithmetic or set
    its defaults (TRL's configs default to bf16, say). Part of every cell and stage key, so
    one key never holds numbers rounded on two kinds of chip (``processor``: this process's
    unless given)."""
    return {"device": device, "processor": processor or chip(device),
            "n_threads": threads or torch.get_num_threads(),
            "packages": store.package_versions()}


def chip(device: str) -> str:
    """The model of the chip ``device`` computes on: the GPU's name for a CUDA device, else
    the CPU's (:func:`bench.store.cpu_model`)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return store.cpu_model()


def identity(describe: dict[str, Any]) -> dict[str, Any]:
    """A world's description without what must never enter a key: how long the build took
    (``describe["timing"]``) and where its inputs were read from (``describe["where"]``,
    paths): a rebuilt world with the same weights and data is the same world, wherever they
    lie."""
    return {k: v for k, v in describe.items() if k not in ("timing", "where")}
