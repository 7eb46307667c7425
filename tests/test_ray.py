"""The Ray executor against the local one (issue 17), on real Ray instances: a local one sized
to the machine, and simulated multi-node clusters (``ray.cluster_utils.Cluster``) whose nodes
are real raylets with their own worker processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import cli, config, registry, runner

ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")


def smoke(**over) -> dict:
    """The smoke preset as a dict, with ``over`` merged in one level deep."""
    import tomllib
    from importlib import resources
    d = tomllib.loads(resources.files("bench.presets").joinpath("smoke.toml").read_text())
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    d["progress"] = False
    return d


def records(out: Path) -> dict[str, dict]:
    return {json.loads(x)["key"]: json.loads(x)
            for x in (out / "results.jsonl").read_text().splitlines()}


def comparable(rec: dict) -> dict:
    """A result without what may differ between two runs of the same cell: when and where it
    ran (provenance) and its wall time."""
    rec = {k: v for k, v in rec.items() if k != "provenance"}
    spent = {u: v for u, v in rec["budget"]["spent"].items() if u != "wall_seconds"}
    return {**rec, "budget": {**rec["budget"], "spent": spent}}


def events(out: Path) -> list[dict]:
    f = out / "events.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def assert_identical(local: Path, distributed: Path) -> None:
    a, b = records(local), records(distributed)
    assert sorted(a) == sorted(b), "the executors gave other keys"
    assert all(r["status"] == "ok" for r in a.values())
    for key in a:
        assert comparable(a[key]) == comparable(b[key]), a[key]["method"]
        assert b[key]["provenance"]["executor"]["name"] == "ray"


def test_smoke_matrix_gives_the_local_executors_keys_and_bitwise_its_results(tmp_path, capfd):
    import torch
    m = config.parse(smoke(resources={"num_cpus": torch.get_num_threads()}))
    runner.run(m, tmp_path / "local")
    capfd.readouterr()
    runner.run(m.model_copy(update={"executor": "ray"}), tmp_path / "ray")
    driver = capfd.readouterr()
    assert_identical(tmp_path / "local", tmp_path / "ray")
    # each cell's log is under its folder, not interleaved on the driver's output
    dpo = next(r for r in records(tmp_path / "ray").values() if r["method"] == "dpo")
    log = (tmp_path / "ray" / "cells" / dpo["key"] / "log.txt").read_text()
    assert "train_loss" in log  # TRL's PrinterCallback line of the DPO trainer
    assert "train_loss" not in driver.out + driver.err
    kinds = [e["event"] for e in events(tmp_path / "ray")]
    assert kinds.count("cell_submitted") == kinds.count("cell_end") == 5
    assert kinds.count("cell_running") == 5


@pytest.mark.slow
def test_a_quickstart_sized_matrix_is_identical_under_ray(tmp_path):
    """The quickstart's world, methods, budgets and evals, at one seed."""
    import torch
    m = config.load("quickstart").model_copy(update={
        "progress": False, "seeds": [0],
        "resources": config.Resources(num_cpus=torch.get_num_threads())})
    runner.run(m, tmp_path / "local")
    runner.run(m.model_copy(update={"executor": "ray"}), tmp_path / "ray")
    assert_identical(tmp_path / "local", tmp_path / "ray")


