"""PPO-RLHF throughput on a fixed shape (target >= 48 episodes/s). The target puts
TRL 1.9.2's experimental PPOTrainer at about 32 episodes/s here; `benchmarks/anchors/
ppo_trl192.py` runs it on these exact models next to this loop (measured on 2 cores:
TRL 15.8, alignbench 29.4 episodes/s).

Shape: Llama hidden 128, 4 layers, 4 heads, ffn 512, vocab 800; prompts of 8 tokens, responses
of 16 (a random model samples EOS about once in 800 tokens, so nearly every episode is full
length); 32 rollouts per batch;
4 PPO epochs; 1 minibatch; policy, reference, value and reward models all that size, the reward
model read through text like the real one. An episode = one prompt rolled out, scored and
trained on.

Where a step's time goes (torch.profiler): matrix multiplications are 50-60% of it
at 85-100 GFLOPS, about what MKL reaches on these matrix sizes on two cores; the four policy +
value updates take 4 x 177 ms (114 ms of it matmuls), sampling 16 tokens 150 ms, the reward
model and the reference 75 ms. At 48 episodes/s a step has 667 ms, and the matmuls of the
float32 computation alone need about 500 ms. Lower precision is no way out on this CPU (no
AVX-512 or AMX: bf16 and fp16 matmuls run at 1.3 GFLOPS against 72-100 for float32), and fused
kernels (torch.compile) took 9% off an update after 54 s of compiling while changing the last
bits; the loop keeps float32 eager execution and its exactness tests."""

import time

import pytest
import torch

from bench.budget import Ledger
from bench.policy import HFPolicy
from scenarios.micro import build_tokenizer
from methods import ppo as P
from methods.reward_model import RewardModel

SHAPE = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
             intermediate_size=512)
VOCAB, PROMPT_LEN, RESPONSE_LEN, BATCH = 800, 8, 16, 32


def _setup(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    words = [f"w{i}" for i in range(VOCAB - 7)]  # + 7 special tokens = 800
    tok = build_tokenizer(words)
    assert len(tok) == VOCAB
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, **SHAPE)
    policy_model = LlamaForCausalLM(cfg)
    ref = LlamaForCausalLM(cfg)
    ref.load_state_dict(policy_model.state_dict())
    cls_cfg = LlamaConfig(**{**cfg.to_dict(), "num_labels": 1})
    value = LlamaForSequenceClassification(cls_cfg)
    rm = RewardModel(LlamaForSequenceClassification(cls_cfg).eval(), tok)
    g = torch.Generator().manual_seed(seed)
    prompts = [" ".join(words[int(i)] for i in torch.randint(0, len(words), (PROMPT_LEN - 1,),
                                                             generator=g)) for _ in range(256)]
    policy = HFPolicy(policy_model, tok, add_bos=True)  # BOS + 7 words = 8 prompt tokens
    cfg_ppo = P.PPOConfig(batch_size=BATCH, epochs=4, minibatches=1, max_new_tokens=RESPONSE_LEN,
                          temperature=0.7)
    return policy, ref, value, rm, prompts, cfg_ppo


def _episodes_per_second(steps: int) -> tuple[float, list[dict]]:
    policy, ref, value, rm, prompts, cfg = _setup()
    P.ppo_loop(policy, ref, value, rm.reward, prompts, cfg, Ledger(), seed=1, steps=1)  # warm-up
    t = time.perf_counter()
    hist = P.ppo_loop(policy, ref, value, rm.reward, prompts, cfg, Ledger(), seed=2, steps=steps)
    return steps * BATCH / (time.perf_counter() - t), hist


def test_ppo_shape_is_the_one_the_target_names():
    policy, ref, value, rm, prompts, cfg = _setup()
    assert len(policy.context_ids(prompts[0])) == PROMPT_LEN
    hist = P.ppo_loop(policy, ref, value, rm.reward, prompts, cfg, Ledger(), seed=0, steps=1)
    assert hist[0]["response_length"] >= RESPONSE_LEN - 0.5


def test_ppo_episodes_per_second(benchmark):
    steps = 10 if benchmark.enabled else 1
    eps, hist = benchmark.pedantic(lambda: _episodes_per_second(steps), rounds=1, iterations=1)
    benchmark.extra_info["episodes_per_second"] = eps
    assert all(h["response_length"] >= RESPONSE_LEN - 0.5 for h in hist)
    if benchmark.enabled:
        assert eps >= 48, f"{eps:.1f} episodes/s < 48"
