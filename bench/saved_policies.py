"""Trained policies kept as Hugging Face folders (``save_policies = true``), and read back.

A cell's policy goes to ``cells/KEY/policy/``: the weights as safetensors and the tokenizer
(``save_pretrained``, so ``AutoModelForCausalLM.from_pretrained`` and lm-evaluation-harness's HF
backend load it unchanged), a model card (``README.md``) with the cell's method, config, budget
and metrics, and ``alignbench.json``: the same as data, with the world it was trained in (its
scenario, options and key), so ``alignbench eval EVAL --model cells/KEY/policy`` evaluates it in
that world, not in the default one. The folder is written whole or not at all (built beside
itself, then renamed). A policy that is not one set of weights (best-of-n: a reward model
choosing among SFT samples) has no folder; its result says so.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from bench import store

POLICY_DIR = "policy"
META = "alignbench.json"


def savable(policy: object) -> bool:
    """Whether a policy is one transformers model and its tokenizer (what a folder can hold)."""
    return hasattr(policy, "model") and hasattr(policy, "tokenizer") and \
        hasattr(policy.model, "save_pretrained")


def save(policy: Any, record: dict[str, Any], world_describe: dict[str, Any], scenario: str,
         eval_options: dict[str, dict[str, Any]], dest: Path) -> None:
    """Write ``policy`` (a :class:`bench.api.TrainablePolicy`) and its cell's identity to
    ``dest``, replacing an earlier folder of the same cell. ``eval_options`` are the matrix's
    options per eval, which ``alignbench eval`` starts from for this policy."""
    meta = {
        "key": record["key"], "method": record["method"], "seed": record["seed"],
        "point": record.get("point") or {}, "method_config": record["method_config"],
        "budget": record.get("budget"), "metrics": record.get("metrics", {}),
        "add_bos": bool(getattr(policy, "add_bos", False)), "eval_options": eval_options,
        "world": {"scenario": scenario, "key": world_describe.get("world_key"),
                  "options": world_describe.get("options", {}),
                  "n_threads": world_describe.get("n_threads")},
    }

    def write(tmp: Path) -> None:
        policy.model.save_pretrained(tmp, safe_serialization=True)
        policy.tokenizer.save_pretrained(tmp)
        store.atomic_write_json(tmp / META, meta)
        store.atomic_write_text(tmp / "README.md", card(meta))
    _write_whole(dest, write)


def card(meta: dict[str, Any]) -> str:
    """A model card: what trained this policy, under which budget, and what it scored."""
    spent = {k: v for k, v in ((meta.get("budget") or {}).get("spent") or {}).items() if v}
    bos = ("It was trained with the BOS token prepended to every context: with "
           "lm-evaluation-harness, pass `--model_args pretrained=PATH,add_bos_token=True`."
           if meta["add_bos"] else "It takes no BOS token.")
    lines = [
        "---", "library_name: transformers", "tags: [alignbench]", "---", "",
        f"# {meta['method']} (seed {meta['seed']}), trained by alignbench", "",
        f"Cell `{meta['key']}` of an alignbench matrix, in the `{meta['world']['scenario']}` "
        f"world `{meta['world']['key']}`. {bos} `alignbench eval EVAL --model PATH` "
        f"evaluates it in that world (rebuilt from the options in `{META}` when not cached).",
        "", "## Method config", "", "```json",
        json.dumps(meta["method_config"], indent=1, sort_keys=True), "```", "",
        "## Budget spent", "", *[f"- {k}: {v:g}" for k, v in sorted(spent.items())], "",
        "## Metrics (as the cell recorded them)", "",
        *[f"- {k}: {v:.4f}" for k, v in sorted(meta["metrics"].items())
          if isinstance(v, (int, float))], "",
        "## World options", "", "```json",
        json.dumps(meta["world"]["options"], indent=1, sort_keys=True), "```", "",
    ]
    return "\n".join(lines)


def read_meta(path: Path) -> dict[str, Any] | None:
    """A saved policy's ``alignbench.json``, or None for any other model folder."""
    data = store.read_json(Path(path) / META)
    return data if isinstance(data, dict) and "world" in data else None


def pack(folder: Path) -> dict[str, bytes]:
    """A saved policy folder's files, to ship from a Ray worker to the driver (the only
    writer of OUT)."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def unpack(files: dict[str, bytes], dest: Path) -> None:
    """Write a packed folder to ``dest``, whole or not at all."""
    def write(tmp: Path) -> None:
        for name, data in files.items():
            (tmp / Path(name).name).write_bytes(data)
    _write_whole(dest, write)


def _write_whole(dest: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills a folder beside ``dest``, which then replaces ``dest`` (an earlier
    folder of the same cell): a crash leaves the old folder or none, never half of one."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    from bench import output
    left = output.remove_written(dest.parent, dest.name)  # an earlier attempt's files
    if dest.exists():  # what is left there is not alignbench's: never deleted
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(f"{dest} holds files alignbench did not write"
                      + (f" (e.g. {left[0].relative_to(dest)})" if left else "")
                      + "; move them out to save the policy there")
    os.replace(tmp, dest)