def test_a_shared_stage_is_computed_once_when_the_cells_that_need_it_start_at_once(
        tmp_path, tiny_world, monkeypatch):
    """From an empty stage cache, on two one-CPU workers: ppo and dpo both wait for the SFT
    stage task and then start together, and both need the same comparison set. Each stage is
    built exactly once (counted from the events every build writes)."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_world.base_model, cache / "micro" / tiny_world.key)  # the world only
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(cache))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    d = smoke(methods=["ppo", "dpo"], executor="ray")
    del d["method"]["rlaif"]
    try:
        runner.run(config.parse(d), tmp_path / "o")
    finally:
        ray.shutdown()
    ev = events(tmp_path / "o")
    built = [(e["kind"], e["key"]) for e in ev if e["event"] == "stage_built"]
    assert sorted(k for k, _ in built) == ["comparisons", "sft"], built
    assert len(set(built)) == len(built)
    assert len(list((cache / "stages" / "comparisons").glob("*.json"))) == 1
    recs = {r["method"]: r for r in records(tmp_path / "o").values()}
    assert all(r["status"] == "ok" for r in recs.values())
    assert recs["ppo"]["budget"]["spent"]["comparisons"] == \
        recs["dpo"]["budget"]["spent"]["comparisons"] == 40  # both charged the one set


def _claim_and_count(coordinator, counter: str, owner: str, hold: float, die: bool) -> str:
    from bench.ray_executor import claimed

    def compute() -> str:
        with open(counter, "a") as f:
            f.write(owner + "\n")
        time.sleep(hold)  # everyone else has asked by now
        if die:
            os._exit(1)  # the worker is lost holding the claim
        return "computed"
    return claimed(coordinator, "k", owner, compute=compute, read=lambda: "read")


def test_a_claimed_stage_is_computed_once_by_concurrent_tasks_and_passes_on_when_lost(
        tmp_path):
    """The coordinator itself, with real concurrency: four tasks ask for one key at once; one
    computes (slowly) and three wait and read. Then a claimant whose worker dies: once the
    driver abandons it, a waiter computes instead (no one waits forever)."""
    from bench.ray_executor import Coordinator
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_claim_and_count)
        coord = Coordinator.options().remote()
        counter = str(tmp_path / "builds")
        got = ray.get([task.remote(coord, counter, f"cell{i}", 2.0, False) for i in range(4)])
        assert sorted(got) == ["computed", "read", "read", "read"]
        assert len(Path(counter).read_text().splitlines()) == 1

        coord = Coordinator.options().remote()
        counter = str(tmp_path / "builds-lost")
        doomed = task.remote(coord, counter, "doomed", 2.0, True)
        while not Path(counter).exists():
            time.sleep(0.05)
        waiter = task.remote(coord, counter, "waiter", 0.0, False)
        with pytest.raises(ray.exceptions.RayError):
            ray.get(doomed)
        ray.get(coord.abandon.remote("doomed"))  # what the driver does for a lost cell
        assert ray.get(waiter, timeout=60) == "computed"
        assert Path(counter).read_text().split() == ["doomed", "waiter"]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_two_node_cluster_places_gpu_cells_and_survives_losing_a_node_mid_cell(tmp_path):
    """Head (no CPUs) + a CPU node + two nodes with one logical GPU each. PPO asks for a GPU:
    it lands on a GPU node and sees that GPU in CUDA_VISIBLE_DEVICES. That node is removed
    while PPO trains; Ray reruns the cell on the other GPU node, the matrix completes, and
    every result, the rerun one included, equals an undisturbed run's (nothing lost, nothing
    charged twice)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=1)
    gpu_nodes = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    d = smoke(resources={"num_cpus": 1, "method": {"ppo": {"num_gpus": 1}}})
    d["method"]["ppo"].update(steps=12)  # long enough to be caught mid-cell
    d["budget"]["rollouts"] = 1000
    m = config.parse(d).model_copy(update={"executor": "ray"})
    out = tmp_path / "lost"
    removed: list[str] = []

    def remove_ppo_node_mid_cell() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not removed:
            for e in events(out):
                if e["event"] == "cell_running" and e["cell"].startswith("ppo"):
                    node = next(n for n in gpu_nodes if n.node_id == e["node"])
                    time.sleep(1.0)  # well inside its training
                    cluster.remove_node(node)
                    removed.append(e["node"])
                    return
            time.sleep(0.1)

    try:
        killer = threading.Thread(target=remove_ppo_node_mid_cell)
        killer.start()
        runner.run(m, out)
        killer.join()
        assert removed, "PPO never started"
        ev = events(out)
        ends = [e for e in ev if e["event"] == "cell_end" and e["cell"].startswith("ppo")]
        assert len(ends) == 1 and ends[0]["node"] != removed[0]
        runner.run(m, tmp_path / "calm")  # the same matrix, nothing removed
    finally:
        ray.shutdown()
        cluster.shutdown()
    lost, calm = records(out), records(tmp_path / "calm")
    assert sorted(lost) == sorted(calm)
    for key, rec in lost.items():
        assert rec["status"] == "ok", rec["error"]
        assert comparable(rec) == comparable(calm[key]), rec["method"]
        cfg = registry.resolve("methods", rec["method"]).Config.model_validate(
            rec["method_config"])
        for unit, (need, _) in cfg.planned_spend(rec["budget"]["given"]).items():
            assert rec["budget"]["spent"][unit] == need, (rec["method"], unit)  # charged once
    ppo = next(r for r in lost.values() if r["method"] == "ppo")
    where = ppo["provenance"]["executor"]
    assert where["attempts"] == 2 and where["node_id"] != removed[0]
    assert where["node_id"] in {n.node_id for n in gpu_nodes}
    assert where["cuda_visible_devices"] == "0" and where["gpu_ids"] == ["0"]
    # a cell is rerun exactly when an attempt of it ran on the removed node (PPO, and any CPU
    # cell the GPU node was running beside it), and only PPO sees a GPU
    on_removed = {e["key"] for e in events(out)
                  if e["event"] == "cell_running" and e["node"] == removed[0]}
    for key, rec in lost.items():
        assert rec["provenance"]["executor"]["attempts"] == 1 + (key in on_removed), rec["method"]
        if rec["method"] != "ppo":
            assert rec["provenance"]["executor"]["cuda_visible_devices"] in (None, "")


