"""Shared fixtures: a private cache per test session, tiny worlds, tiny models built in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRUTHFULQA_CSV = ROOT.parent / "shared" / "data" / "truthfulqa" / "TruthfulQA.csv"

# Tests never touch the user's cache; the session cache is shared by all tests so the small
# world is pretrained once.
os.environ.setdefault("ALIGNBENCH_CACHE", str(Path(os.environ.get(
    "PYTEST_CACHE_ROOT", "/tmp")) / f"alignbench-test-cache-{os.getuid()}"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_WORLD = dict(n_entities=8, hidden=32, ffn=64, layers=1, statement_rounds=3,
                  dialogues_per_fact=3, judgments=100, pretrain_epochs=2, panel_size=5,
                  n_eval_prompts=12)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ["ALIGNBENCH_CACHE"])


@pytest.fixture(scope="session")
def tiny_world(cache_dir):
    from bench.scenarios.micro import Micro, MicroOptions
    return Micro().build(MicroOptions(**TINY_WORLD), cache_dir, progress=False)


@pytest.fixture(scope="session")
def default_world(cache_dir):
    """The default micro-world (pretrained once per cache, about a minute)."""
    from bench.scenarios.micro import Micro, MicroOptions
    return Micro().build(MicroOptions(), cache_dir, progress=False)


@pytest.fixture(scope="session")
def tiny_policy(tiny_world):
    return tiny_world.load_policy(tiny_world.base_model)
