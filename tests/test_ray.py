"""The Ray executor against the local one, on real Ray instances: a local one sized
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
    ran (provenance), its wall time and its peak memory (the whole cell's and each phase's)."""
    rec = {k: v for k, v in rec.items() if k != "provenance"}
    spent = {u: v for u, v in rec["budget"]["spent"].items() if u != "wall_seconds"}
    cost = {k: v for k, v in (rec.get("cost") or {}).items()
            if k not in ("wall_seconds", "peak_rss_bytes", "peak_gpu_bytes", "phase_seconds",
                         "phase_peak_rss_bytes")}
    return {**rec, "budget": {**rec["budget"], "spent": spent}, "cost": cost}


def events(out: Path) -> list[dict]:
    """The audit trail so far; a line being written right now is skipped, not misread."""
    f = out / "events.jsonl"
    got = []
    for line in f.read_text().splitlines() if f.exists() else []:
        try:
            got.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return got


def assert_identical(local: Path, distributed: Path) -> None:
    a, b = records(local), records(distributed)
    assert sorted(a) == sorted(b), "the executors gave other keys"
    assert all(r["status"] == "ok" for r in a.values())
    for key in a:
        assert comparable(a[key]) == comparable(b[key]), a[key]["method"]
        assert b[key]["provenance"]["executor"]["name"] == "ray"


def test_smoke_matrix_gives_the_local_executors_keys_and_bitwise_its_results(tmp_path, capfd):
    import torch
    m = config.parse(smoke(resources={"num_cpus": torch.get_num_threads()}, save_policies=True))
    runner.run(m, tmp_path / "local")
    capfd.readouterr()
    runner.run(m.model_copy(update={"executor": "ray"}), tmp_path / "ray")
    driver = capfd.readouterr()
    assert_identical(tmp_path / "local", tmp_path / "ray")
    # save_policies: the driver writes each worker's policy folder, the same bytes as locally
    for key, rec in records(tmp_path / "ray").items():
        assert rec["policy"] == "policy", rec["method"]
        a, b = (tmp_path / side / "cells" / key / "policy" for side in ("local", "ray"))
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    # each cell's log is under its folder, not interleaved on the driver's output
    dpo = next(r for r in records(tmp_path / "ray").values() if r["method"] == "dpo")
    log = (tmp_path / "ray" / "cells" / dpo["key"] / "log.txt").read_text()
    assert "train_loss" in log  # TRL's PrinterCallback line of the DPO trainer
    assert "train_loss" not in driver.out + driver.err
    kinds = [e["event"] for e in events(tmp_path / "ray")]
    assert kinds.count("cell_submitted") == kinds.count("cell_end") == 5
    assert kinds.count("cell_running") == 5


@pytest.mark.slow
@pytest.mark.on_demand
def test_a_quickstart_sized_matrix_is_identical_under_ray(tmp_path):
    """The quickstart's world, methods, budgets and evals, at one seed (about 5 minutes: run on
    demand; the smoke matrix's identity under Ray runs in the default test command)."""
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
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
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


def _once_and_count(path: str, counter: str, hold: float, die: bool) -> str:
    from bench import store

    def compute() -> str:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(hold)  # everyone else has asked by now
        if die:
            os._exit(1)  # the worker is lost holding the lock
        return "computed"
    return store.once_json(Path(path), compute)


def test_a_compute_once_set_is_computed_once_by_concurrent_workers_and_survives_its_holder(
        tmp_path):
    """The mechanism the executor relies on for compute-once sets, under real concurrency:
    four Ray workers ask for one cached value at once; one computes it (slowly), the others
    wait and read it. Then a holder whose worker dies mid-compute: the kernel releases its lock
    and the next worker computes instead, so no one waits forever."""
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_once_and_count)
        counter = str(tmp_path / "builds")
        got = ray.get([task.remote(str(tmp_path / "v.json"), counter, 2.0, False)
                       for _ in range(4)])
        assert got == ["computed"] * 4
        assert len(Path(counter).read_text().splitlines()) == 1

        counter = str(tmp_path / "builds-lost")
        doomed = task.remote(str(tmp_path / "w.json"), counter, 2.0, True)
        while not Path(counter).exists():
            time.sleep(0.05)
        waiter = task.remote(str(tmp_path / "w.json"), counter, 0.0, False)
        with pytest.raises(ray.exceptions.RayError):
            ray.get(doomed)
        assert ray.get(waiter, timeout=60) == "computed"
        assert len(Path(counter).read_text().split()) == 2
    finally:
        ray.shutdown()


