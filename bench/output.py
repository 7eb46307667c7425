"""The output folder: which folders alignbench may write into, what it may delete, and the
plan that says which cells belong to the current matrix.

A folder alignbench creates (or adopts while empty) carries ``.alignbench/``: the lock, the
plan of the current matrix, and a marker. alignbench writes into no other non-empty folder,
refuses ``/``, the home folder and files, and ``--fresh`` removes only what it wrote itself.
"""

from __future__ import annotations

import fcntl
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench import record, store
from bench.store import OutputFolderError
from bench.errors import UserError

MARKER = ".alignbench"
CELL_MARKER = ".alignbench-cell"  # in every cell folder alignbench creates
# the files alignbench writes at the top of an output folder (the layout in bench/runner.py)
OWN_FILES = ("matrix.toml", "results.jsonl", "summary.csv", "report.html", "report.md",
             "ranking.json", "findings.json",
             "events.jsonl")
KEY = re.compile(r"[0-9a-f]{%d}" % store.KEY_LEN)


def _is_key_dir(d: Path) -> bool:
    return d.is_dir() and bool(KEY.fullmatch(d.name))


def made_by_alignbench(out: Path) -> bool:
    """A folder written before markers existed: nothing in it but alignbench's own file names
    and cell folders, and at least one cell result whose key is its folder's name (a folder of
    a user's own matrix.toml or report.md is not adopted), so it can be resumed safely."""
    if not (out / "cells").is_dir():
        return False
    for f in out.iterdir():
        if f.name in OWN_FILES or f.name == ".lock":
            continue
        if f.name == "cells" and f.is_dir() and all(_is_key_dir(d) for d in f.iterdir()):
            continue
        return False
    return any(isinstance(rec := store.read_json(d / "result.json"), dict)
               and rec.get("key") == d.name for d in (out / "cells").iterdir())


def claim(out: Path) -> Path:
    """Make ``out`` an alignbench output folder, or refuse it with an OutputFolderError."""
    out = check(out)
    if (out / MARKER).is_dir():
        return out
    try:
        (out / MARKER).mkdir(parents=True, exist_ok=True)
        store.atomic_write_json(out / MARKER / "marker.json", {"created_by": "alignbench"})
    except OSError as err:
        raise OutputFolderError(f"cannot write to output folder {out} ({err.strerror}); give a "
                                f"folder you can write to with --out") from None
    return out


def unclaim(out: Path) -> None:
    """Undo ``claim`` on a folder it created in this run, whose run was refused before it
    wrote anything: the marker and the lock go, and the folder if nothing else is in it (a
    file of the user's keeps it)."""
    for name in ("marker.json", "lock"):
        (out / MARKER / name).unlink(missing_ok=True)
    for folder in (out / MARKER, out):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return


def check(out: Path) -> Path:
    """Refuse, with an OutputFolderError, a folder alignbench may not claim; create nothing
    (a run checks this first, and claims the folder once nothing else can refuse the run)."""
    out = Path(out).expanduser()
    where = out.resolve()
    home = Path.home().resolve()
    if where == Path(where.anchor) or where == home or where in home.parents:
        what = "your home folder" if where == home else (
            "the root folder" if where == Path(where.anchor) else "a folder above your home")
        raise OutputFolderError(f"output folder {out} is {what}; alignbench writes many files "
                                f"into its output folder: give a new one, e.g. --out runs/NAME")
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"output folder {out} is a file, not a folder; give a new "
                                f"folder with --out")
    outer = next((p for p in where.parents if (p / MARKER).is_dir()), None)
    if outer is not None:  # the outer run's --fresh and cell folders would reach into it
        raise OutputFolderError(f"output folder {out} is inside the alignbench output folder "
                                f"{outer}; give a folder outside it, e.g. --out "
                                f"{outer.parent / (outer.name + '-2')}")
    if (out / MARKER).is_dir():
        return out
    if out.is_dir() and any(out.iterdir()) and not made_by_alignbench(out):
        raise OutputFolderError(
            f"output folder {out} is not empty and was not created by alignbench (no {MARKER}/ "
            f"inside); alignbench never writes into a folder it does not own: give a new or "
            f"empty folder with --out")
    return out


