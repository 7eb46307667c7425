"""Content keys, atomic writes and provenance (docs/design.md, "Reliability rules").

No library we use promises atomic result writes or complete cache keys, so this module does
both itself and is tested by fault injection.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock, Timeout
from bench.errors import UserError

log = logging.getLogger("alignbench")

KEY_LEN = 16


def cache_root() -> Path:
    """Where alignbench keeps built worlds, stages and downloads: ``$ALIGNBENCH_CACHE``, else
    ``~/.cache/alignbench``."""
    return Path(os.environ.get("ALIGNBENCH_CACHE", Path.home() / ".cache" / "alignbench"))


class OutputFolderError(UserError, ValueError):
    """An output folder alignbench must not write into (not its own, a file, /, home,
    unwritable): stated in one line that names the folder and the fix."""


class CacheError(UserError, OSError):
    """The cache folder cannot be used as it is (no file locks on its filesystem, not
    writable): stated in one line that names the folder and the fix."""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (filelock's flock; released by the kernel if the process
    dies). A filesystem without flock (some network mounts) is one CacheError line, not a
    traceback: alignbench's caches need locks to be built once."""
    lock = FileLock(str(path))
    try:
        lock.acquire()
    except (NotImplementedError, OSError) as err:
        why = getattr(err, "strerror", None) or str(err).split(";")[0]
        raise CacheError(f"cannot lock {path} ({why}): its filesystem gives no file locks or "
                         f"is not writable; set ALIGNBENCH_CACHE to a folder on a local disk "
                         f"you can write to") from None
    try:
        yield
    finally:
        lock.release()


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
    """Hash of the source that can move a number (bench, methods, evals, scenarios; not
    reports)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("bench", "methods", "evals", "scenarios"):
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


@cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    """What a plain ``open(path, "w")`` would give: 0666 less the umask (mkstemp gives 0600)."""
    return 0o666 & ~_umask()


TEMP_SUFFIX = ".tmp"  # atomic writes' temp files: ".NAME.XXXXXXXX.tmp" beside NAME


def fsync_dir(folder: Path) -> None:
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_stale_temp_files(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temp files that atomic writes of ``names`` killed half way left in
    ``folder`` (``.NAME.XXXXXXXX.tmp``, mkstemp's eight random characters: nothing else
    matches); returns what was removed."""
    gone = [f for name in names
            for f in Path(folder).glob(f".{glob.escape(name)}.{'?' * 8}{TEMP_SUFFIX}")
            if f.is_file()]
    for f in gone:
        f.unlink(missing_ok=True)
    return gone


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


# --------------------------------------------------------------------------- cache folders

MANIFEST = ".alignbench-manifest.json"


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file in ``folder``, to verify it on every load."""
    folder = Path(folder)
    files = {str(f.relative_to(folder)): {"size": f.stat().st_size, "sha256": sha256_file(f)}
             for f in sorted(folder.rglob("*")) if f.is_file() and f.name != MANIFEST}
    atomic_write_json(folder / MANIFEST, {"files": files})


def verify_manifest(folder: Path) -> str | None:
    """None when every file recorded at build time is there with its size and hash; else what
    is wrong, in a few words."""
    rec = read_json(Path(folder) / MANIFEST)
    if not isinstance(rec, dict) or not isinstance(rec.get("files"), dict):
        return "no valid manifest"
    for name, want in rec["files"].items():
        f = Path(folder) / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != want.get("size"):
            return f"{name} has {f.stat().st_size} bytes, {want.get('size')} when built"
        if sha256_file(f) != want.get("sha256"):
            return f"{name} does not match its sha256 from build time"
    return None


_verified: set[tuple] = set()


def _stamp(path: Path) -> tuple | None:
    """A folder's files as (name, inode, size, mtime): changes when any file is rewritten."""
    try:
        return (str(path),) + tuple((f.name, (st := f.stat()).st_ino, st.st_size, st.st_mtime_ns)
                                    for f in sorted(Path(path).rglob("*")) if f.is_file())
    except OSError:
        return None


