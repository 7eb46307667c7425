"""Per-prompt values in every cell: each built-in eval stores the values its headline means
average, under the prompts' ids, so that intervals can generalize over prompts and two rows
that scored the same prompts pair by prompt; stored compactly, read back exactly enough, and
checked against the metric they average (a plugin that stores the wrong ones fails its cell)."""

from __future__ import annotations

import json
import math

import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

import bench
from bench import cli
from bench.api import EvalOptions, EvalResult, PerPrompt, prompt_id
from bench.cell_run import check_per_prompt
from bench.record import CellRecord, pack_per_prompt, problem, unpack_per_prompt
from tests.conftest import TINY_WORLD
from tests.plugins import FakeEP, patch_entry_points

MEANS = {"truthfulqa": {"mc1", "mc2", "gen_true", "gen_false"},
         "toxicity": {"emt", "probability", "mean", "toxic_fraction"},
         "win_rate": {"vs_base", "vs_sft"}, "kl": {"k1"}}


def test_packed_values_read_back_with_one_copy_of_shared_ids():
    ids = ("a", "b", "c")
    per = {"x": PerPrompt.of(ids, [0.1234567891, 1.0, 0.0]),
           "y": PerPrompt.of(ids, [1, 0, 1]),
           "z": PerPrompt.of(("a", "a"), [float("nan"), 0.5])}
    packed = pack_per_prompt(per)
    assert packed["prompt_sets"] == [["a", "b", "c"], ["a", "a"]]  # x and y share one
    assert packed["values"]["x"] == {"set": 0, "values": [0.123456789, 1.0, 0.0]}
    back = unpack_per_prompt(json.loads(json.dumps(packed)))
    assert back["y"] == per["y"] and back["x"].prompts == ids
    assert math.isnan(back["z"].values[0]) and back["z"].values[1] == 0.5
    assert unpack_per_prompt(None) == {}  # a cell written before cells stored them
    bad = json.loads(json.dumps(packed))
    bad["values"]["y"]["values"].pop()
    assert "do not match a set of prompt ids" in problem(CellRecord, {
        "key": "k", "method": "m", "status": "ok",
        "evals": {"e": {"per_prompt": bad}}})


def test_per_prompt_needs_one_id_per_value():
    with pytest.raises(ValueError, match="2 prompt ids for 3 values"):
        PerPrompt.of(["a", "b"], [1, 2, 3])
    assert prompt_id("Q: x") == prompt_id("Q: x") != prompt_id("Q: y")
    assert len(prompt_id("Q: x")) == 12


def test_the_harness_refuses_values_that_are_not_the_metrics():
    ok = EvalResult(metrics={"m": 0.5}, per_prompt={"m": PerPrompt.of("ab", [0, 1])})
    check_per_prompt("e", ok)
    wrong = EvalResult(metrics={"m": 0.4}, per_prompt={"m": PerPrompt.of("ab", [0, 1])})
    with pytest.raises(ValueError, match=r"mean of per_prompt\['m'\] is 0.5, not the metric"):
        check_per_prompt("e", wrong)
    stray = EvalResult(metrics={"m": 0.5}, per_prompt={"n": PerPrompt.of("ab", [0, 1])})
    with pytest.raises(ValueError, match="per_prompt names 'n', which is not one of"):
        check_per_prompt("e", stray)


@pytest.fixture(scope="module")
def smoke_cells(tmp_path_factory):
    """The smoke preset's world with sft, ppo (a reward model) and rlaif (an AI judge)."""
    out = tmp_path_factory.mktemp("pp") / "out"
    d = tomllib.loads((Path(bench.__file__).parent / "presets" / "smoke.toml").read_text())
    d.update(methods=["sft", "ppo", "rlaif"], progress=False)
    del d["method"]["dpo"]
    f = out.parent / "m.toml"
    f.write_text(tomli_w.dumps(d))
    assert cli.main(["run", str(f), "--out", str(out)]) == 0
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_every_built_in_mean_is_stored_per_prompt_and_averages_to_its_metric(smoke_cells):
    for rec in smoke_cells:
        assert rec["status"] == "ok" and problem(CellRecord, rec) is None
        for ev, want in MEANS.items():
            per = unpack_per_prompt(rec["evals"][ev].get("per_prompt"))
            # every slice of a headline mean too (TruthfulQA's by Type and category)
            assert {m.split(".")[0] for m in per} == want, (rec["method"], ev)
            sliced = {m for m in rec["metrics"] if m.split(".")[0] == ev
                      and m.split(".")[1] in want}
            assert {f"{ev}.{m}" for m in per} == sliced, (rec["method"], ev)
            for metric, pp in per.items():
                assert pp.mean() == pytest.approx(rec["metrics"][f"{ev}.{metric}"], rel=1e-5,
                                                  abs=1e-6)
                assert len(set(pp.prompts)) == len(pp.prompts)  # one value per prompt
                if ev != "kl" and "." not in metric:  # kl's n counts its metrics
                    assert len(pp.prompts) == rec["n"][ev]
            for metric, pp in per.items():  # a slice's prompts are its headline's
                assert set(pp.prompts) <= set(per[metric.split(".")[0]].prompts)


