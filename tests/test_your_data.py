"""A researcher's own model, preference data and judges in the real scenario, on the tiny
Llama with SmolLM2's real tokenizer: every method that consumes comparisons trains on the same
drawn pairs and is charged each once; keys follow content, not paths; each bad source or judge
stops the run in one line before anything is trained or created."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import registry
from bench.api import DataError
from tests.conftest import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "your_data" / "preferences.jsonl"


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def one_line_error(p, *expect):
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    for text in expect:
        assert text in lines[0], lines[0]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pairs(n: int, tag: str = "") -> list[dict]:
    return [{"prompt": f"Question {tag}{i}: is the sky green?", "chosen": f"No, it is blue ({i}).",
             "rejected": f"Yes, green ({i})."} for i in range(n)]


def matrix(tmp_path: Path, model: Path, prefs: Path, methods: list[str], *, budget: int = 12,
           extra: str = "") -> Path:
    f = tmp_path / "m.toml"
    f.write_text(f"""
methods = {json.dumps(methods)}
evals = ["win_rate", "labeler_agreement"]
seeds = [0]
[scenario]
name = "real"
[scenario.options]
base_model = "{model}"
preferences = "{prefs}"
n_win_rate_prompts = 3
gold_epochs = 1
{extra}
[budget]
demonstrations = 8
comparisons = {budget}
ratings = {budget}
[eval.win_rate]
samples_per_prompt = 1
max_new_tokens = 6
""" + "".join(f"[method.{name}]\n{table}\n" for name, table in FAST.items() if name in methods))
    return f


# small enough for a test: the real profile's lengths and batches are a real model's
FAST = {"sft": "batch_size = 4", "dpo": "max_new_tokens = 6\nbatch_size = 4",
        "kto": "max_new_tokens = 6\nbatch_size = 4", "simpo": "max_new_tokens = 6",
        "orpo": "max_new_tokens = 6",
        "ppo": "steps = 1\nbatch_size = 4\nmicro_batch_size = 2\nmax_new_tokens = 6",
        "rloo": "steps = 1\nbatch_size = 4\nmax_new_tokens = 6",
        "grpo": "steps = 1\nbatch_size = 4\nnum_generations = 2\nmax_new_tokens = 6",
        "rsft": "n = 2\nmax_new_tokens = 6\nbatch_size = 4",
        "best_of_n": "n = 2\nmax_new_tokens = 6"}


def consumes_comparisons() -> list[str]:
    """Every registered method whose default config spends comparisons."""
    names = []
    for name in registry.names("methods"):
        spends = registry.resolve("methods", name).Config().spends()
        if spends is None or "comparisons" in spends:
            names.append(name)
    return names


@pytest.fixture(scope="module")
def data_run(tiny_real_model, tmp_path_factory):
    """One matrix of every method that consumes comparisons, on 60 pairs, with every draw the
    preference data answers recorded."""
    from bench import config, runner
    from scenarios import userdata

    tmp = tmp_path_factory.mktemp("data_run")
    prefs = write_jsonl(tmp / "prefs.jsonl", pairs(60))
    methods = ["base", "sft", *consumes_comparisons()]
    draws = []
    draw = userdata.PreferencePool.draw

    def spy(self, n, seed):
        rows = draw(self, n, seed)
        draws.append((n, seed, [r["chosen"] for r in rows]))
        return rows
    mp = pytest.MonkeyPatch()
    mp.setattr(userdata.PreferencePool, "draw", spy)
    mp.setenv("ALIGNBENCH_CACHE", str(tmp / "cache"))  # computed here, not read from a cache
    try:
        out = runner.run(config.load(matrix(tmp, tiny_real_model, prefs, methods)), tmp / "out")
    finally:
        mp.undo()
    keys = [json.loads(x)["key"] for x in (out / "results.jsonl").read_text().splitlines()]
    rows = [json.loads((out / "cells" / k / "result.json").read_text()) for k in keys]
    return methods, rows, draws


@pytest.mark.slow
def test_every_comparison_method_trains_on_the_same_drawn_pairs(data_run):
    methods, rows, draws = data_run
    assert {"dpo", "ppo", "kto", "simpo", "orpo", "rloo", "grpo", "rsft", "best_of_n"} <= \
        set(methods)
    assert all(r["status"] == "ok" for r in rows), [(r["method"], r.get("error")) for r in rows]
    # one draw of 12 pairs (cached for the matrix), seeded by the cell's seed: the same pairs
    assert draws and {(n, seed) for n, seed, _ in draws} == {(12, 0)}
    assert len({tuple(chosen) for *_, chosen in draws}) == 1
    for r in rows:
        if r["method"] in ("base", "sft"):
            continue
        assert r["budget"]["spent"]["comparisons"] == 12, r["method"]  # each pair charged once
    assert rows[0]["provenance"]["world"]["sources"]["preferences"]["n"] == 60


@pytest.mark.slow
def test_held_out_pairs_score_each_reward_model_and_the_gold_judge(data_run):
    _, rows, _ = data_run
    by = {r["method"]: r for r in rows}
    m, u = by["ppo"]["metrics"], by["ppo"]["uncertainty"]
    la = by["ppo"]["evals"]["labeler_agreement"]
    assert 0.0 <= m["labeler_agreement.rm_accuracy"] <= 1.0
    assert u["labeler_agreement.rm_accuracy"] >= 0
    assert 0.0 <= m["labeler_agreement.judge_accuracy"] <= 1.0
    assert "labeler_agreement.inter_labeler" not in m  # no online labeler: no panel metrics
    world = by["ppo"]["provenance"]["world"]
    assert la["extra"]["held_out_pairs"] == world["split"]["eval"]
    assert by["dpo"]["evals"]["win_rate"]["extra"]["judge"] == "gold"
    assert world["judges"]["gold"]["trained_on"] > 0


def test_draws_are_without_replacement_and_nested():
    from scenarios.userdata import PreferencePool
    pool = PreferencePool(True, pairs(20))
    small, big = pool.draw(5, 3), pool.draw(20, 3)
    assert big[:5] == small and len({r["chosen"] for r in big}) == 20
    assert pool.draw(5, 4) != small  # the seed orders them
    with pytest.raises(DataError, match="holds 20"):
        pool.draw(21, 3)


def test_split_by_prompt_is_disjoint():
    from scenarios.userdata import split_by_prompt
    rows = pairs(40) + pairs(40)  # every prompt twice
    s = split_by_prompt(rows, 0.1, 0.25, seed=0)
    parts = [{r["prompt"] for r in p} for p in (s.train, s.held_out, s.gold)]
    assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert [len(p) for p in parts] == [26, 4, 10] and len(s.train) == 52


# --------------------------------------------------------------------------- keys


def _world_key(model: Path, cache_dir, **options) -> str:
    from scenarios.real import Real, RealOptions
    return Real().build(RealOptions(base_model=str(model), n_win_rate_prompts=2, **options),
                        cache_dir, progress=False).key


def test_keys_follow_model_content_not_path(tiny_real_model, cache_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_real_model, a)
    shutil.copytree(tiny_real_model, b)
    key = _world_key(a, cache_dir)
    assert _world_key(b, cache_dir) == key  # the same weights under another path
    w = load_file(a / "model.safetensors")
    name = next(iter(w))
    w[name] = w[name] + torch.ones_like(w[name])
    save_file(w, a / "model.safetensors", metadata={"format": "pt"})  # retrained in place
    assert _world_key(a, cache_dir) != key


def test_keys_follow_data_content_not_path(tiny_real_model, cache_dir, tmp_path):
    one = write_jsonl(tmp_path / "one.jsonl", pairs(30))
    (tmp_path / "elsewhere").mkdir()
    two = write_jsonl(tmp_path / "elsewhere" / "two.jsonl", pairs(30))
    opts = {"judge": "rm:" + str(tiny_reward_model_path(tmp_path))}  # no gold to train
    key = _world_key(tiny_real_model, cache_dir, preferences=str(one), **opts)
    assert _world_key(tiny_real_model, cache_dir, preferences=str(two), **opts) == key
    write_jsonl(one, pairs(29) + [{**pairs(30)[29], "chosen": "No, blue."}])  # edited in place
    assert _world_key(tiny_real_model, cache_dir, preferences=str(one), **opts) != key


def tiny_reward_model_path(tmp_path: Path) -> Path:
    """A one-output sequence classifier with SmolLM2's tokenizer: a reward model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    folder = tmp_path / "tiny-rm"
    if folder.is_dir():
        return folder
    from bench.assets import fetch
    gguf = fetch("smollm2")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def test_a_reward_model_judge_scores_and_a_causal_lm_is_refused(tiny_real_model, cache_dir,
                                                                tmp_path):
    from scenarios.judges import LoadSettings, RewardModelScorer
    rm = RewardModelScorer(str(tiny_reward_model_path(tmp_path)), LoadSettings())
    a = rm.reward(["Q?", "Q?"], ["yes", "no"])
    assert len(a) == 2 and a[0] != a[1]
    assert rm.reward(["Q?"], ["yes"]) == pytest.approx(a[:1], abs=1e-5)  # batch-invariant
    with pytest.raises(DataError, match="is not a reward model"):
        RewardModelScorer(str(tiny_real_model), LoadSettings())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["no_rejected", "budget", "conversational_no_template",
                                  "judge_not_rm", "all_eval_overlap", "empty"])
