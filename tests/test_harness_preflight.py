"""The harness's seams: the command line's flags are validated as a matrix file is, once, and
refused before anything is created; an eval's options are checked against the built world
before any cell trains; a method's ``ctx.log`` reaches its cell's log.txt; the cell record is
laid out in one place; and the Ray executor does not import the runner."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import tomli_w

from bench import cli, config, tracking
from bench.api import EvalOptions, EvalResult, MethodConfig, Trained
from bench.record import CellRecord, CellResult, Measured, problem
from tests.conftest import TINY_WORLD
from tests.plugins import FakeEP, patch_entry_points

LOGGED = "a line the method logged for its cell"
WARNED = "a warning the method gave"


class Chatty:
    """A method that logs through ``ctx.log`` and hands back its start."""

    name = "chatty"
    description = "test plugin: logs, trains nothing"
    starts_from = "base"
    shared_stage = False

    class Config(MethodConfig):
        pass

    def train(self, start, ctx, config):
        ctx.log.info(LOGGED)
        ctx.log.warning(WARNED)
        return Trained(policy=start.reference)


class PickyOptions(EvalOptions):
    judge: str = "gold"

    def check_world(self, world) -> None:
        raise ValueError(f"judge {self.judge!r} is not in this world; set eval.picky.judge")


class Picky:
    """An eval whose options this world cannot serve."""

    name = "picky"
    description = "test plugin: refuses every world"
    version = "1"
    metrics = {"score": True}
    Options = PickyOptions

    def evaluate(self, policy, ctx):
        raise AssertionError("an eval refused by the preflight must never run")


def matrix_file(tmp_path, **kw):
    d = {"name": "harness-test", "methods": ["chatty"], "evals": ["truthfulqa"], "seeds": [0],
         "progress": False, "scenario": {"name": "micro", "options": TINY_WORLD},
         "eval": {"truthfulqa": {"limit": 8}}, **kw}
    f = tmp_path / "m.toml"
    f.write_text(tomli_w.dumps(d))
    return f


@pytest.fixture
def plugins(monkeypatch):
    patch_entry_points(monkeypatch, {
        "alignbench.methods": [FakeEP("chatty", "tests.test_harness_preflight:Chatty")],
        "alignbench.evals": [FakeEP("picky", "tests.test_harness_preflight:Picky")]})


def one_line(capsys, argv) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_bad_flag_value_is_refused_as_a_files_would_be(tmp_path, capsys, plugins):
    out = tmp_path / "out"
    line = one_line(capsys, ["run", str(matrix_file(tmp_path)), "--seeds", "4294967296",
                             "--out", str(out)])
    assert "with the command line's settings: 'seeds.0'" in line and "2**32" in line
    assert not out.exists()


def test_flags_are_checked_once_with_the_matrix(tmp_path, capsys, plugins, monkeypatch):
    """--executor ray with a tracker in the file: refused where the matrix is validated, by
    the one tracking check, before any folder exists."""
    calls = []
    real = tracking.check
    monkeypatch.setattr(tracking, "check", lambda *a: calls.append(a) or real(*a))
    f = matrix_file(tmp_path, report_to="tensorboard")
    out = tmp_path / "out"
    line = one_line(capsys, ["run", str(f), "--executor", "ray", "--no-progress",
                             "--out", str(out)])
    assert "streams from the local executor only" in line and not out.exists()
    assert calls == [("tensorboard", "ray")]


def test_a_flag_leaves_what_the_file_did_not_set_unset():
    """Under Ray a device the matrix does not set is "cpu"; --executor must not set it."""
    m = config.overridden(config.load("smoke"), executor="ray", progress=False)
    assert m.executor == "ray" and not m.progress and config.executor_device(m) == "cpu"
    with pytest.raises(config.ConfigError, match="--address joins a Ray cluster"):
        config.overridden(config.load("smoke"), ray_address="auto")


def test_an_eval_option_the_world_cannot_serve_is_refused_before_training(tmp_path, capsys,
                                                                         plugins):
    out = tmp_path / "out"
    line = one_line(capsys, ["run", str(matrix_file(tmp_path, evals=["picky"], eval={})),
                             "--out", str(out)])
    assert "eval.picky: judge 'gold' is not in this world" in line
    assert not out.exists()  # refused before any cell: the folder it made is gone


def test_a_built_in_evals_reference_the_world_lacks_is_refused_before_training(tmp_path,
                                                                               capsys):
    """win_rate against large_base on a world that pretrains no wider base: the preflight
    refuses it, where it used to fail every cell in its evaluation after training."""
    out = tmp_path / "out"
    f = matrix_file(tmp_path, methods=["base"], evals=["win_rate"],
                    eval={"win_rate": {"references": ["large_base"]}})
    line = one_line(capsys, ["run", str(f), "--out", str(out)])
    assert "eval.win_rate: references names large_base" in line
    assert not out.exists()


class _Reached(logging.Handler):
    """What reaches the root logger, whose handlers are the terminal."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "alignbench.method.chatty":
            self.messages.append(record.getMessage())


