"""Trust: nothing a user made is deleted or overwritten, a report holds exactly its matrix,
keys hash what moves a number and nothing else, and the cache heals itself. Each test injects
the fault and checks that nothing is lost and the numbers equal an undisturbed run."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import cells, config, output, registry, store
from bench.cli import run_matrix
from bench.store import OutputFolderError
from tests.conftest import TINY_WORLD
from tests.plugins import FakeEP, patch_entry_points

# one cheap cell per method: the tiny world, one seed, truthfulqa only
SMALL = {"name": "trust-test", "methods": ["base", "dpo"], "evals": ["truthfulqa"],
         "seeds": [0], "progress": False, "scenario": {"name": "micro", "options": TINY_WORLD},
         "budget": {"demonstrations": 16, "comparisons": 20, "ai_comparisons": 20,
                    "rollouts": 200},
         "method": {"sft": {"epochs": 1}, "dpo": {"epochs": 1}}}


def cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env={**os.environ, **(env or {})})


def results(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def metrics(out: Path) -> dict:
    return {(r["method"], r["seed"], json.dumps(r["point"], sort_keys=True)): r["metrics"]
            for r in results(out)}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("undisturbed") / "out"
    run_matrix(config.parse(SMALL), out)
    return out


# --------------------------------------------------------------------------- output folders


def test_home_root_files_and_foreign_folders_are_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "cells").mkdir(parents=True)
    thesis = home / "cells" / "thesis.tex"
    thesis.write_text("years of work")
    monkeypatch.setenv("HOME", str(home))
    for bad, why in ((home, "home folder"), (Path("/"), "root folder"),
                     (tmp_path, "above your home"), (thesis, "is a file"),
                     (home / "cells", "not empty and was not created by alignbench"),
                     (thesis / "sub", "cannot write")):
        with pytest.raises(OutputFolderError, match=why):
            output.claim(bad)
    assert thesis.read_text() == "years of work" and sorted(os.listdir(home)) == ["cells"]
    assert not (home / "cells" / output.MARKER).exists()


def test_the_command_line_refuses_home_with_one_line(tmp_path):
    home = tmp_path / "home"
    (home / "cells").mkdir(parents=True)
    (home / "cells" / "thesis.tex").write_text("years of work")
    for args in (["--out", str(home), "--fresh"], ["--out", str(home / "cells" / "thesis.tex")]):
        p = cli("run", "smoke", *args, "--no-progress", env={"HOME": str(home)})
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert (home / "cells" / "thesis.tex").read_text() == "years of work"


def test_fresh_removes_only_what_alignbench_wrote(tmp_path, undisturbed):
    out = tmp_path / "out"
    run_matrix(config.parse(SMALL), out)
    cell = out / "cells" / results(out)[0]["key"]
    mine = {out / "cells" / "thesis.tex": "draft", out / "notes.txt": "my notes",
            out / ".env.tmp": "SECRET=1", cell / "notes.md": "why this cell matters"}
    for f, text in mine.items():
        f.write_text(text)
    stale = cell / ".result.json.abc123de.tmp"  # mkstemp's name for a killed write
    stale.write_text("half a write from a killed run")
    run_matrix(config.parse(SMALL), out, fresh=True)
    for f, text in mine.items():
        assert f.read_text() == text
    assert not stale.exists()
    assert metrics(out) == metrics(undisturbed)
    assert json.loads((out / output.MARKER / "plan.json").read_text())["matrix"] == "trust-test"


def test_a_folder_from_before_markers_is_adopted_and_a_users_is_not(tmp_path, undisturbed):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("results.jsonl", "report.html", "matrix.toml"):
        (legacy / name).write_text((undisturbed / name).read_text())
    for d in output.own_cell_dirs(undisturbed):
        (legacy / "cells" / d.name).mkdir(parents=True)
        (legacy / "cells" / d.name / "result.json").write_text((d / "result.json").read_text())
    assert output.claim(legacy) == legacy and (legacy / output.MARKER).is_dir()
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "results.jsonl").write_text("")
    (tmp_path / "mixed" / "paper.pdf").write_text("")
    with pytest.raises(OutputFolderError, match="not created by alignbench"):
        output.claim(tmp_path / "mixed")


def test_output_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store._umask.cache_clear()
        store.atomic_write_text(tmp_path / "report.md", "x")
        assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
        store._umask.cache_clear()


# --------------------------------------------------------------------------- exactly the matrix


def test_a_changed_config_rerun_into_one_folder_never_pools(tmp_path, undisturbed):
    out = tmp_path / "out"
    run_matrix(config.parse(SMALL), out)
    changed = {**SMALL, "method": {**SMALL["method"], "dpo": {"epochs": 2, "lr": 1e-3}}}
    run_matrix(config.parse(changed), out)
    fresh = tmp_path / "fresh"
    run_matrix(config.parse(changed), fresh)
    recs = results(out)
    assert [(r["method"], r["seed"]) for r in recs] == [("base", 0), ("dpo", 0)]
    assert metrics(out) == metrics(fresh)  # the new matrix's numbers, not a pool
    assert metrics(out) != metrics(undisturbed)  # the change moved DPO's numbers
    html = (out / "report.html").read_text()
    assert 'id="other"' in html and "Not in this matrix (1)" in html
    assert "seeds [0, 0]" not in html and "seeds [0]" in html
    from tests.test_report import CHROMIUM, sections_in_browser
    if CHROMIUM or os.environ.get("CI"):  # as a reader sees it: its own section, one cell
        assert sections_in_browser(out / "report.html")["other"] == [
            "Not in this matrix (1)", ["dpo"]]
    md = (out / "report.md").read_text()
    assert "Not in this matrix" in md
    csv_rows = (out / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2  # header + the two cells of this matrix
    assert f'out = "{out}"' in (out / "matrix.toml").read_text()


def test_the_report_command_regenerates_the_index(tmp_path, undisturbed):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(undisturbed, out)
    (out / "results.jsonl").unlink()
    foreign = out / "cells" / "x" / "result.json"
    foreign.parent.mkdir()
    foreign.write_text('{"accuracy": 0.9}')
    p = cli("report", str(out))
    assert p.returncode == 0, p.stderr
    assert metrics(out) == metrics(undisturbed)
    html = (out / "report.html").read_text()
    assert "UNREADABLE" in html and "cells/x/result.json is not a cell record" in html


def test_planned_cells_without_results_are_pending(tmp_path, undisturbed):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(undisturbed, out)
    victim = next(d for d in output.own_cell_dirs(out))
    shutil.rmtree(victim)
    from reports.build import build_report
    build_report(out)
    assert {r["status"] for r in results(out)} == {"ok", "pending"}
    assert 'id="pending"' in (out / "report.html").read_text()


def test_a_seed_twice_in_one_row_refuses_the_report(tmp_path, undisturbed):
    import shutil

    from reports.build import ReportError, build_report
    out = tmp_path / "out"
    shutil.copytree(undisturbed, out)
    plan = json.loads((out / output.MARKER / "plan.json").read_text())
    first = plan["cells"][0]
    twin = out / "cells" / ("f" * store.KEY_LEN)
    shutil.copytree(out / "cells" / first["key"], twin)
    rec = json.loads((twin / "result.json").read_text())
    (twin / "result.json").write_text(json.dumps({**rec, "key": twin.name}))
    plan["cells"].append({**first, "key": twin.name})
    (out / output.MARKER / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ReportError, match="holds seed 0 twice"):
        build_report(out)


# --------------------------------------------------------------------------- keys


def keys(m: config.Matrix, world) -> list[str]:
    plan = config.plan(m)
    return [cells.cell_key(c, world, plan, "cpu", cells.thread_counts(plan)) for c in cells.expand(plan)]


def test_a_rebuilt_world_with_the_same_weights_keeps_every_key(tmp_path, tiny_world):
    from scenarios.micro import Micro, MicroOptions
    rebuilt = Micro().build(MicroOptions(**TINY_WORLD), tmp_path, progress=False)
    assert rebuilt.describe["timing"] != tiny_world.describe["timing"]  # a different build
    assert rebuilt.describe["base_model_sha256"] == tiny_world.describe["base_model_sha256"]
    m = config.parse(SMALL)
    assert keys(m, rebuilt) == keys(m, tiny_world)
    cosmetic = config.parse({**SMALL, "name": "other", "out": "elsewhere", "progress": True})
    assert keys(cosmetic, tiny_world) == keys(m, tiny_world)
    moved = config.parse({**SMALL, "method": {**SMALL["method"], "dpo": {"beta": 0.2}}})
    assert keys(moved, tiny_world)[0] == keys(m, tiny_world)[0]  # base untouched
    assert keys(moved, tiny_world)[1] != keys(m, tiny_world)[1]


def test_a_plugins_code_and_version_enter_its_keys(tmp_path, monkeypatch, tiny_world):
    pkg = tmp_path / "toy_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    method = pkg / "method.py"
    method.write_text(textwrap.dedent('''
        from bench.api import MethodConfig, Trained
        from toy_plugin.helpers import SCALE

        class Toy:
            name = "toy"
            description = "test plugin"
            starts_from = "base"
            shared_stage = False

            class Config(MethodConfig):
                pass

            def train(self, start, ctx, config):
                return Trained(policy=start.reference)
    '''))
    (pkg / "helpers.py").write_text("SCALE = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def key(version: str) -> str:
        patch_entry_points(monkeypatch, {"alignbench.methods": [
            FakeEP("toy", "toy_plugin.method:Toy", dist="toy-plugin", version=version)]})
        registry.source_hash.cache_clear()
        mm = config.parse({**SMALL, "methods": ["toy"], "method": {}})
        return keys(mm, tiny_world)[0]

    k0 = key("0.1")
    assert key("0.1") == k0  # nothing changed, nothing missed
    assert key("0.2") != k0  # a new release
    (pkg / "helpers.py").write_text("SCALE = 2.0\n")  # an editable install, edited in place
    assert key("0.1") != k0


# --------------------------------------------------------------------------- the cache


def test_a_truncated_cached_model_is_rebuilt_with_a_warning(tmp_path, caplog, tiny_world):
    from scenarios.micro import Micro, MicroOptions
    world = Micro().build(MicroOptions(**TINY_WORLD), tmp_path, progress=False)
    weights = world.base_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="alignbench"):
        healed = Micro().build(MicroOptions(**TINY_WORLD), tmp_path, progress=False)
    assert "damaged" in caplog.text and "model.safetensors" in caplog.text
    assert healed.describe["base_model_sha256"] == tiny_world.describe["base_model_sha256"]
    policy = healed.load_policy(healed.base_model)  # loads: the weights are whole again
    assert policy.logprob(["<user> hi"], [" hi"])[0] < 0


def test_a_killed_builds_leftovers_are_cleaned(tmp_path):
    target = tmp_path / "k"
    stale = tmp_path / ".k.building-deadbeef"
    (stale / "junk").mkdir(parents=True)
    store.build_once(target, lambda tmp: (tmp / "x").write_text("1"))
    assert not stale.exists() and (target / "x").read_text() == "1"
    assert store.verify_manifest(target) is None
    (target / "x").write_text("2")  # same size, other bytes
    assert "sha256" in store.verify_manifest(target)


BUILD = textwrap.dedent('''
    import logging, sys
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from scenarios.micro import Micro, MicroOptions
    from tests.conftest import TINY_WORLD
    w = Micro().build(MicroOptions(**{**TINY_WORLD, "seed": 7}), sys.argv[1], progress=False)
    print("sha", w.describe["base_model_sha256"])
''')


def test_two_runs_sharing_a_cold_cache_build_once_and_both_succeed(tmp_path):
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(cache)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    shas = {line for o in outs for line in o.splitlines() if line.startswith("sha ")}
    assert len(shas) == 1
    assert sum(o.count("building ") for o in outs) == 1, outs  # the second waited and read


# --------------------------------------------------------------------------- review findings


def test_a_folder_of_a_users_own_matrix_is_not_adopted(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "matrix.toml").write_text("# my experiment\n")
    with pytest.raises(OutputFolderError, match="not created by alignbench"):
        output.claim(exp)
    assert (exp / "matrix.toml").read_text() == "# my experiment\n"


def test_the_report_command_never_writes_into_a_users_folder(tmp_path):
    folder = tmp_path / "mine"
    (folder / "cells" / "neuron42").mkdir(parents=True)
    (folder / "report.md").write_text("my report")
    p = cli("report", str(folder))
    assert p.returncode == 2 and "not an alignbench output folder" in p.stderr, p.stderr
    assert (folder / "report.md").read_text() == "my report"
    assert sorted(os.listdir(folder)) == ["cells", "report.md"]


def test_fresh_deletes_nothing_when_the_matrix_is_refused(tmp_path, undisturbed):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(undisturbed, out)
    tiny_cap = config.parse({**SMALL, "budget": {**SMALL["budget"], "train_tokens": 10}})
    with pytest.raises(config.ConfigError, match="compute budget"):
        run_matrix(tiny_cap, out, fresh=True)
    assert metrics(out) == metrics(undisturbed)
    assert (out / "matrix.toml").read_text() == (undisturbed / "matrix.toml").read_text()


def test_the_shared_sft_stage_cannot_be_swept():
    with pytest.raises(config.ConfigError, match="shared SFT stage"):
        config.parse({**SMALL, "methods": ["sft", "dpo"], "sweep": {"sft.epochs": [1.0, 3.0]}})


def test_library_versions_enter_cell_keys(monkeypatch, tiny_world):
    m = config.parse(SMALL)
    k0 = keys(m, tiny_world)
    monkeypatch.setattr(store, "package_versions", lambda: {"trl": "9.9"})
    assert set(keys(m, tiny_world)).isdisjoint(k0)


def test_the_processor_model_enters_cell_keys(monkeypatch, tiny_world):
    """Chips round floats differently: a cell computed on another processor model is another
    cell, so a shared store or a mixed cluster never holds two chips' numbers under one key."""
    m = config.parse(SMALL)
    k0 = keys(m, tiny_world)
    assert cells.numerics("cpu")["processor"] == store.cpu_model()
    monkeypatch.setattr(store, "cpu_model", lambda: "Another CPU @ 1.00GHz")
    assert set(keys(m, tiny_world)).isdisjoint(k0)


def test_the_processor_model_enters_the_micro_worlds_key(monkeypatch):
    """The base model is pretrained on this machine's CPU: another chip's rounding gives
    other weights, which must not be found under this world's key."""
    from scenarios.micro import MicroOptions, world_key
    o = MicroOptions(**TINY_WORLD)
    k0 = world_key(o)
    monkeypatch.setattr(store, "cpu_model", lambda: "Another CPU @ 1.00GHz")
    assert world_key(o) != k0


def test_a_world_read_as_built_on_the_drivers_cpu_has_the_drivers_key(monkeypatch):
    """A Ray worker on another CPU finds the world the driver pretrained under the driver's
    key: within store.built_on(cpu) the key is the one that CPU gives."""
    from scenarios.micro import MicroOptions, world_key
    o = MicroOptions(**TINY_WORLD)
    here = world_key(o)
    with store.built_on("Another CPU @ 1.00GHz"):
        there = world_key(o)
    monkeypatch.setattr(store, "cpu_model", lambda: "Another CPU @ 1.00GHz")
    assert there == world_key(o) != here
