"""Content keys, atomic writes and provenance (see design/reliability.md).

No library we use promises atomic result writes or complete cache keys, so this module does
both itself and is tested by fault injection.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_LEN = 16


class OutputFolderError(ValueError):
    """An output folder alignbench must not write into (not its own, a file, /, home,
    unwritable): stated in one line that names the folder and the fix."""


def canonical(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats by repr. Key order cannot leak."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def content_key(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:KEY_LEN]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@cache
def code_version() -> str:
    """Hash of the source that can move a number (bench, methods, evals; not reports)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("bench", "methods", "evals"):
        for f in sorted((root / pkg).rglob("*")):
            if f.suffix in (".py", ".toml", ".txt", ".json") and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:KEY_LEN]


def sanitize(obj: Any) -> Any:
    """Replace NaN/Inf by None (JSON has neither); the caller records why separately."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return sanitize(obj.item())
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(sanitize(obj), indent=1, allow_nan=False) + "\n")


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing, truncated or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


PROVENANCE_PACKAGES = ("torch", "transformers", "trl", "datasets", "tokenizers", "numpy",
                       "peft", "accelerate", "alignbench")


@cache
def _static_provenance() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=root, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for pkg in PROVENANCE_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "git_commit": commit, "git_dirty": dirty, "code_version": code_version(),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "packages": versions,
    }


def provenance(device: str) -> dict[str, Any]:
    p = dict(_static_provenance())
    p["device"] = device
    if device.startswith("cuda"):
        import torch
        p["gpu"] = torch.cuda.get_device_name(0)
    return p
