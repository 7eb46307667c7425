"""PPO's pure functions against hand-computed values, and PPO on a toy task."""

import math

import numpy as np
import pytest
import torch

from methods import ppo as P


def t(x):
    return torch.tensor(x, dtype=torch.float)


def test_gae_known_answer():
    adv, ret = P.gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=1.0, lam=0.95)
    assert torch.allclose(adv, t([[0.46575, 0.385, 0.3]]))
    assert torch.allclose(ret, t([[0.96575, 0.985, 1.0]]))


def test_gae_stops_at_the_end_of_the_response():
    adv, ret = P.gae(t([[0, 1, 5]]), t([[0.5, 0.6, 9]]), t([[1, 1, 0]]), gamma=1.0, lam=0.95)
    assert torch.allclose(adv, t([[0.48, 0.4, 0.0]]))
    assert ret[0, 2] == 0


def test_gae_discount():
    adv, _ = P.gae(t([[0, 1]]), t([[0, 0]]), t([[1, 1]]), gamma=0.5, lam=1.0)
    assert torch.allclose(adv, t([[0.5, 1.0]]))


def test_policy_loss_and_clipfrac():
    old = t([[0.0, 0.0]])
    new = torch.log(t([[1.5, 0.5]]))
    loss, cf = P.policy_loss(new, old, t([[1.0, 1.0]]), t([[1, 1]]), clip=0.2)
    assert loss.item() == pytest.approx(-0.85)
    assert cf.item() == pytest.approx(0.5)


def test_value_loss_clipped():
    vl = P.value_loss(t([[2.0]]), t([[1.0]]), t([[3.0]]), t([[1]]), clip=0.2)
    assert vl.item() == pytest.approx(1.62)


def test_kl_estimators():
    logp, ref, m = t([[-1, -2]]), t([[-1.5, -1]]), t([[1, 1]])
    assert P.kl_k1(logp, ref, m).item() == pytest.approx(-0.5)
    k3 = (math.exp(-0.5) - 1 + 0.5) + (math.exp(1) - 1 - 1)
    assert P.kl_k3(logp, ref, m).item() == pytest.approx(k3)


def test_kl_penalized_rewards():
    r = P.kl_penalized_rewards(t([2.0]), t([[-1, -1, -1]]), t([[-1.5, -1, -2]]), t([[1, 1, 0]]),
                               kl_coef=0.1)
    assert torch.allclose(r, t([[-0.05, 2.0, 0.0]]))


def test_whiten_ignores_masked_entries():
    w = P.whiten(t([[1, 2, 3, 100]]), t([[1, 1, 1, 0]]))
    assert torch.allclose(w, t([[-1, 0, 1, 0]]), atol=1e-6)


def test_adaptive_kl_controller():
    c = P.AdaptiveKL(0.1, target=6.0, horizon=10000)
    assert c.update(12.0, 64) == pytest.approx(0.1 * (1 + 0.2 * 64 / 10000))
    assert c.update(0.0, 64) < 0.1 * (1 + 0.2 * 64 / 10000)  # too little KL: coefficient falls


