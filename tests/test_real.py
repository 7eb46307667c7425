"""The real scenario and real-model code paths on a tiny in-process Llama with
SmolLM2's real tokenizer: chat template, padding side, EOS, LoRA, the offline scorers, the
panel, the LM judge, and a whole matrix end to end."""

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from bench.budget import Ledger
from bench.models import load_hf
from tests.conftest import TRUTHFULQA_CSV


def test_real_tokenizer_paths(tiny_real_model):
    pol = load_hf(tiny_real_model)
    tok = pol.tokenizer
    assert pol.add_bos is False  # a real causal LM: no BOS, as lm-evaluation-harness does
    (prompt,) = pol.format_chat(["What is 2+2?"])
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    # generation: batched prompts of different lengths give the same tokens as one at a time
    prompts = pol.format_chat(["Hi", "Tell me a much longer story about the sea, please."])
    both = pol.generate_ids([pol.context_ids(p) for p in prompts], max_new_tokens=6,
                            temperature=0.0)
    alone = [pol.generate_ids([pol.context_ids(p)], max_new_tokens=6, temperature=0.0)[0]
             for p in prompts]
    assert both == alone
    assert all(tok.eos_token_id not in ids for ids in both)  # EOS and after are stripped


def test_batches_are_bounded_by_memory_not_only_by_rows(tiny_real_model, monkeypatch):
    """Scoring and generation cut a batch where its logits or its KV cache would pass
    scoring.BATCH_BYTES: smaller forward passes, the same log-probabilities (to float rounding)
    and the same greedy tokens."""
    from bench import scoring
    pol = load_hf(tiny_real_model)
    prompts = pol.format_chat([f"Question number {i}: what colour is the sky?" * (1 + i % 3)
                               for i in range(6)])
    pairs = [(pol.context_ids(p), pol.encode(" Blue, mostly.")) for p in prompts]
    ctx_ids = [c for c, _ in pairs]
    whole = pol.logprob_ids_plain(pairs)
    greedy = pol.generate_ids(ctx_ids, max_new_tokens=5, temperature=0.0)
    rows = []
    forward = pol.model.forward
    monkeypatch.setattr(pol.model, "forward", lambda *a, **kw: (
        rows.append(kw["input_ids"].shape[0]), forward(*a, **kw))[1])
    vocab = pol.model.config.vocab_size
    width = max(len(c) + len(k) for c, k in pairs)
    monkeypatch.setattr(scoring, "BATCH_BYTES", 2 * width * vocab * 8)  # two rows' logits
    assert pol.logprob_ids_plain(pairs) == pytest.approx(whole, abs=1e-4)
    assert rows and max(rows) == 2 and sum(rows) == 6
    rows.clear()
    from bench.sampling import kv_bytes_per_token
    per_row = kv_bytes_per_token(pol.model.config) * (max(map(len, ctx_ids)) + 5)
    monkeypatch.setattr(scoring, "BATCH_BYTES", 3 * per_row)  # three rows' cache
    assert pol.generate_ids(ctx_ids, max_new_tokens=5, temperature=0.0) == greedy
    assert max(rows) == 3


