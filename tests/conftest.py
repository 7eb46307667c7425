"""Shared fixtures: a private cache per test session, tiny worlds, tiny models built in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never touch the user's cache; the session cache is shared by all tests so the small
# world is pretrained once.
os.environ.setdefault("ALIGNBENCH_CACHE", str(Path(os.environ.get(
    "PYTEST_CACHE_ROOT", "/tmp")) / f"alignbench-test-cache-{os.getuid()}"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The TruthfulQA CSV the package ships (checked against its sha256 in test_standalone.py):
# every test that needs the real questions has them, on any clone.
from bench.data.truthfulqa import PACKAGED_CSV as TRUTHFULQA_CSV  # noqa: E402

TINY_WORLD = dict(n_entities=8, hidden=32, ffn=64, layers=1, statement_rounds=3,
                  dialogues_per_fact=3, judgments=100, pretrain_epochs=2, panel_size=5,
                  n_eval_prompts=12)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ["ALIGNBENCH_CACHE"])


@pytest.fixture(scope="session")
def tiny_world(cache_dir):
    from scenarios.micro import Micro, MicroOptions
    return Micro().build(MicroOptions(**TINY_WORLD), cache_dir, progress=False)


@pytest.fixture(scope="session")
def default_world(cache_dir):
    """The default micro-world (pretrained once per cache, about a minute and a half)."""
    from scenarios.micro import Micro, MicroOptions
    return Micro().build(MicroOptions(), cache_dir, progress=False)


@pytest.fixture(scope="session")
def tiny_policy(tiny_world):
    return tiny_world.load_policy(tiny_world.base_model)


@pytest.fixture(scope="session")
def tiny_real_model(cache_dir) -> Path:
    """A tiny random Llama (GQA, tied embeddings, like SmolLM2) with SmolLM2-135M-Instruct's
    real BPE tokenizer and chat template, saved as a safetensors folder the way a hub snapshot
    looks: every real-model code path (chat template, padding side, EOS, LoRA) runs on it in
    seconds. The tokenizer comes from the offline GGUF asset (fetched once per cache)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from bench.assets import fetch

    folder = cache_dir / "tiny-real-llama"
    if (folder / "model.safetensors").is_file():
        return folder
    gguf = fetch("smollm2")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    LlamaForCausalLM(cfg).save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


@pytest.fixture(scope="session")
def real_world(tiny_real_model, cache_dir):
    """The real scenario on the tiny model, the real CSV, MiniLM and alt-profanity-check."""
    from scenarios.real import Real, RealOptions
    return Real().build(RealOptions(base_model=str(tiny_real_model), data=str(TRUTHFULQA_CSV),
                                    n_win_rate_prompts=6), cache_dir, progress=False)


# In CI a test skipped for want of its browser is a failure: CI installs it, and a silent skip
# would pass a suite that tested nothing there. Other skips (benchmark-only modes) stay skips.
MUST_RUN_IN_CI = ("chromium",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and \
            any(why in str(report.longrepr) for why in MUST_RUN_IN_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {report.longrepr}"


@pytest.fixture(autouse=True)
def _fresh_registry():
    """The registry caches its tables; a test that patches entry points must not leak them."""
    yield
    from bench import registry
    registry.reset()
