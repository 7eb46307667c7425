"""What `alignbench report` reads is checked against the typed cell record (bench/record.py):
a result.json, a results.jsonl line or a plan.json of valid JSON but the wrong shape is listed
as unreadable with what is wrong in it, and the report of the valid cells is built with their
numbers unchanged, never a traceback."""

from __future__ import annotations

import json

import pytest

from bench import cli, output, store
from bench.record import CellRecord, problem
from tests.test_report import record

GOOD = [record("base", s) for s in (0, 1, 2)]


def folder(tmp_path, plan=None, index_lines=()):
    out = tmp_path / "out"
    (out / output.MARKER).mkdir(parents=True)
    for r in GOOD:
        store.atomic_write_json(out / "cells" / r["key"] / "result.json", r)
    if plan is not None:
        store.atomic_write_text(out / output.MARKER / "plan.json", json.dumps(plan))
    if index_lines:
        store.atomic_write_text(out / "results.jsonl", "".join(x + "\n" for x in index_lines))
    return out


def report(out, capsys) -> str:
    code = cli.main(["report", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    # the valid cells, read as they are stored: the same numbers in the index
    index = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    by_key = {r["key"]: r for r in index}
    for r in GOOD:
        assert by_key[r["key"]]["metrics"] == r["metrics"]
    return (out / "report.md").read_text()


@pytest.mark.parametrize("field, value, expect", [
    ("point", 5, "point: Input should be a valid dictionary"),
    ("budget", 7, "budget: Input should be a valid dictionary"),
    ("evals", {"truthfulqa": 5}, "evals.truthfulqa: Input should be a valid dictionary"),
    ("metrics", {"truthfulqa.mc1": "high"}, "metrics.truthfulqa.mc1"),
    ("seed", "0", "seed: Input should be a valid integer"),
    ("warnings", "one", "warnings: Input should be a valid list"),
    ("curves", {"ppo": 3}, "curves.ppo"),
    ("cost", {"phase_seconds": [1]}, "cost.phase_seconds"),
    ("cost", 3, "cost: Input should be a valid dictionary"),
])
def test_a_result_of_the_wrong_shape_is_listed_not_read(tmp_path, capsys, field, value, expect):
    out = folder(tmp_path)
    bad = {**record("sft", 0, key="bad0"), field: value}
    store.atomic_write_json(out / "cells" / "bad0" / "result.json", bad)
    md = report(out, capsys)
    assert f"UNREADABLE: ? seed None (cell bad0): cells/bad0/result.json is not a cell record " \
           f"({expect}" in md, md[-800:]


@pytest.mark.parametrize("line", ['{"key": "abc"}', '{"key": 5, "method": "x"}', "[1, 2]", "7",
                                  '{"key": "abc", "method": "base", "point": null}', "{not json"])
def test_an_index_line_of_the_wrong_shape_without_a_plan(tmp_path, capsys, line):
    good = [json.dumps({k: r[k] for k in ("key", "method", "seed", "point")}) for r in GOOD]
    out = folder(tmp_path, index_lines=[*good, line])
    md = report(out, capsys)
    assert "results.jsonl line 4 is not a cell" in md


@pytest.mark.parametrize("plan", [{"cells": [5]}, {"cells": "all"}, [1, 2], {"cells": [{}]},
                                  {"cells": [{"key": "x", "method": "base", "seed": "0"}]}])
def test_a_plan_of_the_wrong_shape(tmp_path, capsys, plan):
    md = report(folder(tmp_path, plan=plan), capsys)
    assert ".alignbench/plan.json is not a plan" in md


def test_every_record_the_runner_and_the_report_tests_write_is_a_record():
    """The typed record accepts what the runner writes (the report tests' records mirror it),
    a pending placeholder, and keys a plugin adds."""
    for r in [*GOOD, record("ppo", 1), output.pending({"key": "k", "method": "m", "seed": 0,
                                                       "point": {}}),
              {**GOOD[0], "plugin_field": [1, {"x": None}], "traceback": "..."}]:
        assert problem(CellRecord, r) is None, problem(CellRecord, r)