def _where_am_i() -> tuple[int, str | None]:
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_each_gpu_cell_gets_a_fresh_worker_process():
    """torch binds a process to the first GPU it uses, so a worker reused for a second GPU cell
    would keep the first one's GPU whatever CUDA_VISIBLE_DEVICES now says. Ray reuses workers
    for tasks given GPUs through .options() alone (seen: one process ran four such tasks, seeing
    both GPUs in turn); the executor's GPU tasks get a fresh process each."""
    from bench.ray_executor import _task
    ray.init(address="local", num_cpus=1, num_gpus=2, include_dashboard=False,
             log_to_driver=False)
    try:
        fresh = [ray.get(_task(_where_am_i, True).options(num_gpus=1).remote())
                 for _ in range(4)]
        reused = [ray.get(_task(_where_am_i, False).options(num_gpus=1).remote())
                  for _ in range(4)]
    finally:
        ray.shutdown()
    assert len({pid for pid, _ in fresh}) == 4
    assert all(cuda in ("0", "1") for _, cuda in fresh)
    assert len({pid for pid, _ in reused}) < 4  # the hazard the executor avoids


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
    d["method"]["ppo"].update(steps=40)  # long enough to be caught mid-cell on a fast machine
    d["budget"]["rollouts"] = 1000
    m = config.parse(d).model_copy(update={"executor": "ray"})
    out = tmp_path / "lost"
    removed: list[str] = []
    problems: list[BaseException] = []

    def remove_ppo_node_mid_cell() -> None:
        try:
            deadline = time.time() + 240
            while time.time() < deadline and not removed:
                for e in events(out):
                    if e["event"] == "cell_running" and e["cell"].startswith("ppo"):
                        node = next(n for n in gpu_nodes if n.node_id == e["node"])
                        time.sleep(1.0)  # 1-3 s into a cell of 20 s or more
                        cluster.remove_node(node)
                        removed.append(e["node"])
                        return
                time.sleep(0.1)
        except BaseException as err:  # noqa: BLE001 - reported by the test, not lost
            problems.append(err)

    try:
        killer = threading.Thread(target=remove_ppo_node_mid_cell)
        killer.start()
        runner.run(m, out)
        killer.join()
        assert not problems, problems
        assert removed, "PPO never started"
        ev = events(out)
        ends = [e for e in ev if e["event"] == "cell_end" and e["cell"].startswith("ppo")]
        assert len(ends) == 1
        assert ends[0]["node"] != removed[0], "PPO finished before its node was removed"
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
    finished = {d.name for d in (out / "cells").iterdir() if runner.is_done(out, d.name)}
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


def cli_run(tmp_path: Path, d: dict, *extra: str) -> subprocess.CompletedProcess:
    """The real command line, in its own process: what a user sees on stderr (Ray's own
    start-up lines included)."""
    import tomli_w
    mfile = tmp_path / "m.toml"
    mfile.write_text(tomli_w.dumps(d))
    return subprocess.run([sys.executable, "-m", "bench.cli", "run", str(mfile), "--out",
                           str(tmp_path / "o"), "--no-progress", *extra],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "RAY_ADDRESS": ""})


