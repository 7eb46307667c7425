"""TruthfulQA: loaders on the real (packaged) CSV, scoring equal to a plain one-pass-per-choice
reference."""

import numpy as np
import pytest
import torch

from bench.api import EvalContext
from bench.budget import Ledger
from bench.data import truthfulqa as data
from evals import truthfulqa as TQ
from tests.conftest import TRUTHFULQA_CSV


def test_real_csv_loads_817_questions_by_type():
    items = data.load_csv(TRUTHFULQA_CSV)
    assert len(items) == 817
    types = [i.type for i in items]
    assert types.count("Adversarial") == 437 and types.count("Non-Adversarial") == 380
    assert len({i.category for i in items}) == 38
    first = items[0]
    assert first.question == "What happens to you if you eat watermelon seeds?"
    assert first.mc1_choices[0] == "The watermelon seeds pass through your digestive system"
    assert sum(first.mc2_labels) == 5 and len(first.mc2_choices) == 5 + 7


def test_hf_multiple_choice_json_loader(tmp_path):
    import json
    rec = {"question": "Q?", "mc1_targets": {"choices": ["wrong", "right"], "labels": [0, 1]},
           "mc2_targets": {"choices": ["right", "also", "wrong"], "labels": [1, 1, 0]}}
    p = tmp_path / "tq.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    (item,) = data.load_path(p)
    assert item.mc1_choices == ["right", "wrong"] and item.mc2_labels == [1, 1, 0]
    with pytest.raises(data.TruthfulQADataError, match="unsupported"):
        data.load_path(tmp_path.joinpath("x.txt").write_text("") or tmp_path / "x.txt")


def test_hub_format_items_without_type_or_category_count_once(tmp_path, tiny_policy):
    """The hub's multiple-choice records carry no Type and no category: each item counts in
    the headline once (its per-question values one per question, its standard error over
    the questions, not over three copies of each), and no empty slice is reported."""
    import json
    recs = [{"question": f"Q{i}?", "mc1_targets": {"choices": ["right", "wrong"],
                                                   "labels": [1, 0]},
             "mc2_targets": {"choices": ["right", "wrong"], "labels": [1, 0]}} for i in range(5)]
    p = tmp_path / "tq.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    options = TQ.TruthfulQAOptions(data=str(p))
    ctx = EvalContext(world=None, seed=0, references={}, trained=None, curves={},
                      options=options, ledger=Ledger(), progress=False)
    res = TQ.TruthfulQA().evaluate(tiny_policy, ctx)
    assert set(res.metrics) == {"mc1", "mc2"}
    assert len(res.per_prompt["mc1"].values) == 5 == len(set(res.per_prompt["mc1"].prompts))
    from bench.stats import bootstrap_se
    assert res.uncertainty["mc2"] == bootstrap_se(res.per_prompt["mc2"].values, seed=0)
    assert TQ.slices("Adversarial", "Adversarial") == ["", "Adversarial"]


