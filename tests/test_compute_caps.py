"""Caps on compute (train_tokens, flops) are enforced as training runs, not noticed after it:
each method, given a FLOPs cap below what it needs, stops before crossing it."""

from __future__ import annotations

import json

import pytest

from bench import config, runner
from bench.config import ConfigError
from tests.test_runner import MATRIX

METHODS = {"sft": {"epochs": 1, "batch_size": 4}, "dpo": {"epochs": 2},
           "ppo": {"steps": 3, "batch_size": 4, "epochs": 1, "rm_epochs": 2},
           "rlaif": {"epochs": 1, "ppo": {"steps": 2}, "min_margin": 0.0, "optimizer": "ppo"}}


def run(tmp_path, methods, budget=None):
    m = config.parse({**MATRIX, "methods": methods, "seeds": [0], "evals": [], "eval": {},
                      "method": {k: METHODS[k] for k in {"sft", *methods}},
                      "budget": {**MATRIX["budget"], **(budget or {})}})
    out = runner.run(m, tmp_path / "out")  # beside the test's cache, not around it
    return {r["method"]: r for r in map(json.loads,
                                        (out / "results.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def needs(tmp_path_factory):
    recs = run(tmp_path_factory.mktemp("uncapped"), ["sft", "dpo", "ppo", "rlaif"])
    assert all(r["status"] == "ok" for r in recs.values()), recs
    return {k: r["budget"]["spent"] for k, r in recs.items()}


@pytest.mark.parametrize("method", ["dpo", "ppo", "rlaif"])
def test_a_flops_cap_stops_training_before_it_is_crossed(method, needs, tmp_path):
    sft, full = needs["sft"]["flops"], needs[method]["flops"]
    assert full > sft > 0
    cap = sft + 0.5 * (full - sft)  # the SFT stage fits, the method's own training does not
    rec = run(tmp_path, [method], {"flops": cap})[method]
    assert rec["status"] == "failed" and "budget exceeded: flops" in rec["error"], rec["error"]
    spent = rec["budget"]["spent"]
    assert sft < spent["flops"] <= cap  # it trained, and stopped at the step before the cap
    assert spent["train_tokens"] < needs[method]["train_tokens"]


def test_a_train_tokens_cap_stops_the_sft_stage(needs, tmp_path, monkeypatch):
    """SFT's stage, run through the dpo cell with a cap between the preflight's lower bound
    and its real need, stops inside the trainer (an empty cache, so the stage really trains;
    a cached stage is refused at once, when the cell is charged its spend)."""
    import re
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    cap = int(needs["sft"]["train_tokens"]) - 1
    rec = run(tmp_path, ["dpo"], {"train_tokens": cap})["dpo"]
    assert rec["status"] == "failed" and "train_tokens" in rec["error"], rec["error"]
    assert rec["budget"]["spent"]["train_tokens"] <= cap
    # refused one step's tokens inside the stage's trainer, not the whole stage after it ran
    asked = float(re.search(r"asked for ([0-9.e+]+)", rec["error"]).group(1))
    assert asked < needs["sft"]["train_tokens"] / 2, rec["error"]


def test_a_cap_below_the_sft_stage_is_refused_before_anything_trains(needs, tmp_path):
    with pytest.raises(ConfigError, match="shared SFT stage alone needs at least"):
        run(tmp_path, ["dpo"], {"flops": needs["sft"]["flops"] / 10})
    assert not (tmp_path / "out").exists()


def test_a_stage_built_for_the_evals_is_built_under_the_cells_caps(needs, tmp_path,
                                                                   monkeypatch):
    """The base row's evals compare it with SFT (kl's reference), which the base cell builds
    when it comes first. Under a train_tokens cap that SFT cannot fit, that reference is not
    built uncapped (for a capped cell to find in the cache later): the eval fails, naming the
    budget, as the SFT cell itself does."""
    monkeypatch.setenv("ALIGNBENCH_CACHE", str(tmp_path / "cache"))
    cap = int(needs["sft"]["train_tokens"]) - 1
    m = config.parse({**MATRIX, "methods": ["base", "sft"], "seeds": [0], "evals": ["kl"],
                      "eval": {"kl": {"samples": 1}}, "method": {"sft": METHODS["sft"]},
                      "budget": {**MATRIX["budget"], "train_tokens": cap}})
    out = runner.run(m, tmp_path / "out")
    recs = {r["method"]: r for r in map(json.loads,
                                        (out / "results.jsonl").read_text().splitlines())}
    for method in ("base", "sft"):
        assert recs[method]["status"] == "failed", (method, recs[method]["error"])
        assert "train_tokens" in recs[method]["error"], recs[method]["error"]
    assert recs["base"]["error"].startswith("the evals' references: budget exceeded")
