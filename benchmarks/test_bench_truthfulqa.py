"""TruthfulQA scoring speed: choices scored per second, shared-prefix KV-cache path against one
padded forward pass per batch of (context, choice) pairs.

Quick mode (the normal suite): the tiny in-process world model, both paths, equal scores.
`pytest benchmarks --benchmark-enable -m slow -k truthfulqa` adds SmolLM2-135M on all 817
questions of the real CSV (the target: at most 4.5 minutes, scores unchanged; 5,882
distinct choices, so >= 21.8 choices/s)."""

import pytest

from bench.data.truthfulqa import load_csv
from evals import truthfulqa as TQ
from tests.conftest import TRUTHFULQA_CSV

N_DISTINCT_CHOICES_817 = 5882  # distinct (question, choice) pairs of the CSV, MC1 and MC2


def _requests(policy, items, contexts):
    return [policy.split_pair(c, " " + ch) for it, c in zip(items, contexts)
            for ch in dict.fromkeys(it.mc1_choices + it.mc2_choices)]


def _bench(benchmark, policy, pairs, path: str) -> list[float]:
    fn = getattr(policy, f"logprob_ids_{path}")
    out = benchmark.pedantic(lambda: fn(pairs), rounds=1 if not benchmark.enabled else 3,
                             iterations=1)
    if benchmark.enabled:
        benchmark.extra_info["choices_per_second"] = len(pairs) / benchmark.stats.stats.mean
    return out


@pytest.fixture(scope="module")
def tiny_requests(tiny_world, tiny_policy):
    items = tiny_world.eval_data["truthfulqa"].items
    primer = " ".join(f"<user> {i.question} <assistant> {i.mc1_choices[0]}" for i in items[:6])
    return _requests(tiny_policy, items, [primer + " " + it.question for it in items])


def _one_pair_at_a_time(policy, pairs) -> list[float]:
    """The reference both paths answer to: one forward pass per pair, no batch, no padding."""
    import torch
    out = []
    with torch.no_grad():
        for ctx, cont in pairs:
            logp = torch.log_softmax(policy.model(input_ids=torch.tensor([ctx + cont]))
                                     .logits[0].float(), -1)
            out.append(float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont))))
    return out


@pytest.mark.parametrize("path", ["shared", "plain"])
def test_truthfulqa_choices_per_second_tiny(benchmark, tiny_policy, tiny_requests, path):
    got = _bench(benchmark, tiny_policy, tiny_requests, path)
    assert got == pytest.approx(_one_pair_at_a_time(tiny_policy, tiny_requests), abs=1e-5)


# lm-evaluation-harness 0.4.13's own scores on every 20th question (41 questions), the figures
# the project documents (tests/test_smollm2.py): the full run is checked against them there
LM_EVAL_EVERY_20TH_MC1, LM_EVAL_EVERY_20TH_MC2 = 12 / 41, 0.4903095


@pytest.mark.slow
def test_truthfulqa_817_questions_smollm2(benchmark):
    """The TruthfulQA speed target as it is worded: the whole CSV through the eval in at most 4.5 minutes,
    with the scores unchanged (within 0.005). Quick mode runs the same path on 4 questions."""
    from bench.api import EvalContext
    from bench.assets import fetch
    from bench.budget import Ledger
    from bench.models import load_hf

    policy = load_hf(fetch("smollm2"))
    items = load_csv(TRUTHFULQA_CSV)
    n_distinct = sum(len(set(it.mc1_choices + it.mc2_choices)) for it in items)
    assert n_distinct == N_DISTINCT_CHOICES_817
    limit = None if benchmark.enabled else 4  # quick mode: the same path on 4 questions
    ctx = EvalContext(world=None, seed=0, references={}, trained=None, curves={},
                      options=TQ.TruthfulQAOptions(data=str(TRUTHFULQA_CSV), limit=limit),
                      ledger=Ledger(), progress=False)
    res = benchmark.pedantic(lambda: TQ.TruthfulQA().evaluate(policy, ctx), rounds=1,
                             iterations=1)
    if not benchmark.enabled:
        assert res.n == 4 and 0 < res.metrics["mc2"] < 1
        return
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update(seconds=seconds, choices_per_second=n_distinct / seconds,
                                mc1=res.metrics["mc1"], mc2=res.metrics["mc2"])
    assert res.n == 817
    # the full run's own per-question scores, on the questions lm-eval scored, equal lm-eval's
    every20 = [r for i, r in enumerate(res.rows) if i % 20 == 0]
    assert len(every20) == 41
    assert sum(r["mc1"] for r in every20) / 41 == pytest.approx(LM_EVAL_EVERY_20TH_MC1, abs=1e-9)
    assert sum(r["mc2"] for r in every20) / 41 == pytest.approx(LM_EVAL_EVERY_20TH_MC2, abs=1e-4)
    assert seconds <= 270, f"{seconds:.0f} s > 4.5 minutes"
