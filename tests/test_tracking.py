"""report_to: each cell's training curves streamed, as it trains, to trackio or
TensorBoard inside the output folder, with no network call; what the trackers hold at each step
is what the cell stored in its result, which stays the record. Off by default."""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench import cli, config, runner, tracking
from bench.api import Tracking
from methods.common import TRAINER_LOGGED
from tests.conftest import ROOT, TINY_WORLD

MATRIX = {
    "name": "tracking-test", "methods": ["dpo", "ppo"], "evals": ["toxicity"], "seeds": [0],
    "progress": False, "scenario": {"name": "micro", "options": TINY_WORLD},
    "budget": {"demonstrations": 16, "comparisons": 20, "ai_comparisons": 20, "rollouts": 200},
    # DPO in 10 steps of 2 pairs: TRL logs at steps 5 and 10; PPO 2 steps after its reward model
    "method": {"sft": {"epochs": 1}, "dpo": {"epochs": 1, "batch_size": 2},
               "ppo": {"steps": 2, "batch_size": 4, "epochs": 1, "rm_epochs": 1, "k": 4}},
    "eval": {"toxicity": {"k": 2}},
}
HAND_WRITTEN = {"ppo", "ppo_rm_monitor"}  # curves streamed through bench.tracking.curve_logger,
# not TRL (PPO's steps, and its reward model against gold after each round)


@pytest.fixture(scope="module")
def offline():
    """Every connection a run attempts, refused and recorded (a local socket is allowed)."""
    attempts: list[object] = []
    connect = socket.socket.connect

    def refuse(sock, address):
        if sock.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError(f"tests/test_tracking.py: no network, not even {address!r}")
        return connect(sock, address)

    socket.socket.connect = refuse
    yield attempts
    socket.socket.connect = connect


def run(out: Path, report_to: str, methods: list[str] | None = None) -> dict[str, dict]:
    m = config.overridden(config.parse({**MATRIX, "report_to": report_to}), methods=methods)
    runner.run(m, out)
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    return {r["method"]: r for r in recs}


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory, offline):
    out = tmp_path_factory.mktemp("tensorboard")
    return out, run(out, "tensorboard")


# trackio reads TRACKIO_DIR once, when first imported: a process where anything imported it
# before (the whole suite's) cannot point it at a new folder, so the trackio matrix runs in a
# process of its own, as `alignbench run` does, with every connection refused and recorded
TRACKIO_CHILD = """
import json, socket, sys
from pathlib import Path
attempts = []
connect = socket.socket.connect
def refuse(sock, address):
    if sock.family != socket.AF_UNIX:
        attempts.append(repr(address))
        raise OSError(f"no network, not even {address!r}")
    return connect(sock, address)
socket.socket.connect = refuse
from bench import tracking
from tests.test_tracking import run
out = Path(sys.argv[1])
run(out, "trackio")
# a cell that failed and is computed again, or --fresh: its last attempt only
t = tracking.for_cell("trackio", out, out / "cells" / "again", "again", {"method": "x"})
for value in (1.0, 2.0):
    with tracking.session(t), tracking.curve_logger(t, "loop") as log:
        log({"step": 0.0, "x": value})
        log({"step": 1.0, "x": value + 1})
(out / "child.json").write_text(json.dumps({
    "attempts": attempts, "trackio_dir": str(sys.modules["trackio.utils"].TRACKIO_DIR)}))
"""


@pytest.fixture(scope="module")
def trackio_run(tmp_path_factory):
    import subprocess
    out = tmp_path_factory.mktemp("trackio")
    subprocess.run([sys.executable, "-c", TRACKIO_CHILD, str(out)], cwd=ROOT, check=True,
                   timeout=900)
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return out, {r["method"]: r for r in recs}, json.loads((out / "child.json").read_text())


def tag_of(curve: str, name: str, tags) -> str:
    """The tracker's name for a curve's value: ``CURVE/NAME`` from a hand-written loop, TRL's
    own ``train/LOGGED`` (the name :data:`TRAINER_LOGGED` maps to ours) from a trainer."""
    if curve in HAND_WRITTEN:
        return f"{curve}/{name}"
    theirs = [f"train/{t}" for t, ours in TRAINER_LOGGED.items() if ours == name]
    found = [t for t in theirs if t in tags]
    assert len(found) == 1, (curve, name, theirs, sorted(tags))
    return found[0]


def assert_same_points(curve: str, points: list[dict], logged: dict[int, dict[str, float]]):
    """Every stored point of ``curve`` is in ``logged`` (step -> tag -> value) at its step, every
    value equal to float32 rounding (TensorBoard stores float32)."""
    assert points, f"curve {curve} recorded no point: the test shows nothing"
    for point in points:
        at = logged.get(int(point["step"]))
        assert at is not None, (curve, point["step"], sorted(logged))
        for name, value in point.items():
            if name != "step":
                assert at[tag_of(curve, name, at)] == pytest.approx(value, rel=1e-6, abs=1e-9), \
                    (curve, point["step"], name)


