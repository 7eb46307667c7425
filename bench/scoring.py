"""Summed log-probabilities of continuations given contexts: the scoring behind
:meth:`bench.policy.HFPolicy.logprob`.

Two algorithms with the same numbers up to float rounding: one padded forward pass per batch
(:func:`logprob_plain`), and packed shared-prefix scoring (:func:`logprob_shared`) for
requests whose contexts repeat (every choice of a multiple-choice question shares one).
Pairs are ``(context ids, continuation ids)``; results are natural-log floats, one per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

Pair = tuple[list[int], list[int]]

# what one batch's transient tensors (logits, the KV cache of a generation) may take: batches are
# bounded by memory as well as by a row count, so a long context or a large vocabulary makes
# batches smaller instead of making memory grow with the data. The micro-world's
# tensors are far below it, so its batches, and its numbers, are what they were.
BATCH_BYTES = 256 * 2**20


def rows_within(bytes_per_row: int, cap: int) -> int:
    """Rows of ``bytes_per_row`` each that fit :data:`BATCH_BYTES`: at most ``cap``, at least
    one."""
    return max(1, min(cap, BATCH_BYTES // max(1, bytes_per_row)))


class PackedRow:
    """One context's remaining tokens followed by its continuations' input tokens (each
    continuation minus its last token), for :func:`logprob_shared`.

    ``mask[q, k]``: query q may attend key k (within the row); ``positions``: absolute position
    ids; ``targets[m]``: (row positions whose logits predict continuation m, its token ids)."""

    def __init__(self, ctx_rest: list[int], conts: list[list[int]], members: list[int],
                 offset: int):
        s = len(ctx_rest)
        ids, positions, targets = list(ctx_rest), list(range(offset, offset + s)), []
        spans = []
        for c in conts:
            o = len(ids)
            ids += c[:-1]
            positions += range(offset + s, offset + s + len(c) - 1)
            spans.append((o, len(ids)))
            # token 0 is predicted by the context's last position, token j by input j-1; an
            # empty continuation (a response that ended at once) has log-probability 0
            targets.append(([s - 1] + list(range(o, o + len(c) - 1)) if c else [], list(c)))
        n = len(ids)
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        for o, e in spans:  # a continuation sees the context and itself, not its siblings
            mask[o:e, s:o] = False
        self.ids, self.positions, self.mask = ids, positions, mask
        self.members, self.targets = members, targets


@dataclass
class HeadSplit:
    """Whether a model's logits are exactly ``output_embeddings(decoder(x))`` (None: not yet
    probed). Probed once per policy (some architectures scale or soft-cap logits)."""

    ok: bool | None = None


def common_prefix_len(seqs) -> int:
    """Length of the longest token prefix shared by every sequence."""
    first = seqs[0]
    n = min(map(len, seqs))
    for other in seqs[1:]:
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return n


def expand_cache(cache, rows: torch.Tensor, config):
    """A new cache whose row r is row ``rows[r]`` of ``cache`` (None: an empty cache). Copies,
    because a forward pass appends to the cache it is given."""
    from transformers import DynamicCache
    if cache is None:
        return DynamicCache(config=config)
    return DynamicCache([(layer.keys.index_select(0, rows), layer.values.index_select(0, rows))
                         for layer in cache.layers], config=config)


def device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def logprob_shared(model, pairs: list[Pair], *, pad_id: int, head: HeadSplit,
                   tokens_per_batch: int = 512) -> list[float]:
    """Shared-prefix scoring (written here: lm-evaluation-harness and transformers both
    recompute the whole context for every continuation).

    The longest token prefix common to all contexts (a few-shot primer) runs once and its
    key/value cache is reused. Each distinct context then becomes one packed row: the rest
    of the context followed by every continuation's input tokens, with a 4-D attention mask
    that lets each continuation see the context and itself but not its siblings, and
    position ids that restart every continuation at the context's length. So each context
    token and each continuation token passes through the model once."""
    from transformers import DynamicCache

    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, cont) in enumerate(pairs):
        if not ctx:
            raise ValueError("a logprob request needs at least one context token")
        groups.setdefault(tuple(ctx), []).append(i)
    ctxs = list(groups)
    lp = min(common_prefix_len(ctxs), min(map(len, ctxs)) - 1)  # >= 1 token left per row
    prefix = None
    if lp:
        prefix = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([ctxs[0][:lp]], device=device_of(model)), cache=prefix,
              use_cache=True, logits_to_keep=1)
    rows = [PackedRow(ctx[lp:], [pairs[i][1] for i in groups[ctx]], groups[ctx], lp)
            for ctx in ctxs]
    rows.sort(key=lambda r: -len(r.ids))
    out = [0.0] * len(pairs)
    start = 0
    while start < len(rows):  # chunks of rows within the token budget
        width = len(rows[start].ids)
        stop = start + max(1, tokens_per_batch // width)
        score_packed(model, rows[start:stop], prefix, lp, out, pad_id=pad_id, head=head)
        start = stop
    return out


def _pack(rows: list[PackedRow], lp: int, pad_id: int, dtype: torch.dtype):
    """Ids, position ids [G, W] and the additive 4-D attention mask [G, 1, W, lp + W] of a
    chunk of rows (padded to the first, longest row)."""
    g, width = len(rows), len(rows[0].ids)
    x = torch.full((g, width), pad_id, dtype=torch.long)
    pos = torch.zeros(g, width, dtype=torch.long)
    allowed = torch.zeros(g, width, lp + width, dtype=torch.bool)
    allowed[:, :, :lp] = True
    for r, row in enumerate(rows):
        n = len(row.ids)
        x[r, :n] = torch.tensor(row.ids)
        pos[r, :n] = torch.tensor(row.positions)
        allowed[r, :n, lp:lp + n] = row.mask
        allowed[r, range(n, width), range(lp + n, lp + width)] = True  # pads: self only
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return x, pos, mask[:, None]


def score_packed(model, rows: list[PackedRow], prefix, lp: int, out: list[float], *,
                 pad_id: int, head: HeadSplit) -> None:
    """Add each continuation's summed log-probability in this chunk of rows to ``out``."""
    dev, g = device_of(model), len(rows)
    x, pos, mask = _pack(rows, lp, pad_id, model.dtype)
    cache = expand_cache(prefix, torch.zeros(g, dtype=torch.long, device=dev), model.config)
    r_idx, p_idx, t_idx, owner = [], [], [], []
    for r, row in enumerate(rows):
        for pair_i, (p_list, t_list) in zip(row.members, row.targets):
            r_idx += [r] * len(p_list)
            p_idx += p_list
            t_idx += t_list
            owner += [pair_i] * len(p_list)
    lg = logits_at(model, x.to(dev), mask.to(dev), pos.to(dev), cache,
                   torch.tensor(r_idx, device=dev), torch.tensor(p_idx, device=dev), head)
    tok_lp = lg.gather(1, torch.tensor(t_idx, device=dev)[:, None])[:, 0] \
        - torch.logsumexp(lg, -1)
    for i, v in zip(owner, tok_lp.tolist()):
        out[i] += v


