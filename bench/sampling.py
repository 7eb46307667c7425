"""Sampling from a causal LM with the KV cache: left-padded batches, an explicit generator.

Used by :meth:`bench.policy.HFPolicy.generate` and by PPO's rollouts (which must sample exactly
the distribution they differentiate).
"""

from __future__ import annotations

import math

import torch

from bench.budget import charge_inference
from bench.scoring import expand_cache


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask [B, max len]: prompts end where generation starts."""
    width = max(map(len, seqs))
    x = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(x)
    for r, s in enumerate(seqs):
        x[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[r, width - len(s):] = 1
    return x, mask


def kv_bytes_per_token(config) -> int:
    """Bytes the KV cache holds per token of one row (float32 keys and values of every layer),
    from a transformers config; 0 when the config does not say (no bound is then applied)."""
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    if not layers or not heads:
        return 0
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or getattr(config, "hidden_size", 0) // heads
    return layers * 2 * kv_heads * head_dim * 4


def strip_after_eos(ids: list[int], eos_id: int | None) -> list[int]:
    if eos_id is not None and eos_id in ids:
        return ids[:ids.index(eos_id)]
    return ids


@torch.no_grad()
def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
           temperature: float, eos_id: int | None, pad_id: int, generator: torch.Generator,
           top_k: int = 0, share_prefill: bool = True) -> torch.Tensor:
    """Autoregressive sampling with the KV cache. Returns new tokens [B, <=max_new_tokens],
    pad after EOS. Written here (rather than ``model.generate``) so that sampling draws from an
    explicit generator (reproducible regardless of global RNG) and so PPO sees exactly the
    distribution it differentiates: plain softmax(logits / T), no hidden processors.

    Evals sample several completions per prompt (win-rate, toxicity's k), so a batch repeats
    rows: with ``share_prefill`` each distinct prompt runs through the model once and its cache
    rows are copied to its repeats before decoding (the same numbers; a chat-templated prompt
    on SmolLM2 costs more than its completion)."""
    from transformers import DynamicCache

    b = input_ids.shape[0]
    device = input_ids.device
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    prefill_ids, prefill_mask, rows = input_ids, attention_mask, None
    if share_prefill and b > 1:
        w = input_ids.shape[1]
        distinct, inverse = torch.unique(torch.cat([input_ids, attention_mask], 1), dim=0,
                                         return_inverse=True)
        if len(distinct) < b:  # each distinct prompt once; row r decodes from rows[r]
            prefill_ids, prefill_mask, rows = distinct[:, :w], distinct[:, w:], inverse
    # logits_to_keep=1: only the last position's logits are ever read
    logits = model(input_ids=prefill_ids, attention_mask=prefill_mask,
                   position_ids=(prefill_mask.cumsum(-1) - 1).clamp(min=0), cache=cache,
                   use_cache=True, logits_to_keep=1).logits
    charge_inference(model, prefill_ids.numel())
    if rows is not None:
        logits, cache = logits[rows], expand_cache(cache, rows, model.config)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    new = []
    next_pos = position_ids[:, -1:] + 1
    for _ in range(max_new_tokens):
        logits = logits[:, -1, :].float()
        if temperature <= 0:
            tok = logits.argmax(-1)
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            probs = torch.softmax(logits, -1).cpu()
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        new.append(tok)
        if eos_id is not None:
            done = done | (tok == eos_id)
        if bool(done.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], 1)
        logits = model(input_ids=tok[:, None], attention_mask=attention_mask,
                       position_ids=next_pos, cache=cache, use_cache=True,
                       logits_to_keep=1).logits
        charge_inference(model, b)
        next_pos = next_pos + 1
    return torch.stack(new, 1) if new else input_ids.new_zeros((b, 0))