def tensorboard_scalars(folder: Path) -> dict[int, dict[str, float]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    out: dict[int, dict[str, float]] = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            out.setdefault(event.step, {})[tag] = event.value
    return out


def test_tensorboard_holds_every_curve_of_a_trl_and_the_ppo_cell(tensorboard_run, offline):
    out, recs = tensorboard_run
    seen = set()
    for method in ("dpo", "ppo"):
        rec = recs[method]
        for curve, points in rec["curves"].items():
            if not points:  # the reward model's 2 steps log nothing at logging_steps 5
                continue
            folder = out / "cells" / rec["key"] / "tracking" / "tensorboard" / curve
            assert_same_points(curve, points, tensorboard_scalars(folder))
            seen.add(curve)
    assert seen == {"dpo_0", "ppo", "ppo_rm_monitor"}
    assert not offline, offline
    assert not (out / "tracking").exists()  # TensorBoard writes in the cells' folders only


def trackio_rows(db: Path, run_name: str) -> list[tuple[int, dict[str, float]]]:
    """A run's logged rows from trackio's SQLite file itself: (trackio's step, metrics)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT step, metrics FROM metrics WHERE run_name = ? ORDER BY id",
                            (run_name,)).fetchall()
    return [(step, json.loads(metrics)) for step, metrics in rows]


def test_trackio_holds_every_curve_in_one_local_database(trackio_run):
    out, recs, child = trackio_run
    db = out / "tracking" / f"{out.name}.db"  # one project, named after the output folder
    assert db.is_file()
    for method in ("dpo", "ppo"):
        rec = recs[method]
        rows = trackio_rows(db, rec["key"])  # one run per cell, named by its key
        for curve, points in rec["curves"].items():
            if not points:
                continue
            if curve in HAND_WRITTEN:  # logged at the point's own step
                logged = {step: m for step, m in rows if any(k.startswith(f"{curve}/") for k in m)}
            else:  # TRL's callback counts its own steps and logs the trainer's global step
                logged = {int(m["train/global_step"]): m for _, m in rows
                          if "train/global_step" in m and "train/loss" in m}
            assert_same_points(curve, points, logged)
    assert child["attempts"] == []  # no network call
    assert Path(child["trackio_dir"]).resolve() == (out / "tracking").resolve()
    assert not any((out / "cells").glob("*/tracking"))  # nothing in the cells' folders
    log = (out / "cells" / recs["dpo"]["key"] / "log.txt").read_text()
    assert "Trackio project initialized" in log  # trackio's chatter: the cell's log, not stdout


def test_a_cell_computed_again_replaces_its_trackio_run(trackio_run):
    """A cell that failed and is computed again, or ``--fresh``, shows its last attempt only."""
    out = trackio_run[0]  # the child logged the cell "again" twice, with values 1 and 2
    rows = trackio_rows(out / "tracking" / f"{out.name}.db", "again")
    assert rows == [(0, {"loop/x": 2.0}), (1, {"loop/x": 3.0})]


def test_off_by_default_writes_no_tracking_folder_and_changes_no_number(tmp_path,
                                                                        tensorboard_run):
    """report_to is cosmetic: not in the key, and the curves it streams are the same numbers."""
    _, tracked = tensorboard_run
    recs = run(tmp_path, "none", methods=["dpo"])
    assert config.parse(MATRIX).report_to == "none"
    assert not list(tmp_path.rglob("tracking")) and not list(tmp_path.rglob("*tfevents*"))
    assert recs["dpo"]["key"] == tracked["dpo"]["key"]
    assert recs["dpo"]["curves"] == tracked["dpo"]["curves"]


def test_a_hand_written_loop_streams_nothing_with_tracking_off():
    with tracking.session(Tracking()), tracking.curve_logger(Tracking(), "ppo") as log:
        log({"step": 0.0, "kl": 1.0})  # no folder, no import, no error


@pytest.mark.parametrize("args", [["--report-to", "tensorbord"], ["--set", "report_to=42"]])
def test_a_bad_value_exits_2_with_one_line(tmp_path, capsys, args):
    code = cli.main(["run", "smoke", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "'report_to'" in err and "'none', 'trackio', 'tensorboard' or 'wandb'" in err, err
    assert not (tmp_path / "o").exists()


def test_a_bad_value_in_the_matrix_file_names_the_key(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('report_to = "mlflow"\n')
    with pytest.raises(config.ConfigError, match=r"^\S+: 'report_to': Input should be 'none'"):
        config.load(f)


@pytest.mark.parametrize("backend, words", [
    ("trackio", "report_to = 'trackio' needs the tracking extra: pip install "
                "'alignbench[tracking]'"),
    ("tensorboard", "report_to = 'tensorboard' needs the tracking extra"),
    ("wandb", "report_to = 'wandb' needs the wandb package"),
])
def test_a_missing_backend_fails_at_validation_in_one_line(monkeypatch, tmp_path, capsys,
                                                           backend, words):
    monkeypatch.setattr(tracking, "find_spec", lambda name: None)  # as if not installed
    with pytest.raises(config.ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        config.parse({"report_to": backend})
    assert cli.main(["run", "smoke", "--out", str(tmp_path / "o"), "--report-to", backend]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o").exists()


def test_ray_and_a_trackio_bound_elsewhere_are_refused_before_anything_runs(monkeypatch,
                                                                          tmp_path):
    with pytest.raises(config.ConfigError, match="streams from the local executor only"):
        config.parse({"report_to": "tensorboard", "executor": "ray"})
    # a second matrix in a Python session whose trackio already writes to another folder
    monkeypatch.setitem(sys.modules, "trackio.utils",
                        SimpleNamespace(TRACKIO_DIR=tmp_path / "elsewhere"))
    with pytest.raises(config.ConfigError, match="trackio already writes to .*elsewhere"):
        runner.run(config.parse({**MATRIX, "report_to": "trackio"}), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_the_test_command_installs_the_tracking_extra():
    """dev lists the tracking extra's packages at its pins, so the README's test command runs
    these tests (they read the trackers' files back) without naming the extra."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(extras["tracking"]) <= set(extras["dev"])
    assert not any(r.startswith("wandb") for r in extras["tracking"])  # the user's own