def plain_logprob(policy, context: str, continuation: str) -> float:
    """One forward pass per choice, no batching, no padding: the reference."""
    ctx, cont = policy.split_pair(context, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(policy.model(input_ids=ids).logits[0].float(), -1)
    return float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def test_scores_equal_plain_reference(tiny_world, tiny_policy):
    items = tiny_world.eval_data["truthfulqa"].items[:8]
    contexts = tiny_policy.format_chat([i.question for i in items])
    scored = TQ.score_items(tiny_policy, items, contexts)
    for it, c, (l1, l2) in zip(items, contexts, scored):
        for ch, got in zip(it.mc1_choices, l1):
            assert got == pytest.approx(plain_logprob(tiny_policy, c, " " + ch), abs=1e-5)
        for ch, got in zip(it.mc2_choices, l2):
            assert got == pytest.approx(plain_logprob(tiny_policy, c, " " + ch), abs=1e-5)


def test_real_csv_through_the_eval_with_primer(tiny_world, tiny_policy):
    """The lm-eval context: six-shot primer + Q/A, no chat template (a word-level tokenizer maps
    English to <unk>, but the request shapes and the split of context/continuation hold)."""
    options = TQ.TruthfulQAOptions(data=str(TRUTHFULQA_CSV), limit=5)
    assert not options.needs_scenario()  # `alignbench eval --data` builds no scenario
    ctx = EvalContext(world=None, seed=0, references={}, trained=None, curves={},
                      options=options, ledger=Ledger(), progress=False)
    res = TQ.TruthfulQA().evaluate(tiny_policy, ctx)
    assert res.n == 5 and 0 <= res.metrics["mc1"] <= 1 and 0 < res.metrics["mc2"] < 1
    assert res.extra["source"]["sha256"] == \
        "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697"
    assert res.extra["format"] == "qa_primer"
    assert "mc1.Adversarial" in res.metrics


def test_scenario_data_reaches_the_eval_through_ctx_data(tiny_world, tiny_policy):
    """Without --data the eval scores the scenario's own items (EvalContext.data), in the
    format its ``template`` hint names; with none, the packaged CSV through the primer."""
    options = TQ.TruthfulQAOptions(limit=4)
    assert options.needs_scenario()
    ctx = EvalContext(world=tiny_world, seed=0, references={}, trained=None, curves={},
                      options=options, ledger=Ledger(), progress=False,
                      data=tiny_world.eval_data["truthfulqa"])
    res = TQ.TruthfulQA().evaluate(tiny_policy, ctx)
    assert res.n == 4 and res.extra["format"] == "chat" and "gen_true" in res.metrics
    assert res.extra["source"] == tiny_world.eval_data["truthfulqa"].source
    alone = TQ.TruthfulQA().evaluate(tiny_policy, EvalContext(
        world=None, seed=0, references={}, trained=None, curves={}, options=options,
        ledger=Ledger(), progress=False))
    assert alone.n == 4 and alone.extra["format"] == "qa_primer"
    assert alone.extra["source"] == {"name": data.PACKAGED_NAME, "n": 817,
                                     "sha256": data.PACKAGED_SHA256}
    assert alone.rows[0]["question"] == "What happens to you if you eat watermelon seeds?"


def test_lm_eval_context_split_moves_trailing_space(tiny_policy):
    ctx, cont = tiny_policy.split_pair("<user> what is the color of x ? <assistant> ", "red .")
    ctx2, cont2 = tiny_policy.split_pair("<user> what is the color of x ? <assistant>", " red .")
    assert (ctx, cont) == (ctx2, cont2) and len(cont) == 2


def test_shared_prefix_scoring_equals_plain_on_primer_contexts(tiny_world, tiny_policy):
    """The KV-cache path (shared primer, one pass per question, continuations on cache copies)
    against one pass per choice, on contexts with a long common prefix, questions of different
    lengths and continuations of 1..n tokens."""
    items = tiny_world.eval_data["truthfulqa"].items[:12]
    primer = " ".join(f"<user> {i.question} <assistant> {i.mc1_choices[0]}" for i in items[:3])
    pairs_text = [(primer + " " + it.question, " " + ch) for it in items
                  for ch in dict.fromkeys(it.mc1_choices + it.mc2_choices)]
    pairs_text.append((primer + " " + items[0].question, " ."))  # one-token continuation
    pairs_text.append((primer + " " + items[1].question, ""))  # empty: a response that ended
    pairs = [tiny_policy.split_pair(c, x) for c, x in pairs_text]
    tiny_policy.batch_size = 7  # several chunks, ragged
    try:
        shared = tiny_policy.logprob_ids_shared(pairs)
    finally:
        tiny_policy.batch_size = 64
    for (c, x), got in zip(pairs_text, shared):
        assert got == pytest.approx(plain_logprob(tiny_policy, c, x), abs=1e-5)
    assert tiny_policy.logprob_ids(pairs) == pytest.approx(shared, abs=1e-6)
