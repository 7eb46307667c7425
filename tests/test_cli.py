"""The command line as a user types it."""

import json
import subprocess
import sys

import pytest


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_eval_truthfulqa_json_on_a_model_folder(tiny_world):
    p = run("eval", "truthfulqa", "--model", str(tiny_world.base_model), "--limit", "5", "--json",
            "--data", str(__import__("tests.conftest", fromlist=["x"]).TRUTHFULQA_CSV))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["n"] == 5 and 0 <= out["metrics"]["mc1"] <= 1 and 0 < out["metrics"]["mc2"] < 1
    assert out["uncertainty"]["mc1"] >= 0 and out["source"]["n"] == 817


def test_eval_truthfulqa_with_no_data_option_scores_the_packaged_csv(tiny_world, tmp_path):
    """A model alone, no --data, no --scenario, offline: the packaged CSV is scored, and no
    world is built for it (the empty cache stays empty)."""
    import os

    from bench.data.truthfulqa import PACKAGED_NAME, PACKAGED_SHA256
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ALIGNBENCH_TRUTHFULQA"}
    p = subprocess.run([sys.executable, "-m", "bench.cli", "eval", "truthfulqa", "--model",
                        str(tiny_world.base_model), "--limit", "3", "--json"],
                       capture_output=True, text=True, timeout=300,
                       env={**env, "ALIGNBENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
                            "HF_DATASETS_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["n"] == 3 and 0 < out["metrics"]["mc2"] < 1
    assert out["source"] == {"name": PACKAGED_NAME, "sha256": PACKAGED_SHA256, "n": 817}
    assert not any(cache.iterdir()), sorted(cache.iterdir())


def test_eval_refuses_remote_code_and_pickles(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "x.Y"}}))
    p = run("eval", "truthfulqa", "--model", str(tmp_path), "--json")
    assert p.returncode == 2 and "remote code" in p.stderr and "--trust-remote-code" in p.stderr
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a pickle you want")
    p = run("eval", "truthfulqa", "--model", str(tmp_path), "--json")
    assert p.returncode == 2 and "pickle" in p.stderr and "--allow-pickle" in p.stderr
    assert "Traceback" not in p.stderr


def test_report_command_on_a_missing_folder(tmp_path):
    p = run("report", str(tmp_path / "nope"))
    assert p.returncode == 2 and "no output folder" in p.stderr


def test_unknown_preset_names_the_choices():
    p = run("run", "quikstart")
    assert p.returncode == 2 and "quickstart" in p.stderr and "smoke" in p.stderr


def test_run_a_subset_of_a_preset_with_settings_from_the_command_line(tmp_path):
    """--methods keeps two of smoke's five methods (the others' tables are ignored, not an
    error), --seeds one seed, --set a budget; the resolved matrix records them."""
    import tomllib
    out = tmp_path / "o"
    p = subprocess.run([sys.executable, "-m", "bench.cli", "run", "smoke", "--out", str(out),
                        "--no-progress", "--methods", "sft,dpo", "--seeds", "1",
                        "--set", "budget.comparisons=20", "--set", "method.dpo.beta=0.2"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["method"], r["seed"]) for r in recs) == [("dpo", 1), ("sft", 1)]
    dpo = next(r for r in recs if r["method"] == "dpo")
    assert dpo["budget"]["given"]["comparisons"] == 20 and dpo["method_config"]["beta"] == 0.2
    resolved = tomllib.loads((out / "matrix.toml").read_text())
    assert resolved["methods"] == ["sft", "dpo"] and resolved["seeds"] == [1]
    assert resolved["budget"]["comparisons"] == 20 and "ppo" not in resolved["method"]
    # the run's own peak, which no cell's reset of the kernel's figure can hide
    (line,) = [x for x in p.stdout.splitlines() if x.startswith("peak memory: ")]
    printed = float(line.split()[2])
    assert printed >= max(r["cost"]["peak_rss_bytes"] for r in recs) / 1e9 - 0.05, line