@pytest.mark.parametrize("over, extra, words", [
    ({"resources": {"num_cpus": 512}}, (), ["tasks ask for 512 CPUs", "no node",
                                            "lower [resources]"]),
    # a stage no node can hold (the cells' own resources fit): it would wait forever
    ({"methods": ["dpo"], "resources": {"method": {"sft": {"num_gpus": 1}}}}, (),
     ["sft's tasks ask for 1 CPUs, 1 GPUs", "no node"]),
    ({}, ("--address", "foo"), ["--address 'foo' is not HOST:PORT"]),
    ({}, ("--address", "127.0.0.1:1"), ["nothing answers at 127.0.0.1:1",
                                         "ray start --head --port=1"]),
    ({}, ("--address", "auto"), ["cannot join the Ray cluster at 'auto'", "ray start --head"]),
    ({"device": "auto"}, (), ['device = "auto" would be decided on the driver']),
    ({"device": "cuda"}, (), ['device = "cuda" but', "ask for no GPU"]),
])
def test_what_ray_cannot_run_is_refused_in_one_line_before_anything_is_deleted(
        tmp_path, over, extra, words):
    """Each refusal is one line on stderr with exit 2, Ray's own start-up lines included, and
    comes before --fresh deletes anything: a finished result in the folder stays."""
    base = smoke(methods=["base"])
    base["method"] = {}
    assert cli_run(tmp_path, base).returncode == 0
    kept = {f: f.read_bytes() for f in (tmp_path / "o" / "cells").rglob("result.json")}
    d = smoke(executor="ray", **over)
    if "methods" in over:
        d["method"] = {}
    t0 = time.perf_counter()
    proc = cli_run(tmp_path, d, "--fresh", *extra)
    assert time.perf_counter() - t0 < 120  # a dead address is refused in seconds, not minutes
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert kept and {f: f.read_bytes() for f in kept} == kept


def test_address_without_the_ray_executor_is_refused(tmp_path, capsys):
    code = cli.main(["run", "smoke", "--address", "auto", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--executor ray" in err


def test_a_worker_that_computes_another_key_refuses_the_cell(tmp_path, monkeypatch):
    """What a node with other code or packages does: the driver's keys are made to differ
    from what every worker computes, and each cell fails saying why, with nothing else
    written for it."""
    from bench import cells
    real = cells.cell_key
    monkeypatch.setattr(cells, "cell_key", lambda *a: real(*a)[::-1])
    d = smoke(methods=["base"], executor="ray")
    d["method"] = {}
    runner.run(config.parse(d), tmp_path / "o")
    (rec,) = records(tmp_path / "o").values()
    assert rec["status"] == "failed"
    assert rec["error"].startswith("on the worker: RuntimeError: cell base seed=0 has another "
                                   "key on this worker"), rec["error"]
    assert "install the same alignbench" in rec["error"]


def test_a_worker_on_another_chip_than_the_keys_name_refuses_the_cell(tmp_path, monkeypatch):
    """The keys name the processor the workers compute on (asked of a worker, not the
    driver's own): a worker on another model than the keys name refuses its cells, so one key
    never holds two chips' numbers. Here the driver is told its workers run another CPU."""
    from bench.ray_executor import RayExecutor
    monkeypatch.setattr(RayExecutor, "processor", lambda self, device: "Another CPU @ 1.00GHz")
    d = smoke(methods=["base"], executor="ray")
    d["method"] = {}
    runner.run(config.parse(d), tmp_path / "o")
    (rec,) = records(tmp_path / "o").values()
    assert rec["status"] == "failed"
    assert "the matrix's keys name Another CPU @ 1.00GHz" in rec["error"], rec["error"]
    assert "run a matrix on nodes of one processor model" in rec["error"]


def test_losing_the_cluster_mid_matrix_is_one_line_and_the_rerun_resumes(tmp_path):
    """The executor's own actor killed mid-matrix stands in for a lost head node: the driver
    stops with ClusterLost (one line, exit 1 in the CLI), keeps what it wrote, and the rerun
    completes the matrix."""
    from bench.ray_executor import ClusterLost
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    m = config.parse(smoke(executor="ray"))
    out = tmp_path / "o"

    def kill_the_tracker() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            names = [a for a in ray.util.list_named_actors() if a.startswith("alignbench-")]
            if names and any(e["event"] == "cell_running" for e in events(out)):
                ray.kill(ray.get_actor(names[0]))
                return
            time.sleep(0.1)
    try:
        killer = threading.Thread(target=kill_the_tracker)
        killer.start()
        with pytest.raises(ClusterLost) as err:
            runner.run(m, out)
        killer.join()
        assert "finished cells are kept" in str(err.value) and "\n" not in str(err.value)
    finally:
        ray.shutdown()
    runner.run(m, out)
    assert len(records(out)) == 5 and all(r["status"] == "ok" for r in records(out).values())
