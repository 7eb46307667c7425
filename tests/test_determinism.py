"""Same seed, same machine, CPU: identical metrics and texts, whether a cell runs in a fresh
process from empty caches or late in a long process after other cells (where the shared SFT
stage and comparison set were built by someone else, and reused)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import config, runner

SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from bench import config, runner
    from tests.test_determinism import matrix
    runner.run(matrix(sys.argv[2].split(",")), Path(sys.argv[1]))
''')


def matrix(methods: list[str]) -> config.Matrix:
    """The quickstart's PPO and RLAIF cells (PPO cut to 6 steps: a leak shows from step 0), with
    the evals that sample texts: win-rate (its sample rows are compared too) and KL."""
    m = config.load("quickstart").model_copy(update={"progress": False})
    d = m.model_dump(mode="json")
    return config.parse({**d, "methods": methods, "evals": ["win_rate", "kl"], "seeds": [0],
                         "eval": {"win_rate": {"references": ["sft"], "samples_per_prompt": 4}},
                         "method": {"ppo": {"steps": 6}}})


def outcome(out: Path) -> dict:
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    return {r["method"]: {"metrics": r["metrics"], "curves": r["curves"],
                          "texts": [row["method"] for row in r["evals"]["win_rate"]["rows"]]}
            for r in recs if r["method"] in ("ppo", "rlaif")}


@pytest.mark.slow
@pytest.mark.long  # about 5 minutes: run by .ci/run after the default test command
def test_ppo_and_rlaif_are_identical_fresh_and_late(tmp_path, default_world, cache_dir):
    procs = []
    for name in ("fresh1", "fresh2"):  # two fresh processes, each with empty stage caches
        cache = tmp_path / f"cache-{name}"
        shutil.copytree(default_world.base_model.parent, cache / "micro")  # the world only
        procs.append((tmp_path / name, subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(tmp_path / name), "ppo,rlaif"],
            env={**os.environ, "ALIGNBENCH_CACHE": str(cache)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)))
    late = tmp_path / "late"  # this long test process, after a dpo cell, session caches
    runner.run(matrix(["dpo", "ppo", "rlaif"]), late)
    for out, p in procs:
        assert p.wait(timeout=1800) == 0, p.stderr.read()[-3000:]
    a, b, c = outcome(tmp_path / "fresh1"), outcome(tmp_path / "fresh2"), outcome(late)
    assert a == b, "two fresh processes differ"
    assert a == c, "a fresh process and a long one differ"
