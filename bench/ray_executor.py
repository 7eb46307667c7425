"""The Ray executor (``executor = "ray"``, ``alignbench run --executor ray``): a matrix's cells
as Ray Core tasks, on a local Ray instance or a running cluster. The local executor
(``bench.runner``) stays the default and the reference: with the same thread count per cell
both give the same keys and, on CPU, bitwise the same results.

How it divides the work (a scheduler of our own would get retries and placement wrong):
- **Ray schedules**: each cell is a task with the resources its method asks for
  (``[resources]``, ``[resources.method.NAME]``); a cell whose worker or node is lost mid-cell
  is rerun by Ray (``resources.max_retries``). A cell that fails by itself (a NaN, a budget
  overrun) returns a failed result, as on the local executor, and is not rerun. A cell that
  asks for a GPU gets a fresh worker process (``max_calls=1``): torch binds a process to the
  GPU it first sees, and a reused worker would keep an earlier cell's GPU.
- **The driver writes**: a worker computes its cell in a scratch folder of its own and returns
  the result and the cell's log; only the driver writes OUT, exactly as the local executor does
  (``cells/KEY/result.json`` last and atomically, ``log.txt`` beside it). A lost attempt never
  wrote anything and its ledger dies with it, so a rerun charges the budget once and nothing
  half-written reaches OUT; a driver killed mid-matrix keeps every result it wrote, and the
  rerun resumes from them.
- **The shared work is a DAG**: the driver builds (or reads) the world, since every key depends
  on it; each shared stage (SFT per seed and demonstration budget) is one task; every cell task
  takes the stage tasks of its seed and budget as arguments, so Ray starts it when they are
  done, never polling. A cell with a compute cap builds its stages itself, under its own caps,
  as on the local executor. A compute-once set that only a method knows of (the comparison set
  PPO and DPO share) is computed under the cache's file lock, as locally: a second cell that
  asks waits for the lock and then reads it, and a lock whose holder died is released by the
  kernel, so a lost cell never leaves the others waiting. (An actor-held claim did: a waiter
  holding the only GPU starved the dead claimant's retry.)
- **The cache is a shared filesystem**: every node must see the same cache root
  (``ALIGNBENCH_CACHE``) on the same path, with working file locks (NFSv4, Lustre, GPFS). Each
  task is given the driver's root and refuses to run where the driver's world is not there.
  Stages are model folders, from megabytes to gigabytes: shipping them through Ray's object
  store would put a copy in each node's memory for every cell, and lose them when the cluster
  goes; the cache is already content-keyed, verified on load and built under a file lock, and a
  rerun on a new cluster finds every stage.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from bench import config as C
from bench import output, policies, runner, store
from bench.api import World
from bench.budget import UNITS, Ledger, compute_capped
from bench.extras import require
from bench.logs import cell_log
from bench.store import cache_root

GiB = 2**30
# what a worker must see as the driver does (the cache root is also given to every task)
PASSED_ENV = ("ALIGNBENCH_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class ClusterLost(RuntimeError):
    """The Ray cluster itself went away mid-matrix (its head, or the driver's node): one line
    for the user, exit 1; every result written so far stays, and rerunning resumes."""


def _first_line(err: BaseException, default: str = "") -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else default


def require_ray() -> ModuleType:
    """Ray, or a one-line error naming the extra."""
    return require("ray", "the ray executor")


# --- the driver: preflight ------------------------------------------------------------------

def check_matrix(plan: C.Plan) -> None:
    """What the local executor accepts and Ray cannot: a device decided on the driver for cells
    that run elsewhere, or CUDA cells that Ray reserves no GPU for."""
    m = plan.matrix
    if C.executor_device(m) == "auto":
        raise C.ConfigError('device = "auto" would be decided on the driver, not on the nodes '
                            'that run the cells; under the ray executor set device = "cpu" or '
                            '"cuda"')
    no_gpu = [n for n in plan.methods if not m.resources.of(n).num_gpus]
    if C.executor_device(m) == "cuda" and no_gpu:
        raise C.ConfigError(f'device = "cuda" but {", ".join(no_gpu)} ask for no GPU '
                            f"(resources.num_gpus = 0), so Ray would reserve none for their "
                            f"cells; set [resources] num_gpus (or [resources.method.NAME]) above 0")


class Session:
    """A Ray connection checked against the cluster's nodes: made before the output folder is
    touched (``--fresh`` deletes nothing for a matrix Ray then refuses), closed after the run.
    ``runner.run`` has checked the matrix itself (:func:`check_matrix`) before that."""

    def __init__(self, plan: C.Plan):
        self.ray, self.plan = require_ray(), plan
        self.started_here = _connect(self.ray, plan.matrix)
        try:
            _check_fits(self.ray, plan.matrix, set(plan.methods))  # the stages' tasks too
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()

    def run(self, todo: list[tuple[runner.Cell, str]], cells: list[runner.Cell],
            stages: runner.Stages, world_threads: int, device: str, out: Path) -> None:
        """Run ``todo`` (cells of ``cells``, with their keys), writing each result into
        ``out`` as it arrives."""
        ray, m = self.ray, self.plan.matrix
        tracker = Tracker.options(name=f"alignbench-{uuid.uuid4().hex[:8]}").remote()
        ray.get(tracker.status.remote())  # placed and alive before any cell reports to it
        job = _Job(for_workers(m, stages.world), stages.world.key,
                   str(stages.world.base_model), world_threads, device, str(cache_root()),
                   tracker, stages.world.describe)
        index = {id(c): i for i, c in enumerate(cells)}
        stage_refs: dict[Any, tuple[str, str]] = {}
        by_key: dict[str, Any] = {}
        pending: dict[Any, tuple[runner.Cell, str]] = {}
        for cell, key in todo:
            deps = []
            for name in [] if compute_capped(cell.budget) else sorted(self.plan.stage_names):
                skey, _ = stages.stage_key(name, cell.seed, cell.budget)
                if skey not in by_key:
                    by_key[skey] = _remote(stage_task, m, name).remote(
                        job, name, cell.seed, cell.budget)
                    stage_refs[by_key[skey]] = (name, skey)
                deps.append(by_key[skey])
            ref = _remote(cell_task, m, cell.name).remote(job, index[id(cell)], key, *deps)
            pending[ref] = (cell, key)
            runner.write_event(out, event="cell_submitted", key=key, cell=cell.label)
        try:
            _collect(ray, pending, stage_refs, tracker, self.plan, device, out, m.progress)
        except ray.exceptions.RayError as err:  # a cell's own loss is a result; this is not
            raise ClusterLost(f"the Ray cluster went away mid-matrix ({type(err).__name__}: "
                              f"{_first_line(err)[:200]}); finished cells are kept, and the same command "
                              f"resumes once the cluster is back") from None
        except BaseException:  # Ctrl-C: nothing more is started, what finished stays
            with contextlib.suppress(Exception):
                for ref in [*pending, *stage_refs]:
                    ray.cancel(ref, force=True)
            raise


def _connect(ray: ModuleType, m: C.Matrix) -> bool:
    """Join the cluster at ``m.ray_address``, or (none given) what Ray itself picks: the
    cluster in ``RAY_ADDRESS`` or one already running on this machine, else a new local
    instance sized to the machine. True when this call started Ray (the driver stops it)."""
    if ray.is_initialized():  # a caller's own session (tests, a notebook): used as it is
        return False
    _probe(m.ray_address)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env["ALIGNBENCH_CACHE"] = str(cache_root())
    try:
        ray.init(address=m.ray_address, runtime_env={"env_vars": env}, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as err:
        first = _first_line(err, type(err).__name__)
        raise C.ConfigError(f"cannot join the Ray cluster at {m.ray_address!r} ({first}); start "
                            f"it with 'ray start --head', or leave --address out for a local "
                            f"instance") from None
    return True


def _probe(address: str | None) -> None:
    """A HOST:PORT that nothing answers at is refused in seconds (``ray.init`` retries it for
    minutes); "auto", "local" and ray:// addresses are Ray's to resolve."""
    if address in (None, "auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise C.ConfigError(f"--address {address!r} is not HOST:PORT, 'auto' or ray://HOST:PORT; "
                            f"give the address 'ray start --head' printed")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise C.ConfigError(f"nothing answers at {address} ({err.strerror or err}); start the "
                            f"head node with 'ray start --head --port={port}' or check the "
                            f"address") from None


def _check_fits(ray: ModuleType, m: C.Matrix, methods: set[str]) -> None:
    """A task that asks for more than any node has would wait forever: refused up front."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for name in sorted(methods):
        r = m.resources.of(name)
        need = {"CPU": r.num_cpus or 0, "GPU": r.num_gpus or 0, "memory": (r.memory or 0) * GiB}
        if not any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
            most = {k: max((node.get(k, 0) for node in nodes), default=0) for k in need}
            raise C.ConfigError(
                f"{name}'s tasks ask for {r.num_cpus:g} CPUs, {r.num_gpus:g} GPUs and "
                f"{r.memory or 0:g} GiB, but no node of this Ray cluster has that much (the "
                f"largest have {most['CPU']:g} CPUs, {most['GPU']:g} GPUs, "
                f"{most['memory'] / GiB:.1f} GiB); lower [resources] or add a larger node")


def _remote(fn: Callable[..., Any], m: C.Matrix, method: str) -> Any:
    """``fn`` as a Ray task with the resources ``method``'s cells ask for."""
    r = m.resources.of(method)
    opts: dict[str, Any] = {"num_cpus": r.num_cpus, "num_gpus": r.num_gpus,
                            "max_retries": m.resources.max_retries}
    if r.memory:
        opts["memory"] = int(r.memory * GiB)
    return _task(fn, bool(r.num_gpus)).options(**opts)


@functools.cache
def _task(fn: Callable[..., Any], one_per_process: bool) -> Any:
    """Exported to the cluster once per function; a GPU task gets a fresh worker process."""
    ray = require_ray()
    return ray.remote(max_calls=1)(fn) if one_per_process else ray.remote(fn)


# --- the driver: results --------------------------------------------------------------------

def _collect(ray: ModuleType, pending: dict[Any, tuple[runner.Cell, str]],
             stage_refs: dict[Any, tuple[str, str]], tracker: Any, plan: C.Plan,
             device: str, out: Path, progress: bool) -> None:
    """Write every result as it arrives; the bar counts running, finished and failed cells."""
    bar = tqdm(total=len(pending), desc="cells", disable=not progress)
    counts: Counter[str] = Counter()
    ended: set[str] = set()
    seen: Counter[str] = Counter()  # attempts already written as cell_running events
    labels = {key: cell.label for cell, key in pending.values()}
    waiting = {**pending, **stage_refs}
    while waiting:
        # the timeout only refreshes the bar's running count; results arrive as they finish
        ready, _ = ray.wait(list(waiting), num_returns=1, timeout=2.0)
        status = ray.get(tracker.status.remote())
        for key, nodes in status["nodes"].items():  # the audit trail of where each attempt ran
            for n in range(seen[key], len(nodes)):
                runner.write_event(out, event="cell_running", key=key, cell=labels[key],
                                   attempt=n + 1, node=nodes[n])
            seen[key] = len(nodes)
        for ref in ready:
            if ref in stage_refs:
                _stage_done(ray, ref, waiting.pop(ref), out)
                continue
            cell, key = waiting.pop(ref)
            rec = _cell_done(ray, ref, cell, key, plan, device, out, status["attempts"])
            if rec["status"] != "ok":
                runner.log.warning("cell %s failed: %s", cell.label, rec["error"])
            counts["finished" if rec["status"] == "ok" else "failed"] += 1
            ended.add(key)
            bar.update(1)
        running = len(set(status["running"]) - ended)
        bar.set_postfix_str(f"running={running} finished={counts['finished']} "
                            f"failed={counts['failed']}")
    bar.close()


def _stage_done(ray: ModuleType, ref: Any, what: tuple[str, str], out: Path) -> None:
    name, key = what
    try:
        res = ray.get(ref)
    except ray.exceptions.RayError as err:  # its cells fail as lost; a rerun retries them
        runner.log.warning("stage %s %s was lost (%s)", name, key, type(err).__name__)
        return
    for built in res["built"]:
        runner.write_event(out, event="stage_built", cell=f"{name} stage", **built)
    if res["built"] or res["error"]:
        logs = out / output.MARKER / output.STAGE_LOGS
        logs.mkdir(parents=True, exist_ok=True)
        before = output.files_under(logs)
        store.atomic_write_text(logs / f"{name}-{key}.log", res["log"])
        output.record_written(logs, before)  # --fresh removes what it wrote, and only that
    if res["error"]:
        runner.log.warning("stage %s failed (%s); its cells will say why", name, res["error"])


def _cell_done(ray: ModuleType, ref: Any, cell: runner.Cell, key: str, plan: C.Plan,
               device: str, out: Path, attempts: dict[str, int]) -> dict[str, Any]:
    """Write one cell's result (or, when the cell returned none, a failed result saying why)."""
    try:
        res = ray.get(ref)
        rec, log_text, built, saved = res["record"], res["log"], res["built"], res["policy"]
    except ray.exceptions.RayError as err:
        rec, log_text, built, saved = _unreturned(cell, key, plan, device, err,
                                                  attempts.get(key, 0)), "", [], None
    rec["provenance"].setdefault("executor", {})["attempts"] = attempts.get(key, 0)
    cell_dir = output.make_cell_dir(out, key)
    store.atomic_write_text(cell_dir / "log.txt", log_text)
    if saved:
        before = output.files_under(cell_dir)
        policies.unpack(saved, cell_dir / policies.POLICY_DIR)
        output.record_written(cell_dir, before)  # --fresh removes what it wrote, and only that
    for b in built:
        runner.write_event(out, event="stage_built", cell=cell.label, **b)
    store.atomic_write_json(cell_dir / "result.json", rec)  # the completion marker, last
    runner.write_event(out, event="cell_end", key=key, cell=cell.label, status=rec["status"],
                       node=rec["provenance"]["executor"].get("node_id"))
    return rec


def _unreturned(cell: runner.Cell, key: str, plan: C.Plan, device: str, err: Exception,
                attempts: int) -> dict[str, Any]:
    """The failed result of a cell that returned none: its task raised on the worker (a cell's
    own failures are results; these are the executor's, such as a node with other code), a
    stage it waits for was lost for good, or every attempt of it was lost with its worker or
    node."""
    ray = require_ray()
    rec = runner.new_record(cell, key, plan)
    caps = {u: cell.budget.get(u) for u in UNITS if cell.budget.get(u) is not None}
    cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) \
        and isinstance(err.cause, BaseException) else err
    retry = "rerun the matrix to retry this cell, or raise resources.max_retries"
    if attempts == 0 and isinstance(cause, ray.exceptions.RayError):
        error = (f"lost before it ran: a shared stage it waits for was lost "
                 f"({type(cause).__name__}); {retry}")
    elif isinstance(err, ray.exceptions.RayTaskError):
        error = f"on the worker: {type(cause).__name__}: {cause}"
    else:
        error = (f"lost: {type(err).__name__} after {attempts} attempt(s) "
                 f"({_first_line(err)[:300]}); {retry}")
    rec.update(status="failed", failed_step=None, budget=Ledger(caps=caps).snapshot(),
               error=error,
               provenance={**store.provenance(device), "executor": {"name": "ray"},
                           "matrix_name": plan.matrix.name})
    return rec


