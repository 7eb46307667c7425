"""The Hugging Face implementation of :class:`bench.api.TrainablePolicy`: a transformers causal
LM and its tokenizer behind the harness's two batched calls, ``generate`` and ``logprob``.

Scoring lives in :mod:`bench.scoring`, sampling in :mod:`bench.sampling`; this class holds the
text <-> ids conventions (lm-evaluation-harness's) that both follow.
"""

from __future__ import annotations

import torch

from bench import scoring
from bench.budget import charge_inference
from bench.sampling import kv_bytes_per_token, left_pad, sample, strip_after_eos

Pair = tuple[list[int], list[int]]


class HFPolicy:
    """A transformers causal LM as a :class:`bench.api.TrainablePolicy` (batched, KV-cached).

    ``add_bos`` prepends the BOS token to every context (models pretrained that way, like the
    micro-world's); real models follow lm-evaluation-harness and get no BOS by default."""

    def __init__(self, model, tokenizer, *, name: str = "policy", add_bos: bool = False,
                 batch_size: int = 64):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.add_bos, self.batch_size = add_bos, batch_size
        self._head_split = scoring.HeadSplit()
        if tokenizer.pad_token_id is None:  # many causal LMs ship without a pad token
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- text <-> ids
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def context_ids(self, prompt: str) -> list[int]:
        ids = self.encode(prompt)
        if self.add_bos:
            ids = [self.tokenizer.bos_token_id] + ids
        return ids

    def split_pair(self, prompt: str, completion: str) -> Pair:
        """Token ids of (context, continuation) the way lm-evaluation-harness splits them:
        encode the whole string, and take the continuation as what follows the context's own
        encoding, after moving the context's trailing whitespace to the continuation."""
        n_space = len(prompt) - len(prompt.rstrip())
        if n_space:
            prompt, completion = prompt[:-n_space], prompt[-n_space:] + completion
        whole = self.context_ids(prompt + completion)
        ctx = self.context_ids(prompt)
        return ctx, whole[len(ctx):]

    def format_chat(self, user_messages: list[str]) -> list[str]:
        if not getattr(self.tokenizer, "chat_template", None):
            return list(user_messages)
        return [self.tokenizer.apply_chat_template([{"role": "user", "content": m}],
                                                   tokenize=False, add_generation_prompt=True)
                for m in user_messages]

    # ---- scoring
    @torch.no_grad()
    def logprob(self, prompts: list[str], completions: list[str]) -> list[float]:
        pairs = [self.split_pair(p, c) for p, c in zip(prompts, completions, strict=True)]
        return self.logprob_ids(pairs)

    @torch.no_grad()
    def logprob_ids(self, pairs: list[Pair]) -> list[float]:
        """Summed log-probabilities of continuation ids given context ids.

        When contexts repeat (every choice of a multiple-choice question shares one), each
        distinct context -- and the prefix all contexts share, such as a few-shot primer -- is
        run through the model once and its key/value cache reused for the continuations;
        otherwise one padded forward pass per batch. Both give the same numbers up to float
        rounding (tests/test_truthfulqa.py holds them to 1e-5 against one pass per pair)."""
        charge_inference(self.model, sum(len(c) + len(k) for c, k in pairs))
        n_ctx = len({tuple(c) for c, _ in pairs})
        if pairs and n_ctx * 2 <= len(pairs):
            return self.logprob_ids_shared(pairs)
        return self.logprob_ids_plain(pairs)

    def logprob_ids_shared(self, pairs: list[Pair], tokens_per_batch: int = 512) -> list[float]:
        """Packed shared-prefix scoring: :func:`bench.scoring.logprob_shared`."""
        return scoring.logprob_shared(self.model, pairs, pad_id=self.tokenizer.pad_token_id,
                                      head=self._head_split, tokens_per_batch=tokens_per_batch)

    def logprob_ids_plain(self, pairs: list[Pair]) -> list[float]:
        """One padded forward pass per batch: :func:`bench.scoring.logprob_plain`."""
        return scoring.logprob_plain(self.model, pairs, pad_id=self.tokenizer.pad_token_id,
                                     batch_size=self.batch_size)

    # ---- sampling
    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[list[int]], *, max_new_tokens: int,
                     temperature: float = 1.0, seed: int = 0, top_k: int = 0
                     ) -> list[list[int]]:
        """Sample continuations (ids, EOS and padding removed) with the KV cache, left-padded
        batches. Sampling is seeded per call so results do not depend on global RNG state."""
        tok = self.tokenizer
        results: list[list[int]] = [[] for _ in prompt_ids]
        gen = torch.Generator(device="cpu").manual_seed(seed)
        width = max(map(len, prompt_ids), default=0) + max_new_tokens
        rows = scoring.rows_within(kv_bytes_per_token(self.model.config) * width,
                                   self.batch_size)  # the cache within scoring.BATCH_BYTES
        for start in range(0, len(prompt_ids), rows):
            batch = prompt_ids[start:start + rows]
            x, mask = left_pad(batch, tok.pad_token_id)
            ids = sample(self.model, x.to(self.device), mask.to(self.device),
                         max_new_tokens=max_new_tokens, temperature=temperature,
                         eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, generator=gen,
                         top_k=top_k)
            for r in range(len(batch)):
                results[start + r] = strip_after_eos(ids[r].tolist(), tok.eos_token_id)
        return results

    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
                 seed: int = 0) -> list[str]:
        ctx = [self.context_ids(p) for p in prompts]
        gen = self.generate_ids(ctx, max_new_tokens=max_new_tokens, temperature=temperature,
                                seed=seed)
        return [self.completion_text(p, g) for p, g in zip(prompts, gen)]

    def completion_text(self, prompt: str, ids: list[int]) -> str:
        """Decode generated ids so that ``prompt + text`` re-tokenizes to the same ids: a
        word-level tokenizer decodes without the separating space, which belongs to the
        completion."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if text and not text[0].isspace() and prompt and not prompt[-1].isspace():
            spaced = " " + text
            if self.split_pair(prompt, spaced)[1] == ids:
                return spaced
        return text
