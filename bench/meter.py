"""What one cell costs in memory, in a process that runs many cells one after another.

Linux keeps a process's peak resident set (VmHWM) and lets the process reset it by writing 5 to
``/proc/self/clear_refs``, so each cell's peak is its own, not the largest of every cell before
it. Where that is not possible (another OS, a locked-down /proc) the figure is the process's
peak so far and is recorded as such (``scope = "process"``). GPU peaks come from torch's
allocator statistics, reset per cell.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path
from typing import Any

import torch

STATUS, CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak() -> str:
    """Start a cell's measurement; returns the scope its peak will have ("cell" or
    "process")."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        CLEAR.write_text("5")
        return "cell"
    except OSError:
        return "process"


def peak(scope: str) -> dict[str, Any]:
    """The peak resident memory since :func:`reset_peak` (bytes), and the GPU's."""
    try:
        rss = int(re.search(r"VmHWM:\s+(\d+) kB", STATUS.read_text()).group(1)) * 1024
    except (OSError, AttributeError):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
        rss, scope = (kb if sys.platform == "darwin" else kb * 1024), "process"
    gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return {"peak_rss_bytes": rss, "peak_rss_scope": scope, "peak_gpu_bytes": gpu}