# --- the workers ----------------------------------------------------------------------------

class _Job:
    """What every task of one matrix needs to rebuild the driver's view (picklable)."""

    def __init__(self, m: C.Matrix, world_key: str, world_path: str, world_threads: int,
                 device: str, cache: str, tracker: Any, describe: dict[str, Any]):
        self.matrix, self.world_key, self.world_path = m, world_key, world_path
        self.world_threads, self.device, self.cache, self.tracker = (world_threads, device,
                                                                     cache, tracker)
        self.describe = describe  # the driver's, so records say what the driver read


def for_workers(m: C.Matrix, world: World) -> C.Matrix:
    """The matrix a worker rebuilds the world from: the scenario's portable options where it
    has them (the user's data files replaced by their snapshots in the shared cache, so a node
    that cannot see the user's files builds the same world), else the matrix as it is."""
    if world.portable_options is None:
        return m
    scenario = m.scenario.model_copy(update={"options": world.portable_options})
    return m.model_copy(update={"scenario": scenario})


_STATE: dict[str, tuple[C.Plan, list[runner.Cell], World, runner.Stages]] = {}


def _state(job: _Job) -> tuple[C.Plan, list[runner.Cell], World, runner.Stages]:
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
    tag = store.canonical([job.matrix.model_dump(mode="json"), job.world_key, job.device,
                           job.cache])
    if tag not in _STATE:
        plan = C.plan(job.matrix)
        with runner.torch_threads(job.world_threads):  # the thread count its key was made with
            world = plan.scenario.build(plan.scenario_options, cache_root(), progress=False)
        if world.key != job.world_key:
            raise RuntimeError(f"this worker built world {world.key}, the driver {job.world_key}: "
                               f"the nodes run other code or library versions; install the "
                               f"same alignbench and packages on every node")
        world.describe = job.describe  # the same world; where its data was read is the driver's
        stages = runner.Stages(world, plan, job.device, False, runner.thread_counts(plan))
        _STATE.clear()  # one matrix per worker at a time
        _STATE[tag] = (plan, runner.expand(plan), world, stages)
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
    if runner.cell_key(cell, world, plan, job.device, stages.threads) != key:
        raise RuntimeError(f"cell {cell.label} has another key on this worker than on the "
                           f"driver; install the same alignbench and packages on every node")
    seen = len(stages.built)
    with tempfile.TemporaryDirectory(prefix="alignbench-cell-") as scratch:
        log_path = Path(scratch) / "log.txt"
        with _captured(log_path):
            rec = runner.compute_cell(cell, key, world, stages, Path(scratch) / "cell",
                                      job.device)
        text = log_path.read_text(errors="replace")
        saved = policies.pack(Path(scratch) / "cell" / rec["policy"]) if rec.get("policy") \
            else None
    rec["provenance"]["executor"] = _where()
    return {"record": rec, "log": text, "built": stages.built[seen:], "policy": saved}


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