def _toy(tiny_world, kl_coef, steps, seed=0, **ppo):
    """Fresh tiny Llama; reward 1 when the answer's first word is the target word."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from bench.budget import Ledger
    from bench.policy import HFPolicy

    tok = tiny_world.load_policy(tiny_world.base_model).tokenizer
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg)
    ref = LlamaForCausalLM(cfg)
    ref.load_state_dict(model.state_dict())
    value = LlamaForSequenceClassification(cfg.__class__(**{**cfg.to_dict(), "num_labels": 1}))
    policy = HFPolicy(model, tok, add_bos=True)
    prompts = ["<user> what is the color of x ? <assistant>"]

    def reward(ps, cs):
        return [1.0 if c.split()[:1] == ["red"] else 0.0 for c in cs]

    cfg_ppo = P.PPOConfig(batch_size=32, steps=steps, lr=3e-3, value_lr=3e-3, kl_coef=kl_coef,
                          max_new_tokens=3, temperature=1.0, missing_eos_penalty=0.0, **ppo)
    hist = P.ppo_loop(policy, ref, value, reward, prompts, cfg_ppo, Ledger(), seed=seed,
                      steps=steps)
    return hist


def test_ppo_learns_the_best_response_of_a_toy_task(tiny_world):
    hist = _toy(tiny_world, kl_coef=0.0, steps=25)
    first = sum(h["proxy_reward"] for h in hist[:3]) / 3
    last = sum(h["proxy_reward"] for h in hist[-3:]) / 3
    assert first < 0.1  # a random tiny model almost never starts with the target
    assert last > 0.8, [round(h["proxy_reward"], 2) for h in hist]


def test_kl_penalty_bounds_the_drift(tiny_world):
    free = _toy(tiny_world, kl_coef=0.0, steps=25)
    held = _toy(tiny_world, kl_coef=2.0, steps=25)
    assert max(h["kl"] for h in held) < 0.5 * max(h["kl"] for h in free)
    assert held[-1]["kl"] < 1.5


def test_first_pass_reuse_equals_separate_rollout_forward(tiny_world, monkeypatch):
    """The speed path (old log-probs and values taken from the first update's forward pass)
    against the plain one (a separate no-grad forward): same training, to float noise."""
    fast = _toy(tiny_world, kl_coef=0.1, steps=4)
    monkeypatch.setattr(P, "has_dropout", lambda model: True)  # forces the plain path
    plain = _toy(tiny_world, kl_coef=0.1, steps=4)
    for a, b in zip(fast, plain):
        for k in ("proxy_reward", "kl", "pg_loss", "value_loss", "entropy"):
            assert a[k] == pytest.approx(b[k], abs=1e-4), k


def test_a_micro_batched_ppo_run_is_the_same_run(tiny_world):
    """Whole PPO steps (rollout, old log-probs and values in micro-batches, the update) with
    micro-batches of 5 rows against the whole batch of 32 at once: the same run, to float
    noise."""
    whole = _toy(tiny_world, kl_coef=0.1, steps=4)
    micro = _toy(tiny_world, kl_coef=0.1, steps=4, micro_batch_size=5)
    for a, b in zip(whole, micro):
        for k in ("proxy_reward", "kl", "pg_loss", "value_loss", "entropy"):
            assert a[k] == pytest.approx(b[k], abs=1e-4), k


def test_has_dropout_sees_lora_and_attention_dropout():
    from transformers import LlamaConfig, LlamaForCausalLM

    from methods.common import LoRAOptions, with_adapters
    cfg = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    assert not P.has_dropout(LlamaForCausalLM(cfg))
    assert P.has_dropout(LlamaForCausalLM(LlamaConfig(**{**cfg.to_dict(),
                                                         "attention_dropout": 0.1})))
    assert P.has_dropout(with_adapters(LlamaForCausalLM(cfg),
                                       LoRAOptions(lora=True, lora_target=["q_proj"])))


def test_micro_batched_updates_equal_the_single_batch_update(tiny_world):
    """Gradient accumulation over micro-batches is the same PPO update: each micro-batch adds
    its share of the minibatch's token mean. Same gradients (before the step), and the same
    weights after one step of AdamW, to 1e-5 relative, for micro-batches of 3 (uneven: 8 rows
    make 3 + 3 + 2) and of 1; the losses and statistics it reports are the same too. So is an
    update with activation checkpointing, whole and micro-batched, whose layers are seen to run
    twice (the forward pass, and its recomputation in the backward pass)."""
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tok = tiny_world.load_policy(tiny_world.base_model).tokenizer
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg)
    value = LlamaForSequenceClassification(cfg.__class__(**{**cfg.to_dict(), "num_labels": 1}))
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(5, len(tok), (8, 4), generator=g)
    pattn = torch.ones_like(prompt)
    pattn[:3, :2] = 0  # some left padding
    resp = torch.randint(5, len(tok), (8, 5), generator=g)
    resp[2, 2] = resp[5, 0] = tok.eos_token_id  # responses of other lengths
    b = P.make_batch(prompt, pattn, resp, tok.pad_token_id, tok.eos_token_id)
    with torch.no_grad():
        old_logp, _ = P.token_logprobs(model, b, 1.0)
        old_v = P.token_values(value, b)
    t = P.Targets(old_logp=old_logp + 0.05 * torch.randn(old_logp.shape, generator=g),
                  old_v=old_v, adv=torch.randn(old_logp.shape, generator=g) * b.mask,
                  returns=torch.randn(old_logp.shape, generator=g) * b.mask,
                  kl=torch.zeros(8))

    from methods.common import checkpointed

    layer_calls = []

    def one_step(micro, ckpt=False):
        m, v = copy.deepcopy(model), copy.deepcopy(value)
        checkpointed(m, ckpt)
        checkpointed(v, ckpt).train()  # as ppo_round holds it
        # the layer's first module: a recomputation stops once it has what backward needs
        m.model.layers[0].input_layernorm.register_forward_hook(lambda *a: layer_calls.append(1))
        layer_calls.clear()
        trainable = list(m.parameters())
        # ppo_loop's optimizers (eps 1e-5: Adam's first step is g / (|g| + eps), which with
        # eps 1e-8 turns the rounding of a near-zero gradient into a whole step either way)
        opt = P.Optimizers(torch.optim.AdamW(trainable, lr=1e-3, eps=1e-5),
                           torch.optim.AdamW(v.parameters(), lr=1e-3, eps=1e-5), trainable)
        c = P.PPOConfig(epochs=1, temperature=1.0, micro_batch_size=micro, max_grad_norm=1e9)
        grads = {}
        step = opt.policy.step
        opt.policy.step = lambda: (grads.update({k: p.grad.clone() for k, p in
                                                 m.named_parameters()}), step())
        stats = P.update(m, v, opt, b, t, c, np.random.default_rng(0), None, 0)
        assert len(layer_calls) == (2 if ckpt else 1) * (1 if micro is None else -(-8 // micro))
        return grads, dict(m.named_parameters()), stats

    g_full, w_full, s_full = one_step(None)
    for micro, ckpt in ((3, False), (1, False), (None, True), (3, True)):
        g_mb, w_mb, s_mb = one_step(micro, ckpt)
        for k in g_full:
            assert torch.allclose(g_mb[k], g_full[k], rtol=1e-5, atol=1e-7), (micro, ckpt, k)
            assert torch.allclose(w_mb[k], w_full[k], rtol=1e-5, atol=1e-7), (micro, ckpt, k)
        for k in s_full:
            assert s_mb[k] == pytest.approx(s_full[k], rel=1e-5, abs=1e-7), (micro, ckpt, k)