@pytest.mark.parametrize("args, words", [
    (["--set", "budget.comparisons=-1"], ["'budget.comparisons'", "greater than or equal to 0"]),
    (["--set", "budgett.comparisons=1"], ["unknown key 'budgett'"]),
    (["--set", "comparisons"], ["--set 'comparisons': give KEY=VALUE"]),
    (["--methods", "dpoo"], ["unknown method 'dpoo'", "did you mean 'dpo'"]),
    (["--seeds", "0,x"], ["--seeds '0,x': give whole numbers"]),
    (["--evals", ","], ["--evals ',' names no eval"]),
    (["--evals", "win_rat"], ["unknown eval 'win_rat'", "did you mean 'win_rate'"]),
])
def test_bad_command_line_settings_are_one_line(tmp_path, args, words):
    p = subprocess.run([sys.executable, "-m", "bench.cli", "run", "smoke", "--out",
                        str(tmp_path / "o"), *args], capture_output=True, text=True)
    err = p.stderr.strip()
    assert p.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "o").exists()


def test_saved_policies_reload_with_transformers_and_re_evaluate_to_the_cells_metrics(tmp_path):
    """save_policies: each trained cell's policy is a Hugging Face folder that
    AutoModelForCausalLM loads as lm-eval's HF backend does, with a model card and the world it
    was trained in; ``alignbench eval --model cells/KEY/policy`` evaluates it in that world (the
    tiny one, not the default) at the cell's seed, to exactly the metrics the cell recorded.
    best_of_n has no single set of weights: no folder. The cell's own folder given as --model
    is one line naming the policy folder; an eval that needs the matrix's references is one
    line too. Turning save_policies on for a finished folder redoes its cells to keep them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench import config, runner
    from tests.conftest import TINY_WORLD
    m = config.parse({
        "name": "saved", "methods": ["sft", "dpo", "best_of_n"], "seeds": [1],
        "evals": ["truthfulqa", "toxicity"], "progress": False, "save_policies": True,
        "scenario": {"name": "micro", "options": TINY_WORLD},
        "budget": {"demonstrations": 16, "comparisons": 20, "ai_comparisons": 20, "rollouts": 200},
        "method": {"sft": {"epochs": 1}, "dpo": {"epochs": 1},
                   "best_of_n": {"n": 2, "rm_epochs": 1}},
        "eval": {"toxicity": {"k": 2}}})
    out = tmp_path / "out"
    runner.run(m, out)
    recs = {r["method"]: r for r in map(json.loads,
                                         (out / "results.jsonl").read_text().splitlines())}
    assert all(r["status"] == "ok" for r in recs.values())
    assert recs["best_of_n"]["policy"] is None and not recs["best_of_n"]["warnings"]
    dpo = recs["dpo"]
    folder = out / "cells" / dpo["key"] / "policy"
    assert dpo["policy"] == "policy" and (folder / "model.safetensors").is_file()
    card = (folder / "README.md").read_text()
    assert "library_name: transformers" in card and dpo["key"] in card
    meta = json.loads((folder / "alignbench.json").read_text())
    assert meta["world"]["options"]["n_entities"] == TINY_WORLD["n_entities"] and meta["seed"] == 1
    model = AutoModelForCausalLM.from_pretrained(folder)  # as lm-eval's HF backend loads it
    tok = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([[tok.bos_token_id] + tok.encode("hello", add_special_tokens=False)])
    assert torch.isfinite(model(ids).logits).all()
    for ev in ("truthfulqa", "toxicity"):
        p = run("eval", ev, "--model", str(folder), "--json")
        assert p.returncode == 0, p.stderr[-2000:]
        got = json.loads(p.stdout)["metrics"]
        want = {k.split(".", 1)[1]: v for k, v in dpo["metrics"].items()
                if k.startswith(ev + ".")}
        assert got == want, ev
    p = run("eval", "truthfulqa", "--model", str(out / "cells" / dpo["key"]), "--json")
    assert p.returncode == 2 and "cell's folder" in p.stderr and "policy" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run("eval", "truthfulqa", "--model", str(folder), "--scenario", "real", "--json")
    assert p.returncode == 2 and "leave --scenario out" in p.stderr
    p = run("eval", "win_rate", "--model", str(folder), "--json")
    assert p.returncode == 2 and "measured nothing" in p.stderr and "Traceback" not in p.stderr
    assert runner.is_done(out, dpo["key"], save_policies=True)  # saved with its policy
    first = tmp_path / "first"  # a folder run without save_policies, then with it
    plain = m.model_copy(update={"save_policies": False, "methods": ["sft"]})
    runner.run(plain, first)
    key = json.loads((first / "results.jsonl").read_text())["key"]
    assert not (first / "cells" / key / "policy").exists()
    runner.run(plain.model_copy(update={"save_policies": True}), first)
    assert (first / "cells" / key / "policy" / "model.safetensors").is_file()
