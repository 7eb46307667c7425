"""What runs on the Ray executor's workers (:mod:`bench.ray_executor` is the driver): one cell
or one shared stage per task, each in a scratch folder of its own, returning its result, its log
and what it built for the driver's writer; and the small actor that counts attempts."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import torch

from bench import cells as cells_
from bench import config as C
from bench import saved_policies, store
from bench.api import World
from bench.budget import Ledger
from bench.cell_run import compute_cell
from bench.cells import Cell, torch_threads
from bench.extras import require
from bench.logs import cell_log
from bench.stage_cache import StageCache
from bench.store import cache_root


def require_ray() -> ModuleType:
    """Ray, or a one-line error naming the extra."""
    return require("ray", "the ray executor")


class _Job:
    """What every task of one matrix needs to rebuild the driver's view (picklable)."""

    def __init__(self, m: C.Matrix, world_key: str, world_path: str, world_threads: int,
                 device: str, cache: str, tracker: Any, describe: dict[str, Any],
                 processor: str, world_cpu: str):
        self.matrix, self.world_key, self.world_path = m, world_key, world_path
        self.world_threads, self.device, self.cache, self.tracker = (world_threads, device,
                                                                     cache, tracker)
        self.describe = describe  # the driver's, so records say what the driver read
        self.processor = processor  # the chip the keys name, which every cell must run on
        self.world_cpu = world_cpu  # the driver's CPU, which pretrained the world


_STATE: dict[str, tuple[C.Plan, list[Cell], World, StageCache]] = {}


def _state(job: _Job) -> tuple[C.Plan, list[Cell], World, StageCache]:
    """The plan, cells, world and stages of ``job``, built once per worker process (a worker
    runs many cells: the world and each stage's weights are read once, as on the local
    executor), in the driver's cache."""
    os.environ["ALIGNBENCH_CACHE"] = job.cache  # also when the caller started Ray itself
    if not Path(job.world_path).exists():
        raise RuntimeError(f"this node does not see the driver's cache: the world it built "
                           f"({job.world_path}) is not there; give every node the same "
                           f"shared cache at the same path (README: Running on a cluster)")
    if job.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the cell was given a GPU but this worker sees no CUDA device; "
                           "check the node's CUDA install and [resources] num_gpus")
    if (mine := cells_.chip(job.device)) != job.processor:
        raise RuntimeError(f"this worker computes on {mine}, and the matrix's keys name "
                           f"{job.processor}: chips round floats differently, so one key must "
                           f"not hold both; run a matrix on nodes of one processor model")
    tag = store.canonical([job.matrix.model_dump(mode="json"), job.world_key, job.device,
                           job.cache])
    if tag not in _STATE:
        plan = C.plan(job.matrix)
        # the thread count and the CPU its key was made with (the driver's)
        with torch_threads(job.world_threads), store.built_on(job.world_cpu):
            world = plan.scenario.build(plan.scenario_options, cache_root(), progress=False)
        if world.key != job.world_key:
            raise RuntimeError(f"this worker built world {world.key}, the driver {job.world_key}: "
                               f"the nodes run other code or library versions; install the "
                               f"same alignbench and packages on every node")
        world.describe = job.describe  # the same world; where its data was read is the driver's
        stages = StageCache(world, plan, job.device, False, cells_.thread_counts(plan),
                            job.processor)
        _STATE.clear()  # one matrix per worker at a time
        _STATE[tag] = (plan, cells_.expand(plan), world, stages)
    return _STATE[tag]


@contextlib.contextmanager
def _captured(path: Path) -> Iterator[None]:
    """Everything the task prints, Python's and C's (TRL's log dicts, warnings, alignbench's
    log), goes to ``path`` instead of the worker's stdout and stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    logger = logging.getLogger("alignbench")
    level = logger.level
    logger.setLevel(logging.INFO)  # a worker has no terminal: its file gets alignbench's INFO
    with open(path, "a") as f, cell_log(path):
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            logger.setLevel(level)


def _where() -> dict[str, Any]:
    ray = require_ray()
    return {"name": "ray", "node_id": ray.get_runtime_context().get_node_id(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "threads": torch.get_num_threads()}


def cell_task(job: _Job, index: int, key: str, *stages_done: dict[str, Any]) -> dict[str, Any]:
    """One cell on a worker: its result, its log, the stages it computed and, with
    ``save_policies``, its policy folder's files (the driver writes them into OUT)."""
    ray = require_ray()
    ray.get(job.tracker.started.remote(key, ray.get_runtime_context().get_node_id()))
    plan, cells, world, stages = _state(job)
    cell = cells[index]
    torch.set_num_threads(stages.threads[cell.name])
    if cells_.cell_key(cell, world, plan, job.device, stages.threads, job.processor) != key:
        raise RuntimeError(f"cell {cell.label} has another key on this worker than on the "
                           f"driver; install the same alignbench and packages on every node")
    seen = len(stages.built)
    with tempfile.TemporaryDirectory(prefix="alignbench-cell-") as scratch:
        log_path = Path(scratch) / "log.txt"
        with _captured(log_path):
            result = compute_cell(cell, key, world, stages, Path(scratch) / "cell", job.device)
        text = log_path.read_text(errors="replace")
        saved = saved_policies.pack(Path(scratch) / "cell" / result.policy) if result.policy \
            else None
    result.provenance["executor"] = _where()
    return {"record": result, "log": text, "built": stages.built[seen:], "policy": saved}


def processor_task(device: str) -> str:
    """The processor model this worker computes on for ``device`` (the keys name it)."""
    return cells_.chip(device)


def stage_task(job: _Job, name: str, seed: int, budget: dict[str, float | None]
               ) -> dict[str, Any]:
    """One shared stage, built into the cache (or found there); an error is returned, not
    raised, so that its cells still run and fail with the message the local executor gives."""
    _, _, _, stages = _state(job)
    seen = len(stages.built)
    error = None
    with tempfile.TemporaryDirectory(prefix="alignbench-stage-") as scratch:
        log_path = Path(scratch) / "log.txt"
        with _captured(log_path):
            try:
                stages.start(name, seed, budget, Ledger())
            except Exception as err:  # noqa: BLE001 - reported by the cells that need it
                error = f"{type(err).__name__}: {err}"
        text = log_path.read_text(errors="replace")
    return {"built": stages.built[seen:], "error": error, "log": text}


class _Tracker:
    """Which cells have started, how often and where (for the progress bar, the audit trail
    and each result's attempt count). It only counts: nothing ever waits on it."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.running: set[str] = set()
        self.nodes: dict[str, list[str]] = {}  # the node of each attempt of each cell

    def started(self, key: str, node: str) -> None:
        self.attempts[key] += 1
        self.running.add(key)
        self.nodes.setdefault(key, []).append(node)

    def status(self) -> dict[str, Any]:
        return {"running": sorted(self.running), "attempts": dict(self.attempts),
                "nodes": {k: list(v) for k, v in self.nodes.items()}}


class _LazyActor:
    """``Tracker.options(...).remote()`` without importing Ray at import time."""

    def options(self, **kw: Any) -> Any:
        """On the driver's node, which the matrix cannot outlive anyway: a worker node lost
        mid-matrix must not take the counts with it."""
        ray = require_ray()
        here = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False)
        return ray.remote(num_cpus=0)(_Tracker).options(scheduling_strategy=here, **kw)


Tracker = _LazyActor()
