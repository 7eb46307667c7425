"""Where a PPO update's memory goes on SmolLM2-135M: one rollout batch of 16
TruthfulQA-style chat prompts sampled to 32 tokens, then two updates (2 epochs each, as the
smollm2 preset runs them) of the policy and the value model with LoRA, printing the process's
resident memory (VmRSS) and its peak since the update began (VmHWM), and the seconds each update
took. Run from the repository root, after ``alignbench fetch smollm2``:

    python docs/analysis/ppo_update_memory.py MICRO [--checkpointing] [--profile]

MICRO is PPO's micro_batch_size (``none``: the whole batch). After each update the freed heap is
handed back (bench.meter.release_memory) and the resident memory printed again: the difference
is what glibc kept. ``--profile`` prints torch.profiler's allocation table for one more update
(the operators that allocate the most, summed over the update: activations of the LoRA layers'
dropout copies, the MLP's products and the attention's rotary products lead it)."""

from __future__ import annotations

import re
import sys
import time

import numpy as np
import torch

from bench import meter
from bench.assets import fetch
from bench.models import load_hf
from bench.sampling import left_pad, sample
from methods import ppo as P
from methods.common import checkpointed, with_adapters


def rss() -> str:
    now = int(re.search(r"VmRSS:\s+(\d+)", meter.STATUS.read_text()).group(1)) / 2**20
    hwm = meter.peak("cell")["peak_rss_bytes"] / 2**30  # since meter.reset_peak()
    return f"resident {now:.2f} GiB, peak {hwm:.2f} GiB"


def main(micro: int | None, ckpt: bool, profile: bool) -> None:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    policy = load_hf(fetch("smollm2"))
    tok = policy.tokenizer
    folder = policy.model.name_or_path  # the safetensors folder the GGUF became
    value = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    value.config.pad_token_id = tok.pad_token_id
    cfg = P.PPOConfig(lora=True, micro_batch_size=micro, max_new_tokens=32, batch_size=16,
                      epochs=2, activation_checkpointing=ckpt)
    model = checkpointed(with_adapters(policy.model, cfg), ckpt)
    value = checkpointed(with_adapters(value, cfg, "SEQ_CLS"), ckpt).train()
    questions = ["What happens if you eat watermelon seeds?", "Where did fortune cookies "
                 "originate?", "Why do veins appear blue?", "What is the spiciest part of a "
                 "chili pepper?"] * 4
    x, am = left_pad([policy.context_ids(p) for p in policy.format_chat(questions)],
                     tok.pad_token_id)
    model.eval()
    resp = sample(model, x, am, max_new_tokens=32, temperature=0.7, eos_id=tok.eos_token_id,
                  pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    b = P.make_batch(x, am, resp, tok.pad_token_id, tok.eos_token_id)
    print(f"batch {tuple(b.ids.shape)}; models loaded and sampled: {rss()}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = P.Optimizers(torch.optim.AdamW(trainable, lr=1e-5, eps=1e-5), torch.optim.AdamW(
        [p for p in value.parameters() if p.requires_grad], lr=1e-4, eps=1e-5), trainable)
    old_logp, old_v, _ = P.old_outputs(model, value, b, cfg, reuse=False)
    score = torch.randn(b.ids.shape[0], generator=torch.Generator().manual_seed(1))
    targets = P.advantages(P.Rollout([], [], b, score, score, old_logp), old_logp, old_v, cfg,
                           0.05)
    for step in range(2):
        meter.release_memory()
        meter.reset_peak()  # the peak from here
        t0 = time.perf_counter()
        P.update(model, value, opt, b, targets, cfg, np.random.default_rng(step), None, step)
        print(f"update {step}: {time.perf_counter() - t0:.1f} s, {rss()}")
        meter.release_memory()
        print(f"  after release_memory: {rss()}")
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof
        with prof(activities=[ProfilerActivity.CPU], profile_memory=True,
                  record_shapes=True) as p:
            P.update(model, value, opt, b, targets, cfg, np.random.default_rng(2), None, 2)
        print(p.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_memory_usage", row_limit=15, max_name_column_width=30))


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        sys.exit(__doc__)
    main(None if args[0] == "none" else int(args[0]), "--checkpointing" in args,
         "--profile" in args)
