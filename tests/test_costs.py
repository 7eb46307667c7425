"""Every cost is charged: a trainer's forward passes that train nothing (KTO's KL estimate on
mismatched pairs) count in the cell's FLOPs, step by step, as the training tokens do."""

from __future__ import annotations

import json

import pytest

from bench import config, runner
from tests.test_runner import MATRIX


def test_kto_charges_the_forward_passes_of_its_kl_estimate(tmp_path, monkeypatch):
    from trl import KTOTrainer

    seen: list[tuple[int, int]] = []
    real = KTOTrainer.training_step

    def spy(self, model, inputs, *args, **kwargs):
        seen.append((int(inputs["attention_mask"].sum()), int(inputs["KL_attention_mask"].sum())))
        return real(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(KTOTrainer, "training_step", spy)
    m = config.parse({**MATRIX, "methods": ["sft", "kto"], "seeds": [0], "evals": [],
                      "eval": {}, "method": {"sft": {"epochs": 1, "batch_size": 4},
                                             "kto": {"epochs": 1, "batch_size": 4}}})
    out = runner.run(m, tmp_path / "out")
    recs = {r["method"]: r for r in map(json.loads,
                                        (out / "results.jsonl").read_text().splitlines())}
    assert all(r["status"] == "ok" for r in recs.values()), recs
    sft, kto = recs["sft"]["budget"]["spent"], recs["kto"]["budget"]["spent"]
    n = sft["flops"] / (6 * sft["train_tokens"])  # SFT: 6 N per token, no reference
    assert seen and all(kl > 0 for _, kl in seen)
    # each step: 6 N on its tokens (policy, trained), 2 N on them (the SFT reference), and
    # 2 N each for policy and reference on the mismatched pairs' tokens
    want = sum(6 * n * t + 2 * n * t + 2 * (2 * n) * kl for t, kl in seen)
    assert kto["flops"] - sft["flops"] == pytest.approx(want, rel=1e-9)
    assert kto["train_tokens"] - sft["train_tokens"] == sum(t for t, _ in seen)
