"""Runs (or resumes) a matrix into its output folder: the preflight, the world and its stage
cache, the cells' keys, then the executor; the caller builds the report from what it wrote
(``alignbench run`` does, through :func:`bench.cli.run_matrix`).

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
from pathlib import Path
from typing import Callable

import torch

from bench import cells as cells_
from bench import config as C
from bench import output, preflight, store
from bench.executors import Executor, LocalExecutor, Prepared, ResultWriter
from bench.models import resolve_device
from bench.ray_executor import RayExecutor
from bench.stage_cache import StageCache
from bench.store import cache_root

log = logging.getLogger("alignbench")


def is_done(out: Path, key: str, save_policies: bool = False) -> bool:
    """A cell's result is there and ok; with ``save_policies``, and it was saved with its
    policy (the setting is not in the key, so a finished cell run without it is redone, to
    the same numbers, to keep its policy)."""
    rec = store.read_json(out / "cells" / key / "result.json")
    ok = isinstance(rec, dict) and rec.get("key") == key and rec.get("status") == "ok"
    return ok and (not save_policies or "policy" in rec)


def run(m: C.Matrix, out: Path | None = None, *, fresh: bool = False,
        statuses: list[str] | None = None,
        report: Callable[[Path], object] | None = None) -> Path:
    """Run (or resume) a matrix. Returns the output folder. Under the folder's lock, after the
    cells, ``report`` builds the report from OUT (it writes results.jsonl too); without one,
    results.jsonl alone is written. ``statuses``, when given, gets each cell's status from that
    index, read while this run still holds the lock (after it, another run may rewrite it)."""
    plan = C.plan(m)
    cells = cells_.expand(plan)
    out = preflight.before_world(plan, cells, Path(out or m.out))  # before --fresh deletes
    if not m.progress:  # the libraries' own bars too, so logs stay readable
        import datasets
        import transformers
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    new_folder = not out.exists()
    out = output.claim(out)
    with output.locked(out):
        executor: Executor | None = None
        try:  # everything that can refuse the matrix runs before anything in OUT is touched
            executor = RayExecutor(plan) if m.executor == "ray" else LocalExecutor()
            job = prepare(plan, cells, executor.processor)
        except BaseException:
            if executor is not None:
                executor.close()
            if new_folder:  # refused: the folder this run made goes, as if never asked for
                output.unclaim(out)
            raise
        try:
            _start(out, job, fresh)
            todo = [(c, k) for c, k in zip(cells, job.keys) if not is_done(out, k, m.save_policies)]
            executor.run(todo, job, ResultWriter(out))
        finally:
            executor.close()
        if report is not None:
            report(out)  # regenerates results.jsonl from cells/ first
        else:
            output.write_index(out, output.records(out)[0])
        if statuses is not None:
            lines = (out / "results.jsonl").read_text().splitlines()
            statuses += [json.loads(line)["status"] for line in lines if line.strip()]
        return out


def prepare(plan: C.Plan, cells: list[cells_.Cell],
            processor_of: Callable[[str], str] = cells_.chip) -> Prepared:
    """The world, its stage cache, the device, the world's thread count and every cell's key,
    with every check that needs the built world (the scenario reads its data here, and may
    refuse it). On Ray the device is the workers' ("cpu" or "cuda", checked where the cells
    run), and so is the processor model the keys name (``processor_of``, the executor's)."""
    m = plan.matrix
    device = C.executor_device(m) if m.executor == "ray" else resolve_device(m.device)
    world_threads = torch.get_num_threads()  # the micro world's key holds it
    world = plan.scenario.build(plan.scenario_options, cache_root(), progress=m.progress)
    threads = cells_.thread_counts(plan)
    processor = processor_of(device)
    stages = StageCache(world, plan, device, m.progress, threads, processor)
    preflight.with_world(plan, cells, world, stages)
    keys = [cells_.cell_key(c, world, plan, device, threads, processor) for c in cells]
    return Prepared(plan, cells, keys, world, stages, device, world_threads, processor)


def _start(out: Path, job: Prepared, fresh: bool) -> None:
    """OUT as this run starts: cleared with ``--fresh``, stale temporary files gone, and
    OUT/matrix.toml (the resolved matrix, with the folder actually written) and the plan."""
    import tomli_w
    if fresh:
        left = output.clear(out)
        if left:
            log.warning("--fresh left %d file(s) alignbench did not write (or that changed "
                        "since), e.g. %s; remove them yourself if you do not need them",
                        len(left), left[0].relative_to(out))
    output.remove_stale_temp_files(out)
    m = job.plan.matrix
    resolved = {**C.resolved(m), "out": str(out.resolve())}
    store.atomic_write_text(out / "matrix.toml", tomli_w.dumps(resolved))
    output.write_plan(out, m.name, [
        {"key": k, "method": c.name, "seed": c.seed, "point": c.point}
        for c, k in zip(job.cells, job.keys)])