def logits_at(model, x, mask, pos, cache, r_idx, p_idx, head: HeadSplit) -> torch.Tensor:
    """Float logits at (row, position) pairs only. The output projection is most of a small
    model's cost per token at a 49k vocabulary, so it runs on the needed positions alone --
    when the model's logits are exactly ``output_embeddings(decoder(x))``, which is checked
    once per policy (``head``) and the full forward used otherwise."""
    kw = dict(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True)
    if head.ok is None:
        probe = expand_cache(cache, torch.arange(x.shape[0], device=x.device),
                             model.config) if cache is not None else None
        full = model(**kw, cache=probe).logits[r_idx[:4], p_idx[:4]].float()
        probe = expand_cache(cache, torch.arange(x.shape[0], device=x.device),
                             model.config) if cache is not None else None
        split = split_head(model, kw, probe, r_idx[:4], p_idx[:4])
        head.ok = split is not None and bool(torch.allclose(full, split, atol=1e-4, rtol=1e-5))
    if head.ok:
        return split_head(model, kw, cache, r_idx, p_idx)
    return model(**kw, cache=cache).logits[r_idx, p_idx].float()


def split_head(model, kw, cache, r_idx, p_idx) -> torch.Tensor | None:
    """``output_embeddings(decoder(x))`` at the given positions; None when the model does not
    split into a decoder and an output projection."""
    decoder, out_head = model.get_decoder(), model.get_output_embeddings()
    if decoder is None or out_head is None or decoder is model:
        return None
    hidden = decoder(**kw, cache=cache).last_hidden_state
    return out_head(hidden[r_idx, p_idx]).float()


@torch.no_grad()
def logprob_plain(model, pairs: list[Pair], *, pad_id: int, batch_size: int) -> list[float]:
    """Summed log-probabilities of continuation ids given context ids, batched by length."""
    device = device_of(model)
    out = [0.0] * len(pairs)
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    vocab = getattr(model.config, "vocab_size", 0) or 0
    start = 0
    while start < len(order):  # the longest first: each batch's width is its first row's
        width = len(pairs[order[start]][0]) + len(pairs[order[start]][1])
        rows = rows_within(width * vocab * 4 * 2, batch_size)  # float logits, log-softmax
        idx = order[start:start + rows]
        start += rows
        seqs = [torch.tensor((pairs[i][0] + pairs[i][1])[:-1] or [pairs[i][0][0]])
                for i in idx]
        x = pad_sequence(seqs, batch_first=True, padding_value=pad_id)
        mask = pad_sequence([torch.ones(len(s), dtype=torch.long) for s in seqs],
                            batch_first=True)
        logits = model(input_ids=x.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for row, i in enumerate(idx):
            ctx, cont = pairs[i]
            if not cont:
                continue
            pos = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(cont), device=device)
            tgt = torch.tensor(cont, device=device)
            out[i] = float(logp[row, pos, tgt].sum())
    return out
