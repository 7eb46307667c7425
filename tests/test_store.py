import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench import store


def test_canonical_key_ignores_key_order():
    assert store.content_key({"a": 1, "b": [1, 2]}) == store.content_key({"b": [1, 2], "a": 1})
    assert store.content_key({"a": 1}) != store.content_key({"a": 2})


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "x" / "result.json"
    store.atomic_write_json(p, {"v": 1.5, "bad": math.nan})
    assert json.loads(p.read_text()) == {"v": 1.5, "bad": None}  # never NaN in JSON
    assert [f.name for f in p.parent.iterdir()] == ["result.json"]


def test_a_write_that_fails_before_the_rename_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "result.json"
    store.atomic_write_json(p, {"status": "ok", "v": 1})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        store.atomic_write_json(p, {"status": "ok", "v": 2})
    assert json.loads(p.read_text()) == {"status": "ok", "v": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["result.json"]


KILLED_WRITE = """
import os, signal, sys
from bench import store
real_fsync = os.fsync
def die(fd):
    real_fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)  # killed after the data, before the rename
os.fsync = die
store.atomic_write_json(sys.argv[1], {"status": "ok", "v": 2})
"""


def test_a_process_killed_mid_write_leaves_the_old_file_and_a_temp_the_next_run_cleans(tmp_path):
    p = tmp_path / "result.json"
    store.atomic_write_json(p, {"status": "ok", "v": 1})
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(p)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(p.read_text()) == {"status": "ok", "v": 1}  # the old file, whole
    temps = [f for f in tmp_path.iterdir() if f.name != "result.json"]
    assert len(temps) == 1 and temps[0].name.startswith(".result.json.")
    assert store.remove_stale_temp_files(tmp_path, ("result.json",)) == temps
    assert [f.name for f in tmp_path.iterdir()] == ["result.json"]


def test_read_json_detects_truncation(tmp_path):
    p = tmp_path / "r.json"
    store.atomic_write_json(p, {"metrics": {"a": 1.0}, "status": "ok"})
    full = p.read_text()
    p.write_text(full[: len(full) // 2])
    assert store.read_json(p) is None
    assert store.read_json(tmp_path / "missing.json") is None


def test_provenance_has_the_required_fields():
    prov = store.provenance("cpu")
    for k in ("git_commit", "git_dirty", "code_version", "python", "packages", "device"):
        assert k in prov
    assert prov["packages"]["torch"]
    # the chip: float rounding differs between CPU models, so a cell names the one it ran on
    assert isinstance(prov["cpu_model"], str) and prov["cpu_model"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert prov["cpu_model"] in cpuinfo.read_text()
