"""The Ray executor (``executor = "ray"``, ``alignbench run --executor ray``): a matrix's cells
as Ray Core tasks, on a local Ray instance or a running cluster. The local executor
(``bench.executors``) stays the default and the reference: with the same thread count per cell
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
import uuid
from collections import Counter
from types import ModuleType
from typing import Any, Callable

from tqdm.auto import tqdm

from bench import config as C
from bench import store
from bench.api import World
from bench.budget import UNITS, Ledger, compute_capped
from bench.cell_run import new_result
from bench.cells import Cell
from bench.executors import Prepared, ResultWriter
from bench.ray_tasks import Tracker, _Job, cell_task, processor_task, require_ray, stage_task
from bench.record import CellResult
from bench.store import cache_root

log = logging.getLogger("alignbench")
GiB = 2**30
# what a worker must see as the driver does (the cache root is also given to every task)
PASSED_ENV = ("ALIGNBENCH_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class ClusterLost(RuntimeError):
    """The Ray cluster itself went away mid-matrix (its head, or the driver's node): one line
    for the user, exit 1; every result written so far stays, and rerunning resumes."""


def _first_line(err: BaseException, default: str = "") -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else default


# --- the driver ----------------------------------------------------------------------------

class RayExecutor:
    """The cells as Ray tasks (:class:`bench.executors.Executor`). Made before the output folder
    is touched, so that ``--fresh`` deletes nothing for a matrix Ray then refuses: it joins the
    cluster and checks that every method's tasks fit one of its nodes (the preflight has
    checked the matrix itself). Closed after the run."""

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

    def processor(self, device: str) -> str:
        """The processor model the cells compute on, as one worker with the first method's
        resources sees it: the keys name it (the driver's own chip may be another; a worker
        on a third refuses its cells, :func:`bench.ray_tasks.cell_task`)."""
        method = next(iter(self.plan.methods))
        return self.ray.get(_remote(processor_task, self.plan.matrix, method).remote(device))

    def run(self, todo: list[tuple[Cell, str]], job: Prepared, writer: ResultWriter) -> None:
        """Run ``todo`` (cells of ``job.cells``, with their keys), handing each result to
        ``writer`` as it arrives."""
        ray = self.ray
        tracker = Tracker.options(name=f"alignbench-{uuid.uuid4().hex[:8]}").remote()
        ray.get(tracker.status.remote())  # placed and alive before any cell reports to it
        pending, stage_refs = self._submit(todo, job, writer, tracker)
        try:
            _collect(ray, _Waiting(pending, stage_refs, tracker), job, writer)
        except ray.exceptions.RayError as err:  # a cell's own loss is a result; this is not
            raise ClusterLost(f"the Ray cluster went away mid-matrix ({type(err).__name__}: "
                              f"{_first_line(err)[:200]}); finished cells are kept, and the same "
                              f"command resumes once the cluster is back") from None
        except BaseException:  # Ctrl-C: nothing more is started, what finished stays
            with contextlib.suppress(Exception):
                for ref in [*pending, *stage_refs]:
                    ray.cancel(ref, force=True)
            raise

    def _submit(self, todo: list[tuple[Cell, str]], job: Prepared, writer: ResultWriter,
                tracker: Any) -> tuple[dict[Any, tuple[Cell, str]], dict[Any, tuple[str, str]]]:
        """Every stage task once and every cell task, each cell's after its stages'."""
        m, stages = self.plan.matrix, job.stages
        task_job = _Job(for_workers(m, stages.world), stages.world.key,
                        str(stages.world.base_model), job.world_threads, job.device,
                        str(cache_root()), tracker, stages.world.describe,
                        job.processor, store.cpu_model())
        index = {id(c): i for i, c in enumerate(job.cells)}
        stage_refs: dict[Any, tuple[str, str]] = {}
        by_key: dict[str, Any] = {}
        pending: dict[Any, tuple[Cell, str]] = {}
        for cell, key in todo:
            deps = []
            for name in [] if compute_capped(cell.budget) else sorted(self.plan.stage_names):
                skey, _ = stages.stage_key(name, cell.seed, cell.budget)
                if skey not in by_key:
                    by_key[skey] = _remote(stage_task, m, name).remote(
                        task_job, name, cell.seed, cell.budget)
                    stage_refs[by_key[skey]] = (name, skey)
                deps.append(by_key[skey])
            ref = _remote(cell_task, m, cell.name).remote(task_job, index[id(cell)], key, *deps)
            pending[ref] = (cell, key)
            writer.event(event="cell_submitted", key=key, cell=cell.label)
        return pending, stage_refs


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

class _Waiting:
    """The tasks a driver waits on: cells (with their keys) and shared stages (name, key)."""

    def __init__(self, cells: dict[Any, tuple[Cell, str]], stages: dict[Any, tuple[str, str]],
                 tracker: Any):
        self.cells, self.stages, self.tracker = cells, stages, tracker


def _collect(ray: ModuleType, waiting: _Waiting, job: Prepared, writer: ResultWriter) -> None:
    """Hand every result to the writer as it arrives; the bar counts running, finished and
    failed cells."""
    bar = tqdm(total=len(waiting.cells), desc="cells", disable=not job.plan.matrix.progress)
    counts: Counter[str] = Counter()
    ended: set[str] = set()
    seen: Counter[str] = Counter()  # attempts already written as cell_running events
    labels = {key: cell.label for cell, key in waiting.cells.values()}
    left = {**waiting.cells, **waiting.stages}
    while left:
        # the timeout only refreshes the bar's running count; results arrive as they finish
        ready, _ = ray.wait(list(left), num_returns=1, timeout=2.0)
        status = ray.get(waiting.tracker.status.remote())
        for key, nodes in status["nodes"].items():  # the audit trail of where each attempt ran
            for n in range(seen[key], len(nodes)):
                writer.event(event="cell_running", key=key, cell=labels[key], attempt=n + 1,
                             node=nodes[n])
            seen[key] = len(nodes)
        for ref in ready:
            if ref in waiting.stages:
                _stage_done(ray, ref, left.pop(ref), writer)
                continue
            cell, key = left.pop(ref)
            result = _cell_done(ray, ref, cell, key, job, writer, status["attempts"])
            counts["finished" if result.status == "ok" else "failed"] += 1
            ended.add(key)
            bar.update(1)
        running = len(set(status["running"]) - ended)
        bar.set_postfix_str(f"running={running} finished={counts['finished']} "
                            f"failed={counts['failed']}")
    bar.close()


def _stage_done(ray: ModuleType, ref: Any, what: tuple[str, str], writer: ResultWriter) -> None:
    name, key = what
    try:
        res = ray.get(ref)
    except ray.exceptions.RayError as err:  # its cells fail as lost; a rerun retries them
        log.warning("stage %s %s was lost (%s)", name, key, type(err).__name__)
        return
    writer.stage_done(name, key, res["built"], res["log"], res["error"])


def _cell_done(ray: ModuleType, ref: Any, cell: Cell, key: str, job: Prepared,
               writer: ResultWriter, attempts: dict[str, int]) -> CellResult:
    """Write one cell's result (or, when the cell returned none, a failed result saying why)."""
    try:
        res = ray.get(ref)
        result, log_text, built, saved = res["record"], res["log"], res["built"], res["policy"]
    except ray.exceptions.RayError as err:
        result, log_text, built, saved = _unreturned(cell, key, job, err,
                                                     attempts.get(key, 0)), "", [], None
    executor = result.provenance.setdefault("executor", {})
    executor["attempts"] = attempts.get(key, 0)
    writer.cell_files(key, log_text, saved)
    writer.cell_done(cell, key, result, built, node=executor.get("node_id"))
    return result


def _unreturned(cell: Cell, key: str, job: Prepared, err: Exception,
                attempts: int) -> CellResult:
    """The failed result of a cell that returned none: its task raised on the worker (a cell's
    own failures are results; these are the executor's, such as a node with other code), a
    stage it waits for was lost for good, or every attempt of it was lost with its worker or
    node."""
    ray = require_ray()
    result = new_result(cell, key, job.plan.matrix.scenario.name)
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
    result.status, result.error, result.budget = "failed", error, Ledger(caps=caps).snapshot()
    result.provenance = {**store.provenance(job.device), "executor": {"name": "ray"},
                         "matrix_name": job.plan.matrix.name}
    return result


def for_workers(m: C.Matrix, world: World) -> C.Matrix:
    """The matrix a worker rebuilds the world from: the scenario's portable options where it
    has them (the user's data files replaced by their snapshots in the shared cache, so a node
    that cannot see the user's files builds the same world), else the matrix as it is."""
    if world.portable_options is None:
        return m
    scenario = m.scenario.model_copy(update={"options": world.portable_options})
    return m.model_copy(update={"scenario": scenario})