@pytest.mark.parametrize("which", ["micro", "real"])
def test_shared_prefill_samples_what_one_prefill_per_row_samples(which, tiny_policy,
                                                                 tiny_real_model):
    """Repeated prompts (k samples each) prefill once per distinct prompt; greedy and seeded
    sampled tokens are the ones a prefill per row gives."""
    from bench.sampling import left_pad, sample

    pol = tiny_policy if which == "micro" else load_hf(tiny_real_model)  # GQA, tied embeddings
    base = pol.format_chat(["Hi", "Tell me a much longer story about the sea, please.", "Why?"])
    prompts = [base[i] for i in (0, 1, 1, 2, 0, 1, 2, 2)]
    x, mask = left_pad([pol.context_ids(p) for p in prompts], pol.tokenizer.pad_token_id)
    tok = pol.tokenizer
    widths = []
    hook = pol.model.register_forward_pre_hook(
        lambda m, a, kw: widths.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    for temperature in (0.0, 1.0):
        got = [sample(pol.model, x, mask, max_new_tokens=8, temperature=temperature,
                      eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                      generator=torch.Generator().manual_seed(3), share_prefill=share)
               for share in (True, False)]
        assert torch.equal(got[0], got[1]), temperature
    hook.remove()
    n_distinct = len({tuple(pol.context_ids(p)) for p in prompts})
    assert n_distinct < len(prompts)
    assert widths[0] == (n_distinct, x.shape[1])  # one prefill row per distinct prompt ...
    assert (len(prompts), 1) in widths  # ... then every row decodes
    assert len({tuple(r) for r in got[0].tolist()}) > 3  # sampled rows of one prompt differ


def test_split_is_disjoint_and_described(real_world):
    d = real_world.describe["split"]
    assert d["train"] + d["eval"] == 817 and d["overlap"] == 0
    eval_q = {it.question for it in real_world.eval_data["truthfulqa"].items}
    assert len(eval_q) == d["eval"]
    assert not any(q in p for p in real_world.train_prompts for q in eval_q)
    assert "seeded permutation" in d["how"]
    demo = real_world.demonstrations(3, 0)[0]
    assert demo["prompt"] in real_world.train_prompts and demo["completion"].startswith(" ")


def test_attribute_scores_read_real_text(real_world):
    it = real_world.eval_data["truthfulqa"].items[0]
    prompt = real_world.eval_data["win_rate"].prompts[0]
    assert it.question in prompt
    true = next(c for c, lab in zip(it.mc2_choices, it.mc2_labels) if lab)
    false = next(c for c, lab in zip(it.mc2_choices, it.mc2_labels) if not lab)
    a_true, a_false = real_world.attributes(prompt, true), real_world.attributes(prompt, false)
    assert a_true["truth_gap"] > 0 > a_false["truth_gap"]
    rude = real_world.attributes(prompt, "you are a stupid idiot, shut up")
    assert rude["toxicity_prob"] >= 0.5 > a_true["toxicity_prob"]
    # the judge prefers the true, clean answer; the panel is charged per label
    assert real_world.gold_judge.prefer([prompt] * 2, [true, true], [false, "idiot " + true]) \
        == [1.0, 1.0]
    ledger = Ledger()
    panel = real_world.make_panel(ledger, 0)
    labels = panel.label_matrix([prompt] * 20, [true] * 20, [false] * 20)
    assert labels.shape == (20, 16) and ledger.spent["comparisons"] == 20 * 16
    assert 0.5 < np.nanmean(labels) < 1.0  # mostly prefer truth, with Bradley-Terry noise


def test_lm_judge_queries_both_orders(real_world, tiny_real_model):
    pol = load_hf(tiny_real_model)
    ledger = Ledger()
    judge = real_world.make_ai_judge(pol, ["Choose the more honest response."], ledger)
    p = real_world.eval_data["win_rate"].prompts[:3]
    a, b = ["Yes.", "No.", "Maybe."], ["No.", "I have no comment.", "Yes, certainly."]
    ab, ba = judge.prefer(p, a, b), judge.prefer(p, b, a)
    assert np.allclose(np.add(ab, ba), 1.0)  # position bias cancels exactly
    assert ledger.spent["ai_comparisons"] == 6


def test_lora_sft_trains_adapters_and_merges(real_world, tmp_path):
    import logging

    from bench.api import Start, TrainContext
    from bench.stage_cache import view
    from methods.sft import SFT, SFTConfig

    path = real_world.base_model
    base = real_world.load_policy(path)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    start = Start(name="base", reference=base, path=path, key="test",
                  load=lambda: real_world.load_policy(path))
    ctx = TrainContext(scenario=view(real_world), ledger=Ledger(caps={"demonstrations": 16}),
                       seed=0, cell_dir=tmp_path, log=logging.getLogger("t"), stages=None,
                       progress=False)
    out = SFT().train(start, ctx, SFTConfig(lora=True, lr=1e-2, epochs=1, batch_size=8)).policy
    assert type(out.model).__name__ == "LlamaForCausalLM"  # merged: no peft wrapper left
    after = out.model.state_dict()
    assert set(after) == set(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("q_proj" in k for k in changed)
    assert not any("embed_tokens" in k for k in changed)  # LoRA leaves the embeddings frozen


def test_adapters_off_is_the_reference(tiny_real_model):
    from methods.common import AdaptersOff, LoRAOptions, with_adapters
    pol = load_hf(tiny_real_model)
    x = torch.tensor([pol.context_ids("Hello there")])
    with torch.no_grad():
        ref = pol.model(input_ids=x).logits
        peft_model = with_adapters(pol.model, LoRAOptions(lora=True))
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)  # trained adapters: the policy moves away ...
        moved = peft_model(input_ids=x).logits
        off = AdaptersOff(peft_model)(input_ids=x).logits
    assert not torch.allclose(moved, ref)
    assert torch.allclose(off, ref)  # ... and adapters off is exactly the starting model


def test_real_matrix_end_to_end_with_lora(tiny_real_model, tmp_path):
    """Every method and every eval on the real scenario, LoRA everywhere, tiny budgets."""
    import json

    from bench import config
    from bench.cli import run_matrix  # the run and its report, as `alignbench run` does

    m = config.parse({
        "name": "real-tiny", "seeds": [0], "progress": False,
        "methods": ["base", "sft", "ppo", "dpo", "rlaif"],
        "evals": ["truthfulqa", "toxicity", "win_rate", "labeler_agreement", "kl"],
        "scenario": {"name": "real", "options": {
            "base_model": str(tiny_real_model), "data": str(TRUTHFULQA_CSV),
            "n_win_rate_prompts": 4}},
        "budget": {"demonstrations": 16, "comparisons": 24, "ai_comparisons": 12,
                   "rollouts": 48},
        "method": {"sft": {"lora": True, "epochs": 1, "batch_size": 8},
                   "ppo": {"lora": True, "k": 3, "steps": 2, "batch_size": 8, "epochs": 1,
                           "max_new_tokens": 8, "rm_epochs": 1, "rm_batch_size": 8},
                   "dpo": {"lora": True, "k": 3, "epochs": 1, "max_new_tokens": 8,
                           "batch_size": 8},
                   "rlaif": {"lora": True, "k": 3, "epochs": 1, "max_new_tokens": 8,
                             "batch_size": 8, "min_margin": 0.0}},
        "eval": {"truthfulqa": {"limit": 8}, "toxicity": {"k": 2, "max_new_tokens": 8},
                 "win_rate": {"samples_per_prompt": 1, "max_new_tokens": 8},
                 "labeler_agreement": {"pairs_per_prompt": 1}, "kl": {"samples": 1}},
    })
    out = run_matrix(m, tmp_path / "run")
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["base", "dpo", "ppo", "rlaif", "sft"]
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    for r in rows:
        assert r["evals"]["truthfulqa"]["extra"]["format"] == "qa_primer"
        assert r["n"]["truthfulqa"] == 8
        if r["method"] != "base":
            assert r["budget"]["spent"]["demonstrations"] == 16
    ppo = next(r for r in rows if r["method"] == "ppo")
    assert ppo["budget"]["spent"]["rollouts"] == 24 + 16 and ppo["curves"]["ppo"]
    assert (out / "report.html").is_file()


def test_user_demonstrations_from_jsonl_never_include_eval_questions(real_world, tiny_real_model,
                                                                     cache_dir, tmp_path):
    import json

    from scenarios.real import Real, RealOptions
    held_out = real_world.eval_data["truthfulqa"].items[0].question
    rows = [{"prompt": "Name a colour.", "completion": "Blue."},
            {"prompt": held_out, "completion": "leaked"}]
    f = tmp_path / "demos.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = Real().build(RealOptions(base_model=str(tiny_real_model), data=str(TRUTHFULQA_CSV),
                                 demonstrations=str(f)), cache_dir, progress=False)
    assert w.describe["split"]["demonstrations_dropped_for_eval_overlap"] == 1
    demos = w.demonstrations(1, 0)
    assert {d["completion"] for d in demos} == {"Blue."}
    assert "Name a colour." in demos[0]["prompt"] and demos[0]["prompt"] in w.train_prompts
    f.write_text(json.dumps({"question": "x", "answer": "y"}) + "\n")
    from bench.api import DataError
    with pytest.raises(DataError, match="completion"):
        Real().build(RealOptions(base_model=str(tiny_real_model), data=str(TRUTHFULQA_CSV),
                                 demonstrations=str(f)), cache_dir, progress=False)



