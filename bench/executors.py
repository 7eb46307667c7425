"""Where a matrix's cells run, behind one small interface (:class:`Executor`): the local
executor (every cell in this process, one after another: the reference) here, the Ray executor
in :mod:`bench.ray_executor`. Both hand each finished cell to one :class:`ResultWriter`, the only
code that writes a cell's result, its log and policy files and the run's events into OUT."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from bench import config as C
from bench import meter, output, saved_policies, store, tracking
from bench.api import World
from bench.cell_run import compute_cell
from bench.cells import Cell, chip
from bench.logs import cell_log
from bench.record import CellResult
from bench.stage_cache import StageCache

log = logging.getLogger("alignbench")


@dataclass(frozen=True)
class Prepared:
    """A matrix ready to run: its cells and their keys, the built world and its stage cache,
    the device cells run on and the processor model behind it (keyed), and the thread count
    the world was built with."""

    plan: C.Plan
    cells: list[Cell]
    keys: list[str]
    world: World
    stages: StageCache
    device: str
    world_threads: int
    processor: str


class ResultWriter:
    """Everything an executor writes into OUT: ``events.jsonl`` (the audit trail), each cell's
    ``log.txt``, policy files and ``result.json`` (last and atomically: the completion marker),
    a shared stage's log, and the warning a failed cell or stage gives on the terminal."""

    def __init__(self, out: Path):
        self.out = out

    def event(self, **kw: Any) -> None:
        kw["time"] = datetime.now(timezone.utc).isoformat()
        with open(self.out / "events.jsonl", "a") as f:
            f.write(json.dumps(kw) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def cell_dir(self, key: str) -> Path:
        return output.make_cell_dir(self.out, key)

    def cell_done(self, cell: Cell, key: str, result: CellResult, built: list[dict[str, str]],
                  **where: Any) -> None:
        """A finished cell: the stages it built, its result and its end (``where``: the
        executor's words for where it ran, in the ``cell_end`` event)."""
        for b in built:
            self.event(event="stage_built", cell=cell.label, **b)
        store.atomic_write_json(self.cell_dir(key) / "result.json", result.to_json())
        self.event(event="cell_end", key=key, cell=cell.label, status=result.status, **where)
        if result.status != "ok":
            log.warning("cell %s failed: %s", cell.label, result.error)

    def cell_files(self, key: str, log_text: str, policy: dict[str, bytes] | None) -> None:
        """A cell computed elsewhere: its log, and its saved policy's files."""
        cell_dir = self.cell_dir(key)
        store.atomic_write_text(cell_dir / "log.txt", log_text)
        if policy:
            before = output.files_under(cell_dir)
            saved_policies.unpack(policy, cell_dir / saved_policies.POLICY_DIR)
            output.record_written(cell_dir, before)  # --fresh removes what it wrote, and only that

    def stage_done(self, name: str, key: str, built: list[dict[str, str]], log_text: str,
                   error: str | None) -> None:
        """A shared stage computed on its own (Ray's stage tasks): its events and its log."""
        for b in built:
            self.event(event="stage_built", cell=f"{name} stage", **b)
        if built or error:
            logs = self.out / output.MARKER / output.STAGE_LOGS
            logs.mkdir(parents=True, exist_ok=True)
            before = output.files_under(logs)
            store.atomic_write_text(logs / f"{name}-{key}.log", log_text)
            output.record_written(logs, before)  # --fresh removes what it wrote, and only that
        if error:
            log.warning("stage %s failed (%s); its cells will say why", name, error)


class Executor(Protocol):
    """Runs the cells still to do, handing each result to the writer as it finishes."""

    def run(self, todo: list[tuple[Cell, str]], job: Prepared, writer: ResultWriter) -> None: ...

    def processor(self, device: str) -> str:
        """The processor model the cells will compute on, for their keys."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """The reference executor: every cell in this process, one after another; the trainers'
    log lines go to the cell's ``log.txt``, not the terminal."""

    def processor(self, device: str) -> str:
        return chip(device)

    def run(self, todo: list[tuple[Cell, str]], job: Prepared, writer: ResultWriter) -> None:
        stages = job.stages
        bar = tqdm(todo, desc="cells", disable=not stages.progress)
        for cell, key in bar:
            bar.set_postfix_str(cell.label)
            writer.event(event="cell_start", key=key, cell=cell.label)
            seen = len(stages.built)
            result = self.compute(cell, key, job, writer)
            meter.release_memory()  # the next cell's peak starts from what the run still holds
            writer.cell_done(cell, key, result, stages.built[seen:])

    @staticmethod
    def compute(cell: Cell, key: str, job: Prepared, writer: ResultWriter) -> CellResult:
        """One cell in its folder in OUT (what it writes there is recorded, for --fresh)."""
        cell_dir = writer.cell_dir(key)
        before = output.files_under(cell_dir)
        m = job.plan.matrix
        tracked = tracking.for_cell(m.report_to, writer.out, cell_dir, key, {
            "method": cell.name, "seed": cell.seed, "point": cell.point,
            "method_config": cell.method_config, "matrix": m.name})
        with cell_log(cell_dir / "log.txt"):
            result = compute_cell(cell, key, job.world, job.stages, cell_dir, job.device,
                                  tracked)
        output.record_written(cell_dir, before)
        return result

    def close(self) -> None:
        pass