def test_bad_sources_stop_in_one_line_before_anything_is_created(case, tiny_real_model,
                                                                 tmp_path):
    model, extra, budget = tiny_real_model, "", 12
    prefs = write_jsonl(tmp_path / "prefs.jsonl", pairs(30))
    expect = []
    if case == "no_rejected":
        prefs = write_jsonl(prefs, [{"prompt": p["prompt"], "chosen": p["chosen"]}
                                    for p in pairs(30)])
        expect = ["rejected"]
    elif case == "budget":
        budget, expect = 500, ["budget.comparisons is 500", "holds"]
    elif case == "conversational_no_template":
        model = tmp_path / "plain"
        shutil.copytree(tiny_real_model, model)
        cfg = json.loads((model / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        (model / "tokenizer_config.json").write_text(json.dumps(cfg))
        for f in model.glob("chat_template*"):
            f.unlink()
        prefs = write_jsonl(prefs, [{"prompt": [{"role": "user", "content": p["prompt"]}],
                                     "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                     "rejected": [{"role": "assistant",
                                                   "content": p["rejected"]}]}
                                    for p in pairs(30)])
        expect = ["conversational", "chat template"]
    elif case == "judge_not_rm":
        extra, expect = f'judge = "rm:{tiny_real_model}"', ["is not a reward model"]
    elif case == "all_eval_overlap":
        evals = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": p["prompt"]}
                                                      for p in pairs(30)])
        # the rollout prompts are every prompt, so no evaluation prompt is left
        extra = f'eval_prompts = "{evals}"\nprompts = "{evals}"'
        expect = ["every evaluation prompt"]
    elif case == "empty":
        prefs.write_text("")
        expect = ["prefs.jsonl"]
    m = matrix(tmp_path, model, prefs, ["base", "sft", "dpo"], budget=budget, extra=extra)
    out = tmp_path / "out"
    p = cli("run", str(m), "--out", str(out), "--no-progress")
    one_line_error(p, *expect)
    assert not out.exists()  # nothing created, nothing trained


