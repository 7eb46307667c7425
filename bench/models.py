"""Loading base models and the Hugging Face implementation of :class:`bench.api.Policy`.

Sources: a hub id (with revision), a local folder, or a ``.gguf`` file (transformers
dequantizes it through the ``gguf`` package). Safetensors only unless the user opts in to
pickle-based ``.bin`` weights; remote code only when the user opts in.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence


class ModelLoadError(ValueError):
    pass


# What transformers and the gguf reader raise for a file or folder they cannot load: OSError for
# missing or unreadable files, ValueError for contents they do not understand, struct.error for
# a GGUF header cut short.
LOAD_FAILURES = (OSError, ValueError, struct.error)

# huggingface_hub's rule for repo ids: "name" or "namespace/name"
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0].rstrip(".") if text else type(err).__name__


def looks_like_path(spec: str) -> bool:
    """True when ``spec`` cannot be a hub id, so it must name a local file or folder."""
    return (spec.startswith((".", "~", os.sep)) or spec.endswith(".gguf")
            or not HUB_ID.fullmatch(spec))


def read_json_object(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as err:  # not JSON, or not UTF-8
        raise ModelLoadError(f"{file} is not valid JSON ({first_line(err)}); repair it or "
                             f"download the model again") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{file} holds a JSON {type(data).__name__}, not an object; repair "
                             f"it or download the model again")
    return data


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
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path} has no config.json, so it is not a transformers model "
                             f"folder; give the folder save_pretrained wrote, a hub id or a "
                             f".gguf file")
    cfg = read_json_object(cfg_file)
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
    p = Path(spec_s)
    if spec_s.endswith(".gguf"):
        if not p.is_file():
            raise ModelLoadError(f"GGUF file {p} does not exist; check the path")
        spec_s, revision = str(gguf_as_safetensors(p)), None
    elif p.is_dir():
        check_local_folder(p, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    elif looks_like_path(spec_s):
        raise ModelLoadError(f"no model folder or file at {spec_s}; check the path (a hub id "
                             f"looks like 'namespace/name')")
    try:
        tok = AutoTokenizer.from_pretrained(spec_s, revision=revision,
                                            trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            spec_s, revision=revision, use_safetensors=None if allow_pickle else True, **kwargs)
    except LOAD_FAILURES as err:
        fix = f"check that {spec_s} holds what save_pretrained writes (config.json, tokenizer " \
              f"files, *.safetensors)" if Path(spec_s).is_dir() else \
              "check the hub id and revision, and that the hub or its local cache has the model"
        raise ModelLoadError(f"cannot load model {spec}: {first_line(err)}; {fix}") from None
    model.to(device).eval()
    if add_bos is None:
        # lm-evaluation-harness never adds BOS for causal LMs unless asked; a folder built by
        # alignbench (the micro-world) says in alignbench.json that it was pretrained with BOS.
        marker = Path(spec_s) / "alignbench.json"
        add_bos = bool(read_json_object(marker).get("add_bos")) if marker.is_file() else False
    return HFPolicy(model, tok, name=name or p.name, add_bos=add_bos)


def gguf_as_safetensors(path: Path) -> Path:
    """The GGUF file dequantized once (transformers + the ``gguf`` package) and kept as a
    safetensors folder in the cache, keyed by the file's hash and the transformers version that
    dequantized it. Reading a GGUF costs ~35 s for SmolLM2-135M (tokenizer conversion and
    dequantization); the folder loads in about a second, with identical float32 weights."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench import store
    from bench.extras import require
    from bench.runner import cache_root

    try:  # streamed: the file is not held in memory to be hashed
        digest = store.sha256_file(path) if path.stat().st_size else None
    except OSError as err:
        raise ModelLoadError(f"cannot read GGUF file {path} ({err.strerror}); check its "
                             f"permissions") from None
    if digest is None:
        raise ModelLoadError(f"GGUF file {path} is empty (0 bytes); download it again")
    key = store.content_key({"gguf_sha256": digest, "transformers": transformers.__version__})
    require("gguf", f"loading {path.name}")  # transformers reads GGUF through it

    def convert(tmp: Path) -> None:
        try:
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                         dtype=torch.float32)
        except LOAD_FAILURES as err:  # truncated, not GGUF, or an architecture it lacks
            raise ModelLoadError(f"cannot read GGUF file {path} ({first_line(err)}); download "
                                 f"it again, or give a complete .gguf file") from None
        # transformers marks a GGUF-loaded model as quantized and refuses to save it; the
        # weights are plain float32 after dequantization, so move them into an unmarked model
        # of the same config
        cfg = model.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        # add_bos False: lm-evaluation-harness adds none for causal LMs (see load_hf)
        (tmp / "alignbench.json").write_text(json.dumps(
            {"source": str(path), "gguf_sha256": digest, "add_bos": False,
             "dequantized_by": f"transformers {transformers.__version__}"}))

    # verified on load, rebuilt when damaged, converted by one process at a time
    return store.build_once(cache_root() / "gguf" / f"{path.stem}-{key[:16]}", convert)


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
        self._head_split_ok: bool | None = None
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
        """Summed log-probabilities of continuation ids given context ids.

        When contexts repeat (every choice of a multiple-choice question shares one), each
        distinct context -- and the prefix all contexts share, such as a few-shot primer -- is
        run through the model once and its key/value cache reused for the continuations;
        otherwise one padded forward pass per batch. Both give the same numbers up to float
        rounding (tests/test_truthfulqa.py holds them to 1e-5 against one pass per pair)."""
        n_ctx = len({tuple(c) for c, _ in pairs})
        if pairs and n_ctx * 2 <= len(pairs):
            return self.logprob_ids_shared(pairs)
        return self.logprob_ids_plain(pairs)

    @torch.no_grad()
    def logprob_ids_shared(self, pairs: list[tuple[list[int], list[int]]],
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
        dev = self.device
        prefix = None
        if lp:
            prefix = DynamicCache(config=self.model.config)
            self.model(input_ids=torch.tensor([ctxs[0][:lp]], device=dev), cache=prefix,
                       use_cache=True, logits_to_keep=1)
        rows = [PackedRow(ctx[lp:], [pairs[i][1] for i in groups[ctx]], groups[ctx], lp)
                for ctx in ctxs]
        rows.sort(key=lambda r: -len(r.ids))
        out = [0.0] * len(pairs)
        start = 0
        while start < len(rows):  # chunks of rows within the token budget
            width = len(rows[start].ids)
            stop = start + max(1, tokens_per_batch // width)
            self._score_packed(rows[start:stop], prefix, lp, out)
            start = stop
        return out

    def _score_packed(self, rows: list["PackedRow"], prefix, lp: int, out: list[float]) -> None:
        dev, g, width = self.device, len(rows), len(rows[0].ids)
        x = torch.full((g, width), self.tokenizer.pad_token_id, dtype=torch.long)
        pos = torch.zeros(g, width, dtype=torch.long)
        allowed = torch.zeros(g, width, lp + width, dtype=torch.bool)
        allowed[:, :, :lp] = True
        for r, row in enumerate(rows):
            n = len(row.ids)
            x[r, :n] = torch.tensor(row.ids)
            pos[r, :n] = torch.tensor(row.positions)
            allowed[r, :n, lp:lp + n] = row.mask
            allowed[r, range(n, width), range(lp + n, lp + width)] = True  # pads: self only
        dtype = self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed,
                                                                  torch.finfo(dtype).min)
        cache = expand_cache(prefix, torch.zeros(g, dtype=torch.long, device=dev),
                             self.model.config)
        r_idx, p_idx, t_idx, owner = [], [], [], []
        for r, row in enumerate(rows):
            for pair_i, (p_list, t_list) in zip(row.members, row.targets):
                r_idx += [r] * len(p_list)
                p_idx += p_list
                t_idx += t_list
                owner += [pair_i] * len(p_list)
        lg = self._logits_at(x.to(dev), mask[:, None].to(dev), pos.to(dev), cache,
                             torch.tensor(r_idx, device=dev), torch.tensor(p_idx, device=dev))
        tok_lp = lg.gather(1, torch.tensor(t_idx, device=dev)[:, None])[:, 0] \
            - torch.logsumexp(lg, -1)
        for i, v in zip(owner, tok_lp.tolist()):
            out[i] += v

    def _logits_at(self, x, mask, pos, cache, r_idx, p_idx) -> torch.Tensor:
        """Float logits at (row, position) pairs only. The output projection is most of a small
        model's cost per token at a 49k vocabulary, so it runs on the needed positions alone --
        when the model's logits are exactly ``output_embeddings(decoder(x))``, which is checked
        once per policy (some architectures scale or soft-cap logits) and the full forward
        used otherwise."""
        kw = dict(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True)
        if self._head_split_ok is None:
            probe = expand_cache(cache, torch.arange(x.shape[0], device=x.device),
                                 self.model.config) if cache is not None else None
            full = self.model(**kw, cache=probe).logits[r_idx[:4], p_idx[:4]].float()
            probe = expand_cache(cache, torch.arange(x.shape[0], device=x.device),
                                 self.model.config) if cache is not None else None
            split = self._split_head(kw, probe, r_idx[:4], p_idx[:4])
            self._head_split_ok = split is not None and bool(
                torch.allclose(full, split, atol=1e-4, rtol=1e-5))
        if self._head_split_ok:
            return self._split_head(kw, cache, r_idx, p_idx)
        return self.model(**kw, cache=cache).logits[r_idx, p_idx].float()

    def _split_head(self, kw, cache, r_idx, p_idx) -> torch.Tensor | None:
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        if decoder is None or head is None or decoder is self.model:
            return None
        hidden = decoder(**kw, cache=cache).last_hidden_state
        return head(hidden[r_idx, p_idx]).float()

    @torch.no_grad()
    def logprob_ids_plain(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
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


class PackedRow:
    """One context's remaining tokens followed by its continuations' input tokens (each
    continuation minus its last token), for :meth:`HFPolicy.logprob_ids_shared`.

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
        next_pos = next_pos + 1
    return torch.stack(new, 1) if new else input_ids.new_zeros((b, 0))
