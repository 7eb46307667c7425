"""An output folder is never inside another run's, and --fresh removes exactly the files
alignbench recorded writing: a user's file in a cell's trainer/, policy/ or tracking/ folder,
in the stage logs, or a whole run nested inside, stays, and the run names what it left."""

from __future__ import annotations

import json
import logging

import pytest

from bench import cli, config, output, runner
from bench.record import CellRecord, problem
from tests.test_trust import SMALL, metrics


def outer_run(tmp_path):
    run_a = output.claim(tmp_path / "runA")
    cell = output.make_cell_dir(run_a, "0123456789abcdef")
    (run_a / output.MARKER / output.STAGE_LOGS).mkdir()
    return run_a, cell


@pytest.mark.parametrize("inside", ["sub", "cells/new", "cells/0123456789abcdef/policy",
                                    ".alignbench/stage-logs", "sub/deeper/still"])
def test_an_output_folder_inside_another_run_is_refused(tmp_path, capsys, inside):
    run_a, _ = outer_run(tmp_path)
    before = sorted(p.relative_to(run_a) for p in run_a.rglob("*"))
    nested = run_a / inside
    for argv in (["run", "smoke", "--methods", "base", "--out", str(nested)],
                 ["report", str(nested)]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        if argv[0] == "report":  # refused as no folder, or as none of alignbench's, too
            continue
        assert f"is inside the alignbench output folder {run_a}" in lines[0], lines[0]
        assert "; give a folder outside it" in lines[0]
    assert sorted(p.relative_to(run_a) for p in run_a.rglob("*")) == before  # nothing made


def test_fresh_leaves_a_run_nested_inside_whole(tmp_path):
    """A run made inside another before nesting was refused has its own .alignbench/: the
    outer --fresh leaves it, file for file, and names it."""
    run_a, cell = outer_run(tmp_path)
    nested = {}
    for where in (run_a / "sub", cell / "policy", run_a / output.MARKER / output.STAGE_LOGS):
        for name in (f"{output.MARKER}/marker.json", "results.jsonl", "cells/k/result.json"):
            f = where / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"the nested run's {name}")
            nested[f] = f.read_text()
    left = output.clear(run_a)
    assert {f: f.read_text() for f in nested} == nested
    assert set(nested) - {f for f in nested if f.is_relative_to(run_a / "sub")} <= set(left)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fresh") / "out"
    runner.run(config.parse({**SMALL, "save_policies": True}), out)
    return out


def test_fresh_removes_what_alignbench_wrote_and_leaves_the_users_files(tmp_path, saved_run,
                                                                          caplog):
    import shutil
    out = tmp_path / "out"
    shutil.copytree(saved_run, out)
    key = next(r["key"] for r in map(json.loads, (out / "results.jsonl").read_text()
                                     .splitlines()) if r["method"] == "dpo")
    cell = out / "cells" / key
    for f in out.glob("cells/*/result.json"):  # what the runner writes is a typed record
        assert problem(CellRecord, json.loads(f.read_text())) is None
    written = json.loads((cell / output.WRITTEN).read_text())["files"]
    assert any(k.startswith("policy/") for k in written)  # recorded as it was written
    assert "trainer/dpo_0" in written
    mine = {cell / "trainer" / "my-notes.txt": "notes", cell / "policy" / "README.local": "x",
            cell / "tracking" / "my.csv": "1,2", out / output.MARKER / output.STAGE_LOGS /
            "mine.log": "my log", cell / "trainer" / "mine" / "deep.txt": "deep"}
    for f, text in mine.items():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    left = output.clear(out)
    assert {f: f.read_text() for f in mine} == mine
    assert set(left) == set(mine)
    assert not any((cell / k).exists() for k, v in written.items()
                   if v != output.FOLDER)  # every recorded file went
    assert not (cell / "trainer" / "dpo_0").exists()  # and the folders it made, once empty
    assert not (cell / "result.json").exists()
    # the run says what --fresh left, redoing a cell deletes none of it (the policy is not
    # saved over the user's file), and its numbers are the undisturbed run's
    with caplog.at_level(logging.WARNING, logger="alignbench"):
        runner.run(config.parse({**SMALL, "save_policies": True}), out, fresh=True)
    said = [r.getMessage() for r in caplog.records if "--fresh left" in r.getMessage()]
    assert said and "alignbench did not write" in said[0], said
    assert {f: f.read_text() for f in mine} == mine
    assert metrics(out) == metrics(saved_run)