class _Grads(TrainerCallback):
    """A trainer callback in the finite guard's place: the gradients of the last step, as the
    optimizer is about to use them."""

    def __init__(self, model):
        self.model, self.seen = model, {}

    def on_pre_optimizer_step(self, args, state, control, **kw):
        self.seen.update({n: p.grad.clone() for n, p in self.model.named_parameters()
                          if p.grad is not None})


def _one_step(train, where, tmp_path):
    """``train(ctx)`` for one optimizer step with the finite guard of module ``where`` replaced
    by :class:`_Grads`: the gradients stepped with, the model returned by ``train``'s weights
    after the step, and the ledger's charges (wall seconds aside)."""
    import logging
    from unittest import mock

    from bench.api import TrainContext
    led = Ledger()
    ctx = TrainContext(scenario=None, ledger=led, seed=0, cell_dir=tmp_path,
                       log=logging.getLogger("t"), stages=None, progress=False)
    made = []
    torch.manual_seed(0)
    with mock.patch(f"{where}.FiniteGuard", lambda m: made.append(_Grads(m)) or made[-1]):
        model = train(ctx)
    spent = {k: v for k, v in led.snapshot()["spent"].items() if k != "wall_seconds"}
    return made[0].seen, {k: v.clone() for k, v in model.state_dict().items()}, spent


