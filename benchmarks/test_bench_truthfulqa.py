"""TruthfulQA scoring speed: choices scored per second, shared-prefix KV-cache path against one
padded forward pass per batch of (context, choice) pairs.

Quick mode (the normal suite): the tiny in-process world model, both paths, equal scores.
`pytest benchmarks --benchmark-enable -m slow -k truthfulqa` adds SmolLM2-135M on the real CSV
(issue 8's target: all 817 questions in at most 4.5 minutes, i.e. >= 21.8 choices/s over the
5,882 distinct choices)."""

import pytest

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
    items = tiny_world.eval_data.truthfulqa
    primer = " ".join(f"<user> {i.question} <assistant> {i.mc1_choices[0]}" for i in items[:6])
    return _requests(tiny_policy, items, [primer + " " + it.question for it in items])


@pytest.mark.parametrize("path", ["shared", "plain"])
def test_truthfulqa_choices_per_second_tiny(benchmark, tiny_policy, tiny_requests, path):
    got = _bench(benchmark, tiny_policy, tiny_requests, path)
    ref = tiny_policy.logprob_ids_plain(tiny_requests)
    assert got == pytest.approx(ref, abs=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not TRUTHFULQA_CSV.is_file(), reason="shared CSV absent")
def test_truthfulqa_choices_per_second_smollm2(benchmark):
    from bench.assets import fetch
    from bench.models import load_hf

    policy = load_hf(fetch("smollm2"))
    items = TQ.load_csv(TRUTHFULQA_CSV)
    n_distinct = sum(len(set(it.mc1_choices + it.mc2_choices)) for it in items)
    assert n_distinct == N_DISTINCT_CHOICES_817
    # every 20th question: the set's mix of question and answer lengths (the first 40 are
    # longer than average and would understate the full-set rate)
    items = items[::20] if benchmark.enabled else items[:4]
    pairs = _requests(policy, items, [TQ.QA_PRIMER + "\n\nQ: " + it.question + "\nA:"
                                      for it in items])
    _bench(benchmark, policy, pairs, "shared")
    if benchmark.enabled:
        assert benchmark.extra_info["choices_per_second"] >= N_DISTINCT_CHOICES_817 / 270