def test_ctx_log_reaches_the_cells_log(tmp_path, capfd, plugins):
    """Its INFO lines in the cell's log.txt only; its warnings there and, through the root
    logger, on the terminal. A handler of the test's own on the root stands in for the
    terminal: pytest's caplog also listens on loggers that do not propagate, so it cannot."""
    out = tmp_path / "out"
    reached = _Reached()
    logging.getLogger().addHandler(reached)
    try:
        assert cli.main(["run", str(matrix_file(tmp_path)), "--out", str(out)]) == 0
    finally:
        logging.getLogger().removeHandler(reached)
    seen = capfd.readouterr()
    (rec,) = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    log = (out / "cells" / rec["key"] / "log.txt").read_text()
    assert f"alignbench.method.chatty INFO: {LOGGED}" in log
    assert f"alignbench.method.chatty WARNING: {WARNED}" in log
    assert LOGGED not in seen.err + seen.out
    assert reached.messages == [WARNED]


def result(**kw) -> CellResult:
    return CellResult(key="k", method="m", seed=0, point={}, method_config={}, scenario="s",
                      start="base", **kw)


SPENT = {"train_tokens": 10.0, "flops": 6e3, "inference_flops": 2e3, "rollouts": 4.0,
         "samples_per_response": 1.0}
MEASURED = Measured(wall_seconds=1.5, peak={"peak_rss_bytes": 7, "peak_rss_scope": "cell",
                                            "peak_gpu_bytes": None},
                    phase_seconds={"training": 1.0}, phase_peak_rss_bytes={"training": 7})
HEAD = ["key", "method", "seed", "point", "method_config", "scenario", "start", "metrics",
        "uncertainty", "n", "evals", "curves", "movement", "warnings"]
TAIL = ["cost", "status", "error", "failed_step", "provenance"]


def test_the_record_is_laid_out_in_one_place_and_its_cost_derived():
    ok = result(eval_spend={"inference_flops": 5e3}, budget={"given": {}, "spent": SPENT},
                saved=True, policy=None, measured=MEASURED)
    d = ok.to_json()
    assert list(d) == HEAD + ["eval_spend", "budget", "policy"] + TAIL
    assert list(d["cost"]) == ["wall_seconds", "peak_rss_bytes", "peak_rss_scope",
                               "peak_gpu_bytes", "train_tokens", "train_flops",
                               "inference_flops", "eval_flops", "rollouts",
                               "samples_per_response", "phase_seconds", "phase_peak_rss_bytes"]
    assert (d["cost"]["train_flops"], d["cost"]["eval_flops"]) == (6e3, 5e3)
    assert problem(CellRecord, json.loads(json.dumps(d))) is None
    # failed before its evaluation ended: the budget comes after the traceback
    failed = result(budget={"given": {}, "spent": {}}, traceback="tb", status="failed",
                    error="training: boom", measured=MEASURED).to_json()
    assert list(failed) == HEAD + ["traceback", "budget"] + TAIL
    assert failed["cost"]["train_tokens"] == 0.0 and failed["cost"]["eval_flops"] == 0.0


def test_the_ray_executor_does_not_import_the_runner():
    code = ("import sys, bench.ray_executor; "
            "print(sorted(m for m in sys.modules if m in ('bench.runner', 'reports')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
