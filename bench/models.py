"""Loading base models, safely: the policy they become is :class:`bench.policy.HFPolicy`.

Sources: a hub id (with revision), a local folder, or a ``.gguf`` file (transformers
dequantizes it through the ``gguf`` package). Safetensors only unless the user opts in to
pickle-based ``.bin`` weights; remote code only when the user opts in.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import torch

from bench.policy import HFPolicy
from bench.errors import UserError


class ModelLoadError(UserError, ValueError):
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


DTYPES = ("auto", "bfloat16", "float16", "float32")
"""The precisions a matrix may name: ``auto`` is bfloat16 on a CUDA device that supports it
and float32 elsewhere (CPUs compute bfloat16 slowly and float16 poorly)."""


def torch_dtype(name: str, device: str) -> torch.dtype:
    """The torch dtype a matrix's ``dtype`` name means on ``device`` ("cpu" or "cuda")."""
    if name not in DTYPES:
        raise ModelLoadError(f"dtype {name!r} is not one of {', '.join(DTYPES)}; fix the "
                             f"scenario's dtype option")
    if name == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() \
            else torch.float32
    return getattr(torch, name)


# What identifies a model folder's content: its weights (sharded or not), its config and its
# tokenizer. READMEs, training logs and the like do not move a number.
IDENTITY_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".model", ".txt", ".tiktoken",
                     ".gguf", ".jinja", ".py")  # .py: a model's own code (trust_remote_code)


def folder_identity(path: Path) -> str:
    """The content hash of a model folder's weight, config and tokenizer files, by relative
    name: the same files under another path give the same identity, a folder retrained in
    place a new one."""
    from bench import store

    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in IDENTITY_SUFFIXES
                   and not any(part.startswith(".") for part in f.relative_to(path).parts))
    if not files:
        raise ModelLoadError(f"{path} holds no weight, config or tokenizer files; give the "
                             f"folder save_pretrained wrote")
    return store.content_key({str(f.relative_to(path)): store.sha256_file(f) for f in files})


def hub_commit(repo_id: str, revision: str | None, kind: str = "model") -> str:
    """The commit a hub id at ``revision`` (a branch, tag or commit; None = main) resolves to:
    asked of the hub, else read from the local hub cache, so that a moved branch gives new
    cell keys. A one-line error when neither knows it."""
    import huggingface_hub as hf

    try:
        info = (hf.HfApi().model_info if kind == "model" else hf.HfApi().dataset_info)(
            repo_id, revision=revision)
        return str(info.sha)
    except Exception:  # offline, or the hub refuses: the local cache may still know it
        pass
    try:
        snap = hf.snapshot_download(repo_id, revision=revision, repo_type=kind,
                                    local_files_only=True)
        return Path(snap).name  # the cache's snapshots/<commit> folder
    except Exception:
        raise ModelLoadError(f"cannot resolve {kind} {repo_id!r} at revision "
                             f"{revision or 'main'}: the hub is not reachable and the local hub "
                             f"cache does not hold it; connect once, or give a local folder"
                             ) from None


def model_identity(spec: str | Path, revision: str | None = None) -> str:
    """What a cell key names a model by: a folder's content hash (a ``.gguf`` file's sha256), or
    a hub id's resolved commit."""
    from bench import store

    p = Path(spec)
    if p.is_dir():
        return "folder:" + folder_identity(p)
    if p.is_file():
        return "file:" + store.sha256_file(p)
    return f"hub:{spec}@{hub_commit(str(spec), revision)}"


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
            dtype: torch.dtype | str | None = None, name: str | None = None,
            add_bos: bool | None = None) -> HFPolicy:
    """Load a causal LM and its tokenizer from a hub id, a folder or a GGUF file. ``dtype``: a
    torch dtype, or one of :data:`DTYPES` (None = "auto")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    if not isinstance(dtype, torch.dtype):
        dtype = torch_dtype(dtype or "auto", device)
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
    return store.build_once(store.cache_root() / "gguf" / f"{path.stem}-{key[:16]}", convert)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