def test_overlapping_eval_prompts_are_removed_and_counted(tiny_real_model, cache_dir, tmp_path):
    from scenarios.real import Real, RealOptions
    prefs = write_jsonl(tmp_path / "prefs.jsonl", pairs(30))
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": p["prompt"]} for p in pairs(5)] +
                        [{"prompt": f"A new question {i}?"} for i in range(4)])
    w = Real().build(RealOptions(base_model=str(tiny_real_model), preferences=str(prefs),
                                 eval_prompts=str(evals), judge="rm:" + str(
                                     tiny_reward_model_path(tmp_path))), cache_dir,
                     progress=False)
    split = w.describe["split"]
    train = set(w.train_prompts)
    assert not train & set(w.eval_data["win_rate"].prompts)
    removed = split["eval_prompts_removed_for_overlap"]
    assert removed == sum(1 for p in pairs(5) if any(p["prompt"] in t for t in train))
    assert split["eval_prompts"] == 9 - removed


@pytest.mark.slow
@pytest.mark.on_demand  # about 5 minutes on 2 cores: a Ray instance and the matrix twice
def test_under_ray_workers_read_the_snapshot_and_match_the_local_executor(tiny_real_model,
                                                                          tmp_path, monkeypatch):
    """The Ray executor gives the local executor's keys and results on the user's data, and
    its workers rebuild the world from the sources' snapshots in the shared cache: the user's
    file is gone by the time any worker starts."""
    pytest.importorskip("ray")
    import torch

    from bench import config, ray_executor, runner
    from tests.test_ray import assert_identical

    prefs = write_jsonl(tmp_path / "prefs.jsonl", pairs(30))
    m = config.load(matrix(tmp_path, tiny_real_model, prefs, ["base", "sft", "dpo"]))
    m = config.parse({**m.model_dump(mode="json", exclude_defaults=True), "progress": False,
                      "resources": {"num_cpus": torch.get_num_threads()}})
    runner.run(m, tmp_path / "local")
    for_workers = ray_executor.for_workers

    def then_hide(matrix, world):  # the driver has read the file; the workers must not need it
        portable = for_workers(matrix, world)
        prefs.rename(prefs.with_suffix(".hidden"))
        return portable
    monkeypatch.setattr(ray_executor, "for_workers", then_hide)
    runner.run(m.model_copy(update={"executor": "ray"}), tmp_path / "ray")
    assert not prefs.exists()
    assert_identical(tmp_path / "local", tmp_path / "ray")


