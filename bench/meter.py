"""What one cell costs in memory and time, in a process that runs many cells one after another.

Linux keeps a process's peak resident set (VmHWM) and lets the process reset it by writing 5 to
``/proc/self/clear_refs``, so each cell's peak is its own, not the largest of every cell before
it. Where that is not possible (another OS, a locked-down /proc) the figure is the process's
peak so far and is recorded as such (``scope = "process"``). GPU peaks come from torch's
allocator statistics, reset per cell.

Resetting the kernel's peak also resets what the kernel reports at exit (``ru_maxrss``, so
``/usr/bin/time`` and ``getrusage`` see only the peak since the last reset: on a SmolLM2 PPO cell
15.0 GiB against the cell's 16.1). Every reset therefore first folds the peak so far into
:func:`process_peak`, the whole run's figure.

Memory freed by torch on the CPU goes back to glibc's heap, which keeps most of it: after one
PPO update of SmolLM2 the process held 9.8 GiB resident with 1.6 GiB in use, and every later
phase was measured at that level. :func:`release_memory` hands it back at phase ends.

Where a cell's time goes is measured by phases: the runner opens a :func:`timing` per cell, and
code anywhere below it marks a block with :func:`phase` (training, a shared stage, a trainer's
run, PPO's sampling, scoring and update, each eval). Nested phases are named by their path
(``training/ppo.update``), so a reader sees which figure includes which; a phase outside any
timing costs nothing and records nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUS, CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak() -> str:
    """Start a cell's measurement; returns the scope its peak will have ("cell" or
    "process")."""
    import torch  # here, so that the contracts that time phases (bench.api) load no torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    return "cell" if _reset_rss() else "process"


_process_peak = 0  # the largest kernel peak read before any reset (bytes)


def process_peak() -> int:
    """This process's resident peak since it started, across every reset (bytes; where /proc
    cannot tell, nothing was reset and ``getrusage`` has it)."""
    return max(_process_peak, _hwm()) or _rusage_peak()


def _rusage_peak() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    return kb if sys.platform == "darwin" else kb * 1024


def _reset_rss() -> bool:
    """Restart the kernel's resident peak, its figure so far kept in :func:`process_peak`;
    whether it could."""
    global _process_peak
    _process_peak = process_peak()
    try:
        CLEAR.write_text("5")
        return True
    except OSError:
        return False


def peak(scope: str, timings: Timings | None = None) -> dict[str, Any]:
    """The peak resident memory since :func:`reset_peak` (bytes), and the GPU's; with the
    cell's ``timings``, whose phases restart the kernel's peak, the largest of theirs too."""
    rss = _hwm()
    if rss:
        rss = max(rss, timings.peak if timings is not None else 0)
    else:
        rss, scope = _rusage_peak(), "process"
    import torch

    gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return {"peak_rss_bytes": rss, "peak_rss_scope": scope, "peak_gpu_bytes": gpu}


def _hwm() -> int:
    """The resident peak since the last reset, in bytes (0 where /proc cannot tell)."""
    try:
        return int(re.search(r"VmHWM:\s+(\d+) kB", STATUS.read_text()).group(1)) * 1024
    except (OSError, AttributeError):
        return 0


def _libc_trim():
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_trim = _libc_trim()


def release_memory(collect: bool = True) -> None:
    """Collect unreachable objects (a trainer and its optimizer live in reference cycles) and
    return the heap's free pages to the system. Written here: torch offers this for CUDA
    (``empty_cache``) and not for its CPU allocator, which frees into glibc's heap. Changes no
    number a cell computes, only what stays resident between phases. ``collect=False`` skips
    the collection (a PPO step frees its graph by reference counting; a full collection per
    step would cost the micro-world's many small steps more than they hold)."""
    if collect:
        gc.collect()
    if _trim is not None:
        _trim(0)


@dataclass
class Timings:
    """One cell's phases: wall seconds and resident peak per path, and the peak over the whole
    block (a phase resets the kernel's peak when it starts, so its own is its own; every reset
    first folds the peak so far into each open phase and into the block's)."""

    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)
    peak: int = 0
    _open: list[_Open] = field(default_factory=list)  # the phases entered and not yet left

    def _fold(self) -> None:
        hw = _hwm()
        self.peak = max(self.peak, hw)
        for entry in self._open:
            entry.peak = max(entry.peak, hw)


@dataclass
class _Open:
    name: str
    start: float  # perf_counter
    peak: int = 0  # the largest resident peak read while it was open
    aside: float = 0.0  # seconds of measurement phases inside it, left out of its own


_timings: list[Timings] = []


@contextmanager
def timing() -> Iterator[Timings]:
    """Collect the :func:`phase` blocks run inside this block: wall seconds summed per path (a
    phase entered twice, such as PPO's sampling once per step, adds up) and the largest peak."""
    t = Timings(peak=_hwm())
    _timings.append(t)
    try:
        yield t
    finally:
        t._fold()
        _timings.pop()


@contextmanager
def phase(name: str, measurement: bool = False) -> Iterator[None]:
    """Time this block as ``name`` inside the innermost :func:`timing`, under the phases that
    enclose it, and measure its resident peak. A ``measurement`` phase (a gold monitor: the
    benchmark watching, not the method working) is recorded under its own path and left out
    of the seconds of every phase that encloses it, so that "training" is the method's time."""
    if not _timings:
        yield
        return
    t = _timings[-1]
    t._fold()
    _reset_rss()
    entry = _Open(name, time.perf_counter())
    t._open.append(entry)
    path = "/".join(e.name for e in t._open)
    try:
        yield
    finally:
        t._fold()
        t._open.pop()
        took = time.perf_counter() - entry.start
        t.seconds[path] = t.seconds.get(path, 0.0) + took - entry.aside
        t.peak_rss_bytes[path] = max(t.peak_rss_bytes.get(path, 0), entry.peak)
        if measurement:  # the enclosing phases do not count what only measured (once:
            for outer in t._open:  # a measurement nested in this one already told them)
                outer.aside += took - entry.aside