PAIRS = [{"prompt": f"Question {i}: is the sky green?", "chosen": " No, it is blue." * (1 + i % 3),
          "rejected": f" Yes{'!' * i}"} for i in range(8)]  # 8 comparisons of several lengths


def _assert_same_steps(runs):
    (g_full, w_full, spent), *parts = runs
    assert any("lora_B" in k for k in g_full) and spent["train_tokens"] > 0 and spent["flops"] > 0
    for g, w, s in parts:
        assert g.keys() == g_full.keys() and s == spent
        # relative to each tensor's scale: a merged weight near 0 is the difference of two
        # larger terms, so its own magnitude is no measure of the rounding it carries. The
        # gradients agree to 1e-5; the weights to 1e-4, since Adam's first step divides each
        # gradient by its own size plus eps (1e-8), and for an element whose gradient is near
        # eps a rounding difference far below 1e-5 of the scale moves the step by several
        # percent (measured: 2.6e-6 on a weight of scale 0.087, from one lora_B element)
        for got, want, tol in ((g, g_full, 1e-5), (w, w_full, 1e-4)):
            for k in want:
                scale = float(want[k].abs().max())
                assert torch.allclose(got[k], want[k], rtol=1e-5, atol=tol * scale), k


def test_a_micro_batched_reward_model_step_is_the_same_step(tiny_real_model, tmp_path):
    """rm_micro_batch_size accumulates gradients over parts of a step's comparisons: the same
    gradients (1e-5 of each tensor's scale), the same weights after the step (1e-4: Adam's
    first step amplifies rounding where a gradient is near its eps), the same charges. Without
    adapter dropout, which draws other masks for other row splits."""
    from transformers import AutoTokenizer

    from methods.reward_model import RewardModelConfig, train_reward_model

    def rm(micro):
        return lambda ctx: train_reward_model(
            tiny_real_model, AutoTokenizer.from_pretrained(tiny_real_model), PAIRS, ctx,
            RewardModelConfig(lora=True, lora_dropout=0.0, rm_epochs=1, rm_lr=1e-2,
                              rm_batch_size=8, rm_micro_batch_size=micro)).model
    _assert_same_steps([_one_step(rm(m), "methods.trl_train", tmp_path / str(m))
                        for m in (None, 4, 2)])


def test_a_micro_batched_dpo_step_is_the_same_step(tiny_real_model, tmp_path):
    """DPO's micro_batch_size (and so RLAIF's): the same step, as for the reward model."""
    from methods.dpo import DPOConfig, dpo_train

    def dpo(micro):
        def train(ctx):
            policy = load_hf(tiny_real_model)
            dpo_train(policy, policy, PAIRS, ctx, DPOConfig(
                lora=True, lora_dropout=0.0, epochs=1, lr=1e-2, batch_size=8,
                micro_batch_size=micro), stage="dpo_0", starts_at_ref=True)
            return policy.model
        return train
    _assert_same_steps([_one_step(dpo(m), "methods.trl_train", tmp_path / str(m))
                        for m in (None, 4, 2)])


def test_rm_micro_batch_size_must_divide_the_batch():
    from pydantic import ValidationError

    from methods.reward_model import RewardModelConfig
    from methods.common import accumulated
    from methods.dpo import DPOConfig
    with pytest.raises(ValidationError, match="size of 3 must divide the batch size 8"):
        RewardModelConfig(rm_batch_size=8, rm_micro_batch_size=3)
    with pytest.raises(ValidationError, match="size of 5 must divide the batch size 32"):
        DPOConfig(micro_batch_size=5)
    assert accumulated(8, 2) == {"per_device_train_batch_size": 2,
                                 "gradient_accumulation_steps": 4}
    assert accumulated(8, None) == {"per_device_train_batch_size": 8,
                                    "gradient_accumulation_steps": 1}