@pytest.mark.slow
def test_driver_killed_mid_matrix_resumes_keeping_finished_cells(tmp_path):
    d = smoke(executor="ray")
    d["method"]["ppo"].update(steps=12)
    d["budget"]["rollouts"] = 1000
    import tomli_w
    mfile = tmp_path / "m.toml"
    mfile.write_text(tomli_w.dumps(d))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench.cli", "run", str(mfile), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(e["event"] == "cell_end" for e in events(out)):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    finished = {e["key"] for e in events(out) if e["event"] == "cell_end"}
    assert finished and len(finished) < 5, "the driver was not killed mid-matrix"
    kept = {k: (out / "cells" / k / "result.json").read_bytes() for k in finished}
    before = len(events(out))
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    resubmitted = {e["key"] for e in events(out)[before:] if e["event"] == "cell_submitted"}
    assert not resubmitted & finished and len(resubmitted) == 5 - len(finished)
    assert {k: (out / "cells" / k / "result.json").read_bytes() for k in finished} == kept
    assert len(records(out)) == 5 and all(r["status"] == "ok" for r in records(out).values())


def test_without_ray_the_executor_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = cli.main(["run", "smoke", "--executor", "ray", "--out", str(tmp_path / "o"),
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert '".[ray]"' in err and "ray executor" in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize("table, words", [
    ({"num_cpus": 0}, ["resources.num_cpus", "greater than 0"]),
    ({"num_gpus": -1}, ["resources.num_gpus"]),
    ({"method": {"nosuch": {"num_cpus": 1}}}, ["resources.method.nosuch", "known: "]),
    ({"method": {"ppo": {"num_cpu": 1}}}, ["resources.method.ppo.num_cpu", "unknown key"]),
    ({"max_retries": -1}, ["resources.max_retries"]),
])
def test_bad_resources_are_one_line_naming_the_key(table, words):
    with pytest.raises(config.ConfigError) as err:
        config.parse(smoke(resources=table))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_per_method_resources_override_the_matrix_and_set_the_thread_count():
    r = config.parse(smoke(resources={"num_cpus": 2.5, "num_gpus": 0.25, "method": {
        "ppo": {"num_cpus": 1, "num_gpus": 0}}})).resources
    assert (r.of("dpo").num_cpus, r.of("dpo").num_gpus) == (2.5, 0.25)
    assert (r.of("ppo").num_cpus, r.of("ppo").num_gpus) == (1, 0)
    assert (r.threads("dpo"), r.threads("ppo")) == (2, 1)
    assert config.parse(smoke(resources={"num_cpus": 0.5})).resources.threads("sft") == 1


def test_a_cell_no_node_can_hold_is_refused_in_one_line(tmp_path, capsys):
    d = smoke(executor="ray", resources={"num_cpus": 512})
    import tomli_w
    (tmp_path / "m.toml").write_text(tomli_w.dumps(d))
    code = cli.main(["run", str(tmp_path / "m.toml"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "512 CPUs" in err and "no node" in err and "[resources]" in err


def test_address_without_the_ray_executor_is_refused(tmp_path, capsys):
    code = cli.main(["run", "smoke", "--address", "auto", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--executor ray" in err


def test_joining_a_cluster_that_is_not_there_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "")
    code = cli.main(["run", "smoke", "--executor", "ray", "--address", "auto", "--out",
                     str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "cannot join the Ray cluster at 'auto'" in err and "ray start --head" in err


def test_a_worker_that_computes_another_key_refuses_the_cell(tmp_path, monkeypatch):
    """What a node with other code or packages does: the driver's keys are made to differ
    from what every worker computes, and each cell fails saying why, with nothing else
    written for it."""
    real = runner.cell_key
    monkeypatch.setattr(runner, "cell_key", lambda *a: real(*a)[::-1])
    d = smoke(methods=["base"], executor="ray")
    d["method"] = {}
    runner.run(config.parse(d), tmp_path / "o")
    (rec,) = records(tmp_path / "o").values()
    assert rec["status"] == "failed"
    assert rec["error"].startswith("on the worker: RuntimeError: cell base seed=0 has another "
                                   "key on this worker"), rec["error"]
    assert "install the same alignbench" in rec["error"]