class OutputLocked(UserError, RuntimeError):
    pass


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """One alignbench run writes into one output folder at a time (flock; released by the
    kernel if the process dies)."""
    with open(out / MARKER / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLocked(f"another alignbench run is writing to {out}; wait for it or use "
                               f"another --out folder") from None
        except OSError as err:  # a filesystem without flock (some network mounts)
            raise OutputFolderError(f"cannot lock output folder {out} ({err.strerror}): its "
                                    f"filesystem gives no file locks, so two runs could write "
                                    f"it at once; give an --out folder on a local disk") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def own_cell_dirs(out: Path) -> list[Path]:
    """Cell folders alignbench created: marked, or (written before markers) named by a key."""
    cells = out / "cells"
    if not cells.is_dir():
        return []
    return [d for d in sorted(cells.iterdir())
            if d.is_dir() and ((d / CELL_MARKER).is_file() or _is_key_dir(d))]


CELL_FILES = ("result.json", "log.txt", CELL_MARKER)  # log.txt: the Ray executor's
# a cell's folder also holds the trainers' output_dir (trainer/), save_policies' policy/ and
# report_to's tracking/: what alignbench writes there is recorded as it is written
# (record_written), and --fresh removes exactly that
WRITTEN = ".alignbench-written.json"
STAGE_LOGS = "stage-logs"  # in MARKER: the Ray executor's logs of shared stages


FOLDER = [-1, -1]  # a folder's entry in the record (a file's is [size, mtime_ns])


def files_under(folder: Path) -> dict[str, list[int]]:
    """Every file and folder below ``folder`` (relative path -> [size, mtime_ns], or
    :data:`FOLDER`), its records left out."""
    out = {}
    for f in sorted(Path(folder).rglob("*")) if Path(folder).is_dir() else []:
        if f.is_symlink() or f.name in (WRITTEN, *CELL_FILES):
            continue
        if f.is_dir():
            out[str(f.relative_to(folder))] = FOLDER
        elif f.is_file():
            st = f.stat()
            out[str(f.relative_to(folder))] = [st.st_size, st.st_mtime_ns]
    return out


def record_written(folder: Path, before: dict[str, list[int]]) -> None:
    """Add to ``folder``'s record of what alignbench wrote the files that appeared or changed
    since ``before`` (a :func:`files_under` taken before alignbench wrote them)."""
    now = files_under(folder)
    written = _written(folder)
    written.update({k: v for k, v in now.items() if before.get(k) != v})
    store.atomic_write_json(Path(folder) / WRITTEN, {"files": written})


def _written(folder: Path) -> dict[str, list[int]]:
    rec = store.read_json(Path(folder) / WRITTEN)
    files = rec.get("files") if isinstance(rec, dict) else None
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, list)} \
        if isinstance(files, dict) else {}


def remove_written(folder: Path, under: str | None = None) -> list[Path]:
    """Remove the files alignbench recorded writing below ``folder`` (only those below its
    subfolder ``under``, when given) that are as it wrote them, then the folders that held
    them once empty; returns every file it left there (the user's own, or one changed since).
    """
    folder = Path(folder)
    top = folder / under if under else folder
    written = _written(folder)
    made: set[Path] = set()  # the folders that held what it wrote: removed once empty
    for rel, stat in list(written.items()):
        f = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute() or top not in (f, *f.parents):
            continue
        del written[rel]
        made.update(p for p in (f, *f.parents) if folder in p.parents
                    and top in (p, *p.parents) and (p != f or stat == FOLDER))
        if stat != FOLDER and f.is_file() and not f.is_symlink() and [f.stat().st_size,
                                                     f.stat().st_mtime_ns] == stat:
            f.unlink()
    if written:
        store.atomic_write_json(folder / WRITTEN, {"files": written})
    else:
        (folder / WRITTEN).unlink(missing_ok=True)
    for d in sorted(made, key=lambda d: -len(d.parts)):
        if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()
    if not top.exists():
        return []
    return [top] if not top.is_dir() else [f for f in sorted(top.rglob("*")) if not f.is_dir()]


def clear(out: Path) -> list[Path]:
    """``--fresh``: remove every result, report and plan alignbench wrote here, and nothing
    else: a user's file beside the reports, under ``cells/`` or inside a cell folder (its
    trainer/, policy/ or tracking/ included) stays, and so does the folder that holds it.
    Returns the files it left inside folders alignbench made, for the run to name."""
    left = []
    for d in own_cell_dirs(out):
        for name in CELL_FILES:
            (d / name).unlink(missing_ok=True)
        store.remove_stale_temp_files(d, CELL_FILES)
        left += remove_written(d)
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    for name in (*OWN_FILES, ".lock"):
        (out / name).unlink(missing_ok=True)
    (out / MARKER / "plan.json").unlink(missing_ok=True)
    left += remove_written(out / MARKER / STAGE_LOGS)  # the Ray executor's
    if (out / MARKER / STAGE_LOGS).is_dir() and not any((out / MARKER / STAGE_LOGS).iterdir()):
        (out / MARKER / STAGE_LOGS).rmdir()
    if (out / "cells").is_dir() and not any((out / "cells").iterdir()):
        (out / "cells").rmdir()
    return left


def remove_stale_temp_files(out: Path) -> None:
    """Temp files of atomic writes that a killed run left behind, of alignbench's own files
    only (``.result.json.XXXXXXXX.tmp``; a user's ``.env.tmp`` is not one)."""
    store.remove_stale_temp_files(out, OWN_FILES)
    store.remove_stale_temp_files(out / MARKER, ("plan.json", "marker.json"))
    for d in own_cell_dirs(out):
        store.remove_stale_temp_files(d, CELL_FILES)


