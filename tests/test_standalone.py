"""The repository stands on its own: a clone with nothing beside it runs every test and CI.

No tracked file reaches for a folder next to the checkout, and the TruthfulQA CSV that the
tests, the eval and the real scenario read ships inside the package, checked by its sha256."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench.data import truthfulqa as tq
from bench.store import sha256_file
from tests.conftest import ROOT

# Spelled in parts so that this file does not match itself.
SIBLING = "shared"
NEEDLES = (f"../{SIBLING}", f"{SIBLING}/data", f"{SIBLING}/design")
# README.md is rewritten separately; until then its design section may keep this one pointer
# (the design itself is docs/design.md). Any other line that names a sibling folder fails.
ALLOWED = {("README.md", f"`../{SIBLING}/design/` (architecture, budgets, metrics, "
                         f"micro-world, reliability) is the design this")}


def tracked_files() -> list[str]:
    """The files a clone gets (git's index), relative to the repository root."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to read")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def sibling_references(root: Path, paths: list[str]) -> list[str]:
    """'file:line: text' for each line of ``paths`` that names a folder beside the checkout."""
    found = []
    for rel in paths:
        f = root / rel
        if not f.is_file():  # deleted in this working tree, not yet in the index
            continue
        data = f.read_bytes()
        if not any(n.encode() in data for n in NEEDLES):
            continue
        for no, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if any(n in line for n in NEEDLES) and \
                    not any(rel == a and text in line for a, text in ALLOWED):
                found.append(f"{rel}:{no}: {line.strip()[:120]}")
    return found


def test_no_tracked_file_reads_a_folder_beside_the_checkout():
    found = sibling_references(ROOT, tracked_files())
    assert not found, "tracked files name a folder outside the repository:\n" + "\n".join(found)


def test_the_scan_names_file_and_line(tmp_path):
    """The check above can fail: a planted reference is reported where it is."""
    (tmp_path / "a.py").write_text(f'ok = 1\nCSV = "../{SIBLING}/data/x.csv"\n')
    (tmp_path / "b.md").write_text(f"see {SIBLING}/design/budgets.md\n")
    (tmp_path / "c.txt").write_text("nothing here\n")
    assert sibling_references(tmp_path, ["a.py", "b.md", "c.txt", "gone.py"]) == [
        f'a.py:2: CSV = "../{SIBLING}/data/x.csv"', f"b.md:1: see {SIBLING}/design/budgets.md"]


def test_packaged_truthfulqa_csv_is_whole():
    """The packaged copy: inside the package, its checksum, 817 questions of the original."""
    path = tq.packaged_csv()
    assert path == Path(tq.__file__).with_name("TruthfulQA.csv")
    assert sha256_file(path) == tq.PACKAGED_SHA256 == \
        "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697"
    items, source = tq.load_packaged()
    assert len(items) == 817 and source == {"name": tq.PACKAGED_NAME, "n": 817,
                                            "sha256": tq.PACKAGED_SHA256}
    assert items[-1].question and all(it.mc1_choices and sum(it.mc2_labels) for it in items)
    # its license and citation travel with it
    assert "Apache License" in path.with_name("LICENSE").read_text()
    assert "TruthfulQA: Measuring How Models Mimic Human Falsehoods" in \
        path.with_name("README.md").read_text()


def test_a_damaged_packaged_copy_is_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch):
    bad = tmp_path / "TruthfulQA.csv"
    shutil.copyfile(tq.PACKAGED_CSV, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(tq, "PACKAGED_CSV", bad)
    with pytest.raises(tq.TruthfulQADataError) as err:
        tq.packaged_csv()
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and "damaged" in msg, msg
    assert "pip install --force-reinstall alignbench" in msg and "git checkout" in msg, msg
    bad.unlink()
    with pytest.raises(tq.TruthfulQADataError, match="is missing; reinstall alignbench"):
        tq.load_packaged()


def test_a_damaged_packaged_copy_stops_the_eval_command_in_one_line(tiny_world, tmp_path):
    """`alignbench eval truthfulqa` on a model alone reads the packaged copy: damaged, it exits
    2 with one line, no traceback, and scores nothing."""
    bad = tmp_path / "TruthfulQA.csv"
    bad.write_bytes(tq.PACKAGED_CSV.read_bytes().replace(b"watermelon", b"Watermelon", 1))
    code = ("import sys, pathlib; import bench.data.truthfulqa as t; "
            "t.PACKAGED_CSV = pathlib.Path(sys.argv[1]); from bench.cli import main; "
            "sys.exit(main(sys.argv[2:]))")
    p = subprocess.run([sys.executable, "-c", code, str(bad), "eval", "truthfulqa", "--model",
                        str(tiny_world.base_model), "--limit", "2", "--json"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    # the model's loading bar may precede it; the error itself is one line, the last
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("alignbench:")]
    assert p.returncode == 2 and errors == lines[-1:] and "Traceback" not in p.stderr, p.stderr
    assert errors[0].startswith("alignbench: error: packaged TruthfulQA CSV " + str(bad))
    assert "damaged" in errors[0] and "reinstall alignbench" in errors[0], errors[0]
    assert p.stdout == ""


def test_pyproject_ships_every_packaged_data_file():
    """`pip install .` (not editable) copies only what package-data names: every file of the
    data folder that is not Python must match one of its patterns."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["bench.data.truthfulqa"]
    folder = Path(tq.__file__).parent
    files = [f.name for f in folder.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc")]
    assert {"TruthfulQA.csv", "LICENSE", "README.md"} <= set(files)
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not unshipped, f"add {unshipped} to [tool.setuptools.package-data] in pyproject.toml"


def test_license_citation_and_changelog_name_the_current_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "LICENSE").read_bytes() == tq.PACKAGED_CSV.with_name("LICENSE").read_bytes()
    cff = (ROOT / "CITATION.cff").read_text().splitlines()
    assert f"version: {version}" in cff and "license: Apache-2.0" in cff
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()