def test_a_judge_that_trains_is_refused_by_content_not_by_name(tiny_real_model, cache_dir,
                                                               tmp_path):
    """The evaluation judge may not be the labeler (or RLAIF's judge) under another path of
    the same model, unless the matrix allows it; then win-rates are flagged as proxy."""
    rm = tiny_reward_model_path(tmp_path)
    copy = tmp_path / "rm-copy"
    shutil.copytree(rm, copy)
    prefs = write_jsonl(tmp_path / "prefs.jsonl", pairs(30))
    with pytest.raises(DataError, match="also the labeler"):
        _world_key(tiny_real_model, cache_dir, preferences=str(prefs), labeler=f"rm:{rm}",
                   judge=f"rm:{copy}")
    with pytest.raises(DataError, match="also the ai_judge"):
        _world_key(tiny_real_model, cache_dir, preferences=str(prefs), ai_judge=f"rm:{rm}",
                   judge=f"rm:{copy}")
    from scenarios.real import Real, RealOptions
    w = Real().build(RealOptions(base_model=str(tiny_real_model), preferences=str(prefs),
                                 labeler=f"rm:{rm}", judge=f"rm:{copy}", allow_proxy_judge=True,
                                 n_win_rate_prompts=2), cache_dir, progress=False)
    assert w.judge_is_labeler


def test_unpaired_data_asks_for_a_judge_and_no_gold_split_is_refused(tiny_real_model,
                                                                    cache_dir, tmp_path):
    from pydantic import ValidationError

    from scenarios.real import RealOptions
    rows = [{"prompt": f"Q{i}?", "completion": f"A{i}.", "label": i % 2 == 0} for i in range(30)]
    prefs = write_jsonl(tmp_path / "unpaired.jsonl", rows)
    with pytest.raises(DataError, match="unpaired rows"):
        _world_key(tiny_real_model, cache_dir, preferences=str(prefs))
    with pytest.raises(ValidationError, match="gold_fraction"):
        RealOptions(preferences=str(prefs), gold_fraction=0.0)


def test_no_prompt_a_method_trains_on_is_evaluated(tiny_real_model, cache_dir, tmp_path):
    """With a rollout-prompt source beside the preference data, the preference training
    prompts still never reach the evaluation prompts or the held-out pairs."""
    from scenarios.real import Real, RealOptions
    prefs = write_jsonl(tmp_path / "prefs.jsonl", pairs(40))
    other = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Other {i}?"} for i in range(5)])
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": p["prompt"]} for p in pairs(40)])
    w = Real().build(RealOptions(base_model=str(tiny_real_model), preferences=str(prefs),
                                 prompts=str(other), eval_prompts=str(evals),
                                 judge="rm:" + str(tiny_reward_model_path(tmp_path)),
                                 n_win_rate_prompts=40), cache_dir, progress=False)
    trained = {r["prompt"] for r in w.preferences.draw(w.preferences.size, 0)}
    assert trained and not trained & set(w.eval_data["win_rate"].prompts)
    held = w.eval_data["labeler_agreement"].items
    assert held and not trained & {r["prompt"] for r in held}
    assert w.describe["split"]["eval_prompts_removed_for_overlap"] >= len(trained)
    # the user's raw prompts arrive in the one form every scenario hands over: chat-formatted
    from tests.test_contracts import assert_prompts_are_chat_formatted
    assert_prompts_are_chat_formatted(w, w.load_policy(w.base_model))