def make_cell_dir(out: Path, key: str) -> Path:
    d = out / "cells" / key
    d.mkdir(parents=True, exist_ok=True)
    (d / CELL_MARKER).touch()
    return d


# --------------------------------------------------------------------------- the plan


def write_plan(out: Path, name: str, cells: list[dict[str, Any]]) -> None:
    """The current matrix's cells, in matrix order: ``[{"key", "method", "seed", "point"}]``.
    The index and the report show exactly these."""
    store.atomic_write_json(out / MARKER / "plan.json", {"matrix": name, "cells": cells})


def read_plan(out: Path) -> list[dict[str, Any]] | None:
    """The planned cells, or None for a folder with no plan (made by hand, or by an older
    version): then results.jsonl, if any, says which cells the matrix had."""
    return _planned(Path(out))[0]


def _planned(out: Path) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(the planned cells or None, a placeholder for each plan or index line that is not
    one): plan.json when it has a plan's shape, else results.jsonl's lines that name a cell."""
    invalid = []
    path = out / MARKER / "plan.json"
    if path.exists():
        rec = store.read_json(path)
        why = "not JSON" if rec is None else record.problem(record.PlanFile, rec)
        if why is None:
            return rec["cells"], []
        invalid.append(unreadable(f"{MARKER}/plan.json", f"{MARKER}/plan.json is not a plan "
                                  f"({why}); the cells found are listed instead"))
    index = out / "results.jsonl"
    if not index.is_file():
        return None, invalid
    planned = []
    text = index.read_text(encoding="utf-8", errors="replace")
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            r = None
        why = "not JSON" if r is None else record.problem(record.PlannedCell, r)
        if why:
            invalid.append(unreadable(f"results.jsonl:{i}", f"results.jsonl line {i} is not a "
                                      f"cell ({why}); it is left out"))
        else:
            planned.append({k: r.get(k) for k in ("key", "method", "seed", "point")})
    return planned, invalid


def unreadable(key: str, why: str) -> dict[str, Any]:
    """A placeholder for a stored record that has not a record's shape: listed, never read."""
    return {"key": key, "method": "?", "seed": None, "point": {}, "status": "unreadable",
            "metrics": {}, "uncertainty": {}, "error": why}


def is_record(rec: Any) -> bool:
    """The shape of a cell's result.json that the index and the report can read."""
    return record.problem(record.CellRecord, rec) is None


def pending(cell: dict[str, Any], why: str = "planned; no result yet (not run, or killed)"
            ) -> dict[str, Any]:
    return {**cell, "status": "pending", "error": why, "metrics": {}, "uncertainty": {}}


def _found(out: Path) -> dict[str, dict[str, Any]]:
    """Each cell folder's result.json, or a placeholder naming what is wrong with it."""
    found: dict[str, dict[str, Any]] = {}
    cells = out / "cells"
    for d in sorted(d for d in cells.iterdir() if d.is_dir()) if cells.is_dir() else []:
        f = d / "result.json"
        if not f.exists():
            continue
        rec = store.read_json(f)
        why = "not JSON" if rec is None else record.problem(record.CellRecord, rec)
        if why is None and rec["key"] != d.name:
            why = f"its key {rec['key']!r} is not its folder's name"
        found[d.name] = rec if why is None else unreadable(
            d.name, f"cells/{d.name}/result.json is not a cell record ({why}; truncated, or "
                    "not written by alignbench)")
    return found


def records(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the current matrix's records in plan order, every other cell found in the folder).

    A planned cell without a valid result is "pending" (or "invalid" when its result.json is
    not a cell record). Cells from another configuration are returned apart, never mixed in;
    a result.json, plan or index line that is not a record is listed there as "unreadable",
    with the first thing wrong in it (:mod:`bench.record`)."""
    out = Path(out)
    plan, invalid = _planned(out)
    found = _found(out)
    if plan is None:  # no plan: every readable record is the matrix
        return [r for r in found.values() if r["status"] != "unreadable"], \
            [r for r in found.values() if r["status"] == "unreadable"] + invalid
    current = []
    planned_keys = set()
    for cell in plan:
        planned_keys.add(cell["key"])
        rec = found.get(cell["key"])
        if rec is None:
            current.append(pending(cell))
        elif rec["status"] == "unreadable":
            current.append({**pending(cell, rec["error"]), "status": "invalid"})
        else:
            current.append(rec)
    other = [r for k, r in found.items() if k not in planned_keys]
    return current, other + invalid


def write_index(out: Path, current: list[dict[str, Any]]) -> None:
    """results.jsonl: one line per cell of the current matrix (``records(out)[0]``), in matrix
    order (a cell with no valid result is listed as pending, so nothing disappears)."""
    lines = [json.dumps(store.sanitize(r), allow_nan=False) for r in current]
    store.atomic_write_text(out / "results.jsonl", "".join(x + "\n" for x in lines))
