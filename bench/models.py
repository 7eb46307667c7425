"""Loading base models and the Hugging Face implementation of :class:`bench.api.Policy`.

Sources: a hub id (with revision), a local folder, or a ``.gguf`` file (transformers
dequantizes it through the ``gguf`` package). Safetensors only unless the user opts in to
pickle-based ``.bin`` weights; remote code only when the user opts in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence


class ModelLoadError(ValueError):
    pass


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device = 'cuda' but no CUDA device is visible; set device = 'cpu' "
                             "or 'auto' in the matrix")
    return device


def check_local_folder(path: Path, *, trust_remote_code: bool, allow_pickle: bool) -> None:
    """Refuse folders that would run foreign code or unpickle weights, unless opted in."""
    cfg_file = path / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        if cfg.get("auto_map") and not trust_remote_code:
            raise ModelLoadError(
                f"{path} asks for remote code (config.json has 'auto_map'); loading it would run "
                f"Python from that folder. Opt in with trust_remote_code (CLI: --trust-remote-code) "
                f"only if you trust its author")
    has_st = any(path.glob("*.safetensors"))
    has_bin = any(path.glob("*.bin")) or any(path.glob("*.pt"))
    if not has_st and has_bin and not allow_pickle:
        raise ModelLoadError(
            f"{path} holds only pickle-based weights (.bin/.pt), which can run code when loaded. "
            f"Convert them to safetensors, or opt in with allow_pickle (CLI: --allow-pickle) if "
            f"you trust the file")


def load_hf(spec: str | Path, *, revision: str | None = None, device: str = "cpu",
            trust_remote_code: bool = False, allow_pickle: bool = False,
            dtype: torch.dtype | None = None, name: str | None = None,
            add_bos: bool | None = None) -> "HFPolicy":
    """Load a causal LM and its tokenizer from a hub id, a folder or a GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() \
            else torch.float32
    spec_s = str(spec)
    kwargs = dict(trust_remote_code=trust_remote_code, dtype=dtype)
    if spec_s.endswith(".gguf"):
        p = Path(spec_s)
        if not p.is_file():
            raise ModelLoadError(f"GGUF file {p} does not exist")
        tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
        model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, **kwargs)
    else:
        p = Path(spec_s)
        if p.is_dir():
            check_local_folder(p, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        tok = AutoTokenizer.from_pretrained(spec_s, revision=revision,
                                            trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            spec_s, revision=revision, use_safetensors=None if allow_pickle else True, **kwargs)
    model.to(device).eval()
    if add_bos is None:
        # lm-evaluation-harness never adds BOS for causal LMs unless asked; a folder built by
        # alignbench (the micro-world) says in alignbench.json that it was pretrained with BOS.
        marker = Path(spec_s) / "alignbench.json"
        add_bos = bool(json.loads(marker.read_text()).get("add_bos")) if marker.is_file() \
            else False
    return HFPolicy(model, tok, name=name or p.name, add_bos=add_bos)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class HFPolicy:
    """A transformers causal LM as a :class:`bench.api.Policy` (batched, KV-cached).

    ``add_bos`` prepends the BOS token to every context (models pretrained that way, like the
    micro-world's); real models follow lm-evaluation-harness and get no BOS by default."""

    def __init__(self, model, tokenizer, *, name: str = "policy", add_bos: bool = False,
                 batch_size: int = 64):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.add_bos, self.batch_size = add_bos, batch_size
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

    def split_pair(self, prompt: str, completion: str) -> tuple[list[int], list[int]]:
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
    def logprob_ids(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Summed log-probabilities of continuation ids given context ids, batched by length."""
        out = [0.0] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            seqs = [torch.tensor((pairs[i][0] + pairs[i][1])[:-1] or [pairs[i][0][0]])
                    for i in idx]
            x = pad_sequence(seqs, batch_first=True, padding_value=self.tokenizer.pad_token_id)
            mask = pad_sequence([torch.ones(len(s), dtype=torch.long) for s in seqs],
                                batch_first=True)
            logits = self.model(input_ids=x.to(self.device),
                                attention_mask=mask.to(self.device)).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for row, i in enumerate(idx):
                ctx, cont = pairs[i]
                if not cont:
                    continue
                pos = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(cont), device=self.device)
                tgt = torch.tensor(cont, device=self.device)
                out[i] = float(logp[row, pos, tgt].sum())
        return out

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
        for start in range(0, len(prompt_ids), self.batch_size):
            batch = prompt_ids[start:start + self.batch_size]
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


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask [B, max len]: prompts end where generation starts."""
    width = max(map(len, seqs))
    x = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(x)
    for r, s in enumerate(seqs):
        x[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[r, width - len(s):] = 1
    return x, mask


def strip_after_eos(ids: list[int], eos_id: int | None) -> list[int]:
    if eos_id is not None and eos_id in ids:
        return ids[:ids.index(eos_id)]
    return ids


@torch.no_grad()
def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
           temperature: float, eos_id: int | None, pad_id: int, generator: torch.Generator,
           top_k: int = 0) -> torch.Tensor:
    """Autoregressive sampling with the KV cache. Returns new tokens [B, <=max_new_tokens],
    pad after EOS. Written here (rather than ``model.generate``) so that sampling draws from an
    explicit generator (reproducible regardless of global RNG) and so PPO sees exactly the
    distribution it differentiates: plain softmax(logits / T), no hidden processors."""
    from transformers import DynamicCache

    b = input_ids.shape[0]
    device = input_ids.device
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    new = []
    next_pos = position_ids[:, -1:] + 1
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
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
        out = model(input_ids=tok[:, None], attention_mask=attention_mask,
                    position_ids=next_pos, past_key_values=out.past_key_values, use_cache=True)
        next_pos = next_pos + 1
    return torch.stack(new, 1) if new else input_ids.new_zeros((b, 0))
