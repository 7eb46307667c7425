"""The Ray executor's costs against the local executor's, measured in one run on one machine
(machines differ several-fold in speed, so only ratios and differences are reported). In the
normal suite these run once on the smoke matrix as correctness smoke; with
``--benchmark-enable`` they measure, print their figures and check the targets:

R1: scheduling overhead (Ray's wall time minus the local executor's, per cell, with the cells on
    the local run's thread count so both do the same arithmetic) under 1 s per cell on the smoke
    matrix, Ray's start excluded (it is paid once per matrix, and printed).
R2: the quickstart under Ray with two one-CPU workers against the local executor on this
    machine, as a ratio of wall times (no target: on 2 cores it says what two workers buy).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from bench import config, runner

ray = pytest.importorskip("ray")


def _smoke() -> config.Matrix:
    return config.load("smoke").model_copy(update={"progress": False})


def _timed(m: config.Matrix, out: Path) -> float:
    t0 = time.perf_counter()
    runner.run(m, out)
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert recs and all(r["status"] == "ok" for r in recs)
    return time.perf_counter() - t0


def test_r1_scheduling_overhead_per_cell(benchmark, tmp_path):
    import torch
    m = _smoke().model_copy(update={"resources": config.Resources(
        num_cpus=torch.get_num_threads())})
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=torch.get_num_threads(), include_dashboard=False,
             log_to_driver=False)
    start = time.perf_counter() - t0
    try:
        runner.run(m, tmp_path / "warm")  # stages cached, for both executors alike
        local = _timed(m, tmp_path / "local")
        on_ray = m.model_copy(update={"executor": "ray"})
        first = _timed(on_ray, tmp_path / "ray-first")  # workers start and read the world
        if benchmark.enabled:  # then warm workers, as every later cell of a long matrix
            runs = iter(range(1000))
            benchmark.pedantic(lambda: _timed(on_ray, tmp_path / f"ray-{next(runs)}"),
                               rounds=3, iterations=1)
    finally:
        ray.shutdown()
    cells = 5
    ray_s = benchmark.stats.stats.mean if benchmark.enabled else first
    overhead = (ray_s - local) / cells
    benchmark.extra_info.update(local_s=local, ray_first_s=first, ray_s=ray_s,
                                ray_start_s=start, overhead_per_cell_s=overhead)
    print(f"\nR1 smoke: local {local:.1f} s, ray {ray_s:.1f} s (first run, workers starting: "
          f"{first:.1f} s), ray start {start:.1f} s: {overhead:.2f} s per cell")
    if benchmark.enabled:
        assert overhead < 1.0, benchmark.extra_info


@pytest.mark.slow
def test_r2_quickstart_with_two_ray_workers_against_local(benchmark, tmp_path, monkeypatch,
                                                         cache_dir):
    """From a cache holding only the world (each executor trains its own stages: one-thread
    cells have other keys than the local run's), local first, then Ray."""
    m = (config.load("quickstart") if benchmark.enabled else _smoke()).model_copy(
        update={"progress": False})
    plan = config.plan(m)
    built = plan.scenario.build(plan.scenario_options, cache_dir, progress=False)
    timings = {}
    for name, matrix in (("local", m), ("ray", m.model_copy(update={
            "executor": "ray", "resources": config.Resources(num_cpus=1)}))):
        cache = tmp_path / f"cache-{name}"
        shutil.copytree(built.base_model, cache / "micro" / built.key)
        monkeypatch.setenv("ALIGNBENCH_CACHE", str(cache))
        if name == "ray":
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            timings[name] = (benchmark.pedantic(_timed, args=(matrix, tmp_path / name),
                                                rounds=1, iterations=1)
                             if name == "ray" else _timed(matrix, tmp_path / name))
        finally:
            if name == "ray":
                ray.shutdown()
    ratio = timings["ray"] / timings["local"]
    benchmark.extra_info.update(**{f"{k}_s": v for k, v in timings.items()}, ratio=ratio)
    print(f"\nR2 {m.name}: local {timings['local']:.0f} s, ray with 2 one-CPU workers "
          f"{timings['ray']:.0f} s: ratio {ratio:.2f}")