def test_rows_pair_by_prompt_and_agreement_clusters_by_prompt(smoke_cells):
    by = {r["method"]: r for r in smoke_cells}
    ids = {m: unpack_per_prompt(r["evals"]["truthfulqa"]["per_prompt"])["mc1"].prompts
           for m, r in by.items()}
    assert ids["sft"] == ids["ppo"] == ids["rlaif"]  # the same questions, in the same order
    agree = unpack_per_prompt(by["ppo"]["evals"]["labeler_agreement"]["per_prompt"])
    assert {"rm_vs_labelers", "rm_vs_gold", "rm_vs_gold.sft_samples"} <= set(agree)
    labels = agree["rm_vs_labelers"]  # every labeler's label on a pair, under its prompt
    assert len(labels.values) > len(set(labels.prompts)) > 1
    judge = unpack_per_prompt(by["rlaif"]["evals"]["labeler_agreement"]["per_prompt"])
    assert set(judge) == {"ai_judge_vs_majority"}


def test_stored_compactly(smoke_cells):
    """Ids once per distinct prompt set (an eval's metrics share one; TruthfulQA's slices,
    two partitions of its questions, add at most twice its ids); values at 9 significant
    digits."""
    for rec in smoke_cells:
        for ev in ("truthfulqa", "toxicity", "win_rate"):
            stored = rec["evals"][ev]["per_prompt"]
            sets = stored["prompt_sets"]
            assert len(sets) == 1 or (ev == "truthfulqa"
                                      and sum(map(len, sets)) <= 3 * len(sets[0]))
            assert len({tuple(x) for x in sets}) == len(sets)
            n_values = sum(len(v["values"]) for v in stored["values"].values())
            assert len(json.dumps(stored["values"])) < 15 * n_values + 40 * len(MEANS[ev])


class LiarOptions(EvalOptions):
    pass


class Liar:
    """An eval whose per-prompt values are not those its metric averages."""

    name = "liar"
    description = "test plugin: stores the wrong per-prompt values"
    version = "1"
    metrics = {"score": True}
    Options = LiarOptions

    def evaluate(self, policy, ctx):
        return EvalResult(metrics={"score": 0.9},
                          per_prompt={"score": PerPrompt.of(["p", "q"], [0.0, 1.0])})


def test_a_plugin_storing_the_wrong_values_fails_its_cell(tmp_path, monkeypatch):
    patch_entry_points(monkeypatch,
                       {"alignbench.evals": [FakeEP("liar", "tests.test_per_prompt:Liar")]})
    f = tmp_path / "m.toml"
    f.write_text(tomli_w.dumps({"name": "liar", "methods": ["base"], "evals": ["liar"],
                                "seeds": [0], "progress": False,
                                "scenario": {"name": "micro", "options": TINY_WORLD}}))
    out = tmp_path / "out"
    assert cli.main(["run", str(f), "--out", str(out)]) != 2
    (rec,) = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    assert rec["status"] == "failed"
    assert "eval liar: the mean of per_prompt['score'] is 0.5, not the metric's 0.9" in rec["error"]


def test_agreement_standard_errors_resample_prompts_not_labels():
    """Sixteen labelers on a pair, four pairs on a prompt: the labels on one pair agree with
    the reward model together or not at all, so the evidence is the prompts, not the labels.
    The stored SE must be the prompts' (about sd(prompt means) / sqrt(G)), not the sixteen-fold
    smaller one of labels counted as independent."""
    from evals.labeler_agreement import put
    rng = np.random.default_rng(0)
    g, pairs, labelers = 96, 4, 16
    prompt_rate = rng.uniform(0.2, 0.9, g)  # how easy each prompt's pairs are to order
    pair_hit = rng.random((g, pairs)) < prompt_rate[:, None]
    values = np.repeat(pair_hit.astype(float).ravel(), labelers)
    ids = [f"p{i}" for i in range(g) for _ in range(pairs * labelers)]
    metrics: dict[str, float] = {}
    unc: dict[str, float] = {}
    per: dict[str, PerPrompt] = {}
    put("rm_vs_labelers", PerPrompt.of(ids, values), 0, metrics, unc, per)
    cluster_means = pair_hit.mean(axis=1)
    expected = cluster_means.std(ddof=1) / math.sqrt(g)
    naive = values.std(ddof=1) / math.sqrt(len(values))
    assert unc["rm_vs_labelers"] == pytest.approx(expected, rel=0.12)
    assert unc["rm_vs_labelers"] > 4 * naive
    assert per["rm_vs_labelers"].prompts[0] == "p0"