def build_once(path: Path, build: Callable[[Path], None]) -> Path:
    """The cache folder ``path``, built by ``build(tmp)`` when it is missing or fails
    verification (with a warning), then returned.

    One process builds a key at a time: a file lock beside the folder makes a second process
    wait for the first and then read its result. A build goes into a fresh temp folder that is
    renamed into place when complete, so a killed build leaves only its temp folder, which the
    next builder of that key deletes."""
    path = Path(path)
    if _stamp(path) in _verified:  # hashed once per process: a 7B model takes ~40 s to hash
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.parent / f".{path.name}.lock"):
        remove_killed_builds(path.parent, held=path.name)
        if path.exists():
            problem = verify_manifest(path)
            if problem is None:
                _verified.add(_stamp(path))
                return path
            log.warning("cached %s is damaged (%s); rebuilding it", path, problem)
            shutil.rmtree(path)
        log.info("building %s", path)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.building-"))
        try:
            build(tmp)
            write_manifest(tmp)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 -> what mkdir would give
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(path.parent)
        _verified.add(_stamp(path))  # just hashed into its manifest: no need to hash it again
    return path


def remove_killed_builds(parent: Path, held: str) -> list[Path]:
    """Delete the temp folders that killed builds of any key in ``parent`` left
    (``.NAME.building-XXXXXXXX``), each only while no process holds NAME's lock (``held``:
    the key whose lock the caller holds): a build in progress keeps its folder. Run by every
    build in the folder, not only the next build of the same key, so a key never built again
    leaves no dead copy behind."""
    gone = []
    for stale in parent.glob(".*.building-*"):
        name = stale.name[1:].rsplit(".building-", 1)[0]
        try:
            with contextlib.nullcontext() if name == held else \
                    FileLock(str(parent / f".{name}.lock"), timeout=0):
                shutil.rmtree(stale, ignore_errors=True)
                gone.append(stale)
        except (Timeout, NotImplementedError, OSError):  # being built now, or cannot tell
            continue
    return gone


def recorded_sha256(folder: Path, name: str) -> str:
    """The sha256 of ``folder/name`` as its manifest records it, when ``build_once`` verified
    the folder, unchanged since, in this process (a caller need not hash a large file a
    second time); hashed here otherwise."""
    rec = read_json(Path(folder) / MANIFEST) if _stamp(Path(folder)) in _verified else None
    entry = rec.get("files", {}).get(name) if isinstance(rec, dict) else None
    return entry["sha256"] if isinstance(entry, dict) and "sha256" in entry \
        else sha256_file(Path(folder) / name)


def once_json(path: Path, compute: Callable[[], Any]) -> Any:
    """A cached JSON value: read if valid, else computed under a lock and written atomically
    (a truncated or corrupt file is recomputed, never half-read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = read_json(path)
    if isinstance(rec, dict) and "value" in rec:
        return rec["value"]
    with file_lock(path.parent / f".{path.name}.lock"):
        rec = read_json(path)  # another process may have written it while we waited
        if not (isinstance(rec, dict) and "value" in rec):
            atomic_write_json(path, {"value": compute()})
            rec = read_json(path)  # the value as stored (NaN as None) on first use too
    return rec["value"]


PROVENANCE_PACKAGES = ("torch", "transformers", "trl", "datasets", "tokenizers", "numpy",
                       "peft", "accelerate", "scipy", "statsmodels", "alignbench")


@cache
def package_versions() -> dict[str, str | None]:
    versions = {}
    for pkg in PROVENANCE_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


_BUILT_ON: list[str] = []  # the CPU a world was built on, while a Ray worker reads it


@contextlib.contextmanager
def built_on(cpu: str) -> Iterator[None]:
    """Within the block, :func:`cpu_model` answers ``cpu``: a Ray worker finds the world the
    driver built (whose key names the driver's CPU, on which it was pretrained) under the
    driver's key, whatever its own CPU."""
    _BUILT_ON.append(cpu)
    try:
        yield
    finally:
        _BUILT_ON.pop()


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what the platform says): float
    rounding can differ between chips, so every cell records the one it ran on."""
    if _BUILT_ON:
        return _BUILT_ON[-1]
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    versions = package_versions()
    return {
        "git_commit": commit, "git_dirty": dirty, "code_version": code_version(),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "machine": platform.machine(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def provenance(device: str) -> dict[str, Any]:
    p = dict(_static_provenance())
    p["device"] = device
    if device.startswith("cuda"):
        import torch
        p["gpu"] = torch.cuda.get_device_name(0)
    return p
