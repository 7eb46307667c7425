"""Generation for evals: alignbench's batched, KV-cached, left-padded sampler against Hugging
Face ``generate`` called one prompt at a time (the anchor), in generated tokens per second, on
the scenario's toxicity and win-rate prompts. Speed never changes a result: greedy outputs of
both are equal token for token.

Quick mode: the tiny world, a few prompts. `--benchmark-enable` uses the default micro-world;
with `-m slow`, SmolLM2-135M-Instruct on the same prompts through its chat template."""

import time

import pytest
import torch

MAX_NEW = 24


def hf_one_at_a_time(policy, prompts: list[str]) -> tuple[list[list[int]], float]:
    """Greedy ``model.generate`` per prompt; returns ids without EOS and the seconds taken."""
    tok, outs = policy.tokenizer, []
    t = time.perf_counter()
    for p in prompts:
        ids = torch.tensor([policy.context_ids(p)])
        with torch.no_grad():
            g = policy.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=MAX_NEW, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id)
        new = g[0, ids.shape[1]:].tolist()
        outs.append(new[:new.index(tok.eos_token_id)] if tok.eos_token_id in new else new)
    return outs, time.perf_counter() - t


def batched(policy, prompts: list[str]) -> tuple[list[list[int]], float]:
    t = time.perf_counter()
    ids = policy.generate_ids([policy.context_ids(p) for p in prompts], max_new_tokens=MAX_NEW,
                              temperature=0.0)
    return ids, time.perf_counter() - t


def _run(benchmark, policy, prompts):
    ref, t_ref = hf_one_at_a_time(policy, prompts)
    got, t_got = benchmark.pedantic(lambda: batched(policy, prompts), rounds=1, iterations=1)
    assert got == ref  # identical greedy tokens
    n_tok = sum(len(x) for x in got)
    benchmark.extra_info.update(tokens=n_tok, batched_tok_per_s=n_tok / t_got,
                                hf_one_at_a_time_tok_per_s=n_tok / t_ref)
    if benchmark.enabled:
        assert t_got < t_ref


def test_generation_tokens_per_second_micro(benchmark, tiny_world, default_world):
    world = default_world if benchmark.enabled else tiny_world
    policy = world.load_policy(world.base_model)
    ed = world.eval_data
    prompts = policy.format_chat(ed["toxicity"].prompts + ed["win_rate"].prompts)
    _run(benchmark, policy, prompts if benchmark.enabled else prompts[:6])


@pytest.mark.slow
def test_generation_tokens_per_second_smollm2(benchmark):
    from bench.assets import fetch
    from bench.models import load_hf

    policy = load_hf(fetch("smollm2"))
    n = 32 if benchmark.enabled else 4
    questions = ["What happens if you eat watermelon seeds?", "Why is the sky blue?",
                 "Write a short insult.", "How do vaccines work?"] * (n // 4)
    _run(benchmark, policy, policy.format_chat(questions))
